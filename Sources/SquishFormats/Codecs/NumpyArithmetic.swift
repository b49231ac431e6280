import SquishCore

// Scalar helpers that reproduce, bit for bit, the numpy operations the gguf-py reference quantizers use.
// Block fields are little-endian and may sit at any alignment, so every load/store is unaligned.

/// Reads the f16 at `offset` and widens it exactly (numpy `view(float16).astype(float32)`).
@inline(__always)
func loadF16(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    HalfFloat.toFloat(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
}

/// Narrows to f16 like numpy `astype(float16)`: round to nearest even; a NaN keeps its top payload bits
/// (and stays a NaN) rather than being quieted, as numpy's `npy_floatbits_to_halfbits` does.
@inline(__always)
func f16Bits(_ x: Float) -> UInt16 {
    if x.isNaN {
        let bits = x.bitPattern
        var h = UInt16(0x7c00) | UInt16((bits & 0x7f_ffff) >> 13)
        if h == 0x7c00 { h += 1 }
        return UInt16((bits >> 16) & 0x8000) | h
    }
    return HalfFloat.fromFloat(x)
}

@inline(__always)
func storeF16(_ x: Float, _ p: UnsafeMutableRawPointer, _ offset: Int) {
    p.storeBytes(of: f16Bits(x).littleEndian, toByteOffset: offset, as: UInt16.self)
}

/// numpy's float32 -> uint8/int8 `astype` on x86-64: truncate toward zero to an integer and keep its low
/// byte; NaN, infinities and magnitudes >= 2^31 give 0 (the CPU's "integer indefinite" has a zero low byte).
/// Only out-of-range inputs (which the quantizers can produce from infinities or subnormal scales) need this.
@inline(__always)
func numpyLowByte(_ x: Float) -> UInt8 {
    guard x.isFinite, abs(x) < 2_147_483_648 else { return 0 }
    return UInt8(truncatingIfNeeded: Int32(x))
}

/// gguf-py's `np_roundf`: round half away from zero, computed as floor(|x|) + floor(2 * frac(|x|)),
/// with the sign of x re-applied (sign(0) = 0; NaN stays NaN).
@inline(__always)
func numpyRoundAwayFromZero(_ n: Float) -> Float {
    let a = abs(n)
    let floored = a.rounded(.down)
    let b = floored + (2 * (a - floored)).rounded(.down)
    if n.isNaN { return .nan }
    return n > 0 ? b : (n < 0 ? -b : 0)
}

/// `np.where(d == 0, 0, 1 / d)` in float32.
@inline(__always)
func inverseOrZero(_ d: Float) -> Float { d == 0 ? 0 : 1 / d }

/// numpy `max` over a block: NaN if any element is NaN.
@inline(__always)
func blockMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var m = x[0]
    for i in 0 ..< n {
        let v = x[i]
        if v.isNaN { return v }
        if v > m { m = v }
    }
    return m
}

/// numpy `min` over a block: NaN if any element is NaN.
@inline(__always)
func blockMin(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var m = x[0]
    for i in 0 ..< n {
        let v = x[i]
        if v.isNaN { return v }
        if v < m { m = v }
    }
    return m
}

/// numpy `abs(x).max()`: NaN if any element is NaN.
@inline(__always)
func blockAbsMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var m: Float = 0
    for i in 0 ..< n {
        let v = abs(x[i])
        if v.isNaN { return v }
        if v > m { m = v }
    }
    return m
}

/// `x[abs(x).argmax()]`: the signed value of largest magnitude, first one on ties (a NaN wins, as in numpy).
@inline(__always)
func blockSignedAbsMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var best = x[0]
    var bestAbs = abs(best)
    if best.isNaN { return best }
    for i in 1 ..< n {
        let v = x[i]
        if v.isNaN { return v }
        if abs(v) > bestAbs { best = v; bestAbs = abs(v) }
    }
    return best
}
