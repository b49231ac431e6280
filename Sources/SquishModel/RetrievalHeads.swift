import Foundation
import SquishCore
import SquishKernels
import Synchronization

/// Which KV heads copy from far back: the probe of RazorAttention (Tang et al. 2024, section 3.2). A random token
/// sequence is read twice; at the second reading, a head that retrieves by content attends to the earlier occurrence of
/// the current token (an echo head) or to the token after it (an induction head, what copying a remembered answer
/// needs). A KV head's score is the attention its query heads pay those two positions, averaged over the second
/// reading's queries and the query heads sharing the KV head: about 1 for a head that copies, near 0 for one that
/// looks nearby. The head-aware cache (`--kv duo`) keeps these heads whole.
public enum RetrievalHeads {
    /// [layer][KV head] scores, from `length` random tokens (ids in the vocabulary's second sixteenth to its half, away
    /// from the special tokens that vocabularies put first) read twice with the f32 cache.
    public static func scores(model: TransformerModel, pool: WorkerPool, length: Int = 128, seed: UInt64 = 1) throws -> [[Double]] {
        let c = model.config
        let (probe, n) = try probe(model: model, pool: pool, length: length, seed: seed)
        // Queries n + 1 ..< 2n: each has its token's earlier occurrence and the one after it in its range.
        return (0 ..< c.layers).map { l in
            (0 ..< c.kvHeads(layer: l)).map { h in probe.paid[l][h] / Double((n - 1) * (c.heads / c.kvHeads(layer: l))) }
        }
    }

    /// [layer][KV head][channel]: the mean square of each channel of the queries that share a KV head, over `length`
    /// tokens of text the model writes itself (`writtenText`), each channel of a RoPE pair given the pair's mean (RoPE
    /// moves a query's energy between the two with the position). A key channel's quantization error weighs on the
    /// scores in proportion to this (KIVIKVCache's per-channel widths).
    public static func queryEnergies(model: TransformerModel, pool: WorkerPool, length: Int = 512, seed: UInt64 = 1) throws -> [[[Float]]] {
        let c = model.config
        let tokens = try writtenText(model: model, pool: pool, length: length, seed: seed), n = tokens.count
        let probe = try ProbeCache(config: c, capacity: n, copyDistance: n)
        _ = try ModelSession(model: model, pool: pool, contextLength: n, cache: probe).forward(tokens)
        let half = c.ropeDimensions / 2
        return (0 ..< c.layers).map { l in
            let kvh = c.kvHeads(layer: l), queries = Double(n * (c.heads / kvh))
            return (0 ..< kvh).map { h in
                // Summed in position order, so the result does not depend on which thread attended which query.
                var e = [Double](repeating: 0, count: c.headDim)
                for p in 0 ..< n { for i in 0 ..< c.headDim { e[i] += probe.energy[l][(p * kvh + h) * c.headDim + i] } }
                for i in 0 ..< half {
                    let (a, b) = c.ropeStyle == .adjacentPairs ? (2 * i, 2 * i + 1) : (i, i + half)
                    (e[a], e[b]) = ((e[a] + e[b]) / 2, (e[a] + e[b]) / 2)
                }
                return e.map { Float($0 / queries) }
            }
        }
    }

    /// `length` tokens (at most the context less one) that the model writes from one random probe token, sampled at
    /// temperature 1 (the sampler's other settings at their defaults) with `seed`: text in the model's own
    /// distribution, without a corpus. Its queries stand for those of real text, which random tokens' do not: on the
    /// default model, 2-bit keys allocated by random tokens' query energies lose more than by these.
    public static func writtenText(model: TransformerModel, pool: WorkerPool, length: Int, seed: UInt64) throws -> [Int] {
        let c = model.config
        let n = min(length, c.contextLength - 1)
        guard n >= 2 else {
            throw ModelError.invalidArgument("\(model.path): a context of \(c.contextLength) positions is too short for the query probe")
        }
        var settings = SamplerSettings()
        settings.temperature = 1
        settings.seed = seed
        var generator = Generator(session: try ModelSession(model: model, pool: pool, contextLength: n), sampler: settings)
        var tokens = probeTokens(vocabSize: c.vocabSize, count: 1, seed: seed)
        _ = try generator.generate(prompt: tokens, maxTokens: n - 1, stop: []) { tokens.append($0); return true }
        return tokens
    }

    /// The probe run: `length` random tokens (at most half the context) read twice through a ProbeCache.
    private static func probe(model: TransformerModel, pool: WorkerPool, length: Int, seed: UInt64) throws -> (ProbeCache, Int) {
        let c = model.config
        let n = min(length, (c.contextLength - 1) / 2)
        guard n >= 2 else {
            throw ModelError.invalidArgument("\(model.path): a context of \(c.contextLength) positions is too short for the head probe")
        }
        let random = probeTokens(vocabSize: c.vocabSize, count: n, seed: seed)
        let probe = try ProbeCache(config: c, capacity: 2 * n, copyDistance: n)
        let session = try ModelSession(model: model, pool: pool, contextLength: 2 * n, cache: probe)
        _ = try session.forward(random + random)
        return (probe, n)
    }

    /// The probe's random tokens.
    public static func probeTokens(vocabSize: Int, count: Int, seed: UInt64) -> [Int] {
        var rng = Xoshiro256(seed: seed)
        let lo = vocabSize / 16, hi = max(lo + 1, vocabSize / 2)
        return (0 ..< count).map { _ in Int.random(in: lo ..< hi, using: &rng) }
    }

