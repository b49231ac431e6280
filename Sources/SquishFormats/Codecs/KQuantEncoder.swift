import SquishCore

// K-quant encoders (Q2_K ... Q6_K): Squish's own weighted least-squares fit, written from the block layouts
// documented in KQuants.swift. The idea follows the k-quants of ggml PR #1684: each sub-block gets a fitted
// scale (and minimum), those are quantized to small integers relative to f16 super-block factors d / dmin,
// and the weights are then rounded again with the quantized scales.
//
// Steps for one 256-weight super-block (weights w_i >= 0, 1 when no importance is given):
//  1. Per sub-block, a continuous fit: for ~21 candidate ranges around the min/max (or max |x|) mapping,
//     round, then solve the weighted least-squares problem for scale (and minimum) given those codes; keep the
//     candidate with the lowest weighted squared error.
//  2. d (and dmin) = largest sub-block scale (minimum) / the largest integer scale, rounded to f16.
//  3. Per sub-block, the integer scale (and minimum) among the nearest ones to scale / d that gives the lowest
//     error with the weights rounded again; then d (and dmin) refit by least squares over the whole super-block
//     with the integers and codes fixed. Steps 3 repeat a few times; the best of all rounds is kept.

/// One K-quant format's grid: sub-block size, code range, integer scale range, presence of a minimum.
public struct KQuantFormat: Sendable, Equatable {
    public let type: GGMLType
    public let subBlockSize: Int     // 16 or 32
    public let codeRange: ClosedRange<Int32>   // q: value = d * sc * q - dmin * m
    public let scaleRange: ClosedRange<Int32>  // integer sub-block scale sc
    public let hasMinimum: Bool      // Q2_K, Q4_K, Q5_K store a non-negative integer minimum m per sub-block

    public var subBlocks: Int { 256 / subBlockSize }

    public init?(_ type: GGMLType) {
        switch type {
        case .q2_K: self.init(type, 16, 0 ... 3, 0 ... 15, true)
        case .q3_K: self.init(type, 16, -4 ... 3, -32 ... 31, false)
        case .q4_K: self.init(type, 32, 0 ... 15, 0 ... 63, true)
        case .q5_K: self.init(type, 32, 0 ... 31, 0 ... 63, true)
        case .q6_K: self.init(type, 16, -32 ... 31, -128 ... 127, false)
        default: return nil
        }
    }

    private init(_ type: GGMLType, _ sub: Int, _ codes: ClosedRange<Int32>, _ scales: ClosedRange<Int32>, _ hasMin: Bool) {
        self.type = type
        subBlockSize = sub
        codeRange = codes
        scaleRange = scales
        hasMinimum = hasMin
    }
}

/// The fitted parameters of one super-block, as stored (d and dmin are f16 values), so that `value` is exactly
/// what the decoder in KQuants.swift produces.
public struct KQuantParameters: Sendable, Equatable {
    public var d: Float = 0
    public var dmin: Float = 0
    public var scales = SIMD16<Int32>()  // [subBlocks] integer scales (signed for Q3_K / Q6_K)
    public var mins = SIMD16<Int32>()    // [subBlocks] integer minimums (0 for Q3_K / Q6_K)
    public init() {}

    /// The step of sub-block `s`: d · sc (the decoders' first product).
    @inline(__always) public func step(_ s: Int) -> Float { d * Float(scales[s]) }
    /// The offset of sub-block `s`: dmin · m.
    @inline(__always) public func offset(_ s: Int) -> Float { dmin * Float(mins[s]) }
}

extension KQuantFormat {
    /// The nearest code to `x` in sub-block `s` (0 where the sub-block's step is 0).
    @inline(__always)
    public func code(_ x: Float, _ p: KQuantParameters, subBlock s: Int) -> Int32 {
        code(x, step: p.step(s), offset: p.offset(s))
    }

    @inline(__always)
    func code(_ x: Float, step: Float, offset: Float) -> Int32 {
        guard step != 0 else { return 0 }
        let q = ((x + offset) / step).rounded()
        guard q.isFinite else { return 0 }
        return Int32(min(max(q, Float(codeRange.lowerBound)), Float(codeRange.upperBound)))
    }

    /// The decoded weight for `code` in sub-block `s` (the decoders' f32 expression).
    @inline(__always)
    public func value(_ code: Int32, _ p: KQuantParameters, subBlock s: Int) -> Float {
        p.step(s) * Float(code) - p.offset(s)
    }

