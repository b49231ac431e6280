/// Choosing the scale of an IQ4_NL block (32 weights, w = d · level[q] with 16 fixed non-uniform levels), or of a
/// group of a Squish non-linear type (`SQ4N_G<g>`: the same levels, one scale per 64, 128 or 256 weights).
///
/// Because the levels are not evenly spaced, the best d is not simply max|x| / 127. The search:
///  1. Let s be the weight of largest magnitude. Candidate scales map s onto (or near) one of the two extreme
///     levels: d₀ = s / T with T in {-127 + 2k} and {113 + 2k}, k = -2 ... 2 (ten candidates; s may land on
///     either end of the asymmetric grid).
///  2. For each candidate, give every weight its nearest level l_i = level[nearest(x_i / d₀)], then refit the
///     scale by weighted least squares with those levels fixed: d = Σ wᵢ xᵢ lᵢ / Σ wᵢ lᵢ², rounded to f16.
///  3. Score the candidate by its weighted squared error Σ wᵢ (xᵢ − d lᵢ)² = Σwx² − 2dΣwxl + d²Σwl² and keep the best.
/// The caller then assigns each weight its nearest level under the chosen d (which can only lower the error further).
/// Weights wᵢ default to 1 (plain squared error); an importance vector (e.g. Σx² of the activations) can be given.
public enum IQ4NLScale {
    /// ggml's `kvalues_iq4nl`, ascending.
    public static let levels: [Float] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]
    /// Index of the level nearest 0 (level 1).
    public static let zeroIndex: UInt8 = 8

    /// Nearest level for t in [-128, 128) by half-unit bins: every midpoint between two adjacent levels is a
    /// multiple of 0.5, so the nearest level is constant on each bin [k/2, (k+1)/2).
    private static let nearestTable: [UInt8] = (0 ..< 512).map { bin in
        let t = (Float(bin) + 0.5) / 2 - 128  // centre of the bin
        var best = 0
        for i in 1 ..< 16 where abs(levels[i] - t) < abs(levels[best] - t) { best = i }
        return UInt8(best)
    }

    @inline(__always)
    public static func nearest(_ t: Float) -> UInt8 {
        let bin = (2 * t + 256).rounded(.down)
        guard bin > 0 else { return 0 }  // also catches NaN
        guard bin < 511 else { return 15 }
        return nearestTable.withUnsafeBufferPointer { $0[Int(bin)] }
    }

    /// The f16-representable scale for `count` weights `x`, with optional per-weight importance.
    public static func search(_ x: UnsafePointer<Float>, count: Int = 32, importance: UnsafePointer<Float>?) -> Float {
        var s: Float = 0
        for i in 0 ..< count where abs(x[i]) > abs(s) { s = x[i] }
        guard s != 0, s.isFinite else { return 0 }
        var best: Float = 0
        var bestError = Float.infinity
        levels.withUnsafeBufferPointer { lv in
            for end: Float in [-127, 113] {
                for k in -2 ... 2 {
                    let inv = (end + 2 * Float(k)) / s  // 1 / d₀
                    var sxl: Float = 0, sll: Float = 0, sxx: Float = 0
                    for i in 0 ..< count {
                        let w = importance?[i] ?? 1
                        let l = lv[Int(nearest(x[i] * inv))]
                        sxl += w * x[i] * l
                        sll += w * l * l
                        sxx += w * x[i] * x[i]
                    }
                    guard sll > 0 else { continue }
                    let d = roundToF16(sxl / sll)
                    let err = sxx - 2 * d * sxl + d * d * sll
                    if err < bestError { bestError = err; best = d }
                }
            }
        }
        return best
    }
}

/// The parameters of a Squish non-linear type with sub-scales (`SQ4NX_G<g>`): one f16 d per group and a signed 6-bit
/// multiplier m per 32 weights, each 32 weights scaled by f16(d · m) (IQ4_XS's idea with groups of 128 or 256).
extension IQ4NLScale {
    /// The multipliers' range (6 bits, stored as m + 32).
    public static let multiplierRange: ClosedRange<Int32> = -32 ... 31

    /// The scale of 32 weights with multiplier `m`: the f32 product rounded to f16, the value a decoder uses (so the
    /// weights convert exactly to IQ4_NL blocks, which store that f16).
    @inline(__always)
    public static func subScale(_ d: Float, _ m: Int32) -> Float { roundToF16(d * Float(m)) }

    /// Weighted squared error of the 32 weights at `x` given each its nearest level under `scale`.
    static func roundingError(_ x: UnsafePointer<Float>, scale: Float, importance: UnsafePointer<Float>?) -> Float {
        var e: Float = 0
        levels.withUnsafeBufferPointer { lv in
            for i in 0 ..< 32 {
                let v = scale == 0 ? 0 : scale * lv[Int(nearest(x[i] / scale))]
                e += (importance?[i] ?? 1) * (x[i] - v) * (x[i] - v)
            }
        }
        return e
    }

    /// d and the multipliers (`scales[s]` for the 32 weights from 32 s) of `count` weights (a multiple of 32, at
    /// most 512), with optional per-weight importance. Each 32 weights' own best scale σₛ comes from `search`; d is
    /// max |σ| / 31 (and 2% either side) rounded to f16; every σₛ is rounded to a multiple m of d and m ± 1 tried;
    /// the candidate of least total error wins.
    public static func searchSubScaled(_ x: UnsafePointer<Float>, count: Int, importance: UnsafePointer<Float>?) -> KQuantParameters {
        let subBlocks = count / 32
        precondition(count % 32 == 0 && subBlocks <= 16, "SQ4NX groups hold at most 16 sub-blocks of 32")
        var sigma = SIMD16<Float>()
        var biggest: Float = 0
        for s in 0 ..< subBlocks {
            sigma[s] = search(x + 32 * s, count: 32, importance: importance.map { $0 + 32 * s })
            biggest = max(biggest, abs(sigma[s]))
        }
        var best = KQuantParameters()
        guard biggest > 0 else { return best }
        var bestError = Float.infinity
        for factor: Float in [1, 0.98, 1.02] {
            let d = roundToF16(biggest * factor / 31)
            guard d > 0, d.isFinite else { continue }
            var candidate = KQuantParameters()
            candidate.d = d
            var total: Float = 0
            for s in 0 ..< subBlocks {
                let xs = x + 32 * s, ws = importance.map { $0 + 32 * s }
                let m0 = Int32(max(Float(multiplierRange.lowerBound), min(Float(multiplierRange.upperBound), (sigma[s] / d).rounded())))
                var bestM = m0, bestSub = Float.infinity
                for m in max(multiplierRange.lowerBound, m0 - 1) ... min(multiplierRange.upperBound, m0 + 1) {
                    let e = roundingError(xs, scale: subScale(d, m), importance: ws)
                    if e < bestSub { bestSub = e; bestM = m }
                }
                candidate.scales[s] = bestM
                total += bestSub
            }
            if total < bestError { bestError = total; best = candidate }
        }
        return best
    }
}
