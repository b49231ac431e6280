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
        // The codec's min/max rule takes the step from the f16-rounded minimum; with many levels (7-8 bits) the f16
        // rounding of m is a sizeable part of a step, so that variant can beat both the one above and the refits.
        let codec = BlockParameters(scale: f16((hi - f16(lo)) / top), minimum: f16(lo))
        let codecError = error(codec)  // infinite when the step rounds to 0
        if codecError < bestError { best = codec; bestError = codecError }
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

/// Chooses the scale d of one symmetric block (w ≈ d · q, q in −top ... top − 1: Q4_0 with top 8, Q5_0 with 16) by
/// importance-weighted least squares.
///
/// The reference rule maps the weight of largest magnitude to −top. The search also tries that weight at other
/// code magnitudes around it (top − 1 ± ½ on either sign, in quarter steps); each candidate fixes the codes, the
/// weighted least-squares scale for those codes is d = Σ wᵢ qᵢ xᵢ / Σ wᵢ qᵢ², rounded to f16, the codes are
/// re-derived from it, and the candidate with the smallest Σ wᵢ (xᵢ − d qᵢ)² wins (the reference rule included, so
/// the result is never worse than it under the weights).
public enum SymmetricFit {
    public static func search(_ x: UnsafePointer<Float>, count n: Int, top: Int, importance: UnsafePointer<Float>?) -> BlockParameters {
        var v: Float = 0
        for i in 0 ..< n where abs(x[i]) > abs(v) { v = x[i] }
        let lo = Float(-top), hi = Float(top - 1)
        @inline(__always) func weight(_ i: Int) -> Float { importance?[i] ?? 1 }
        func error(_ d: Float) -> Float {
            guard d != 0, d.isFinite else { return .infinity }
            var e: Float = 0
            for i in 0 ..< n {
                let r = d * clamp((x[i] / d).rounded(), lo, hi) - x[i]
                e += weight(i) * r * r
            }
            return e
        }
        let reference = f16(v / lo)
        guard v != 0, v.isFinite else { return BlockParameters(scale: reference.isFinite ? reference : 0) }
        var best = reference, bestError = error(reference)
        for step in 0 ... 8 {
            for sign: Float in [-1, 1] {
                let c = sign * (Float(top) - 1.5 + Float(step) * 0.25)  // the largest weight's code, before refitting
                let d0 = v / c
                var sqx: Float = 0, sqq: Float = 0
                for i in 0 ..< n {
                    let q = clamp((x[i] / d0).rounded(), lo, hi)
                    sqx += weight(i) * q * x[i]
                    sqq += weight(i) * q * q
                }
                guard sqq > 0 else { continue }
                let d = f16(sqx / sqq)
                let e = error(d)
                if e < bestError { best = d; bestError = e }
            }
        }
        return BlockParameters(scale: best)
    }
}
