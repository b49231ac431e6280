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
    /// residual stream after the last block. The token embedding of a tied model is quantized with these statistics
    /// too, since the logits are where its error shows (its other role, a row look-up, is followed by the first
    /// block's norm).
    static func finalNorm(_ run: CalibrationRun) throws -> [Double] {
        let c = run.model.config
        let acc = HessianAccumulator(n: c.dim)
        let normed = UnsafeMutablePointer<Float>.allocate(capacity: run.length * c.dim)  // [length × dim]
        defer { normed.deallocate() }
        let matmul = Matmul(pool: run.pool)
        for s in 0 ..< run.sequences.count {
            run.pass.finalNorm(run.residual(s), rows: run.length, into: normed)
            try acc.add(normed, tokens: run.length, matmul: matmul)
        }
        return acc.finish()
    }
}

/// Input statistics H = XᵀX of one block's linear layers, one per input site (q/k/v share theirs, gate/up theirs),
/// filled by observing the forward pass.
final class BlockStatistics {
    private var sites: [InputSite: HessianAccumulator] = [:]
    private let matmul: Matmul
    init(_ c: ModelConfig, layer: Int, pool: WorkerPool) {
        for site in InputSite.allCases { sites[site] = HessianAccumulator(n: site.width(c, layer: layer)) }
        matmul = Matmul(pool: pool)
    }

    /// The observer to hand to the forward pass.
    var observer: LinearInputObserver {
        { [self] _, site, x, tokens in try sites[site]!.add(x, tokens: tokens, matmul: matmul) }
    }

    /// The full symmetric H of `site`.
    func hessian(_ site: InputSite) -> [Double] { sites[site]!.finish() }
}

/// The calibration sequences run through the model's own forward pass one transformer block at a time (GPTQ §5
/// setup): the residual stream of every sequence is kept, a block is run on all sequences (observing its linear
/// layers' inputs, or with replaced weights), and the stream moves on to the next block. Attention is causal within
/// each sequence (positions 0 ..< length, a scratch KV cache of every layer, rewritten by each sequence).
final class CalibrationRun {
    let model: TransformerModel
    let pool: WorkerPool
    let sequences: [[Int]]
    let length: Int
    let pass: ForwardPass
    private let cache: F32KVCache
    private let x: UnsafeMutablePointer<Float>  // residual stream [sequences × length × dim]
    private let scratch: UnsafeMutablePointer<Float>  // one sequence [length × dim]

    init(model: TransformerModel, sequences: [[Int]], pool: WorkerPool) throws {
        let c = model.config
        guard let length = sequences.first?.count, length > 0, sequences.allSatisfy({ $0.count == length }) else {
            throw QuantizeError.calibration(path: model.path, reason: "calibration sequences must be non-empty and of one length")
        }
        self.model = model
        self.pool = pool
        self.sequences = sequences
        self.length = length
        pass = ForwardPass(model: model, pool: pool, maxBatch: length)
        cache = try F32KVCache(config: c, capacity: length)
        x = .allocate(capacity: sequences.count * length * c.dim)
        scratch = .allocate(capacity: length * c.dim)
        for (s, ids) in sequences.enumerated() { try pass.embed(ids, into: residual(s)) }
    }

    deinit {
        x.deallocate()
        scratch.deallocate()
    }

    /// The residual stream of sequence `s` [length × dim] (after the blocks run so far).
    func residual(_ s: Int) -> UnsafeMutablePointer<Float> { x + s * length * model.config.dim }

    /// Runs block `index` with `weights` on every sequence. `advance`: the residual stream moves on (else the block
    /// runs on a copy, e.g. only to observe); `observe` sees each linear layer's input; `each(s, before, after)`
    /// sees every sequence's stream around the block.
    func block(_ index: Int, _ weights: TransformerLayer, advance: Bool, observe: LinearInputObserver? = nil,
               each: ((Int, UnsafePointer<Float>, UnsafePointer<Float>) -> Void)? = nil) throws {
        let dim = model.config.dim
        for s in 0 ..< sequences.count {
            let xs = residual(s)
            scratch.update(from: xs, count: length * dim)
            let target = advance ? xs : scratch
            try pass.block(index, weights, x: target, tokens: length, start: 0, cache: cache, cacheLayer: index, observe: observe)
            each?(s, advance ? scratch : xs, target)
        }
    }
}
