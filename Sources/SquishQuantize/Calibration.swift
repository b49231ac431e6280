import Foundation
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel

public struct CalibrationOptions: Sendable {
    /// UTF-8 text run through the model (nil: the caller must set one for calibrated methods).
    public var textPath: String?
    /// Use only the first N bytes of the text (cut back to a character boundary).
    public var textBytes: Int?
    /// Calibration tokens (whole sequences of `sequenceLength`, BOS included).
    public var tokens = 8192
    /// Tokens per sequence; attention is causal within each sequence.
    public var sequenceLength = 512
    public init() {}
}

/// H = Σ xᵀx over the inputs x of a linear layer (row vectors of `n` features), accumulated in f64 from f32 products
/// of one sequence at a time. The products run through the f32 matmul kernel: with Xᵀ [n × T] as the "weights" and
/// also as the "activations", Y = Xᵀ (Xᵀ)ᵀ = XᵀX. Only the upper triangle is computed (row tiles against the
/// columns from the tile on) and mirrored at the end.
final class HessianAccumulator {
    let n: Int
    private(set) var h: [Double]  // [n × n], upper triangle until `finish`
    private(set) var samples = 0

    init(n: Int) {
        self.n = n
        h = [Double](repeating: 0, count: n * n)
    }

    func add(_ x: UnsafePointer<Float>, tokens t: Int, matmul: Matmul) throws {
        let n = self.n
        let xt = UnsafeMutablePointer<Float>.allocate(capacity: n * t)  // Xᵀ [n × t]
        defer { xt.deallocate() }
        for s in 0 ..< t { for c in 0 ..< n { xt[c * t + s] = x[s * n + c] } }
        let tileRows = 128
        let y = UnsafeMutablePointer<Float>.allocate(capacity: n * tileRows)  // [(n − r0) × tileRows]
        defer { y.deallocate() }
        var r0 = 0
        while r0 < n {
            let b = min(tileRows, n - r0)
            let w = try WeightMatrix(name: "XᵀX", type: .f32, data: UnsafeRawBufferPointer(start: xt + r0 * t, count: b * t * 4),
                                     rows: b, columns: t)
            try matmul(w, xt + r0 * t, tokens: n - r0, y, ldy: b)
            h.withUnsafeMutableBufferPointer { hp in
                for c in 0 ..< (n - r0) {
                    for r in 0 ..< min(b, c + 1) { hp[(r0 + r) * n + r0 + c] += Double(y[c * b + r]) }
                }
            }
            r0 += b
        }
        samples += t
    }

    /// The full symmetric matrix.
    func finish() -> [Double] {
        for i in 0 ..< n { for j in 0 ..< i { h[i * n + j] = h[j * n + i] } }
        return h
    }
}

extension HessianAccumulator {
    /// H of the output matrix's input: the final RMS-normed hidden state of every calibration token, from the
    /// residual stream `x` [sequences × length × dim] after the last block. The token embedding of a tied model is
    /// quantized with these statistics too, since the logits are where its error shows (its other role, a row
    /// look-up, is followed by the first block's norm).
    static func finalNorm(model: LlamaModel, x: UnsafePointer<Float>, sequences: Int, length: Int, pool: WorkerPool) throws -> [Double] {
        let c = model.config
        let acc = HessianAccumulator(n: c.dim)
        let normed = UnsafeMutablePointer<Float>.allocate(capacity: length * c.dim)  // [length × dim]
        defer { normed.deallocate() }
        let matmul = Matmul(pool: pool)
        for s in 0 ..< sequences {
            for t in 0 ..< length {
                let row = x + (s * length + t) * c.dim, out = normed + t * c.dim
                var ss = 0.0
                for j in 0 ..< c.dim { ss += Double(row[j]) * Double(row[j]) }
                let scale = Float(1 / (ss / Double(c.dim) + Double(c.normEpsilon)).squareRoot())
                for j in 0 ..< c.dim { out[j] = row[j] * scale * model.outputNorm[j] }
            }
            try acc.add(normed, tokens: length, matmul: matmul)
        }
        return acc.finish()
    }
}

/// The weights of one transformer block as the calibration forward uses them.
struct BlockWeights {
    var attentionNorm: [Float], ffnNorm: [Float]
    var wq: WeightMatrix, wk: WeightMatrix, wv: WeightMatrix, wo: WeightMatrix
    var bq: [Float]?, bk: [Float]?, bv: [Float]?
    var gate: WeightMatrix, up: WeightMatrix, down: WeightMatrix

