import Foundation
import Testing
import SquishCore
import SquishKernels
import SquishModel
import SquishFormats
import SquishTestSupport

/// RazorAttention's copy probe written plainly: every position kept in f32, attention in Double over the causal range,
/// and for each query at q > distance the weight its query heads pay positions q − distance and q − distance + 1.
final class ReferenceProbeCache: OnePassReferenceCache {
    let capacity: Int, headDim: Int, distance: Int
    let kvHeads: [Int]
    var keys: [[Int: [Float]]], values: [[Int: [Float]]]  // [layer][position] → [kvHeads × headDim]
    var paid: [[Double]]
    var energy: [[[Double]]]  // [layer][KV head][channel]: Σ q² over every query
    let lock = NSLock()

    init(kvHeads: [Int], capacity: Int, headDim: Int, distance: Int) {
        (self.kvHeads, self.capacity, self.headDim, self.distance) = (kvHeads, capacity, headDim, distance)
        keys = kvHeads.map { _ in [:] }
        values = keys
        paid = kvHeads.map { [Double](repeating: 0, count: $0) }
        energy = kvHeads.map { [[Double]](repeating: [Double](repeating: 0, count: headDim), count: $0) }
    }

    func store(layer l: Int, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        lock.withLock {
            keys[l][position] = Array(UnsafeBufferPointer(start: key, count: kvHeads[l] * headDim))
            values[l][position] = Array(UnsafeBufferPointer(start: value, count: kvHeads[l] * headDim))
        }
    }

    func attend(layer l: Int, kvHead: Int, queries: UnsafePointer<Float>, heads: Int, headDim: Int, positions: Range<Int>,
                scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
        let (k, v) = lock.withLock { (keys[l], values[l]) }
        let cols = kvHead * headDim ..< (kvHead + 1) * headDim, q = positions.upperBound - 1
        var sum = 0.0
        for r in 0 ..< heads {
            let query = (0 ..< headDim).map { Double(queries[r * headDim + $0]) }
            let logits = positions.map { p in Double(scale) * zip(query, k[p]![cols]).reduce(0) { $0 + $1.0 * Double($1.1) } }
            let m = logits.max()!
            let e = logits.map { exp($0 - m) }, total = e.reduce(0, +)
            for i in 0 ..< headDim {
                output[r * headDim + i] = Float(zip(e, positions).reduce(0) { $0 + $1.0 * Double(v[$1.1]![cols][cols.lowerBound + i]) } / total)
            }
            if q > distance && positions.contains(q - distance) {
                sum += (e[q - distance - positions.lowerBound] + e[q - distance + 1 - positions.lowerBound]) / total
            }
        }
        lock.withLock {
            paid[l][kvHead] += sum
            for r in 0 ..< heads { for i in 0 ..< headDim { energy[l][kvHead][i] += Double(queries[r * headDim + i] * queries[r * headDim + i]) } }
        }
    }
}

@Suite("Head-aware KV cache (duo) and the copy-head probe")
struct HeadAwareKVCacheTests {
    @Test func parses() throws {
        #expect(try KVCacheSpec.parse("duo").selection == .duo(sink: 4, budget: .tokens(1024), full: nil))
        #expect(try KVCacheSpec.parse("duo:25%,full6,sink2").selection == .duo(sink: 2, budget: .fraction(0.25), full: 6))
        #expect(try KVCacheSpec.parse("duo:25%+q8") == KVCacheSpec(.q8, selection: .duo(sink: 4, budget: .fraction(0.25), full: nil)))
        for s in ["duo:sink4,25%", "duo:sink0,budget64,full3", "duo:sink4,12.5%+f16"] {
            #expect(try KVCacheSpec.parse(s).description == s)
        }
        for s in ["duo:window8", "duo:full-1", "duo:full2,full3", "duo:budget0", "duo+kivi2", "duo+h2o", "duox", "duo:150%"] {
            #expect(throws: ModelError.self, "\(s)") { try KVCacheSpec.parse(s) }
        }
    }

