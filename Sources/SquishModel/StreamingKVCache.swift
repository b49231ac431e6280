import SquishCore
import SquishKernels

/// StreamingLLM (Xiao et al. 2024, "Efficient streaming language models with attention sinks", section 3.2): each
/// query attends to the first `sink` positions (the attention sinks) and the most recent `window` positions, its own
/// included; everything between is evicted. Keys are stored already rotated at their logical positions, so evicting
/// is dropping slots: position p < sink lives in slot p, later ones in a ring of window + slack slots (slack: the
/// positions a batch stores before its first token attends, so a batch never overwrites what its own earlier tokens
/// still see). Rows in one token-row format (f32, f16 or 8-bit, as QuantizedKVCache), [layer][slot][KV heads][row bytes].
public final class StreamingKVCache: KVCache {
    public let spec: KVCacheSpec
    public let sink: Int
    public let window: Int
    /// Largest logical position + 1 the cache accepts (the session's context).
    public let capacity: Int
    public let headDim: Int
    public var format: KVKernels.RowFormat { row.format }
    private let row: KVRowLayout
    /// Slots: sink + ring.
    public let slots: Int
    private let ring: Int
    private let kvHeads: [Int]  // [layers]
    private let layerStart: [Int]  // [layers]: byte offset of the layer's [slots × kvHeads × row.bytes]
    private let keys: UnsafeMutableRawPointer  // [Σ_layers slots × kvHeads × row.bytes]
    private let values: UnsafeMutableRawPointer  // same layout

    /// `batch`: the most positions stored at once before attention (the session's largest batch).
    public init(sink: Int, window: Int, batch: Int, format: KVKernels.RowFormat = .f32, kvHeads: [Int], capacity: Int, headDim: Int,
                spec: KVCacheSpec) throws {
        precondition(format == .f32 || format == .f16 || format == .q8)
        try checkKVShape(spec: spec, kvHeads: kvHeads, capacity: capacity, headDim: headDim, needsMultipleOf8: false)
        guard sink >= 0, window >= 1 else {
            throw ModelError.invalidKVCacheSpec(spec: spec.description, reason: "a window of \(window) positions keeps nothing recent")
        }
        self.spec = spec
        self.sink = sink
        self.window = window
        self.capacity = capacity
        self.headDim = headDim
        row = KVRowLayout(format, headDim: headDim)
        self.kvHeads = kvHeads
        // Never more slots than positions.
        ring = min(window + max(batch, 1) - 1, max(capacity - sink, 1))
        slots = min(sink, capacity) + ring
        guard let total = Checked.product([kvHeads.reduce(0, +), slots, row.bytes]) else {
            throw ModelError.invalidKVCacheSpec(spec: spec.description, reason: "\(slots) slots do not fit in memory")
        }
        var start = 0, starts: [Int] = []
        for h in kvHeads { starts.append(start); start += slots * h * row.bytes }
        layerStart = starts
        keys = .allocate(byteCount: max(total, 1), alignment: 64)
        values = .allocate(byteCount: max(total, 1), alignment: 64)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    @inline(__always) private func slot(_ p: Int) -> Int { p < sink ? p : sink + (p - sink) % ring }

    public func store(layer: Int, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        precondition(position < capacity, "KV cache position \(position) beyond capacity \(capacity)")
        let base = layerStart[layer] + slot(position) * kvHeads[layer] * row.bytes
        for h in 0 ..< kvHeads[layer] {
            KVKernels.quantizeRow(row.format, key + h * headDim, headDim: headDim, group: row.group, into: keys + base + h * row.bytes)
            KVKernels.quantizeRow(row.format, value + h * headDim, headDim: headDim, group: row.group, into: values + base + h * row.bytes)
        }
    }


    /// The kept positions of `positions` (a causal range ending at the query) as runs of consecutive slots.
    private func runs(_ positions: Range<Int>) -> [(slot: Int, count: Int)] {
        var out: [(Int, Int)] = []
        let last = positions.upperBound - 1
        let sinkEnd = min(sink, positions.upperBound)
        if positions.lowerBound < sinkEnd { out.append((positions.lowerBound, sinkEnd - positions.lowerBound)) }
        var p = max(positions.lowerBound, sink, last - window + 1)
        while p <= last {
            let s = slot(p), run = min(last - p + 1, sink + ring - s)
            out.append((s, run))
            p += run
        }
        return out
    }

    public func attend(layer: Int, kvHead: Int, queries: UnsafePointer<Float>, heads: Int, headDim: Int, positions: Range<Int>,
                       scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
        precondition(headDim == self.headDim, "head size \(headDim) is not the cache's \(self.headDim)")
        let kept = runs(positions)
        let n = kept.reduce(0) { $0 + $1.count }
        let stride = kvHeads[layer] * row.bytes
        let base = layerStart[layer] + kvHead * row.bytes
        if kept.count == 1 && format == .f32 {  // one run: the f32 attention kernel
            let off = base + kept[0].slot * stride
            VectorOps.attentionHeads(query: queries, heads: heads, keys: (keys + off).assumingMemoryBound(to: Float.self),
                                     values: (values + off).assumingMemoryBound(to: Float.self), stride: kvHeads[layer] * headDim,
                                     count: n, headDim: headDim, scale: scale, scores: scores, output: output)
            return
        }
        var j = 0
        for r in kept {
            KVKernels.scores(format, queries: queries, heads: heads, headDim: headDim, group: row.group, rows: keys + base + r.slot * stride,
                             rowStride: stride, count: r.count, scale: scale, into: scores + j, ld: n)
            j += r.count
        }
        KVKernels.softmax(scores, rows: heads, count: n, ld: n)
        output.update(repeating: 0, count: heads * headDim)
        j = 0
        for r in kept {
            KVKernels.accumulate(format, weights: scores + j, heads: heads, ld: n, rows: values + base + r.slot * stride,
                                 rowStride: stride, count: r.count, headDim: headDim, group: row.group, into: output)
            j += r.count
        }
    }

    /// Nothing to forget: a later store overwrites the slot of a truncated position before any query reads it.
    public func truncate(to count: Int) {}

    /// Positions ≥ sink + ring − slack may already have overwritten older ones in the ring; a copy keeps the slots as
    /// they are, which serves every query at or after `count` as the original would.
    public func copy(prefix count: Int) throws -> KVCache {
        precondition(count >= 0 && count <= capacity)
        let c = try StreamingKVCache(sink: sink, window: window, batch: ring - window + 1, format: format, kvHeads: kvHeads,
                                     capacity: capacity, headDim: headDim, spec: spec)
        let total = kvHeads.reduce(0, +) * slots * row.bytes
        c.keys.copyMemory(from: keys, byteCount: total)
        c.values.copyMemory(from: values, byteCount: total)
        return c
    }

    public func bytes(positions count: Int) -> Int {
        2 * min(count, slots) * kvHeads.reduce(0, +) * row.bytes
    }
}
