import Foundation
import SquishKernels

/// Sees the input of a block's linear layers as the forward pass computes it: (layer, site, x [tokens × width],
/// tokens). Calibration (GPTQ's statistics, AWQ's samples, the level database) hooks the one forward pass this way.
public typealias LinearInputObserver = (_ layer: Int, _ site: InputSite, _ input: UnsafePointer<Float>, _ tokens: Int) throws -> Void

/// A run of one sequence's consecutive tokens in a batch: its KV cache and the position of its first token.
public struct BatchSegment {
    public let cache: KVCache
    public let start: Int
    public let count: Int
    public init(cache: KVCache, start: Int, count: Int) {
        self.cache = cache
        self.start = start
        self.count = count
    }
}

/// cos/sin of RoPE's angles pos / scale · θ_i for positions 0 ..< capacity, grown on demand.
/// θ_i = base^(−2i/d) (RoFormer, eq. 15), optionally divided by Llama 3 frequency factors.
final class RoPETable {
    let base: Double, scale: Double, dimensions: Int
    let factors: [Float]?
    private(set) var capacity = 0
    private(set) var cos: [Float] = []  // [capacity × dimensions/2]
    private(set) var sin: [Float] = []

    init(base: Double, scale: Double, dimensions: Int, factors: [Float]?) {
        self.base = base
        self.scale = scale
        self.dimensions = dimensions
        self.factors = factors
    }

    /// Makes positions 0 ..< n available.
    func reserve(_ n: Int) {
        guard n > capacity else { return }
        let newCapacity = max(n, min(2 * capacity, n + 4096), 64)
        let half = dimensions / 2
        cos.reserveCapacity(newCapacity * half)
        sin.reserveCapacity(newCapacity * half)
        let theta = (0 ..< half).map { i -> Double in
            let t = Foundation.pow(base, -2.0 * Double(i) / Double(dimensions))
            return factors.map { t / Double($0[i]) } ?? t
        }
        for p in capacity ..< newCapacity {
            for i in 0 ..< half {
                let angle = Double(p) / scale * theta[i]
                cos.append(Float(Foundation.cos(angle)))
                sin.append(Float(Foundation.sin(angle)))
            }
        }
        capacity = newCapacity
    }

    /// One table per distinct (base, scale) of the layers of `c`, and the index of each layer's table.
    static func perLayer(config c: ModelConfig, factors: [Float]?) -> (tables: [RoPETable], ofLayer: [Int]) {
        var tables: [RoPETable] = []
        var index: [Int] = []
        for a in c.layerAttention {
            if let i = tables.firstIndex(where: { $0.base == a.ropeBase && $0.scale == a.ropeLinearScale }) {
                index.append(i)
            } else {
                tables.append(RoPETable(base: a.ropeBase, scale: a.ropeLinearScale, dimensions: c.ropeDimensions, factors: factors))
                index.append(tables.count - 1)
            }
        }
        return (tables, index)
    }

    /// Rotates the first 2·half values of one head by the angles whose cos/sin are cs[i], sn[i] (RoPE at one
    /// position); `inverse` rotates back.
    @inline(__always) static func rotate(_ p: UnsafeMutablePointer<Float>, half: Int, style: RoPEStyle, cos cs: UnsafePointer<Float>,
                                         sin sn: UnsafePointer<Float>, inverse: Bool = false) {
        let sign: Float = inverse ? -1 : 1
        switch style {
        case .adjacentPairs:
            for i in 0 ..< half {
                let a = p[2 * i], b = p[2 * i + 1], s = sign * sn[i]
                p[2 * i] = a * cs[i] - b * s
                p[2 * i + 1] = a * s + b * cs[i]
            }
        case .halfSplit:
            for i in 0 ..< half {
                let a = p[i], b = p[i + half], s = sign * sn[i]
                p[i] = a * cs[i] - b * s
                p[i + half] = a * s + b * cs[i]
            }
        }
    }
}