    /// The split: the `full` best-scoring heads (ties: the first) keep all; the rest share what is left of the mean
    /// budget; without `full`, half the budget goes to whole heads; a split that leaves the others no more than their
    /// sinks is refused, naming the spec.
    @Test func splitsTheBudget() throws {
        let scores: [[Double]] = [[0.1, 0.9, 0.3], [0.5, 0.2, 0.3]]
        let kvHeads = [3, 3]
        // 6 heads × 16 = 96 positions; half of them pays for one head of 32.
        let auto = try KVCacheSpec.parse("duo:budget16").headSplit(scores: scores, kvHeads: kvHeads, capacity: 32)
        #expect(auto.keepsAll == [1] && auto.window == 12)  // (96 − 32) / 5
        let two = try KVCacheSpec.parse("duo:budget16,full2").headSplit(scores: scores, kvHeads: kvHeads, capacity: 32)
        #expect(two.keepsAll == [1, 3] && two.window == 8)  // (96 − 64) / 4
        let tie = try KVCacheSpec.parse("duo:budget20,full3").headSplit(scores: scores, kvHeads: kvHeads, capacity: 32)
        #expect(tie.keepsAll == [1, 3, 2] && tie.window == 8)  // 0.3 twice: head 2 before head 5; (120 − 96) / 3
        // (96 − 96) / 3 leaves nothing beside the 4 sinks.
        #expect(throws: ModelError.self) { try KVCacheSpec.parse("duo:budget16,full3").headSplit(scores: scores, kvHeads: kvHeads, capacity: 32) }
        let all = try KVCacheSpec.parse("duo:100%").headSplit(scores: scores, kvHeads: kvHeads, capacity: 32)
        #expect(all.keepsAll.count == 3 && all.window == 32)
        #expect(throws: ModelError.self) { try KVCacheSpec.parse("duo:budget16").headSplit(scores: [[1, 2]], kvHeads: kvHeads, capacity: 32) }
        #expect(throws: ModelError.self) { try KVCacheSpec.parse("h2o").headSplit(scores: scores, kvHeads: kvHeads, capacity: 32) }
    }

    /// The probe's scores are the plain Double version's (within 1e-4) on every tiny family (Gemma 3's sliding-window
    /// layers see only part of the first reading), and lie in [0, 1].
    @Test(arguments: FamilyReferenceTests.families)
    func probeMatchesThePlainComputation(family: String) throws {
        let model = try TransformerModel(hfDirectory: FamilyReferenceTests.fixture(family))
        let c = model.config, n = 20
        let pool = WorkerPool(threads: 2)
        let got = try RetrievalHeads.scores(model: model, pool: pool, length: n, seed: 7)
        let kvHeads = (0 ..< c.layers).map { c.kvHeads(layer: $0) }
        let reference = ReferenceProbeCache(kvHeads: kvHeads, capacity: 2 * n, headDim: c.headDim, distance: n)
        let session = try ModelSession(model: model, pool: pool, contextLength: 2 * n, cache: reference)
        let tokens = RetrievalHeads.probeTokens(vocabSize: c.vocabSize, count: n, seed: 7)
        _ = try session.forward(tokens + tokens)
        for l in 0 ..< c.layers {
            for h in 0 ..< kvHeads[l] {
                let want = reference.paid[l][h] / Double((n - 1) * (c.heads / kvHeads[l]))
                #expect(abs(got[l][h] - want) <= 1e-4, "\(family) layer \(l) head \(h): \(got[l][h]) against \(want)")
                #expect(got[l][h] >= 0 && got[l][h] <= 1 + 1e-6)
            }
        }
        // The queries' mean square per channel over the text the model writes, each RoPE pair's two channels given
        // their mean; the text is what the model samples (the same twice, every token in the vocabulary).
        let written = try RetrievalHeads.writtenText(model: model, pool: pool, length: 3 * n, seed: 7)
        #expect(written.count == 3 * n && written.allSatisfy { (0 ..< c.vocabSize).contains($0) })
        #expect(try RetrievalHeads.writtenText(model: model, pool: WorkerPool(threads: 1), length: 3 * n, seed: 7) == written)
        #expect(try RetrievalHeads.writtenText(model: model, pool: pool, length: 3 * n, seed: 8) != written)
        var sampler = Sampler({ var s = SamplerSettings(); s.temperature = 1; s.seed = 7; return s }())
        let plain = try ModelSession(model: model, pool: pool, contextLength: 3 * n)
        var next = try plain.forward([written[0]])
        for t in written.dropFirst() {
            #expect(try sampler.sample(next) == t)
            next = try plain.forward([t])
        }
        let energies = try RetrievalHeads.queryEnergies(model: model, pool: pool, length: 3 * n, seed: 7)
        let probe = ReferenceProbeCache(kvHeads: kvHeads, capacity: 3 * n, headDim: c.headDim, distance: 3 * n)
        _ = try ModelSession(model: model, pool: pool, contextLength: 3 * n, cache: probe).forward(written)
        let half = c.ropeDimensions / 2
        for l in 0 ..< c.layers {
            for h in 0 ..< kvHeads[l] {
                var want = probe.energy[l][h].map { $0 / Double(3 * n * (c.heads / kvHeads[l])) }
                for i in 0 ..< half {
                    let (a, b) = c.ropeStyle == .adjacentPairs ? (2 * i, 2 * i + 1) : (i, i + half)
                    (want[a], want[b]) = ((want[a] + want[b]) / 2, (want[a] + want[b]) / 2)
                }
                let got = energies[l][h].map(Double.init)
                let worst = zip(got, want).map { abs($0 - $1) / max($1, 1e-6) }.max()!
                #expect(worst <= 1e-4 && got.allSatisfy { $0 > 0 }, "\(family) layer \(l) head \(h): query energies off by \(worst)")
            }
        }
    }

