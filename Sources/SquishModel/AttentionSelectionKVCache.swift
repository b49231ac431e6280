import Foundation
import SquishCore
import SquishKernels

/// Eviction by attention: each KV head of each layer keeps its own `budget` positions, ranked by the attention its
/// queries paid them (KVCacheSpec.ScoredMethod: H2O's accumulated attention, TOVA's latest query, SnapKV's pooled
/// observation window). Keys are stored rotated at their logical positions, so evicting is freeing a slot; slots are
/// unordered, each remembers its position, and a query attends over the slots whose positions lie in its causal range.
///
/// When it evicts: H2O and TOVA at the start of every batch, down to `budget`, so decoding holds budget + 1 positions
/// for each query. A prompt read in batches cannot evict token by token; instead, the old positions are ranked at a
/// batch's start and a query k tokens into the batch no longer sees the lowest-ranked ones beyond the budget
/// (old + k − budget of them), so every query sees at most budget + 1 positions, as decoding would; a batch is at most
/// the evictable part of the budget (`largestBatch`), so there are always enough ranked. The ranks come from the
/// scores at the batch's start: a token-by-token run would also update them and consider the batch's own earlier
/// positions. SnapKV reads a prompt whole (its slots are the context) and compresses it when the first token is
/// generated after it (a one-token batch after a longer one); while generating, it compresses again whenever the
/// tokens generated since have filled a window beyond the budget, ranked by those tokens' attention (so a long
/// generation holds at most budget + window positions, as kvpress's decoding presses do). Heads in `keepsAll` never
/// evict (the retrieval heads of the head-aware policy, `duo`); the others keep `budget`. Rows are stored in one token-row format (f32, f16 or
/// 8-bit, as QuantizedKVCache), [KV head][slot][row bytes]; the kernels read them directly.
public final class AttentionSelectionKVCache: KVCache {
    public let spec: KVCacheSpec
    public let method: KVCacheSpec.ScoredMethod
    /// The first `sink` positions are never evicted.
    public let sink: Int
    /// Positions kept per KV head after an eviction (heads in `keepsAll` keep every position).
    public let budget: Int
    /// The most recent positions never evicted: H2O's half of the budget, SnapKV's observation window, none for TOVA.
    public let recent: Int
    /// KV heads (numbered across layers, layer by layer) that keep every position.
    public let keepsAll: Set<Int>
    /// Largest logical position + 1 the cache accepts (the session's context).
    public let capacity: Int
    public let headDim: Int
    public var format: KVKernels.RowFormat { row.format }
    private let row: KVRowLayout
    /// Slots per KV head: budget + the largest batch (H2O, TOVA, recency), the capacity (SnapKV, heads that keep all).
    private let slots: [Int]  // [head]
    private let slotStart: [Int]  // [head]: index of the head's first slot
    private let headBudget: [Int]  // [head]: budget, or the capacity for heads that keep all
    private let maxBatch: Int
    private let kvHeads: [Int]  // [layers]
    private let firstHead: [Int]  // [layers]: index of the layer's first KV head among all layers' heads
    private let keys: UnsafeMutableRawPointer  // [head][its slots][row.bytes]
    private let values: UnsafeMutableRawPointer  // same layout
    private let position: UnsafeMutablePointer<Int>  // [head][slot]: the logical position a slot holds
    /// [head][slot]: attention paid to it, as the method counts; summed in Double so that the order in which concurrent
    /// work items add does not change a ranking.
    private let score: UnsafeMutablePointer<Double>
    /// [head][slot]: a query k tokens into its batch does not see old slots of rank < old + k − budget (Int32.max: always
    /// seen).
    private let rank: UnsafeMutablePointer<Int32>
    private var used: [Int]  // [head]: slots 0 ..< used hold positions
    private var old: [Int]  // [head]: slots held when the current batch began (after its eviction)
    private var batchStart: [Int]  // [layers]
    private var batchEnd: [Int]  // [layers]: positions stored so far
    private var previousBatch: [Int]  // [layers]: size of the batch before the current one
    /// Score updates come from concurrent attention work items (tiles and head slices of one KV head).
    private let locks: [NSLock]  // [head]

