import Foundation
import Testing
import SquishCore
import SquishKernels
import SquishModel

/// H2O, TOVA, SnapKV and ChunkKV written plainly from their descriptions (KVCacheSpec.ScoredMethod): per layer and KV head a
/// set of kept positions with a score each, attention in Double over the kept positions gathered in order.
final class ReferenceSelectionCache: OnePassReferenceCache {
    enum Method { case h2o, tova, snapkv(window: Int, chunk: Int) }
    let method: Method, sink: Int, budget: Int, recent: Int
    let capacity: Int, headDim: Int
    let kvHeads: [Int]
    var keys: [[Int: [Float]]], values: [[Int: [Float]]]  // [layer][position] → [kvHeads × headDim]
    var kept: [[Set<Int>]]  // [layer][kvHead]
    var score: [[[Int: Double]]]  // [layer][kvHead][position]
    var rank: [[[Int: Int]]]  // [layer][kvHead][position]: hidden from queries at least this far into the batch
    var start: [Int], end: [Int], previous: [Int]
    var old: [[Int]]  // [layer][kvHead]: positions held when the batch began
    let lock = NSLock()  // attention work items run concurrently

    init(method: Method, sink: Int, budget: Int, kvHeads: [Int], capacity: Int, headDim: Int) {
        (self.method, self.sink, self.budget, self.kvHeads, self.capacity, self.headDim) = (method, sink, budget, kvHeads, capacity, headDim)
        recent = switch method {
        case .h2o: (budget - sink) / 2
        case .tova: 0
        case .snapkv(let w, _): w
        }
        keys = kvHeads.map { _ in [:] }
        values = keys
        kept = kvHeads.map { [Set<Int>](repeating: [], count: $0) }
        score = kvHeads.map { [[Int: Double]](repeating: [:], count: $0) }
        rank = kvHeads.map { [[Int: Int]](repeating: [:], count: $0) }
        start = kvHeads.map { _ in 0 }
        end = start
        previous = start
        old = kvHeads.map { [Int](repeating: 0, count: $0) }
    }

    var largestBatch: Int {
        if case .snapkv = method { return .max }
        return budget - sink - recent
    }

    /// Evictable positions of a head, lowest ranking first (ties: the older first).
    func order(_ l: Int, _ h: Int, before limit: Int) -> [Int] {
        var r = score[l][h]
        if case .snapkv(_, let chunk) = method, chunk > 0 {  // the chunk's total
            for p in kept[l][h] { r[p] = kept[l][h].filter { $0 / chunk == p / chunk }.map { score[l][h][$0]! }.reduce(0, +) }
        } else if case .snapkv = method {  // max over the 7 neighbours in position order
            let sorted = kept[l][h].sorted()
            for (i, p) in sorted.enumerated() {
                r[p] = sorted[max(0, i - 3) ... min(sorted.count - 1, i + 3)].map { score[l][h][$0]! }.max()!
            }
        }
        return kept[l][h].filter { $0 >= sink && $0 < limit }.sorted { r[$0]! != r[$1]! ? r[$0]! < r[$1]! : $0 < $1 }
    }

    func beginBatch(layer l: Int, start s: Int, count: Int) {
        for h in 0 ..< kvHeads[l] {
            // SnapKV: after a prompt, and when decoding has added a window beyond the budget.
            let compress: Bool = if case .snapkv(let w, _) = method { count == 1 && (previous[l] > 1 || kept[l][h].count >= budget + w) } else { true }
            if compress && kept[l][h].count > budget {
                for p in order(l, h, before: s - recent).prefix(kept[l][h].count - budget) { kept[l][h].remove(p) }
            }
            old[l][h] = kept[l][h].count
            rank[l][h] = [:]
            if count > 1 {
                switch method {
                case .h2o: for (i, p) in order(l, h, before: s - recent).enumerated() { rank[l][h][p] = i }
                case .tova: for (i, p) in order(l, h, before: s).enumerated() { rank[l][h][p] = i }
                case .snapkv: break
                }
            }
            switch method {
            case .h2o: break
            case .tova: for p in kept[l][h] { score[l][h][p] = 0 }
            case .snapkv(let w, _): if count >= w || compress { for p in kept[l][h] { score[l][h][p] = 0 } }
            }
        }
        previous[l] = count
        start[l] = s
        end[l] = s + count
    }