/// The one transformer forward pass, for every architecture: embedding, blocks (RMSNorm, QK-norm, RoPE per layer,
/// GQA/MQA attention over a KV cache with optional sliding windows, SwiGLU/GeGLU, post-norms), final norm and logits.
/// Holds the scratch buffers for batches of up to `maxBatch` tokens; generation (`ModelSession`), evaluation and
/// calibration all run through it. Not thread-safe: one per caller.
public final class ForwardPass {
    public let model: TransformerModel
    public let pool: WorkerPool
    public let maxBatch: Int
    public let matmul: Matmul
    /// Activations of the batch, row-major [tokens × width]:
    private let xb: UnsafeMutablePointer<Float>  // normed input, then sublayer output [B × dim]
    private let q: UnsafeMutablePointer<Float>  // [B × qDim]
    private let k: UnsafeMutablePointer<Float>  // [B × kvDim]
    private let v: UnsafeMutablePointer<Float>  // [B × kvDim]
    private let att: UnsafeMutablePointer<Float>  // attention output [B × qDim]
    private let hb: UnsafeMutablePointer<Float>  // gate, then the gated hidden state [B × hiddenDim]
    private let hb2: UnsafeMutablePointer<Float>  // up [B × hiddenDim]
    private var scores: UnsafeMutablePointer<Float>  // per worker [threads × scoresPerWorker]
    private var scoresPerWorker: Int
    /// Per worker: the attention tile's first and last-plus-one positions per token [threads × 2 × maxTileTokens].
    private let bounds: UnsafeMutablePointer<Int64>
    /// Attention tiles of the current batch: (first token, tokens), each within one segment.
    private var tiles: [(Int, Int)] = []
    private var allocations: [UnsafeMutablePointer<Float>] = []
    /// Per token of the current batch: its position and the index of its segment.
    private var positions: [Int] = []
    private var segmentOf: [Int] = []
    /// One table per distinct (base, scale) of the layers; `ropeOfLayer[l]` indexes it.
    private let ropeTables: [RoPETable]
    private let ropeOfLayer: [Int]

    /// `exactActivations`: multiply with f32 activations instead of 8-bit-rounded ones (a slow reference mode).
    public init(model: TransformerModel, pool: WorkerPool, maxBatch: Int = 512, exactActivations: Bool = false) {
        let c = model.config
        self.model = model
        self.pool = pool
        self.maxBatch = max(1, maxBatch)
        matmul = Matmul(pool: pool)
        matmul.exactActivations = exactActivations
        var allocs: [UnsafeMutablePointer<Float>] = []
        func buffer(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
            p.initialize(repeating: 0, count: max(n, 1))
            allocs.append(p)
            return p
        }
        let b = self.maxBatch
        xb = buffer(b * c.dim)
        q = buffer(b * c.qDim); k = buffer(b * c.kvDim); v = buffer(b * c.kvDim); att = buffer(b * c.qDim)
        hb = buffer(b * c.hiddenDim); hb2 = buffer(b * c.hiddenDim)
        allocations = allocs
        scoresPerWorker = 1024
        scores = .allocate(capacity: pool.threadCount * scoresPerWorker)
        bounds = .allocate(capacity: pool.threadCount * 2 * Self.maxTileTokens)
        (ropeTables, ropeOfLayer) = RoPETable.perLayer(config: c, factors: model.ropeFrequencyFactors)
    }

    deinit {
        for p in allocations { p.deallocate() }
        scores.deallocate()
        bounds.deallocate()
    }

    /// Makes positions 0 ..< n usable (RoPE tables, attention scratch for a KV head's query heads).
    public func reserve(positions n: Int) {
        for t in ropeTables { t.reserve(n) }
        let c = model.config
        let group = (0 ..< c.layers).map { c.forLayer($0) }.map { $0.heads / $0.kvHeads }.max() ?? 1
        let needed = max(n * group, VectorOps.attentionTileScratch(rows: Self.tileTokens(group: group) * group, headDim: c.headDim,
                                                                  positions: n))
        if needed > scoresPerWorker {
            scores.deallocate()
            scoresPerWorker = max(needed, 2 * scoresPerWorker)
            scores = .allocate(capacity: pool.threadCount * scoresPerWorker)
        }
    }

