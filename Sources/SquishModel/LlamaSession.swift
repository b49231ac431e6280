import Foundation
import SquishKernels

/// Runs a `LlamaModel`: batched prefill and single-token decode against a KV cache, on one worker pool.
/// Not thread-safe; one session per conversation.
public final class LlamaSession {
    public let model: LlamaModel
    public let pool: WorkerPool
    public let cache: KVCache
    public let contextLength: Int
    /// Most tokens run through the model in one batch; longer inputs are split.
    public let maxBatch: Int
    /// Positions already in the cache.
    public private(set) var position = 0

    private let matmul: Matmul
    // Activations for one batch of up to maxBatch tokens, row-major [tokens × width]:
    private let x: UnsafeMutablePointer<Float>  // residual stream [B × dim]
    private let xb: UnsafeMutablePointer<Float>  // normed input [B × dim]
    private let q: UnsafeMutablePointer<Float>  // [B × qDim]
    private let k: UnsafeMutablePointer<Float>  // [B × kvDim]
    private let v: UnsafeMutablePointer<Float>  // [B × kvDim]
    private let att: UnsafeMutablePointer<Float>  // attention output [B × qDim]
    private let hb: UnsafeMutablePointer<Float>  // gate, then SwiGLU [B × hiddenDim]
    private let hb2: UnsafeMutablePointer<Float>  // up [B × hiddenDim]
    private let scores: UnsafeMutablePointer<Float>  // per worker [threads × contextLength]
    private let ropeCos: UnsafeMutablePointer<Float>  // [contextLength × ropeDimensions/2]
    private let ropeSin: UnsafeMutablePointer<Float>
    private var allocations: [UnsafeMutablePointer<Float>] = []

    /// `exactActivations`: multiply with f32 activations instead of 8-bit-rounded ones (a slow reference mode).
    public init(model: LlamaModel, pool: WorkerPool, contextLength: Int? = nil, maxBatch: Int = 512, cache: KVCache? = nil,
                exactActivations: Bool = false) {
        let c = model.config
        self.model = model
        self.pool = pool
        let ctx = max(1, contextLength ?? c.contextLength)
        self.contextLength = ctx
        self.maxBatch = max(1, maxBatch)
        self.cache = cache ?? F32KVCache(layers: c.layers, capacity: ctx, kvHeads: c.kvHeads, headDim: c.headDim)
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
        x = buffer(b * c.dim); xb = buffer(b * c.dim)
        q = buffer(b * c.qDim); k = buffer(b * c.kvDim); v = buffer(b * c.kvDim); att = buffer(b * c.qDim)
        hb = buffer(b * c.hiddenDim); hb2 = buffer(b * c.hiddenDim)
        scores = buffer(pool.threadCount * ctx)
        let half = c.ropeDimensions / 2
        ropeCos = buffer(ctx * half); ropeSin = buffer(ctx * half)
        allocations = allocs
        // θ_i = base^(−2i/d) (RoFormer, eq. 15), optionally divided by Llama 3 frequency factors; positions
        // divided by the linear scaling factor.
        for i in 0 ..< half {
            var theta = pow(Double(c.ropeBase), -2.0 * Double(i) / Double(c.ropeDimensions))
            if let f = model.ropeFrequencyFactors { theta /= Double(f[i]) }
            for p in 0 ..< ctx {
                let angle = Double(p) / Double(c.ropeLinearScale) * theta
                ropeCos[p * half + i] = Float(cos(angle))
                ropeSin[p * half + i] = Float(sin(angle))
            }
        }
    }

    deinit { for p in allocations { p.deallocate() } }

    /// Forgets everything (or everything from `position` on).
    public func reset(to position: Int = 0) {
        self.position = max(0, min(position, self.position))
        cache.truncate(to: self.position)
    }

    /// Runs `tokens` at the next positions. Returns logits [count × vocab] for the last `logitsFor` tokens
    /// (default 1: the next-token distribution after the input).
    public func forward(_ tokens: [Int], logitsFor: Int = 1) throws -> [Float] {
        let c = model.config
        guard !tokens.isEmpty else { throw ModelError.emptyInput("the token sequence") }
        guard position + tokens.count <= contextLength else {
            throw ModelError.contextOverflow(tokens: position + tokens.count, context: contextLength)
        }
        for t in tokens where t < 0 || t >= c.vocabSize { throw ModelError.invalidToken(t, vocabulary: c.vocabSize) }
        let wanted = max(0, min(logitsFor, tokens.count))
        var logits = [Float](repeating: 0, count: wanted * c.vocabSize)
        var start = 0
        while start < tokens.count {
            let n = min(maxBatch, tokens.count - start)
            // Rows of this batch whose logits are wanted: the overall last `wanted` tokens.
            let firstWanted = tokens.count - wanted
            let lo = max(firstWanted, start), hi = start + n
            try runBatch(Array(tokens[start ..< start + n]))
            if lo < hi {
                try logits.withUnsafeMutableBufferPointer { out in
                    try computeLogits(rows: (lo - start) ..< (hi - start), into: out.baseAddress! + (lo - firstWanted) * c.vocabSize)
                }
            }
            start += n
        }
        return logits
    }

