import SquishCore
import SquishKernels

/// Channels per quantization group of a token row: 32 (as ggml's q8_0 / q4_0 blocks) when the head size allows,
/// otherwise the whole head.
func kvRowGroup(headDim: Int) -> Int { headDim % 32 == 0 ? 32 : headDim }

/// One KV head's row of one position in a token-row format (f32, f16, q8, u4, u2): its channels per quantization group
/// and its bytes, for the caches that store rows.
struct KVRowLayout {
    let format: KVKernels.RowFormat
    let group: Int
    let bytes: Int

    init(_ format: KVKernels.RowFormat, headDim: Int) {
        self.format = format
        group = format == .f32 ? 8 : kvRowGroup(headDim: headDim)
        bytes = KVKernels.rowBytes(format, headDim: headDim, group: group)
    }
}

/// Checks what every compressed cache needs of the shapes; errors name the spec.
func checkKVShape(spec: KVCacheSpec, kvHeads: [Int], capacity: Int, headDim: Int, needsMultipleOf8: Bool) throws {
    let s = spec.description
    guard !kvHeads.isEmpty, kvHeads.allSatisfy({ $0 > 0 }), capacity > 0, headDim > 0 else {
        throw ModelError.invalidKVCacheSpec(spec: s, reason: "a cache of \(kvHeads.count) layers × \(capacity) positions × head size \(headDim) is empty")
    }
    guard headDim <= KVKernels.maxHeadDim else {
        throw ModelError.invalidKVCacheSpec(spec: s, reason: "head size \(headDim) is larger than the \(KVKernels.maxHeadDim) the compressed caches take")
    }
    guard !needsMultipleOf8 || headDim % 8 == 0 else {
        throw ModelError.invalidKVCacheSpec(spec: s, reason: "head size \(headDim) is not a multiple of 8")
    }
}

/// A cache that stores every position's keys and values in one token-row format (f16, or 8-bit with an f16 scale per
/// 32 channels) and attends over that storage directly. Layout per layer: [capacity][KV head of the layer][row bytes],
/// keys and values in separate buffers.
public final class QuantizedKVCache: KVCache {
    public let spec: KVCacheSpec
    public let format: KVKernels.RowFormat
    public let capacity: Int
    public let headDim: Int
    /// Channels per quantization group of a row.
    public let group: Int
    /// Bytes of one KV head's row.
    public let rowBytes: Int
    private let kvHeads: [Int]  // [layers]
    private let layerStart: [Int]  // [layers]: byte offset of the layer's [capacity × kvHeads × rowBytes]
    private let keys: UnsafeMutableRawPointer  // [Σ_layers capacity × kvHeads × rowBytes] bytes
    private let values: UnsafeMutableRawPointer  // same layout

    public enum Format: Sendable { case f16, q8 }

    public init(format: Format, kvHeads: [Int], capacity: Int, headDim: Int, spec: KVCacheSpec) throws {
        try checkKVShape(spec: spec, kvHeads: kvHeads, capacity: capacity, headDim: headDim, needsMultipleOf8: false)
        self.spec = spec
        self.format = format == .f16 ? .f16 : .q8
        self.capacity = capacity
        self.headDim = headDim
        let row = KVRowLayout(self.format, headDim: headDim)
        group = row.group
        rowBytes = row.bytes
        self.kvHeads = kvHeads
        guard let total = Checked.product([kvHeads.reduce(0, +), capacity, rowBytes]) else {
            throw ModelError.invalidKVCacheSpec(spec: spec.description, reason: "\(capacity) positions do not fit in memory")
        }
        var start = 0, starts: [Int] = []
        for h in kvHeads { starts.append(start); start += capacity * h * rowBytes }
        layerStart = starts
        // Not zero-filled: only positions that were stored are ever read, so untouched pages cost no memory.
        keys = .allocate(byteCount: max(total, 1), alignment: 64)
        values = .allocate(byteCount: max(total, 1), alignment: 64)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    public func store(layer: Int, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        precondition(position < capacity, "KV cache position \(position) beyond capacity \(capacity)")
        let stride = kvHeads[layer] * rowBytes
        let base = layerStart[layer] + position * stride
        for h in 0 ..< kvHeads[layer] {
            KVKernels.quantizeRow(format, key + h * headDim, headDim: headDim, group: group, into: keys + base + h * rowBytes)
            KVKernels.quantizeRow(format, value + h * headDim, headDim: headDim, group: group, into: values + base + h * rowBytes)
        }
    }


    public func attend(layer: Int, kvHead: Int, queries: UnsafePointer<Float>, heads: Int, headDim: Int, positions: Range<Int>,
                       scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
        precondition(headDim == self.headDim, "head size \(headDim) is not the cache's \(self.headDim)")
        let n = positions.count
        let stride = kvHeads[layer] * rowBytes
        let offset = layerStart[layer] + positions.lowerBound * stride + kvHead * rowBytes
        KVKernels.scores(format, queries: queries, heads: heads, headDim: headDim, group: group, rows: keys + offset,
                         rowStride: stride, count: n, scale: scale, into: scores, ld: n)
        KVKernels.softmax(scores, rows: heads, count: n, ld: n)
        output.update(repeating: 0, count: heads * headDim)
        KVKernels.accumulate(format, weights: scores, heads: heads, ld: n, rows: values + offset, rowStride: stride, count: n,
                             headDim: headDim, group: group, into: output)
    }

    public func truncate(to count: Int) {}

    public func copy(prefix count: Int) throws -> KVCache {
        precondition(count >= 0 && count <= capacity)
        let c = try QuantizedKVCache(format: format == .f16 ? .f16 : .q8, kvHeads: kvHeads, capacity: capacity, headDim: headDim, spec: spec)
        for l in kvHeads.indices {
            let n = count * kvHeads[l] * rowBytes
            (c.keys + layerStart[l]).copyMemory(from: keys + layerStart[l], byteCount: n)
            (c.values + layerStart[l]).copyMemory(from: values + layerStart[l], byteCount: n)
        }
        return c
    }

    public func bytes(positions count: Int) -> Int { 2 * min(count, capacity) * kvHeads.reduce(0, +) * rowBytes }
}