    /// Query heads per KV head of a block (`c`: its widths), and how many of them one attention work item takes: all of
    /// them, unless there are fewer (tile, KV head) `pairs` than workers; then as few as keep every worker busy.
    private func headSlices(pairs: Int, config c: ModelConfig) -> (group: Int, slice: Int) {
        let group = c.heads / c.kvHeads
        let workers = pool.threadCount
        guard pairs < workers else { return (group, group) }
        let splits = min(group, (workers + pairs - 1) / pairs)
        return (group, (group + splits - 1) / splits)
    }

    /// Most tokens in one attention tile: about 32 query rows (tokens × query heads per KV head), so a tile's
    /// queries, outputs and one block of keys and values stay in the level-1/level-2 caches.
    static let maxTileTokens = 32
    private static func tileTokens(group: Int) -> Int { max(1, min(maxTileTokens, 32 / max(group, 1))) }

    /// Tokens per attention tile for a batch of n: the most (above), or fewer when that leaves under two work items
    /// per worker (short prompts).
    private func tileTokens(tokens n: Int, config c: ModelConfig) -> Int {
        let most = Self.tileTokens(group: c.heads / c.kvHeads)
        return max(1, min(most, n * c.kvHeads / (2 * pool.threadCount)))
    }

    /// Embedding rows of `tokens` (checked against the vocabulary) into x [count × dim], scaled as the model wants.
    public func embed<C: Collection>(_ tokens: C, into x: UnsafeMutablePointer<Float>) throws where C.Element == Int {
        let c = model.config
        for (t, id) in tokens.enumerated() {
            guard id >= 0 && id < c.vocabSize else { throw ModelError.invalidToken(id, vocabulary: c.vocabSize) }
            try model.embedding.dequantizeRow(id, into: x + t * c.dim)
        }
        if c.embeddingScale != 1 {
            let s = c.embeddingScale
            for i in 0 ..< tokens.count * c.dim { x[i] *= s }
        }
        try checkFinite(x, tokens.count * c.dim, stage: "the token embedding")
    }

    /// Runs block `index` with weights `layer` on the residual stream x [n × dim] (n ≤ maxBatch) at positions
    /// start ..< start + n of one sequence, storing keys and values in `cache` layer `cacheLayer` and attending over
    /// what it holds (causal; a sliding-window layer sees its window only). `observe` sees each linear layer's input.
    public func block(_ index: Int, _ layer: TransformerLayer, x: UnsafeMutablePointer<Float>, tokens n: Int, start: Int,
                      cache: KVCache, cacheLayer: Int, observe: LinearInputObserver? = nil) throws {
        try block(index, layer, x: x, segments: [BatchSegment(cache: cache, start: start, count: n)], cacheLayer: cacheLayer,
                  observe: observe)
    }