    func store(layer l: Int, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        keys[l][position] = Array(UnsafeBufferPointer(start: key, count: kvHeads[l] * headDim))
        values[l][position] = Array(UnsafeBufferPointer(start: value, count: kvHeads[l] * headDim))
        for h in 0 ..< kvHeads[l] { kept[l][h].insert(position); score[l][h][position] = 0 }
    }

    func attend(layer l: Int, kvHead: Int, queries: UnsafePointer<Float>, heads: Int, headDim: Int, positions: Range<Int>,
                scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
        let q = positions.upperBound - 1, into = old[l][kvHead] + q - start[l] - budget
        let seen = kept[l][kvHead].filter { positions.contains($0) && (rank[l][kvHead][$0] ?? .max) >= into }.sorted()
        let cols = kvHead * headDim ..< (kvHead + 1) * headDim
        let counts: Bool = switch method {
        case .h2o: true
        case .tova: q == end[l] - 1
        case .snapkv(let w, _): q >= end[l] - w
        }
        for r in 0 ..< heads {
            let query = (0 ..< headDim).map { Double(queries[r * headDim + $0]) }
            let logits = seen.map { p in Double(scale) * zip(query, keys[l][p]![cols]).reduce(0) { $0 + $1.0 * Double($1.1) } }
            let m = logits.max()!
            let e = logits.map { exp($0 - m) }, total = e.reduce(0, +)
            for i in 0 ..< headDim {
                output[r * headDim + i] = Float(zip(e, seen).reduce(0) { $0 + $1.0 * Double(values[l][$1.1]![cols][cols.lowerBound + i]) } / total)
            }
            if counts { lock.withLock { for (w, p) in zip(e, seen) { score[l][kvHead][p]! += w / total } } }
        }
    }

}

