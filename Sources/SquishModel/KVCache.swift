import SquishCore
import SquishKernels

/// Keys and values of past positions, per layer. The model writes each new position once and asks the cache to
/// attend over what it holds, so compressed caches (quantized, windowed, evicting) can implement both their way.
public protocol KVCache: AnyObject {
    /// Positions the cache can hold.
    var capacity: Int { get }
    /// The most positions one batch may store (a session batches no more than this).
    var largestBatch: Int { get }
    /// A batch is about to store positions start ..< start + count in `layer` (before any of its `store` calls; every
    /// attention of the previous batch has finished): an evicting cache makes room here.
    func beginBatch(layer: Int, start: Int, count: Int)
    /// Stores key and value ([kvDim] each) of `position` in `layer`.
    func store(layer: Int, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>)
    /// out[headDim] = softmax(scale · K q) · V over `positions` (a causal window ending at the query's own position)
    /// for each of `heads` consecutive query heads that share KV head `kvHead` (grouped-query / multi-query
    /// attention): queries and output are [heads × headDim]; scores: scratch of at least heads · positions.count floats.
    func attend(layer: Int, kvHead: Int, queries: UnsafePointer<Float>, heads: Int, headDim: Int, positions: Range<Int>,
                scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>)
    /// Causal attention for a tile of `tokens` consecutive query tokens on KV head `kvHead` (prefill; one token is
    /// decoding): token i's `heads` query heads ([heads × headDim] at queries + i·queryStride) attend over positions
    /// lower[i] ..< upper[i] (non-empty); its output goes to output + i·outputStride. scratch: at least
    /// max(heads · longest range, VectorOps.attentionTileScratch(rows: tokens · heads, headDim:, positions:)) floats
    /// with positions the span from the lowest lower to the highest upper.
    func attend(layer: Int, kvHead: Int, queries: UnsafePointer<Float>, queryStride: Int, tokens: Int, heads: Int, headDim: Int,
                lower: UnsafePointer<Int64>, upper: UnsafePointer<Int64>, scale: Float, scratch: UnsafeMutablePointer<Float>,
                output: UnsafeMutablePointer<Float>, outputStride: Int)
    /// Forgets positions from `count` on.
    func truncate(to count: Int)
    /// A new cache of the same capacity holding this one's positions 0 ..< count (prefix reuse: another sequence
    /// that begins with the same tokens starts from a copy instead of computing them again).
    func copy(prefix count: Int) throws -> KVCache
    /// Bytes that keep positions 0 ..< count (what a sequence of that length holds resident).
    func bytes(positions count: Int) -> Int
    /// Whether the cache compresses a prompt once it has been read, when generation begins (SnapKV): text read as one
    /// prompt keeps every position, so scoring it means reading what comes before as a prompt and the scored tokens
    /// one at a time, as generated (ModelSession.score).
    var compressesAfterPrompt: Bool { get }
}

extension KVCache {
    /// Caches that keep every position take batches of any size and need no notice of them.
    public var largestBatch: Int { .max }

    public func beginBatch(layer: Int, start: Int, count: Int) {}

    public var compressesAfterPrompt: Bool { false }

    /// Token by token, for caches that have no tiled path of their own.
    public func attend(layer: Int, kvHead: Int, queries: UnsafePointer<Float>, queryStride: Int, tokens: Int, heads: Int,
                       headDim: Int, lower: UnsafePointer<Int64>, upper: UnsafePointer<Int64>, scale: Float,
                       scratch: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>, outputStride: Int) {
        for i in 0 ..< tokens {
            attend(layer: layer, kvHead: kvHead, queries: queries + i * queryStride, heads: heads, headDim: headDim,
                   positions: Int(lower[i]) ..< Int(upper[i]), scale: scale, scores: scratch, output: output + i * outputStride)
        }
    }
}

/// The uncompressed cache: f32 keys and values, [layer][position][kvDim of the layer] (layers of a pruned model may
/// have fewer KV heads than others).
public final class F32KVCache: KVCache {
    public let layers: Int
    public let capacity: Int
    /// KV width (KV heads × head size) of the widest layer.
    public let kvDim: Int
    public let headDim: Int
    private let layerKVDim: [Int]  // [layers]
    private let layerStart: [Int]  // [layers]: offset of each layer's [capacity × kvDim] in keys/values
    private let keys: UnsafeMutablePointer<Float>  // [Σ_layers capacity × layer kvDim]
    private let values: UnsafeMutablePointer<Float>  // same layout