    init(_ l: LlamaModel.Layer) {
        attentionNorm = l.attentionNorm; ffnNorm = l.ffnNorm
        wq = l.wq; wk = l.wk; wv = l.wv; wo = l.wo
        bq = l.bq; bk = l.bk; bv = l.bv
        gate = l.gate; up = l.up; down = l.down
    }
}

/// Input statistics of one block's linear layers: q/k/v share their input, gate/up theirs.
final class BlockStatistics {
    let attentionInput: HessianAccumulator  // input of q, k, v [dim]
    let attentionOutput: HessianAccumulator  // input of o [qDim]
    let ffnInput: HessianAccumulator  // input of gate, up [dim]
    let ffnHidden: HessianAccumulator  // input of down [hiddenDim]
    init(_ c: LlamaConfig) {
        attentionInput = HessianAccumulator(n: c.dim)
        attentionOutput = HessianAccumulator(n: c.qDim)
        ffnInput = HessianAccumulator(n: c.dim)
        ffnHidden = HessianAccumulator(n: c.hiddenDim)
    }
}

/// Where a linear layer's input is seen in a block: q/k/v read the normed attention input, o the attention
/// output, gate/up the normed FFN input, down the SwiGLU hidden state.
enum InputSite: CaseIterable { case attentionInput, attentionOutput, ffnInput, ffnHidden }

/// One transformer block's forward pass over one calibration sequence, mirroring `LlamaSession` (RMSNorm, RoPE,
/// GQA attention causal within the sequence, SwiGLU), with optional recording of every linear layer's input.
final class BlockRunner {
    let config: LlamaConfig
    let pool: WorkerPool
    let matmul: Matmul
    let length: Int
    // Scratch for one sequence of `length` tokens, row-major [tokens × width]:
    private let xb: UnsafeMutablePointer<Float>  // normed input, then sublayer output [T × dim]
    private let q: UnsafeMutablePointer<Float>  // [T × qDim]
    private let k: UnsafeMutablePointer<Float>  // [T × kvDim]
    private let v: UnsafeMutablePointer<Float>  // [T × kvDim]
    private let att: UnsafeMutablePointer<Float>  // attention output [T × qDim]
    private let hb: UnsafeMutablePointer<Float>  // gate, then SwiGLU [T × hiddenDim]
    private let hb2: UnsafeMutablePointer<Float>  // up [T × hiddenDim]
    private let scores: UnsafeMutablePointer<Float>  // [threads × T]
    private let ropeCos: UnsafeMutablePointer<Float>  // [T × ropeDimensions/2]
    private let ropeSin: UnsafeMutablePointer<Float>
    private var allocations: [UnsafeMutablePointer<Float>] = []

    init(model: LlamaModel, pool: WorkerPool, length: Int) {
        let c = model.config
        config = c
        self.pool = pool
        self.length = length
        matmul = Matmul(pool: pool)
        var allocs: [UnsafeMutablePointer<Float>] = []
        func buffer(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
            p.initialize(repeating: 0, count: max(n, 1))
            allocs.append(p)
            return p
        }
        xb = buffer(length * c.dim)
        q = buffer(length * c.qDim); k = buffer(length * c.kvDim); v = buffer(length * c.kvDim); att = buffer(length * c.qDim)
        hb = buffer(length * c.hiddenDim); hb2 = buffer(length * c.hiddenDim)
        scores = buffer(pool.threadCount * length)
        let half = c.ropeDimensions / 2
        ropeCos = buffer(length * half); ropeSin = buffer(length * half)
        allocations = allocs
        // θ_i = base^(−2i/d) (RoFormer eq. 15), as LlamaSession computes it.
        for i in 0 ..< half {
            var theta = pow(Double(c.ropeBase), -2.0 * Double(i) / Double(c.ropeDimensions))
            if let f = model.ropeFrequencyFactors { theta /= Double(f[i]) }
            for p in 0 ..< length {
                let angle = Double(p) / Double(c.ropeLinearScale) * theta
                ropeCos[p * half + i] = Float(cos(angle))
                ropeSin[p * half + i] = Float(sin(angle))
            }
        }
    }

    deinit { for p in allocations { p.deallocate() } }