@Suite("Attention-scored KV caches (H2O, TOVA, SnapKV)")
struct AttentionSelectionKVCacheTests {
    @Test func parses() throws {
        #expect(try KVCacheSpec.parse("h2o").selection == .scored(.h2o, sink: 0, budget: .tokens(1024)))
        #expect(try KVCacheSpec.parse("tova:25%").selection == .scored(.tova, sink: 0, budget: .fraction(0.25)))
        #expect(try KVCacheSpec.parse("snapkv").selection == .scored(.snapkv(window: 32), sink: 0, budget: .tokens(1024)))
        #expect(try KVCacheSpec.parse("snapkv:budget300,window16,sink4").selection
            == .scored(.snapkv(window: 16), sink: 4, budget: .tokens(300)))
        #expect(try KVCacheSpec.parse("snapkv:25%+q8") == KVCacheSpec(.q8, selection: .scored(.snapkv(window: 32), sink: 0, budget: .fraction(0.25))))
        #expect(try KVCacheSpec.parse("chunkkv:25%").selection == .scored(.snapkv(window: 32, chunk: 10), sink: 0, budget: .fraction(0.25)))
        #expect(try KVCacheSpec.parse("chunkkv:chunk16,window8").selection == .scored(.snapkv(window: 8, chunk: 16), sink: 0, budget: .tokens(1024)))
        for s in ["h2o:sink0,budget1024", "tova:sink4,25%", "snapkv:sink0,12.5%,window32", "h2o:sink2,budget64", "tova:sink0,budget9+f16",
                  "chunkkv:sink0,25%,window32,chunk10+q8"] {
            #expect(try KVCacheSpec.parse(s).description == s)
        }
        for s in ["h2o:window8", "tova:budget0", "snapkv:window0", "h2o:25%,budget9", "h2o+kivi4", "h2o+streaming", "snapkv:chunk4",
                  "chunkkv:chunk0", "chunkkv:chunk4,chunk5",
                  "snap", "h2ox", "tova:150%"] {
            #expect(throws: ModelError.self, "\(s)") { try KVCacheSpec.parse(s) }
        }
        // Nothing left to select: 4 sinks and SnapKV's window of 32 fill a budget of 36.
        let c = try KVCacheSpec.parse("snapkv:budget36,sink4")
        #expect(throws: ModelError.self) { try c.makeCache(config: Self.config(), capacity: 64) }
    }

    static func config() throws -> ModelConfig {
        try TransformerModel(hfDirectory: FamilyReferenceTests.fixture("llama")).config
    }

    static func reference(_ spec: KVCacheSpec, kvHeads: [Int], headDim: Int) -> ReferenceSelectionCache {
        guard case .scored(let m, let sink, .tokens(let budget))? = spec.selection else { fatalError("not a scored selection") }
        let method: ReferenceSelectionCache.Method = switch m {
        case .h2o: .h2o
        case .tova: .tova
        case .snapkv(let w, let c): .snapkv(window: w, chunk: c)
        case .recency: fatalError("recency is checked per head in HeadAwareKVCacheTests")
        }
        return ReferenceSelectionCache(method: method, sink: sink, budget: budget, kvHeads: kvHeads, capacity: 64, headDim: headDim)
    }

    /// A budget that covers every position changes nothing (logits within 1e-5 of the f32 cache's); a small one
    /// matches the plain version above in one batch, in batches of 7 and decoding one token at a time, within 1e-4 of
    /// the logits' scale (the session's batch is at most the evictable part of the budget), and differs from the f32
    /// cache. SnapKV reads the first 30 tokens as a prompt and decodes the rest, so it compresses once. Gemma 3's
    /// sliding-window layers intersect with what is kept.
    @Test(arguments: FamilyReferenceTests.families)
    func matchesThePlainPolicy(family: String) throws {
        let ref = try FamilyReferenceTests.reference(family)
        let model = try TransformerModel(hfDirectory: FamilyReferenceTests.fixture(family))
        let c = model.config
        let f32 = try KVCacheFamilyTests.logits(model, ref.tokens)
        let scale = f32.map(abs).max()!
        let kvHeads = (0 ..< c.layers).map { c.kvHeads(layer: $0) }
        for spec in ["h2o:budget12,sink2", "tova:budget10,sink1", "snapkv:budget14,sink1,window4", "chunkkv:budget14,sink1,window4,chunk3"] {
            let kv = try KVCacheSpec.parse(spec)
            let wide = try KVCacheFamilyTests.logits(model, ref.tokens, kv: try KVCacheSpec.parse(spec.replacingOccurrences(of: "budget1", with: "budget6")))
            #expect(KVCacheFamilyTests.worst(wide, f32) <= 1e-5 * scale, "\(family) \(spec) wide budget")
            let prompt = 30
            for batch in [64, 7, 1] {
                let pool = try WorkerPool(threads: 2)
                let session = try ModelSession(model: model, pool: pool, contextLength: 64, maxBatch: batch, kv: kv, exactActivations: true)
                let reference = try ModelSession(model: model, pool: pool, contextLength: 64, maxBatch: batch,
                                                 cache: Self.reference(kv, kvHeads: kvHeads, headDim: c.headDim), exactActivations: true)
                var got: [Float] = [], want: [Float] = []
                if case .scored(.snapkv, _, _)? = kv.selection {
                    // A prompt, then generated tokens: what ModelSession.score does for a cache that compresses prompts.
                    #expect(session.cache.compressesAfterPrompt && !reference.cache.compressesAfterPrompt)
                    got = try session.score(ref.tokens, last: ref.tokens.count - prompt)
                    _ = try reference.forward(Array(ref.tokens[..<prompt]), logitsFor: 0)
                    for t in ref.tokens[prompt...] { want += try reference.forward([t]) }
                } else {
                    got = try session.forward(ref.tokens, logitsFor: ref.tokens.count)
                    want = try reference.forward(ref.tokens, logitsFor: ref.tokens.count)
                }
                #expect(KVCacheFamilyTests.worst(got, want) <= 1e-4 * scale, "\(family) \(spec) batch \(batch)")
                #expect(KVCacheFamilyTests.worst(got, Array(f32.suffix(got.count))) > 1e-3 * scale, "\(family) \(spec) batch \(batch): evicting changed nothing")
            }
        }
    }

    /// Stored as f16 or 8-bit rows, a budget that evicts nothing gives the plain f16 and q8 caches' logits (the same
    /// row grids and kernels; within 1e-4 of the logits' scale), in half and about a quarter of the f32 bytes.
    @Test(arguments: FamilyReferenceTests.families)
    func storesQuantizedRows(family: String) throws {
        let ref = try FamilyReferenceTests.reference(family)
        let model = try TransformerModel(hfDirectory: FamilyReferenceTests.fixture(family))
        let scale = try KVCacheFamilyTests.logits(model, ref.tokens).map(abs).max()!
        var bytes: [Int] = []
        for precision in ["f32", "f16", "q8"] {
            let plain = try KVCacheFamilyTests.logits(model, ref.tokens, kv: try KVCacheSpec.parse(precision))
            let kv = try KVCacheSpec.parse("h2o:budget60+" + precision)
            let got = try KVCacheFamilyTests.logits(model, ref.tokens, kv: kv)
            #expect(KVCacheFamilyTests.worst(got, plain) <= 1e-4 * scale, "\(family) \(precision)")
            bytes.append(try kv.makeCache(config: model.config, capacity: 64).bytes(positions: 64))
        }
        #expect(bytes[1] * 2 == bytes[0] && bytes[2] * 3 < bytes[0], "\(family): \(bytes)")
    }

    /// After a prompt longer than the budget, each head holds the budget plus the batch being read; a copy of the
    /// cache continues exactly as the original does, and truncating frees the positions after the cut.
    @Test func holdsItsBudgetCopiesAndTruncates() throws {
        let model = try TransformerModel(hfDirectory: FamilyReferenceTests.fixture("qwen3"))
        let c = model.config
        let tokens = try FamilyReferenceTests.reference("qwen3").tokens
        let kv = try KVCacheSpec.parse("h2o:budget20,sink2")
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 64, maxBatch: 8, kv: kv)
        _ = try session.forward(Array(tokens[..<32]))
        let row = 2 * 4 * (0 ..< c.layers).map { c.kvHeads(layer: $0) }.reduce(0, +) * c.headDim
        #expect(session.maxBatch == 8)
        #expect(session.cache.bytes(positions: 32) == row * 28)  // budget 20 + a batch of 8
        #expect(session.cache.bytes(positions: 10) == row * 10)
        let copy = try session.cache.copy(prefix: 32)
        func decode(_ cache: KVCache, from start: Int) throws -> [Float] {
            let x = UnsafeMutablePointer<Float>.allocate(capacity: c.dim)
            defer { x.deallocate() }
            var out: [Float] = []
            for (i, t) in tokens[start ..< start + 6].enumerated() {
                try session.pass.embed([t], into: x)
                for (li, layer) in model.layers.enumerated() {
                    try session.pass.block(li, layer, x: x, tokens: 1, start: start + i, cache: cache, cacheLayer: li)
                }
                var logits = [Float](repeating: 0, count: c.vocabSize)
                try logits.withUnsafeMutableBufferPointer { try session.pass.logits(x, rows: 1, into: $0.baseAddress!) }
                out += logits
            }
            return out
        }
        func prefill(_ cache: KVCache, _ part: ArraySlice<Int>) throws {
            let x = UnsafeMutablePointer<Float>.allocate(capacity: 8 * c.dim)
            defer { x.deallocate() }
            for start in stride(from: part.startIndex, to: part.endIndex, by: 8) {  // the session's batch
                let chunk = part[start ..< min(start + 8, part.endIndex)]
                try session.pass.embed(chunk, into: x)
                for (li, layer) in model.layers.enumerated() {
                    try session.pass.block(li, layer, x: x, tokens: chunk.count, start: start, cache: cache, cacheLayer: li)
                }
            }
        }
        let original = try decode(session.cache, from: 32)
        #expect(try decode(copy, from: 32) == original)
        // With nothing evicted, truncating to 24 and decoding tokens 24 ..< 30 gives the logits of a fresh cache that
        // read tokens 0 ..< 24 (truncate frees exactly the later positions).
        let roomy = try KVCacheSpec.parse("h2o:budget60").makeCache(config: c, capacity: 64, batch: 8)
        let fresh = try KVCacheSpec.parse("h2o:budget60").makeCache(config: c, capacity: 64, batch: 8)
        try prefill(roomy, tokens[..<32])
        roomy.truncate(to: 24)
        try prefill(fresh, tokens[..<24])
        #expect(try decode(roomy, from: 24) == decode(fresh, from: 24))
    }
}
