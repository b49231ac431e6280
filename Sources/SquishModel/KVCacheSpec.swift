import Foundation
import SquishCore
import SquishKernels

/// Which KV cache a session uses: the one `--kv SPEC` of every command that runs a model, parsed here and only here.
///
/// Presets: `f32` (the reference), `f16`, `q8` (8-bit, one f16 scale per 32 channels of a head and position),
/// `kivi4`, `kivi2` (KIVI: keys quantized per channel over groups of g positions, values per position; the most
/// recent r to r + g − 1 positions stay f32). KIVI takes parameters after a colon: `kivi2:g32,r64,s4,k4`
/// (g: positions per key group, a multiple of 8 up to 256; r: the full-precision window; s: sinks, the first positions
/// kept in f32; k: bits per key when they differ from the values'; h: keys turned by a Hadamard rotation first; p: keys
/// quantized as they were before RoPE; a: each key block's bits allocated among its channels by their ranges; v: values
/// turned by a Hadamard rotation first).
/// Selection: `streaming` (StreamingLLM: 4 attention sinks and the 1,020 most recent positions), with parameters
/// `streaming:sink4,window1020` or a budget as a share of the context, `streaming:25%` (sinks included); and the
/// attention-scored selections `h2o` (heavy hitters by accumulated attention, half the budget for the most recent
/// positions), `tova` (the positions the latest query attends to least are evicted) and `snapkv` (a prompt is
/// compressed once it has been read, by the pooled attention of its last `window` queries; `chunkkv` the same by chunks
/// of `chunk<n>` positions), each with a budget of 1,024 positions by default, `h2o:budget512` or `h2o:25%`, and
/// `sink<n>` (positions always kept); `snapkv:25%,window32`, `chunkkv:25%,chunk10`; and the head-aware `duo:25%,full11`.
/// Selections compose with the row precisions by `+` (`snapkv:25%+q8`, `streaming:25%+f16`); KIVI under a selection
/// is refused by name.
public struct KVCacheSpec: Equatable, Sendable, CustomStringConvertible {
    public enum Precision: Equatable, Sendable {
        case f32, f16, q8
        /// KIVI with `bits` (4 or 2) per value and `keyBits` (4 or 2; default `bits`) per key, keys grouped over `group`
        /// positions, `residual` recent positions in f32, the first `sink` positions (the attention sinks) also in f32, and
        /// keys turned by a Hadamard rotation before they are quantized when `rotate`, turned back to before RoPE when
        /// `preRoPE`, with each key block's bits allocated among its channels when `allocate`, and values turned by a
        /// Hadamard rotation before they are quantized when `rotateValues` (KIVIKVCache).
        case kivi(bits: Int, group: Int, residual: Int, sink: Int = 0, keyBits: Int? = nil, rotate: Bool = false, preRoPE: Bool = false,
                  allocate: Bool = false, rotateValues: Bool = false)
    }

    /// How many recent positions a selection keeps: a count, or a share of the context (sinks included).
    public enum Budget: Equatable, Sendable {
        case tokens(Int)
        case fraction(Double)

        /// Positions in a cache of `capacity` (at least 1).
        public func positions(capacity: Int) -> Int {
            switch self {
            case .tokens(let n): n
            case .fraction(let f): max(1, Int((f * Double(capacity)).rounded()))
            }
        }
    }

    public enum Selection: Equatable, Sendable {
        case streaming(sink: Int, window: Budget)
        /// Evicting by attention (AttentionSelectionKVCache): `budget` positions kept, the first `sink` always.
        case scored(ScoredMethod, sink: Int, budget: Budget)
        /// The head-aware policy (after DuoAttention and RazorAttention): the `full` KV heads that copy most in a probe
        /// (RetrievalHeads) keep every position; the others keep the first `sink` positions and a window of the most
        /// recent ones, sized so that all heads together hold `budget` positions per head on average. `full` nil: as many
        /// heads as half the budget pays for.
        case duo(sink: Int, budget: Budget, full: Int?)
    }

