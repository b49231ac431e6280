import Foundation
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel

public struct AWQOptions: Sendable {
    /// Grid of exponents α in s = x̄^α: α = i / gridSize for i in 0 ..< gridSize (α = 0 is plain RTN).
    public var gridSize = 20
    /// Calibration tokens whose activations the scale search multiplies (the mean |x| uses all tokens).
    public var searchTokens = 512
    /// Weight clipping after the scales (see `AWQClip`): each block's range searched by output error.
    public var clip = true
    /// Clipping ratios r = 1 − i (1 − clipMinRatio) / clipSteps for i in 0 ..< clipSteps.
    public var clipSteps = 20
    public var clipMinRatio: Float = 0.5
    public init() {}
}

/// Activation-aware weight quantization (AWQ, Lin et al. 2023) for the linear layers that read one input:
/// weights of input channels that see large activations matter more, so each input channel j is scaled by
/// s_j = x̄_j^α before rounding (W' = Q(W · diag(s)) · diag(s)⁻¹, the division folded into whatever produces the
/// input), with x̄_j the mean |x_j| over the calibration tokens. α is searched over a grid, minimising the squared
/// output error ‖X W'ᵀ − X Wᵀ‖² summed over the layers sharing the input (AWQ §3.2, eq. 4–5). The scales are
/// normalised by √(max s · min s) as the reference implementation does, so they stay near 1.
public enum AWQScaleSearch {
    public struct Result {
        public var scales: [Float]
        public var alpha: Float
        /// Output error at the chosen α and at α = 0 (plain rounding), for the log.
        public var error: Double
        public var plainError: Double
    }

    /// `weights`: the layers' f32 weights, each [rows × n]; `x`: sample inputs [tokens × n]; `meanAbs`: x̄ [n].
    public static func search(weights: [(rows: Int, values: [Float])], n: Int, x: UnsafePointer<Float>, tokens: Int,
                              meanAbs: [Float], grid: BlockGrid, options: AWQOptions, pool: WorkerPool) throws -> Result {
        let matmul = Matmul(pool: pool)
        // Reference outputs X Wᵀ, once per layer.
        var references: [[Float]] = []
        for w in weights {
            var y = [Float](repeating: 0, count: tokens * w.rows)
            try product(w.values, rows: w.rows, n: n, x: x, tokens: tokens, into: &y, matmul: matmul)
            references.append(y)
        }
        let xbar = meanAbs.map { max($0, 1e-4) }
        var best = Result(scales: [Float](repeating: 1, count: n), alpha: 0, error: .infinity, plainError: .infinity)
        for i in 0 ..< max(1, options.gridSize) {
            let alpha = Float(i) / Float(max(1, options.gridSize))
            var s = xbar.map { powf($0, alpha) }
            let norm = (s.max()! * s.min()!).squareRoot()
            s = s.map { max($0 / norm, 1e-4) }
            var error = 0.0
            for (li, w) in weights.enumerated() {
                let q = roundTrip(w.values, rows: w.rows, n: n, scales: s, grid: grid, pool: pool)
                var y = [Float](repeating: 0, count: tokens * w.rows)
                try product(q, rows: w.rows, n: n, x: x, tokens: tokens, into: &y, matmul: matmul)
                let r = references[li]
                var e = 0.0
                for k in 0 ..< y.count { let d = Double(y[k] - r[k]); e += d * d }
                error += e
            }
            if i == 0 { best.plainError = error }
            if error < best.error { best = Result(scales: s, alpha: alpha, error: error, plainError: best.plainError) }
        }
        return best
    }

    /// Q(W · diag(s)) · diag(s)⁻¹ in f32: what the layer computes after scaling and rounding.
    static func roundTrip(_ w: [Float], rows: Int, n: Int, scales s: [Float], grid: BlockGrid, pool: WorkerPool) -> [Float] {
        var out = [Float](repeating: 0, count: rows * n)
        let rowBytes = grid.type.rowBytes(elements: n)!
        w.withUnsafeBufferPointer { wp in
            out.withUnsafeMutableBufferPointer { op in
                let (src, dst) = (wp.baseAddress!, op.baseAddress!)
                pool.parallelFor(rows, granularity: 8) { range in
                    let scaled = UnsafeMutablePointer<Float>.allocate(capacity: n)
                    let block = UnsafeMutableRawPointer.allocate(byteCount: rowBytes, alignment: 16)
                    defer { scaled.deallocate(); block.deallocate() }
                    for r in range {
                        for j in 0 ..< n { scaled[j] = src[r * n + j] * s[j] }
                        RTNQuantizer.quantize(scaled, count: n, grid: grid, into: block)
                        try? Codecs.dequantize(grid.type, UnsafeRawBufferPointer(start: block, count: rowBytes),
                                               into: UnsafeMutableBufferPointer(start: dst + r * n, count: n))
                        for j in 0 ..< n { dst[r * n + j] /= s[j] }
                    }
                }
            }
        }
        return out
    }

    /// y [tokens × rows] = X Wᵀ with W in f32.
    static func product(_ w: [Float], rows: Int, n: Int, x: UnsafePointer<Float>, tokens: Int, into y: inout [Float],
                        matmul: Matmul) throws {
        try w.withUnsafeBytes { wb in
            let m = try WeightMatrix(name: "awq", type: .f32, data: wb, rows: rows, columns: n)
            try y.withUnsafeMutableBufferPointer { try matmul(m, x, tokens: tokens, $0.baseAddress!) }
        }
    }
}

/// Mean |x| per channel over all calibration tokens, plus the first `keep` tokens' rows as the search sample.
final class ActivationSample {
    let n: Int
    let keep: Int
    private(set) var sumAbs: [Double]
    private(set) var count = 0
    private(set) var rows: [Float] = []

    init(n: Int, keep: Int) {
        self.n = n
        self.keep = keep
        sumAbs = [Double](repeating: 0, count: n)
    }

    func add(_ x: UnsafePointer<Float>, tokens: Int) {
        for t in 0 ..< tokens { for j in 0 ..< n { sumAbs[j] += Double(abs(x[t * n + j])) } }
        let take = min(tokens, (keep - rows.count / n))
        if take > 0 { rows.append(contentsOf: UnsafeBufferPointer(start: x, count: take * n)) }
        count += tokens
    }

    var meanAbs: [Float] { sumAbs.map { Float($0 / Double(max(count, 1))) } }
    var sampleTokens: Int { rows.count / n }
}
