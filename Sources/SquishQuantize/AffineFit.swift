import SquishFormats

/// Chooses the scale d and minimum m of one affine block (w ≈ d · q + m, q in 0 ... levels) by least squares.
///
/// Min/max rounding wastes levels on outliers. Instead, several candidate step sizes around (max − min) / levels
/// each fix an assignment of codes; for that assignment the best d and m are the least-squares line through
/// (q, x); both are rounded to f16 as the block stores them, the codes are re-derived from the rounded pair, and the
/// pair with the smallest (optionally importance-weighted) squared error wins. This is the idea behind llama.cpp's
/// `make_qkx2_quants` for the K-quants' scale/min pairs, written here for any number of levels.
public enum AffineFit {
    /// Candidate step multipliers: levels + δ for δ in −0.8 ... +0.8 in steps of 0.2 (plus plain min/max); a finer
    /// grid (steps of 0.1 over −1 ... 1) lowers the squared error of Gaussian blocks by only 0.6% (3-bit groups of 32,
    /// 4-bit of 64) to 1% (2-bit of 64), at more than twice the cost; min/max alone is 23-72% worse.
    static let deltas: [Float] = (0 ... 8).map { Float($0 - 4) / 5 }

    public static func search(_ x: UnsafePointer<Float>, count n: Int, levels: Int,
                              importance: UnsafePointer<Float>? = nil) -> BlockParameters {
        var lo = x[0], hi = x[0]
        for i in 1 ..< n { lo = min(lo, x[i]); hi = max(hi, x[i]) }
        guard lo.isFinite, hi.isFinite, hi > lo else { return BlockParameters(scale: 0, minimum: f16(lo.isFinite ? lo : 0)) }
        let top = Float(levels)
        @inline(__always) func weight(_ i: Int) -> Float { importance?[i] ?? 1 }
        func error(_ p: BlockParameters) -> Float {
            guard p.scale > 0 else { return .infinity }
            var e: Float = 0
            for i in 0 ..< n {
                let q = clamp(((x[i] - p.minimum) / p.scale).rounded(), 0, top)
                let r = p.scale * q + p.minimum - x[i]
                e += weight(i) * r * r
            }
            return e
        }
        var best = BlockParameters(scale: f16((hi - lo) / top), minimum: f16(lo))
        var bestError = error(best)
        for delta in deltas {
            let inverse = (top + delta) / (hi - lo)
            // Least squares for d, m given codes q: minimize Σ w (d q + m − x)².
            var sw: Float = 0, sq: Float = 0, sx: Float = 0, sqq: Float = 0, sqx: Float = 0
            for i in 0 ..< n {
                let q = clamp(((x[i] - lo) * inverse).rounded(), 0, top)
                let w = weight(i)
                sw += w; sq += w * q; sx += w * x[i]; sqq += w * q * q; sqx += w * q * x[i]
            }
            let det = sw * sqq - sq * sq
            guard det > 0 else { continue }
            let d = (sw * sqx - sq * sx) / det
            let m = (sx - d * sq) / sw
            guard d > 0, d.isFinite, m.isFinite else { continue }
            let candidate = BlockParameters(scale: f16(d), minimum: f16(m))
            let e = error(candidate)
            if e < bestError { best = candidate; bestError = e }
        }
        return best
    }
}