    /// The same for a batch that mixes sequences: x holds the segments' tokens in order, each segment a run of one
    /// sequence's consecutive positions with its own cache (continuous batching: several decoding sequences and a
    /// prefill chunk share one matmul per weight matrix).
    public func block(_ index: Int, _ layer: TransformerLayer, x: UnsafeMutablePointer<Float>, segments: [BatchSegment],
                      cacheLayer: Int, observe: LinearInputObserver? = nil) throws {
        let c = model.config.forLayer(index)  // this block's widths (pruned models differ per block)
        let n = segments.reduce(0) { $0 + $1.count }
        precondition(n >= 1 && n <= maxBatch, "batch of \(n) tokens outside 1 ... \(maxBatch)")
        // Per token: its position and its segment.
        positions.removeAll(keepingCapacity: true)
        segmentOf.removeAll(keepingCapacity: true)
        for (i, s) in segments.enumerated() {
            precondition(s.count >= 0 && s.start >= 0)
            for p in s.start ..< s.start + s.count { positions.append(p); segmentOf.append(i) }
        }
        reserve(positions: (positions.max() ?? 0) + 1)
        let (q, k, v, att, xb) = (self.q, self.k, self.v, self.att, self.xb)

        // Attention.
        rmsNorm(x, layer.attentionNorm, xb, rows: n, width: c.dim)
        try observe?(index, .attentionInput, xb, n)
        try matmul.fused(layer.wq, q, layer.wk, k, layer.wv, v, input: xb, tokens: n)
        if let bq = layer.bq, let bk = layer.bk, let bv = layer.bv {
            for t in 0 ..< n {
                for i in 0 ..< c.qDim { q[t * c.qDim + i] += bq[i] }
                for i in 0 ..< c.kvDim { k[t * c.kvDim + i] += bk[i]; v[t * c.kvDim + i] += bv[i] }
            }
        }
        if let qn = layer.qNorm, let kn = layer.kNorm {
            rmsNorm(q, qn, q, rows: n * c.heads, width: c.headDim)
            rmsNorm(k, kn, k, rows: n * c.kvHeads, width: c.headDim)
        }
        let table = ropeTables[ropeOfLayer[index]]
        positions.withUnsafeBufferPointer { pos in
            let pos = pos.baseAddress!
            table.cos.withUnsafeBufferPointer { cs in
                table.sin.withUnsafeBufferPointer { sn in
                    let (cs, sn) = (cs.baseAddress!, sn.baseAddress!)
                    pool.parallelFor(n) { range in
                        for t in range {
                            self.rope(q + t * c.qDim, heads: c.heads, pos: pos[t], cos: cs, sin: sn)
                            self.rope(k + t * c.kvDim, heads: c.kvHeads, pos: pos[t], cos: cs, sin: sn)
                        }
                    }
                }
            }
            for s in segments where s.count > 0 { s.cache.beginBatch(layer: cacheLayer, start: s.start, count: s.count) }
            for t in 0 ..< n {
                segments[segmentOf[t]].cache.store(layer: cacheLayer, position: pos[t], key: k + t * c.kvDim, value: v + t * c.kvDim)
            }
            // Causal attention: token t attends to positions first ... pos[t] of its own sequence. Work items: (tile of
            // consecutive tokens of one segment, KV head, slice of the query heads on that KV head); each reads the keys
            // and values once per tile for all its rows. A batch with fewer (tile, KV head) pairs than workers
            // (decoding, multi-query models) splits the heads. A row's result does not depend on its tile or slice.
            let window = c.layerAttention[index].slidingWindow
            let tokensPerTile = tileTokens(tokens: n, config: c)
            tiles.removeAll(keepingCapacity: true)
            var t0 = 0
            for s in segments {
                var i = 0
                while i < s.count { let m = min(tokensPerTile, s.count - i); tiles.append((t0 + i, m)); i += m }
                t0 += s.count
            }
            let (group, slice) = headSlices(pairs: tiles.count * c.kvHeads, config: c)
            let slices = (group + slice - 1) / slice
            let scale = c.attentionScale, headDim = c.headDim
            let (scores, stride, bounds) = (self.scores, scoresPerWorker, self.bounds)
            segmentOf.withUnsafeBufferPointer { seg in
                let seg = seg.baseAddress!
                segments.withUnsafeBufferPointer { segments in
                    tiles.withUnsafeBufferPointer { tiles in
                        pool.run { w in
                            let workers = self.pool.threadCount
                            let items = tiles.count * c.kvHeads * slices
                            let sc = scores + w * stride
                            let lower = bounds + w * 2 * Self.maxTileTokens, upper = lower + Self.maxTileTokens
                            var item = w
                            while item < items {
                                let (t, m) = tiles[item / (c.kvHeads * slices)], kv = item / slices % c.kvHeads
                                let h0 = kv * group + item % slices * slice, heads = min(slice, (kv + 1) * group - h0)
                                for i in 0 ..< m {
                                    let last = pos[t + i]
                                    lower[i] = Int64(window.map { max(0, last - $0 + 1) } ?? 0)
                                    upper[i] = Int64(last + 1)
                                }
                                segments[seg[t]].cache.attend(layer: cacheLayer, kvHead: kv, queries: q + t * c.qDim + h0 * headDim,
                                                              queryStride: c.qDim, tokens: m, heads: heads, headDim: headDim,
                                                              lower: lower, upper: upper, scale: scale, scratch: sc,
                                                              output: att + t * c.qDim + h0 * headDim, outputStride: c.qDim)
                                item += workers
                            }
                        }
                    }
                }
            }
        }
        try observe?(index, .attentionOutput, att, n)
        try matmul(layer.wo, att, tokens: n, xb)
        if let post = layer.postAttentionNorm { rmsNorm(xb, post, xb, rows: n, width: c.dim) }
        for i in 0 ..< n * c.dim { x[i] += xb[i] }
        try checkFinite(x, n * c.dim, stage: "block \(index) (attention)")

        // Gated FFN.
        rmsNorm(x, layer.ffnNorm, xb, rows: n, width: c.dim)
        try observe?(index, .ffnInput, xb, n)
        let (hb, hb2, hidden) = (self.hb, self.hb2, c.hiddenDim)
        let activation: VectorOps.GatedActivation = switch c.activation {
        case .silu: .silu
        case .geluTanh: .geluTanh
        }
        // gate and up in one job; each worker applies act(gate) · up to the rows it computed.
        try matmul.fused(layer.gate, hb, layer.up, hb2, input: xb, tokens: n) { rows in
            for t in 0 ..< n {
                let lo = t * hidden + rows.lowerBound
                VectorOps.gatedActivation(activation, gate: hb + lo, up: hb2 + lo, count: rows.count)
            }
        }
        try observe?(index, .ffnHidden, hb, n)
        try matmul(layer.down, hb, tokens: n, xb)
        if let post = layer.postFFNNorm { rmsNorm(xb, post, xb, rows: n, width: c.dim) }
        for i in 0 ..< n * c.dim { x[i] += xb[i] }
        try checkFinite(x, n * c.dim, stage: "block \(index) (feed-forward)")
    }