    private func rmsNorm(_ input: UnsafePointer<Float>, _ weight: [Float], _ out: UnsafeMutablePointer<Float>, rows: Int) {
        let dim = model.config.dim
        let eps = Double(model.config.normEpsilon)
        weight.withUnsafeBufferPointer { w in
            pool.parallelFor(rows) { range in
                for r in range {
                    let xr = input + r * dim, yr = out + r * dim
                    var ss = 0.0
                    for i in 0 ..< dim { ss += Double(xr[i]) * Double(xr[i]) }
                    let scale = Float(1.0 / (ss / Double(dim) + eps).squareRoot())
                    for i in 0 ..< dim { yr[i] = xr[i] * scale * w[i] }
                }
            }
        }
    }

    /// Rotates the first ropeDimensions of each head of `vec` ([heads × headDim]) for position `pos`.
    private func rope(_ vec: UnsafeMutablePointer<Float>, heads: Int, pos: Int) {
        let c = model.config
        let half = c.ropeDimensions / 2
        let cs = ropeCos + pos * half, sn = ropeSin + pos * half
        for h in 0 ..< heads {
            let p = vec + h * c.headDim
            switch c.ropeStyle {
            case .adjacentPairs:
                for i in 0 ..< half {
                    let a = p[2 * i], b = p[2 * i + 1]
                    p[2 * i] = a * cs[i] - b * sn[i]
                    p[2 * i + 1] = a * sn[i] + b * cs[i]
                }
            case .halfSplit:
                for i in 0 ..< half {
                    let a = p[i], b = p[i + half]
                    p[i] = a * cs[i] - b * sn[i]
                    p[i + half] = a * sn[i] + b * cs[i]
                }
            }
        }
    }

    private func runBatch(_ tokens: [Int]) throws {
        let c = model.config
        let n = tokens.count
        let start = position
        // Embedding rows.
        for (t, id) in tokens.enumerated() { try model.embedding.dequantizeRow(id, into: x + t * c.dim) }
        let scale = 1 / Float(c.headDim).squareRoot()
        let group = c.heads / c.kvHeads
        for (li, layer) in model.layers.enumerated() {
            rmsNorm(x, layer.attentionNorm, xb, rows: n)
            try matmul.fused(layer.wq, q, layer.wk, k, layer.wv, v, input: xb, tokens: n)
            if let bq = layer.bq, let bk = layer.bk, let bv = layer.bv {
                for t in 0 ..< n {
                    for i in 0 ..< c.qDim { q[t * c.qDim + i] += bq[i] }
                    for i in 0 ..< c.kvDim { k[t * c.kvDim + i] += bk[i]; v[t * c.kvDim + i] += bv[i] }
                }
            }
            let (q, k, v, cache, att, scores, ctx) = (self.q, self.k, self.v, self.cache, self.att, self.scores, contextLength)
            pool.parallelFor(n) { range in
                for t in range {
                    self.rope(q + t * c.qDim, heads: c.heads, pos: start + t)
                    self.rope(k + t * c.kvDim, heads: c.kvHeads, pos: start + t)
                }
            }
            for t in 0 ..< n { cache.store(layer: li, position: start + t, key: k + t * c.kvDim, value: v + t * c.kvDim) }
            // Causal attention: token t attends to positions 0 ... start + t. Work items: (token, head).
            pool.run { w in
                let workers = self.pool.threadCount
                let items = n * c.heads
                let sc = scores + w * ctx
                var item = w
                while item < items {
                    let t = item / c.heads, h = item % c.heads
                    cache.attend(layer: li, kvHead: h / group, query: q + t * c.qDim + h * c.headDim, count: start + t + 1,
                                 scale: scale, scores: sc, output: att + t * c.qDim + h * c.headDim)
                    item += workers
                }
            }
            try matmul(layer.wo, att, tokens: n, xb)
            for i in 0 ..< n * c.dim { x[i] += xb[i] }
            rmsNorm(x, layer.ffnNorm, xb, rows: n)
            let (hb, hb2, hidden) = (self.hb, self.hb2, c.hiddenDim)
            // gate and up in one job; each worker applies SwiGLU, silu(gate) · up, to the rows it computed.
            try matmul.fused(layer.gate, hb, layer.up, hb2, input: xb, tokens: n) { rows in
                for t in 0 ..< n {
                    for i in t * hidden + rows.lowerBound ..< t * hidden + rows.upperBound {
                        let g = hb[i]
                        hb[i] = g / (1 + expf(-g)) * hb2[i]
                    }
                }
            }
            try matmul(layer.down, hb, tokens: n, xb)
            for i in 0 ..< n * c.dim { x[i] += xb[i] }
        }
        position += n
    }

    /// Final norm and output projection for batch rows `rows`, written contiguously to `out` [rows × vocab].
    private func computeLogits(rows: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        let c = model.config
        rmsNorm(x + rows.lowerBound * c.dim, model.outputNorm, xb, rows: rows.count)
        try matmul(model.output, xb, tokens: rows.count, out)
    }
}