    /// `batch`: the most positions stored at once before attention (the session's largest batch).
    public init(method: KVCacheSpec.ScoredMethod, sink: Int, budget: Int, keepsAll: Set<Int> = [], batch: Int,
                format: KVKernels.RowFormat = .f32, kvHeads: [Int], capacity: Int, headDim: Int, spec: KVCacheSpec) throws {
        precondition(format == .f32 || format == .f16 || format == .q8)
        try checkKVShape(spec: spec, kvHeads: kvHeads, capacity: capacity, headDim: headDim, needsMultipleOf8: false)
        let recent = switch method {
        case .h2o: max(0, budget - sink) / 2
        case .tova, .recency: 0
        case .snapkv(let window, _): window
        }
        guard sink >= 0, budget >= 1, sink + recent < budget else {
            throw ModelError.invalidKVCacheSpec(spec: spec.description, reason: "a budget of \(budget) positions leaves none to select after \(sink) sinks and \(recent) recent positions")
        }
        (self.spec, self.method, self.sink, self.budget, self.recent, self.keepsAll) = (spec, method, sink, budget, recent, keepsAll)
        self.capacity = capacity
        self.headDim = headDim
        row = KVRowLayout(format, headDim: headDim)
        self.kvHeads = kvHeads
        let snap = if case .snapkv = method { true } else { false }
        // A session never batches more than the evictable part of the budget (largestBatch), so slots beyond it are waste.
        maxBatch = min(max(batch, 1), snap ? .max : budget - sink - recent)
        var first: [Int] = [], n = 0
        for h in kvHeads { first.append(n); n += h }
        firstHead = first
        let budgets = (0 ..< n).map { keepsAll.contains($0) ? capacity : budget }, batch = maxBatch
        headBudget = budgets
        slots = budgets.map { snap || $0 >= capacity ? capacity : min($0 + batch, capacity) }
        var starts: [Int] = [], count = 0
        for s in slots { starts.append(count); count += s }
        slotStart = starts
        guard let total = Checked.product([count, row.bytes]) else {
            throw ModelError.invalidKVCacheSpec(spec: spec.description, reason: "\(count) slots do not fit in memory")
        }
        keys = .allocate(byteCount: max(total, 1), alignment: 64)
        values = .allocate(byteCount: max(total, 1), alignment: 64)
        position = .allocate(capacity: count)
        score = .allocate(capacity: count)
        rank = .allocate(capacity: count)
        used = [Int](repeating: 0, count: n)
        old = used
        batchStart = [Int](repeating: 0, count: kvHeads.count)
        batchEnd = batchStart
        previousBatch = batchStart
        locks = (0 ..< n).map { _ in NSLock() }
    }

    deinit {
        keys.deallocate()
        values.deallocate()
        position.deallocate()
        score.deallocate()
        rank.deallocate()
    }

    /// H2O, TOVA and recency: the evictable part of the budget (enough old positions ranked for every query of a
    /// batch), unless every head keeps all.
    public var largestBatch: Int {
        if case .snapkv = method { return .max }
        return headBudget.contains { $0 < capacity } ? budget - sink - recent : .max
    }

    public var compressesAfterPrompt: Bool {
        if case .snapkv = method { return headBudget.contains { $0 < capacity } }
        return false
    }

    public func beginBatch(layer: Int, start: Int, count: Int) {
        precondition(count <= min(maxBatch, largestBatch) || !slots.contains { $0 < capacity }, "a batch of \(count) is larger than the cache's")
        for h in firstHead[layer] ..< firstHead[layer] + kvHeads[layer] {
            let evicts = headBudget[h] < capacity  // heads that keep all neither evict nor rank
            let compress = switch method {
            case .h2o, .tova, .recency: true
            // A prompt has just been read, or decoding has added a window's worth of positions since the last compression.
            case .snapkv(let window, _): count == 1 && (previousBatch[layer] > 1 || used[h] >= budget + window)
            }
            if evicts && compress && used[h] > budget { evict(head: h, down: budget, before: start - recent) }
            old[h] = used[h]
            let base = slotStart[h]
            (rank + base).update(repeating: .max, count: used[h])
            guard evicts else { continue }
            switch method {
            case .h2o: if count > 1 { rankForEviction(head: h, before: start - recent) }
            case .recency: if count > 1 { rankForEviction(head: h, before: start) }
            case .tova:
                if count > 1 { rankForEviction(head: h, before: start) }
                (score + base).update(repeating: 0, count: used[h])  // only the batch's last query counts
            case .snapkv(let window, _):
                // The observation window: the last `window` queries; a shorter batch adds to the previous one's.
                if count >= window || compress { (score + base).update(repeating: 0, count: used[h]) }
            }
        }
        previousBatch[layer] = count
        batchStart[layer] = start
        batchEnd[layer] = start + count
    }