    /// How an attention-scored selection ranks positions.
    public enum ScoredMethod: Equatable, Sendable {
        /// H2O (Zhang et al. 2023): attention accumulated over every query since the position was stored; half the
        /// budget is the most recent positions.
        case h2o
        /// TOVA (Oren et al. 2024): the attention of the latest query only.
        case tova
        /// SnapKV (Li et al. 2024): at the end of a prompt, the attention of its last `window` queries, max-pooled over
        /// 7 neighbouring positions; those `window` positions are kept. With `chunk` > 0, ChunkKV (Liu et al. 2025):
        /// the prompt is cut into chunks of `chunk` consecutive positions and a chunk's positions are ranked together by
        /// the attention the window paid the whole chunk, so kept text stays in phrases (`chunkkv`).
        case snapkv(window: Int, chunk: Int = 0)
        /// The oldest position goes first (StreamingLLM's rule for one head; what `duo` gives the heads that do not
        /// copy). Not a preset of its own: `streaming` is the same for every head.
        case recency

        var name: String {
            switch self {
            case .h2o: "h2o"
            case .tova: "tova"
            case .snapkv(_, let chunk): chunk > 0 ? "chunkkv" : "snapkv"
            case .recency: "recency"
            }
        }
    }

    public var precision: Precision
    public var selection: Selection?

    public init(_ precision: Precision, selection: Selection? = nil) {
        self.precision = precision
        self.selection = selection
    }

    public static let f32 = KVCacheSpec(.f32)
    /// KIVI's defaults (Liu et al. 2024, section 4: group 32, residual 128).
    public static let kiviGroup = 32, kiviResidual = 128
    public static let presets = ["f32", "f16", "q8", "kivi4", "kivi2", "streaming", "h2o", "tova", "snapkv", "chunkkv", "duo"]
    /// StreamingLLM's defaults (Xiao et al. 2024, section 4: 4 sinks, a cache of 1,024 positions).
    public static let streamingSink = 4, streamingWindow = 1020
    /// The attention-scored selections' default budget (StreamingLLM's cache size) and SnapKV's observation window
    /// (Li et al. 2024, section 4.1).
    public static let scoredBudget = 1024, snapWindow = 32
    /// ChunkKV's chunk (Liu et al. 2025, section 4: 10 positions).
    public static let chunkSize = 10

    /// The canonical text, which `parse` reads back (e.g. "kivi2:g32,r128", "streaming:sink4,25%").
    public var description: String {
        let p: String = switch precision {
        case .f32: "f32"
        case .f16: "f16"
        case .q8: "q8"
        case .kivi(let b, let g, let r, let s, let k, let h, let p, let a, let v):
            "kivi\(b):g\(g),r\(r)" + (s > 0 ? ",s\(s)" : "") + (k.map { $0 != b ? ",k\($0)" : "" } ?? "") + (h ? ",h" : "")
                + (p ? ",p" : "") + (a ? ",a" : "") + (v ? ",v" : "")
        }
        guard let selection else { return p }
        let rows = precision == .f32 ? "" : "+" + p
        func text(_ b: Budget) -> String {
            switch b {
            case .tokens(let n): "budget\(n)"
            case .fraction(let f): "\(Self.percent(f))%"
            }
        }
        switch selection {
        case .duo(let sink, let budget, let full): return "duo:sink\(sink),\(text(budget))" + (full.map { ",full\($0)" } ?? "") + rows
        case .streaming(let sink, .tokens(let w)): return "streaming:sink\(sink),window\(w)" + rows
        case .streaming(let sink, .fraction(let f)): return "streaming:sink\(sink),\(Self.percent(f))%" + rows
        case .scored(let method, let sink, let budget):
            let w = if case .snapkv(let w, let c) = method { ",window\(w)" + (c > 0 ? ",chunk\(c)" : "") } else { "" }
            return "\(method.name):sink\(sink),\(text(budget))\(w)" + rows
        }
    }

    static func percent(_ f: Double) -> String {
        let v = f * 100
        return v == v.rounded() ? String(Int(v)) : String(v)
    }