    private func rmsNorm(_ x: UnsafePointer<Float>, _ weight: [Float], _ out: UnsafeMutablePointer<Float>, rows: Int) {
        let dim = config.dim
        let eps = Double(config.normEpsilon)
        weight.withUnsafeBufferPointer { w in
            pool.parallelFor(rows) { range in
                for r in range {
                    let xr = x + r * dim, yr = out + r * dim
                    var ss = 0.0
                    for i in 0 ..< dim { ss += Double(xr[i]) * Double(xr[i]) }
                    let scale = Float(1.0 / (ss / Double(dim) + eps).squareRoot())
                    for i in 0 ..< dim { yr[i] = xr[i] * scale * w[i] }
                }
            }
        }
    }

    private func rope(_ vec: UnsafeMutablePointer<Float>, heads: Int, pos: Int) {
        let c = config
        let half = c.ropeDimensions / 2
        let cs = ropeCos + pos * half, sn = ropeSin + pos * half
        for h in 0 ..< heads {
            let p = vec + h * c.headDim
            for i in 0 ..< half {
                let (ia, ib) = c.ropeStyle == .adjacentPairs ? (2 * i, 2 * i + 1) : (i, i + half)
                let a = p[ia], b = p[ib]
                p[ia] = a * cs[i] - b * sn[i]
                p[ib] = a * sn[i] + b * cs[i]
            }
        }
    }

    /// Runs block `w` on the residual stream `x` [n × dim] (n ≤ length, positions 0 ..< n), updating it in place.
    func forward(_ w: BlockWeights, _ x: UnsafeMutablePointer<Float>, tokens n: Int, record: BlockStatistics?,
                 capture: ((InputSite, UnsafePointer<Float>, Int) -> Void)? = nil) throws {
        let c = config
        rmsNorm(x, w.attentionNorm, xb, rows: n)
        try record?.attentionInput.add(xb, tokens: n, matmul: matmul)
        capture?(.attentionInput, xb, n)
        try matmul(w.wq, xb, tokens: n, q)
        try matmul(w.wk, xb, tokens: n, k)
        try matmul(w.wv, xb, tokens: n, v)
        if let bq = w.bq, let bk = w.bk, let bv = w.bv {
            for t in 0 ..< n {
                for i in 0 ..< c.qDim { q[t * c.qDim + i] += bq[i] }
                for i in 0 ..< c.kvDim { k[t * c.kvDim + i] += bk[i]; v[t * c.kvDim + i] += bv[i] }
            }
        }
        let (q, k, v, att, scores, length) = (self.q, self.k, self.v, self.att, self.scores, self.length)
        pool.parallelFor(n) { range in
            for t in range {
                self.rope(q + t * c.qDim, heads: c.heads, pos: t)
                self.rope(k + t * c.kvDim, heads: c.kvHeads, pos: t)
            }
        }
        let scale = 1 / Float(c.headDim).squareRoot()
        let group = c.heads / c.kvHeads
        pool.run { worker in
            let sc = scores + worker * length
            var item = worker
            while item < n * c.heads {
                let t = item / c.heads, h = item % c.heads
                let kv = (h / group) * c.headDim
                VectorOps.attentionHead(query: q + t * c.qDim + h * c.headDim, keys: k + kv, values: v + kv, stride: c.kvDim,
                                        count: t + 1, headDim: c.headDim, scale: scale, scores: sc,
                                        output: att + t * c.qDim + h * c.headDim)
                item += self.pool.threadCount
            }
        }
        try record?.attentionOutput.add(att, tokens: n, matmul: matmul)
        capture?(.attentionOutput, att, n)
        try matmul(w.wo, att, tokens: n, xb)
        for i in 0 ..< n * c.dim { x[i] += xb[i] }
        rmsNorm(x, w.ffnNorm, xb, rows: n)
        try record?.ffnInput.add(xb, tokens: n, matmul: matmul)
        capture?(.ffnInput, xb, n)
        try matmul(w.gate, xb, tokens: n, hb)
        try matmul(w.up, xb, tokens: n, hb2)
        let (hb, hb2, hidden) = (self.hb, self.hb2, c.hiddenDim)
        pool.parallelFor(n) { range in
            for i in range.lowerBound * hidden ..< range.upperBound * hidden {
                let g = hb[i]
                hb[i] = g / (1 + expf(-g)) * hb2[i]  // SwiGLU: silu(gate) · up
            }
        }
        try record?.ffnHidden.add(hb, tokens: n, matmul: matmul)
        capture?(.ffnHidden, hb, n)
        try matmul(w.down, hb, tokens: n, xb)
        for i in 0 ..< n * c.dim { x[i] += xb[i] }
    }
}