    /// Candidates for eviction: positions from `sink` up to (not including) `limit`.
    @inline(__always) private func evictable(_ h: Int, _ j: Int, before limit: Int) -> Bool {
        let p = position[slotStart[h] + j]
        return p >= sink && p < limit
    }

    /// What ranks a slot of head h: its score, for SnapKV the largest score among the 7 positions around it, for
    /// ChunkKV the sum over its chunk, for recency its position.
    private func ranking(head h: Int) -> [Double] {
        let base = slotStart[h], n = used[h]
        if case .recency = method { return (0 ..< n).map { Double(position[base + $0]) } }
        var r = Array(UnsafeBufferPointer(start: score + base, count: n))
        guard case .snapkv(_, let chunk) = method else { return r }
        if chunk > 0 {
            var sums: [Int: Double] = [:]
            for j in 0 ..< n { sums[position[base + j] / chunk, default: 0] += r[j] }
            return (0 ..< n).map { sums[position[base + $0] / chunk]! }
        }
        let order = (0 ..< n).sorted { position[base + $0] < position[base + $1] }
        for (i, j) in order.enumerated() {
            var m = -Double.infinity
            for k in max(0, i - 3) ... min(n - 1, i + 3) { m = max(m, score[base + order[k]]) }
            r[j] = m
        }
        return r
    }

    /// Frees the lowest-ranked evictable slots of head h until `keep` remain (or nothing evictable is left); the last
    /// slots move into the holes, so a step that evicts one position copies one row.
    private func evict(head h: Int, down keep: Int, before limit: Int) {
        let base = slotStart[h], n = used[h]
        let r = ranking(head: h)
        var candidates = (0 ..< n).filter { evictable(h, $0, before: limit) }
        let count = min(n - keep, candidates.count)
        guard count > 0 else { return }
        var victim = [Bool](repeating: false, count: n)
        // Lowest ranking first; among equals (positions no query could see score 0), the oldest.
        let before = { (a: Int, b: Int) in r[a] != r[b] ? r[a] < r[b] : self.position[base + a] < self.position[base + b] }
        if count == 1 {
            victim[candidates.min(by: before)!] = true
        } else {
            candidates.sort(by: before)
            for j in candidates.prefix(count) { victim[j] = true }
        }
        var lo = 0, hi = n - 1
        while true {
            while lo < hi && !victim[lo] { lo += 1 }
            while hi > lo && victim[hi] { hi -= 1 }
            guard lo < hi, victim[lo], !victim[hi] else { break }
            move(head: h, from: hi, to: lo)
            victim[lo] = false
            victim[hi] = true
        }
        used[h] = n - count
    }

    private func move(head h: Int, from j: Int, to i: Int) {
        let base = slotStart[h]
        (keys + (base + i) * row.bytes).copyMemory(from: keys + (base + j) * row.bytes, byteCount: row.bytes)
        (values + (base + i) * row.bytes).copyMemory(from: values + (base + j) * row.bytes, byteCount: row.bytes)
        position[base + i] = position[base + j]
        score[base + i] = score[base + j]
    }

    /// Ranks head h's evictable slots by their ranking, lowest first (the order a token-by-token run would evict them).
    private func rankForEviction(head h: Int, before limit: Int) {
        let base = slotStart[h]
        let r = ranking(head: h)
        let order = (0 ..< used[h]).filter { evictable(h, $0, before: limit) }
            .sorted { r[$0] != r[$1] ? r[$0] < r[$1] : position[base + $0] < position[base + $1] }
        for (i, j) in order.enumerated() { rank[base + j] = Int32(i) }
    }

    public func store(layer: Int, position p: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        precondition(p < capacity, "KV cache position \(p) beyond capacity \(capacity)")
        for kv in 0 ..< kvHeads[layer] {
            let h = firstHead[layer] + kv
            precondition(used[h] < slots[h], "KV cache: no free slot (beginBatch not called)")
            let j = slotStart[h] + used[h]
            KVKernels.quantizeRow(row.format, key + kv * headDim, headDim: headDim, group: row.group, into: keys + j * row.bytes)
            KVKernels.quantizeRow(row.format, value + kv * headDim, headDim: headDim, group: row.group, into: values + j * row.bytes)
            position[j] = p
            score[j] = 0
            rank[j] = .max
            used[h] += 1
        }
        batchEnd[layer] = max(batchEnd[layer], p + 1)
    }