    /// Parses a specification; errors name the text and what is wrong with it.
    public static func parse(_ text: String) throws -> KVCacheSpec {
        let parts = text.trimmingCharacters(in: .whitespaces).lowercased().split(separator: "+", omittingEmptySubsequences: false)
        func fail(_ reason: String) -> ModelError { .invalidKVCacheSpec(spec: text, reason: reason) }
        guard parts.count <= 2 else { throw fail("at most one selection and one precision, joined by '+'") }
        var precision: Precision?, selection: Selection?
        for part in parts {
            if ["streaming", "h2o", "tova", "snapkv", "chunkkv", "duo"].contains(where: { part.hasPrefix($0) }) {
                guard selection == nil else { throw fail("two selections") }
                selection = try parseSelection(String(part), fail: fail)
            } else {
                guard precision == nil else { throw fail("two precisions") }
                precision = try parsePrecision(String(part), fail: fail)
            }
        }
        let result = KVCacheSpec(precision ?? .f32, selection: selection)
        if selection != nil, case .kivi = result.precision {
            throw fail("a selection composes with f32, f16 and q8 storage (KIVI's key groups need positions in order)")
        }
        return result
    }

    static func parseSelection(_ spec: String, fail: (String) -> ModelError) throws -> Selection {
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let name = parts[0]
        let method: ScoredMethod? = switch name {
        case "h2o": .h2o
        case "tova": .tova
        case "snapkv": .snapkv(window: snapWindow)
        case "chunkkv": .snapkv(window: snapWindow, chunk: chunkSize)
        case "duo": .recency
        default: nil
        }
        guard name == "streaming" || method != nil else {
            throw fail("unknown selection '\(name)'; choose streaming, h2o, tova, snapkv, chunkkv or duo")
        }
        var sink = method == nil || method == .recency ? streamingSink : 0
        var budget: Budget? = nil, window: Int? = nil, full: Int? = nil, chunk: Int? = nil
        let chunked = name == "chunkkv"
        if parts.count > 1 {
            var seenSink = false
            // streaming: window<n> or <p>% is its budget; h2o/tova/snapkv: budget<n> or <p>%, and snapkv's window<n>.
            let allowed = method == nil ? "sink<positions>, window<positions> or <percent>%"
                : chunked ? "sink<positions>, budget<positions>, <percent>%, window<positions> or chunk<positions>"
                : method == .snapkv(window: snapWindow) ? "sink<positions>, budget<positions>, <percent>% or window<positions>"
                : method == .recency ? "sink<positions>, budget<positions>, <percent>% or full<KV heads>"
                : "sink<positions>, budget<positions> or <percent>%"
            for p in parts[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
                if p.hasPrefix("sink"), let v = Int(p.dropFirst(4)), v >= 0, v <= 1 << 20, !seenSink {
                    sink = v
                    seenSink = true
                } else if method == nil, p.hasPrefix("window"), let v = Int(p.dropFirst(6)), v >= 1, v <= 1 << 20, budget == nil {
                    budget = .tokens(v)
                } else if method != nil, p.hasPrefix("budget"), let v = Int(p.dropFirst(6)), v >= 1, v <= 1 << 20, budget == nil {
                    budget = .tokens(v)
                } else if case .snapkv? = method, p.hasPrefix("window"), let v = Int(p.dropFirst(6)), v >= 1, v <= 1 << 16, window == nil {
                    window = v
                } else if chunked, p.hasPrefix("chunk"), let v = Int(p.dropFirst(5)), v >= 1, v <= 1 << 16, chunk == nil {
                    chunk = v
                } else if method == .recency, p.hasPrefix("full"), let v = Int(p.dropFirst(4)), v >= 0, v <= 1 << 16, full == nil {
                    full = v
                } else if p.hasSuffix("%"), let v = Double(p.dropLast()), v > 0, v <= 100, budget == nil {
                    budget = .fraction(v / 100)
                } else {
                    throw fail("parameter '\(p)' is not \(allowed) (each at most once)")
                }
            }
        }
        guard let method else { return .streaming(sink: sink, window: budget ?? .tokens(streamingWindow)) }
        if method == .recency { return .duo(sink: sink, budget: budget ?? .tokens(scoredBudget), full: full) }
        let m: ScoredMethod = if case .snapkv(_, let c) = method { .snapkv(window: window ?? snapWindow, chunk: chunk ?? c) } else { method }
        return .scored(m, sink: sink, budget: budget ?? .tokens(scoredBudget))
    }