    /// An f32 cache ([layer][position][KV heads × head size]) that also adds up, for every query at position q ≥
    /// copyDistance + 1, the attention paid to q − copyDistance and q − copyDistance + 1.
    final class ProbeCache: KVCache {
        let capacity: Int, headDim: Int, copyDistance: Int
        let kvHeads: [Int]
        private let row: KVRowLayout
        private let keys: [UnsafeMutablePointer<Float>], values: [UnsafeMutablePointer<Float>]  // [layer][position × KV heads × head size]
        /// [layer][KV head]; work items of different tokens and head slices add concurrently.
        private(set) var paid: [[Double]]
        /// [layer][position × KV heads × head size]: Σ q² over the query heads of each position's query (each written by
        /// the one work item that attends for that position and KV head).
        let energy: [UnsafeMutablePointer<Double>]
        private let lock = NSLock()

        init(config c: ModelConfig, capacity: Int, copyDistance: Int) throws {
            (self.capacity, headDim, self.copyDistance) = (capacity, c.headDim, copyDistance)
            kvHeads = (0 ..< c.layers).map { c.kvHeads(layer: $0) }
            row = KVRowLayout(.f32, headDim: c.headDim)
            keys = kvHeads.map { .allocate(capacity: capacity * $0 * c.headDim) }
            values = kvHeads.map { .allocate(capacity: capacity * $0 * c.headDim) }
            paid = kvHeads.map { [Double](repeating: 0, count: $0) }
            energy = kvHeads.map {
                let e = UnsafeMutablePointer<Double>.allocate(capacity: capacity * $0 * c.headDim)
                e.initialize(repeating: 0, count: capacity * $0 * c.headDim)
                return e
            }
        }

        deinit {
            keys.forEach { $0.deallocate() }
            values.forEach { $0.deallocate() }
            energy.forEach { $0.deallocate() }
        }

        func store(layer: Int, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
            let d = kvHeads[layer] * headDim
            (keys[layer] + position * d).update(from: key, count: d)
            (values[layer] + position * d).update(from: value, count: d)
        }

        func attend(layer: Int, kvHead: Int, queries: UnsafePointer<Float>, heads: Int, headDim: Int, positions: Range<Int>,
                    scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
            let stride = kvHeads[layer] * headDim * MemoryLayout<Float>.size, n = positions.count
            let offset = (positions.lowerBound * kvHeads[layer] + kvHead) * headDim
            KVKernels.scores(.f32, queries: queries, heads: heads, headDim: headDim, group: row.group,
                             rows: UnsafeRawPointer(keys[layer] + offset), rowStride: stride, count: n, scale: scale, into: scores, ld: n)
            KVKernels.softmax(scores, rows: heads, count: n, ld: n)
            output.update(repeating: 0, count: heads * headDim)
            KVKernels.accumulate(.f32, weights: scores, heads: heads, ld: n, rows: UnsafeRawPointer(values[layer] + offset),
                                 rowStride: stride, count: n, headDim: headDim, group: row.group, into: output)
            let e = energy[layer] + ((positions.upperBound - 1) * kvHeads[layer] + kvHead) * headDim
            for r in 0 ..< heads { for i in 0 ..< headDim { e[i] += Double(queries[r * headDim + i]) * Double(queries[r * headDim + i]) } }
            let q = positions.upperBound - 1, echo = q - copyDistance - positions.lowerBound
            guard q > copyDistance, echo >= 0 else { return }
            var sum = 0.0
            for r in 0 ..< heads { sum += Double(scores[r * n + echo]) + Double(scores[r * n + echo + 1]) }
            lock.withLock { paid[layer][kvHead] += sum }
        }

        func truncate(to count: Int) {}
        func copy(prefix count: Int) throws -> KVCache { throw ModelError.invalidArgument("the head probe's cache is not copied") }
        func bytes(positions count: Int) -> Int { 2 * count * kvHeads.reduce(0, +) * headDim * MemoryLayout<Float>.size }
    }
}

extension KVCacheSpec {
    /// A cache of this kind for `model`; a head-aware one gets the model's head statistics (measured once).
    public func makeCache(model: TransformerModel, pool: WorkerPool, capacity: Int, batch: Int) throws -> KVCache {
        try makeCache(config: model.config, capacity: capacity, batch: batch, headScores: { try model.retrievalHeadScores(pool: pool) },
                      ropeFrequencyFactors: model.ropeFrequencyFactors, queryEnergies: { try model.queryEnergies(pool: pool) })
    }
}

extension TransformerModel {
    /// RetrievalHeads.queryEnergies with the default probe, measured once per model.
    public func queryEnergies(pool: WorkerPool) throws -> [[[Float]]] {
        try queryEnergyMemo.withLock { memo in
            if let memo { return memo }
            let e = try RetrievalHeads.queryEnergies(model: self, pool: pool)
            memo = e
            return e
        }
    }

    /// RetrievalHeads.scores with the default probe, measured once per model.
    public func retrievalHeadScores(pool: WorkerPool) throws -> [[Double]] {
        try headScoreMemo.withLock { memo in
            if let memo { return memo }
            let s = try RetrievalHeads.scores(model: self, pool: pool)
            memo = s
            return s
        }
    }
}