    /// Scores every held slot, masks those outside the query's range (and those evicted earlier in its batch),
    /// then adds the attention weights to the slots' scores as the method counts them. `scores`: at least
    /// heads × (highest stored position + 1) floats, which the forward pass's scratch is.
    public func attend(layer: Int, kvHead: Int, queries: UnsafePointer<Float>, heads: Int, headDim: Int, positions: Range<Int>,
                       scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
        precondition(headDim == self.headDim, "head size \(headDim) is not the cache's \(self.headDim)")
        let h = firstHead[layer] + kvHead, base = slotStart[h], n = used[h]
        let q = positions.upperBound - 1, into = Int32(clamping: old[h] + q - batchStart[layer] - headBudget[h])
        @inline(__always) func seen(_ j: Int) -> Bool {
            positions.contains(position[base + j]) && rank[base + j] >= into
        }
        KVKernels.scores(format, queries: queries, heads: heads, headDim: headDim, group: row.group, rows: keys + base * row.bytes,
                         rowStride: row.bytes, count: n, scale: scale, into: scores, ld: n)
        for j in 0 ..< n where !seen(j) {
            for r in 0 ..< heads { scores[r * n + j] = -.infinity }
        }
        KVKernels.softmax(scores, rows: heads, count: n, ld: n)
        for j in 0 ..< n where !seen(j) {  // exactly zero, whatever the vectorized exp makes of −∞
            for r in 0 ..< heads { scores[r * n + j] = 0 }
        }
        output.update(repeating: 0, count: heads * headDim)
        KVKernels.accumulate(format, weights: scores, heads: heads, ld: n, rows: values + base * row.bytes, rowStride: row.bytes,
                             count: n, headDim: headDim, group: row.group, into: output)
        let counts: Bool = switch method {
        case .h2o: true
        case .tova: q == batchEnd[layer] - 1
        case .snapkv(let window, _): q >= batchEnd[layer] - window
        case .recency: false
        }
        guard counts && headBudget[h] < capacity else { return }
        locks[h].lock()
        for r in 0 ..< heads {
            let row = scores + r * n
            for j in 0 ..< n { score[base + j] += Double(row[j]) }
        }
        locks[h].unlock()
    }

    /// Forgets positions from `count` on (positions already evicted stay evicted).
    public func truncate(to count: Int) {
        for layer in kvHeads.indices {
            for h in firstHead[layer] ..< firstHead[layer] + kvHeads[layer] {
                var n = used[h], j = 0
                while j < n {
                    if position[slotStart[h] + j] >= count { n -= 1; move(head: h, from: n, to: j) } else { j += 1 }
                }
                used[h] = n
            }
            batchEnd[layer] = min(batchEnd[layer], count)
            batchStart[layer] = min(batchStart[layer], count)
        }
    }

    public func copy(prefix count: Int) throws -> KVCache {
        precondition(count >= 0 && count <= capacity)
        let c = try AttentionSelectionKVCache(method: method, sink: sink, budget: budget, keepsAll: keepsAll, batch: maxBatch,
                                              format: format, kvHeads: kvHeads, capacity: capacity, headDim: headDim, spec: spec)
        let total = slots.reduce(0, +)
        c.keys.copyMemory(from: keys, byteCount: total * row.bytes)
        c.values.copyMemory(from: values, byteCount: total * row.bytes)
        c.position.update(from: position, count: total)
        c.score.update(from: score, count: total)
        c.rank.update(from: rank, count: total)
        c.used = used
        c.old = old
        c.batchStart = batchStart
        c.batchEnd = batchEnd
        c.previousBatch = previousBatch
        c.truncate(to: count)
        return c
    }

    /// Slots a sequence of `count` positions holds at its largest: H2O, TOVA and recency at most budget + a batch per
    /// head (heads that keep all: every position); SnapKV holds a prompt whole while reading it (afterwards budget + the
    /// tokens generated since, at most a window).
    public func bytes(positions count: Int) -> Int {
        2 * slots.reduce(0) { $0 + min(count, $1) } * row.bytes
    }
}