    /// Fits a super-block's parameters to `x[0 ..< 256]`, with optional per-weight importance `weights[0 ..< 256]`
    /// (non-negative; imatrix style: the fit minimizes Σ w (x − x̂)²).
    public func fit(_ x: UnsafePointer<Float>, weights: UnsafePointer<Float>? = nil) -> KQuantParameters {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 256 + 2 * 16) { tmp in
            let w = tmp.baseAddress!           // [256] weights in use
            let subScale = w + 256             // [subBlocks] continuous scales
            let subMin = w + 256 + 16          // [subBlocks] continuous minimums (as positive offsets)
            let n = subBlockSize
            for s in 0 ..< subBlocks {
                var total: Float = 0
                for i in s * n ..< (s + 1) * n {
                    let wi = weights.map { max($0[i], 0) } ?? 1
                    w[i] = wi.isFinite ? wi : 0
                    total += w[i]
                }
                // A sub-block of zero importance is still fitted, with unit weights.
                if !(total > 0) { for i in s * n ..< (s + 1) * n { w[i] = 1 } }
                let (a, m) = hasMinimum ? fitAffine(x + s * n, w + s * n) : (fitSymmetric(x + s * n, w + s * n), 0)
                subScale[s] = a
                subMin[s] = m
            }
            return quantizeScales(x, w, subScale, subMin)
        }
    }

    /// Continuous fit of value = a·q − m (q in codeRange, m >= 0) to one sub-block; returns (a, m).
    private func fitAffine(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>) -> (Float, Float) {
        let n = subBlockSize
        var lo = x[0], hi = x[0]
        for i in 1 ..< n { lo = min(lo, x[i]); hi = max(hi, x[i]) }
        lo = min(lo, 0)  // the stored minimum is subtracted and non-negative: the grid always reaches down to <= 0
        guard hi > lo, (hi - lo).isFinite else { return (0, -lo) }
        let nmax = Float(codeRange.upperBound)
        var bestA = (hi - lo) / nmax, bestB = lo
        var bestErr = Double.infinity
        for step in -10 ... 10 {
            let iscale = (nmax + 0.1 * Float(step)) / (hi - lo)
            var sw = 0.0, sq = 0.0, sqq = 0.0, sx = 0.0, sqx = 0.0
            for i in 0 ..< n {
                let q = Double(min(max(((x[i] - lo) * iscale).rounded(), 0), nmax))
                let wi = Double(w[i]), xi = Double(x[i])
                sw += wi; sq += wi * q; sqq += wi * q * q; sx += wi * xi; sqx += wi * q * xi
            }
            let det = sw * sqq - sq * sq
            guard det > 0 else { continue }
            var a = (sw * sqx - sq * sx) / det
            var b = (sqq * sx - sq * sqx) / det
            if b > 0 { b = 0; a = sqq > 0 ? sqx / sqq : 0 }
            guard a > 0 else { continue }
            let (fa, fb) = (Float(a), Float(b))
            var err = 0.0
            for i in 0 ..< n {
                let q = min(max(((x[i] - fb) / fa).rounded(), 0), nmax)
                let e = Double(fa * q + fb - x[i])
                err += Double(w[i]) * e * e
            }
            if err < bestErr { bestErr = err; bestA = fa; bestB = fb }
        }
        return (bestA, -bestB)
    }

    /// Continuous fit of value = a·q (q in codeRange, which has one more negative level) to one sub-block.
    private func fitSymmetric(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>) -> Float {
        let n = subBlockSize
        var amax: Float = 0
        for i in 0 ..< n { amax = max(amax, abs(x[i])) }
        guard amax > 0, amax.isFinite else { return 0 }
        let qlo = Float(codeRange.lowerBound), qhi = Float(codeRange.upperBound)
        var best = amax / -qlo
        var bestErr = Double.infinity
        // Both orientations: the largest magnitude on the extra negative level or on the positive side.
        for sign: Float in [-1, 1] {
            for step in -10 ... 10 {
                let iscale = sign * (-qlo + 0.1 * Float(step)) / amax
                var sqq = 0.0, sqx = 0.0
                for i in 0 ..< n {
                    let q = Double(min(max((x[i] * iscale).rounded(), qlo), qhi))
                    sqq += Double(w[i]) * q * q; sqx += Double(w[i]) * q * Double(x[i])
                }
                guard sqq > 0 else { continue }
                let a = Float(sqx / sqq)
                guard a != 0 else { continue }
                var err = 0.0
                for i in 0 ..< n {
                    let e = Double(a * min(max((x[i] / a).rounded(), qlo), qhi) - x[i])
                    err += Double(w[i]) * e * e
                }
                if err < bestErr { bestErr = err; best = a }
            }
        }
        return best
    }

    /// Steps 2-3: integer sub-block scales relative to f16 d / dmin, refined a few rounds.
    private func quantizeScales(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                                _ subScale: UnsafePointer<Float>, _ subMin: UnsafePointer<Float>) -> KQuantParameters {
        let n = subBlockSize, count = subBlocks
        var p = KQuantParameters()
        // Symmetric formats: d carries the sign of the largest-magnitude scale, which maps to the extra negative
        // integer; formats with a minimum: scales and minimums are non-negative.
        var big: Float = 0, bigMin: Float = 0
        for s in 0 ..< count {
            if abs(subScale[s]) > abs(big) { big = subScale[s] }
            bigMin = max(bigMin, subMin[s])
        }
        // The largest integer scale, lowered for tiny scales so that d stays an f16 normal number where it can
        // (subnormal f16 keeps too few significant bits).
        func top(_ v: Float, _ bound: Int32) -> Float {
            let b = Float(bound), minNormal: Float = 6.103515625e-05
            return abs(v / b) >= minNormal ? b : (b < 0 ? -1 : 1) * max(1, min(abs(b), (abs(v) / minNormal).rounded(.down)))
        }
        if hasMinimum {
            p.d = f16Finite(max(big, 0) / top(big, scaleRange.upperBound))
            p.dmin = f16Finite(bigMin / top(bigMin, scaleRange.upperBound))
        } else {
            p.d = f16Finite(big / top(big, scaleRange.lowerBound))
        }
        guard p.d != 0 || p.dmin != 0 else { return p }

        var best = p
        var bestErr = Double.infinity
        for round in 0 ..< 3 {
            // Integers nearest to the continuous fit, then the best of their neighbours with the weights re-rounded.
            for s in 0 ..< count {
                let xs = x + s * n, ws = w + s * n
                let sc0 = nearest(subScale[s], p.d, scaleRange)
                let m0 = hasMinimum ? nearest(subMin[s], p.dmin, 0 ... scaleRange.upperBound) : 0
                var bs = sc0, bm = m0, be = Double.infinity
                for sc in max(sc0 - 1, scaleRange.lowerBound) ... min(sc0 + 1, scaleRange.upperBound) {
                    for m in (hasMinimum ? max(m0 - 1, 0) ... min(m0 + 1, scaleRange.upperBound) : 0 ... 0) {
                        let e = error(xs, ws, step: p.d * Float(sc), offset: p.dmin * Float(m))
                        if e < be { be = e; bs = sc; bm = m }
                    }
                }
                p.scales[s] = bs
                p.mins[s] = bm
            }
            var err = 0.0
            for s in 0 ..< count { err += error(x + s * n, w + s * n, step: p.step(s), offset: p.offset(s)) }
            if err < bestErr { bestErr = err; best = p }
            if round == 2 { break }
            // Least-squares d (and dmin) over the super-block with integers and codes fixed:
            // minimize Σ w (d·A − dmin·B − x)², A = sc·q, B = m.
            var sAA = 0.0, sAB = 0.0, sBB = 0.0, sAx = 0.0, sBx = 0.0
            for s in 0 ..< count {
                let sc = Double(p.scales[s]), m = Double(p.mins[s])
                let step = p.step(s), offset = p.offset(s)
                for i in s * n ..< (s + 1) * n {
                    let a = sc * Double(code(x[i], step: step, offset: offset)), wi = Double(w[i]), xi = Double(x[i])
                    sAA += wi * a * a; sAB -= wi * a * m; sBB += wi * m * m; sAx += wi * a * xi; sBx -= wi * m * xi
                }
            }
            let det = sAA * sBB - sAB * sAB
            if hasMinimum, sBB > 0, det > 1e-12 * sAA * sBB {
                p.d = f16Finite(Float((sBB * sAx - sAB * sBx) / det))
                p.dmin = f16Finite(Float((sAA * sBx - sAB * sAx) / det))
            } else if sAA > 0 {
                p.d = f16Finite(Float(sAx / sAA))
            } else {
                break
            }
            // Recompute the continuous fits' integers against the new d / dmin in the next round.
        }
        return best
    }

    /// Σ w (x − x̂)² over one sub-block rounded with `step` / `offset`.
    @inline(__always)
    private func error(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, step: Float, offset: Float) -> Double {
        var e = 0.0
        for i in 0 ..< subBlockSize {
            let d = Double(step * Float(code(x[i], step: step, offset: offset)) - offset - x[i])
            e += Double(w[i]) * d * d
        }
        return e
    }

    // MARK: packing

    /// Writes one block from its parameters and 256 codes (each within `codeRange`), in the layouts of KQuants.swift.
    public func pack(_ p: KQuantParameters, codes q: UnsafePointer<Int32>, into block: UnsafeMutableRawPointer) {
        func byte(_ v: Int32) -> UInt8 { UInt8(truncatingIfNeeded: v) }
        func put(_ v: UInt8, _ at: Int) { block.storeBytes(of: v, toByteOffset: at, as: UInt8.self) }
        switch type {
        case .q2_K:
            for s in 0 ..< 16 { put(byte(p.scales[s] | p.mins[s] << 4), s) }
            for g in 0 ..< 2 {
                for k in 0 ..< 32 {
                    var b: Int32 = 0
                    for j in 0 ..< 4 { b |= q[128 * g + 32 * j + k] << (2 * j) }
                    put(byte(b), 16 + 32 * g + k)
                }
            }
            storeF16(p.d, block, 80); storeF16(p.dmin, block, 82)
        case .q3_K:
            // Codes q + 4 in 0...7: two low bits in qs, the high bit in hmask.
            for k in 0 ..< 32 {
                var h: Int32 = 0
                for g in 0 ..< 2 { for j in 0 ..< 4 { h |= ((q[128 * g + 32 * j + k] + 4) >> 2) << (4 * g + j) } }
                put(byte(h), k)
            }
            for g in 0 ..< 2 {
                for k in 0 ..< 32 {
                    var b: Int32 = 0
                    for j in 0 ..< 4 { b |= ((q[128 * g + 32 * j + k] + 4) & 3) << (2 * j) }
                    put(byte(b), 32 + 32 * g + k)
                }
            }
            for i in 96 ..< 108 { put(0, i) }
            for s in 0 ..< 16 {
                let u = UInt8(truncatingIfNeeded: p.scales[s] + 32), lo = 96 + (s & 7), hi = 104 + (s & 3)
                put(block.load(fromByteOffset: lo, as: UInt8.self) | (u & 15) << UInt8(4 * (s >> 3)), lo)
                put(block.load(fromByteOffset: hi, as: UInt8.self) | (u >> 4) << UInt8(2 * (s >> 2)), hi)
            }
            storeF16(p.d, block, 108)
        case .q4_K, .q5_K:
            storeF16(p.d, block, 0); storeF16(p.dmin, block, 2)
            for s in 0 ..< 4 {
                let sc = byte(p.scales[s]), m = byte(p.mins[s]), sc2 = byte(p.scales[s + 4]), m2 = byte(p.mins[s + 4])
                put(sc | (sc2 >> 4) << 6, 4 + s)
                put(m | (m2 >> 4) << 6, 4 + s + 4)
                put((sc2 & 15) | (m2 & 15) << 4, 4 + s + 8)
            }
            let qs = type == .q4_K ? 16 : 48
            for g in 0 ..< 4 {
                for k in 0 ..< 32 {
                    put(byte((q[64 * g + k] & 15) | (q[64 * g + 32 + k] & 15) << 4), qs + 32 * g + k)
                }
            }
            if type == .q5_K {
                for k in 0 ..< 32 {
                    var h: Int32 = 0
                    for s in 0 ..< 8 { h |= (q[32 * s + k] >> 4 & 1) << s }
                    put(byte(h), 16 + k)
                }
            }
        case .q6_K:
            for i in 0 ..< 192 { put(0, i) }
            for g in 0 ..< 2 {
                for r in 0 ..< 128 {
                    let u = UInt8(truncatingIfNeeded: q[128 * g + r] + 32)
                    let lo = 64 * g + r % 64, hi = 128 + 32 * g + r % 32
                    put(block.load(fromByteOffset: lo, as: UInt8.self) | (u & 15) << UInt8(4 * (r / 64)), lo)
                    put(block.load(fromByteOffset: hi, as: UInt8.self) | (u >> 4) << UInt8(2 * (r / 32)), hi)
                }
            }
            for s in 0 ..< 16 { put(byte(p.scales[s]), 192 + s) }
            storeF16(p.d, block, 208)
        default:
            preconditionFailure("\(type) is not a K-quant")
        }
    }

    /// Fit, round every weight with the quantized scales, pack. `rounded` (optional) receives the 256 decoded values.
    public func encode(_ x: UnsafePointer<Float>, weights: UnsafePointer<Float>? = nil, into block: UnsafeMutableRawPointer,
                       rounded: UnsafeMutablePointer<Float>? = nil) {
        let p = fit(x, weights: weights)
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 256) { codes in
            for s in 0 ..< subBlocks {
                let step = p.step(s), offset = p.offset(s)
                for i in s * subBlockSize ..< (s + 1) * subBlockSize {
                    codes[i] = code(x[i], step: step, offset: offset)
                    rounded?[i] = step * Float(codes[i]) - offset
                }
            }
            pack(p, codes: codes.baseAddress!, into: block)
        }
    }
}