    static func parsePrecision(_ text: String, fail: (String) -> ModelError) throws -> Precision {
        let spec = text
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let name = parts[0]
        let params = parts.count > 1 ? parts[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init) : []
        if parts.count > 1 && params.allSatisfy({ $0.isEmpty }) { throw fail("nothing after ':'") }
        switch name {
        case "f32", "f16", "q8":
            guard params.isEmpty else { throw fail("\(name) takes no parameters") }
            return name == "f32" ? .f32 : name == "f16" ? .f16 : .q8
        case "kivi4", "kivi2":
            var group = kiviGroup, residual = kiviResidual, sink = 0, keyBits: Int? = nil
            var seen = Set<Character>()
            for p in params {
                if ["h", "p", "a", "v"].contains(p) {
                    guard seen.insert(p.first!).inserted else { throw fail("parameter '\(p)' given twice") }
                    continue
                }
                guard let key = p.first, let value = Int(p.dropFirst()), value >= 0, "grsk".contains(key) else {
                    throw fail("parameter '\(p)' is not g<positions>, r<positions>, s<positions>, k<key bits>, h (rotated keys), p (keys before RoPE), a (bits allocated per channel) or v (rotated values)")
                }
                guard seen.insert(key).inserted else { throw fail("parameter '\(key)' given twice") }
                switch key {
                case "g": group = value
                case "r": residual = value
                case "k": keyBits = value
                default: sink = value
                }
            }
            guard sink <= 1 << 16 else { throw fail("sink s\(sink) is larger than 65536") }
            guard keyBits == nil || keyBits == 2 || keyBits == 4 else { throw fail("key bits k\(keyBits!) must be 2 or 4") }
            guard group >= 8, group <= 256, group % 8 == 0 else { throw fail("group g\(group) must be a multiple of 8 from 8 to 256") }
            guard residual <= 1 << 20 else { throw fail("residual window r\(residual) is larger than 1048576") }
            let bits = name == "kivi4" ? 4 : 2
            return .kivi(bits: bits, group: group, residual: residual, sink: sink, keyBits: keyBits == bits ? nil : keyBits,
                         rotate: seen.contains("h"), preRoPE: seen.contains("p"), allocate: seen.contains("a"),
                         rotateValues: seen.contains("v"))
        default:
            throw fail("unknown cache; choose from \(presets.joined(separator: ", ")) (KIVI takes :g<group>,r<residual>,s<sinks>,k<key bits>,h,p,a,v)")
        }
    }