    /// Final norm of the residual rows x [rows × dim] into out [rows × dim].
    public func finalNorm(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
        rmsNorm(x, model.outputNorm, out, rows: rows, width: model.config.dim)
    }

    /// Final norm and output projection of the residual rows x [rows × dim] (rows ≤ maxBatch) into out [rows × vocab].
    public func logits(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) throws {
        precondition(rows <= maxBatch)
        finalNorm(x, rows: rows, into: xb)
        try matmul(model.output, xb, tokens: rows, out)
        try checkFinite(out, rows * model.config.vocabSize, stage: "the output layer")
    }

    /// y = x / √(mean(x²) + ε) · w per row of `width` (y may be x).
    func rmsNorm(_ input: UnsafePointer<Float>, _ weight: [Float], _ out: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        let eps = model.config.normEpsilon
        weight.withUnsafeBufferPointer { w in
            let w = w.baseAddress!
            pool.parallelFor(rows, granularity: max(1, 256 / max(width, 1))) { range in
                for r in range { VectorOps.rmsNorm(input + r * width, weight: w, into: out + r * width, count: width, epsilon: eps) }
            }
        }
    }

    /// Rotates the first ropeDimensions of each head of `vec` ([heads × headDim]) for position `pos`.
    @inline(__always) private func rope(_ vec: UnsafeMutablePointer<Float>, heads: Int, pos: Int,
                                        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>) {
        let c = model.config
        let half = c.ropeDimensions / 2
        for h in 0 ..< heads {
            RoPETable.rotate(vec + h * c.headDim, half: half, style: c.ropeStyle, cos: cos + pos * half, sin: sin + pos * half)
        }
    }

    /// Throws naming `stage` when x [count] holds NaN or infinity (a broken file must not reach the sampler).
    private func checkFinite(_ x: UnsafePointer<Float>, _ count: Int, stage: String) throws {
        if !VectorOps.allFinite(x, count: count) { throw ModelError.nonFiniteActivations(path: model.path, stage: stage) }
    }
}