    /// Refuses sizes whose bytes do not fit in an Int (the caller bounds the capacity by the model's context).
    public convenience init(layers: Int, capacity: Int, kvHeads: Int, headDim: Int) throws {
        try self.init(kvHeads: [Int](repeating: kvHeads, count: max(0, layers)), capacity: capacity, headDim: headDim)
    }

    /// A cache for every layer of `config` (each with its own number of KV heads).
    public convenience init(config c: ModelConfig, capacity: Int) throws {
        try self.init(kvHeads: (0 ..< c.layers).map { c.kvHeads(layer: $0) }, capacity: capacity, headDim: c.headDim)
    }

    /// KV heads per layer.
    public init(kvHeads: [Int], capacity: Int, headDim: Int) throws {
        let layers = kvHeads.count
        let total = kvHeads.reduce(0) { $0 + max($1, 0) }
        guard layers > 0, capacity > 0, kvHeads.allSatisfy({ $0 > 0 }), headDim > 0,
              let n = Checked.product([total, capacity, headDim]), Checked.mul(n, 8) != nil else {
            throw ModelError.invalidArgument("a KV cache of \(layers) layers × \(capacity) positions × \(kvHeads.max() ?? 0) × \(headDim) values is not representable")
        }
        self.layers = layers
        self.capacity = capacity
        kvDim = kvHeads.max()! * headDim
        self.headDim = headDim
        layerKVDim = kvHeads.map { $0 * headDim }
        var start = 0, starts: [Int] = []
        for d in layerKVDim { starts.append(start); start += capacity * d }
        layerStart = starts
        // Not zero-filled: only positions that were stored are ever read, so untouched pages cost no memory.
        keys = .allocate(capacity: n)
        values = .allocate(capacity: n)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// Bytes held.
    public var byteCount: Int { 2 * capacity * layerKVDim.reduce(0, +) * MemoryLayout<Float>.size }

    public func store(layer: Int, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        precondition(position < capacity, "KV cache position \(position) beyond capacity \(capacity)")
        let d = layerKVDim[layer]
        let base = layerStart[layer] + position * d
        (keys + base).update(from: key, count: d)
        (values + base).update(from: value, count: d)
    }


    /// Keys and values are read once for up to four of the heads (VectorOps.attentionHeads).
    public func attend(layer: Int, kvHead: Int, queries: UnsafePointer<Float>, heads: Int, headDim: Int, positions: Range<Int>,
                       scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
        precondition(headDim == self.headDim, "head size \(headDim) is not the cache's \(self.headDim)")
        let d = layerKVDim[layer]
        let base = layerStart[layer] + positions.lowerBound * d + kvHead * headDim
        VectorOps.attentionHeads(query: queries, heads: heads, keys: keys + base, values: values + base, stride: d,
                                 count: positions.count, headDim: headDim, scale: scale, scores: scores, output: output)
    }

    /// Keys and values are read in blocks once per tile (VectorOps.attentionTile).
    public func attend(layer: Int, kvHead: Int, queries: UnsafePointer<Float>, queryStride: Int, tokens: Int, heads: Int,
                       headDim: Int, lower: UnsafePointer<Int64>, upper: UnsafePointer<Int64>, scale: Float,
                       scratch: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>, outputStride: Int) {
        precondition(headDim == self.headDim, "head size \(headDim) is not the cache's \(self.headDim)")
        let d = layerKVDim[layer]
        let base = layerStart[layer] + kvHead * headDim
        VectorOps.attentionTile(query: queries, queryStride: queryStride, tokens: tokens, heads: heads, keys: keys + base,
                                values: values + base, stride: d, lower: lower, upper: upper, headDim: headDim, scale: scale,
                                scratch: scratch, output: output, outputStride: outputStride)
    }

    public func truncate(to count: Int) {}

    public func copy(prefix count: Int) throws -> KVCache {
        precondition(count >= 0 && count <= capacity)
        let c = try F32KVCache(kvHeads: layerKVDim.map { $0 / headDim }, capacity: capacity, headDim: headDim)
        for l in 0 ..< layers {
            let base = layerStart[l]
            (c.keys + base).update(from: keys + base, count: count * layerKVDim[l])
            (c.values + base).update(from: values + base, count: count * layerKVDim[l])
        }
        return c
    }

    public func bytes(positions count: Int) -> Int { 2 * min(count, capacity) * layerKVDim.reduce(0, +) * MemoryLayout<Float>.size }
}