    /// Heads kept whole see every position, the others their sinks and a recent window (window − sinks + 1 positions
    /// with the query's own): the plain per-head StreamingLLM above, in one batch, batches of 7 and decoding, within
    /// 1e-4 of the logits' scale; the bytes count each head's slots. Gemma 3's sliding-window layers intersect with
    /// what is kept.
    @Test(arguments: FamilyReferenceTests.families)
    func matchesThePlainPolicy(family: String) throws {
        let ref = try FamilyReferenceTests.reference(family)
        let model = try TransformerModel(hfDirectory: FamilyReferenceTests.fixture(family))
        let c = model.config
        let kvHeads = (0 ..< c.layers).map { c.kvHeads(layer: $0) }
        let n = kvHeads.reduce(0, +)
        // Layer 0's first head scores highest and stays whole (on Gemma 3 a sliding-window layer, so that its global
        // layer is windowed), the rest in reverse order.
        var next = 0.0
        let scores = kvHeads.map { k in (0 ..< k).map { _ in defer { next -= 1 }; return next } }
        // One head whole (64 positions), the others a window of at least 10.
        let kv = try KVCacheSpec.parse("duo:sink2,budget\((64 + 10 * (n - 1) + n - 1) / n),full1")
        let split = try kv.headSplit(scores: scores, kvHeads: kvHeads, capacity: 64)
        #expect(split.keepsAll.count == 1 && split.window >= 10)
        var windows: [[Int]] = [], h = 0
        for k in kvHeads {
            windows.append((0 ..< k).map { _ in defer { h += 1 }; return split.keepsAll.contains(h) ? 64 : split.window - 2 + 1 })
        }
        let f32 = try KVCacheFamilyTests.logits(model, ref.tokens)
        let scale = f32.map(abs).max()!
        for batch in [64, 7, 1] {
            let pool = WorkerPool(threads: 2)
            let cache = try kv.makeCache(config: c, capacity: 64, batch: batch, headScores: { scores })
            let session = try ModelSession(model: model, pool: pool, contextLength: 64, maxBatch: batch, cache: cache, exactActivations: true)
            let reference = try ModelSession(model: model, pool: pool, contextLength: 64, maxBatch: batch,
                                             cache: ReferenceStreamingCache(sink: 2, windows: windows, kvHeads: kvHeads, capacity: 64, headDim: c.headDim),
                                             exactActivations: true)
            let got = try session.forward(ref.tokens, logitsFor: ref.tokens.count)
            let want = try reference.forward(ref.tokens, logitsFor: ref.tokens.count)
            #expect(KVCacheFamilyTests.worst(got, want) <= 1e-4 * scale, "\(family) batch \(batch)")
            #expect(KVCacheFamilyTests.worst(got, f32) > 1e-3 * scale, "\(family) batch \(batch): evicting changed nothing")
            #expect(session.maxBatch == min(batch, split.window - 2))
            let slots = 64 + (n - 1) * min(split.window + session.maxBatch, 64)
            #expect(cache.bytes(positions: 64) == 2 * 4 * c.headDim * slots, "\(family) batch \(batch)")
        }
        #expect(throws: ModelError.self) { try kv.makeCache(config: c, capacity: 64) }  // no head statistics
    }

    /// On the default model the probe finds a few heads that copy and many that do not (measured: the best KV head of
    /// 90 pays 0.64 of its attention to the copied positions, the median well under 0.02), and `duo:25%` keeps 11 of
    /// them whole at a context of 4,096.
    @Test func findsCopyingHeadsInTheDefaultModel() throws {
        let model = try TransformerModel(gguf: GGUFFile(path: TestSupport.defaultModelPath()))
        let scores = try model.retrievalHeadScores(pool: WorkerPool(threads: 2)).joined().sorted()
        #expect(scores.count == 90)
        #expect(scores.last! > 0.4, "\(scores.suffix(5))")
        #expect(scores[45] < 0.02, "median \(scores[45])")
        let c = model.config
        let split = try KVCacheSpec.parse("duo:25%").headSplit(scores: try model.retrievalHeadScores(pool: WorkerPool(threads: 2)),
                                                                 kvHeads: (0 ..< c.layers).map { c.kvHeads(layer: $0) }, capacity: 4096)
        #expect(split.keepsAll.count == 11 && split.window == (90 * 1024 - 11 * 4096) / 79)
    }
}