/// The integer nearest to v / d within `range` (the range's value nearest to zero when d is 0 or v / d is not finite).
@inline(__always)
private func nearest(_ v: Float, _ d: Float, _ range: ClosedRange<Int32>) -> Int32 {
    let r = (v / d).rounded()
    guard r.isFinite else { return min(max(0, range.lowerBound), range.upperBound) }
    return Int32(min(max(r, Float(range.lowerBound)), Float(range.upperBound)))
}

/// f32 rounded to f16, kept finite (magnitudes beyond the f16 range become ±65504, NaN becomes 0).
@inline(__always)
private func f16Finite(_ x: Float) -> Float {
    guard !x.isNaN else { return 0 }
    return HalfFloat.toFloat(HalfFloat.fromFloat(min(max(x, -65504), 65504)))
}

extension Codecs {
    /// Encodes `src` (whole 256-weight super-blocks) as a K-quant with optional per-weight importance
    /// (`importance.count == src.count`, non-negative; the fit minimizes the importance-weighted squared error).
    public static func quantizeKQuant(_ t: GGMLType, _ src: UnsafeBufferPointer<Float>, importance: UnsafeBufferPointer<Float>?,
                                      into dst: UnsafeMutableRawBufferPointer) throws {
        guard let format = KQuantFormat(t) else { throw FormatError.unsupportedType(t, operation: "K-quant quantize") }
        let blocks = try blockCount(t, elements: src.count, bytes: dst.count)
        if let importance, importance.count != src.count {
            throw FormatError.sizeMismatch(type: t, elements: src.count, bytes: dst.count,
                                           reason: "importance has \(importance.count) values, expected \(src.count)")
        }
        guard blocks > 0, let s = src.baseAddress, let d = dst.baseAddress else { return }
        for b in 0 ..< blocks {
            format.encode(s + 256 * b, weights: importance?.baseAddress.map { $0 + 256 * b }, into: d + b * t.blockBytes)
        }
    }

