import SquishCore
import SquishKernels

/// Keys and values of past positions, per layer. The model writes each new position once and asks the cache to
/// attend over what it holds, so compressed caches (quantized, windowed, evicting) can implement both their way.
public protocol KVCache: AnyObject {
    /// Positions the cache can hold.
    var capacity: Int { get }
    /// Stores key and value ([kvDim] each) of `position` in `layer`.
    func store(layer: Int, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>)
    /// out[headDim] = softmax(scale · K q) · V over `positions` (a causal window ending at the query's own position)
    /// for KV head `kvHead`. scores: scratch of at least `positions.count` floats.
    func attend(layer: Int, kvHead: Int, query: UnsafePointer<Float>, positions: Range<Int>, scale: Float,
                scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>)
    /// Forgets positions from `count` on.
    func truncate(to count: Int)
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

    public func attend(layer: Int, kvHead: Int, query: UnsafePointer<Float>, positions: Range<Int>, scale: Float,
                       scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
        let d = layerKVDim[layer]
        let base = layerStart[layer] + positions.lowerBound * d + kvHead * headDim
        VectorOps.attentionHead(query: query, keys: keys + base, values: values + base, stride: d, count: positions.count,
                                headDim: headDim, scale: scale, scores: scores, output: output)
    }

    public func truncate(to count: Int) {}
}