    /// A cache of this kind for every layer of `config`, holding up to `capacity` positions; `batch`: the most
    /// positions stored at once before attention (a selection keeps that many more slots, see StreamingKVCache).
    /// `headScores`: how much each KV head copies ([layer][KV head], RetrievalHeads.scores), which `duo` needs;
    /// `ropeFrequencyFactors`: the model's Llama 3 RoPE factors, which keys quantized before RoPE need;
    /// `queryEnergies`: the queries' mean square per channel ([layer][KV head][channel], RetrievalHeads.queryEnergies),
    /// which weighs the channels when KIVI allocates key bits (without it, or with rotated keys, all weigh the same).
    public func makeCache(config c: ModelConfig, capacity: Int, batch: Int = 512, headScores: (() throws -> [[Double]])? = nil,
                          ropeFrequencyFactors: [Float]? = nil, queryEnergies: (() throws -> [[[Float]]])? = nil) throws -> KVCache {
        let kvHeads = (0 ..< c.layers).map { c.kvHeads(layer: $0) }
        // The row format of a selection (the parser refuses KIVI under one).
        let format: KVKernels.RowFormat = switch precision {
        case .f16: .f16
        case .q8: .q8
        default: .f32
        }
        if case .streaming(let sink, let budget)? = selection {
            let window = switch budget {
            case .tokens(let w): w
            case .fraction: max(1, budget.positions(capacity: capacity) - sink)
            }
            return try StreamingKVCache(sink: sink, window: window, batch: batch, format: format, kvHeads: kvHeads, capacity: capacity,
                                        headDim: c.headDim, spec: self)
        }
        if case .duo(let sink, _, _)? = selection {
            guard let headScores else {
                throw ModelError.invalidKVCacheSpec(spec: description, reason: "the head-aware cache needs the model's head statistics")
            }
            let split = try headSplit(scores: headScores(), kvHeads: kvHeads, capacity: capacity)
            return try AttentionSelectionKVCache(method: .recency, sink: sink, budget: split.window, keepsAll: split.keepsAll,
                                                 batch: batch, format: format, kvHeads: kvHeads, capacity: capacity, headDim: c.headDim,
                                                 spec: self)
        }
        if case .scored(let method, let sink, let budget)? = selection {
            let kept = budget.positions(capacity: capacity)
            return try AttentionSelectionKVCache(method: method, sink: sink, budget: kept, batch: batch, format: format,
                                                 kvHeads: kvHeads, capacity: capacity, headDim: c.headDim, spec: self)
        }
        switch precision {
        case .f32:
            return try F32KVCache(kvHeads: kvHeads, capacity: capacity, headDim: c.headDim)
        case .f16:
            return try QuantizedKVCache(format: .f16, kvHeads: kvHeads, capacity: capacity, headDim: c.headDim, spec: self)
        case .q8:
            return try QuantizedKVCache(format: .q8, kvHeads: kvHeads, capacity: capacity, headDim: c.headDim, spec: self)
        case .kivi(let bits, let group, let residual, let sink, let keyBits, let rotate, let preRoPE, let allocate, let rotateValues):
            let angles = preRoPE ? KeyRoPE(config: c, factors: ropeFrequencyFactors, capacity: capacity) : nil
            let weights = allocate && !rotate ? try queryEnergies?() : nil
            return try KIVIKVCache(bits: bits, keyBits: keyBits ?? bits, group: group, residual: residual, sink: sink, rotate: rotate,
                                   preRoPE: angles, allocate: allocate, channelWeights: weights, rotateValues: rotateValues, kvHeads: kvHeads,
                                   capacity: capacity, headDim: c.headDim, spec: self)
        }
    }

    /// The head-aware policy's split (a `duo` selection): the `full` KV heads that copy most (numbered across layers,
    /// by `scores` [layer][KV head]) keep every position; the rest share what is left of the budget, each its sinks
    /// and a recent window: `window` positions after an eviction.
    public func headSplit(scores: [[Double]], kvHeads: [Int], capacity: Int) throws -> (keepsAll: Set<Int>, window: Int) {
        guard case .duo(let sink, let budget, let full)? = selection else {
            throw ModelError.invalidKVCacheSpec(spec: description, reason: "not a head-aware cache")
        }
        guard scores.map(\.count) == kvHeads else {
            throw ModelError.invalidKVCacheSpec(spec: description, reason: "head statistics for \(scores.map(\.count)) KV heads, the model has \(kvHeads)")
        }
        let mean = budget.positions(capacity: capacity)
        let n = kvHeads.reduce(0, +), total = n * min(mean, capacity)
        let k = min(n, full ?? total / 2 / capacity)
        let rest = n - k, window = rest == 0 ? capacity : (total - k * capacity) / rest
        guard rest == 0 || window > sink else {
            throw ModelError.invalidKVCacheSpec(spec: description, reason: "\(k) of \(n) KV heads kept whole leave \(max(window, 0)) positions for each of the others, no more than their \(sink) sinks")
        }
        let ranked = scores.joined().enumerated().sorted { $0.element != $1.element ? $0.element > $1.element : $0.offset < $1.offset }
        return (Set(ranked.prefix(k).map(\.offset)), min(window, capacity))
    }
}