    public static func quantizeKQuant(_ t: GGMLType, _ src: [Float], importance: [Float]?) throws -> [UInt8] {
        let blocks = try blockCount(t, elements: src.count, bytes: nil)
        var out = [UInt8](repeating: 0, count: blocks * t.blockBytes)
        try src.withUnsafeBufferPointer { s in
            try out.withUnsafeMutableBytes { o in
                if let importance {
                    try importance.withUnsafeBufferPointer { try quantizeKQuant(t, s, importance: $0, into: o) }
                } else {
                    try quantizeKQuant(t, s, importance: nil, into: o)
                }
            }
        }
        return out
    }
}

// The K-quant codecs encode through their format (no importance).
extension BlockQ2_K: BlockEncoder { static func encode(_ x: UnsafePointer<Float>, _ b: UnsafeMutableRawPointer) { KQuantFormat(.q2_K)!.encode(x, into: b) } }
extension BlockQ3_K: BlockEncoder { static func encode(_ x: UnsafePointer<Float>, _ b: UnsafeMutableRawPointer) { KQuantFormat(.q3_K)!.encode(x, into: b) } }
extension BlockQ4_K: BlockEncoder { static func encode(_ x: UnsafePointer<Float>, _ b: UnsafeMutableRawPointer) { KQuantFormat(.q4_K)!.encode(x, into: b) } }
extension BlockQ5_K: BlockEncoder { static func encode(_ x: UnsafePointer<Float>, _ b: UnsafeMutableRawPointer) { KQuantFormat(.q5_K)!.encode(x, into: b) } }
extension BlockQ6_K: BlockEncoder { static func encode(_ x: UnsafePointer<Float>, _ b: UnsafeMutableRawPointer) { KQuantFormat(.q6_K)!.encode(x, into: b) } }
