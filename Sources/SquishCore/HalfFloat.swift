/// IEEE 754 binary16 and bfloat16 conversions done on bit patterns, exact and portable
/// (round to nearest even on narrowing, NaN kept NaN), matching numpy's `astype`.
public enum HalfFloat {
    /// binary16 bits -> Float (exact).
    @inline(__always)
    public static func toFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = UInt32(h >> 10) & 0x1f
        let mant = UInt32(h) & 0x3ff
        if exp == 0 {
            if mant == 0 { return Float(bitPattern: sign) }
            // Subnormal: value = mant * 2^-24.
            let v = Float(mant) * (1.0 / 16_777_216.0)
            return sign != 0 ? -v : v
        }
        if exp == 0x1f {
            return Float(bitPattern: sign | 0x7f80_0000 | (mant << 13))
        }
        return Float(bitPattern: sign | ((exp + 112) << 23) | (mant << 13))
    }

    /// Float -> binary16 bits, round to nearest even; overflow gives infinity.
    @inline(__always)
    public static func fromFloat(_ f: Float) -> UInt16 {
        let x = f.bitPattern
        let sign = UInt16((x >> 16) & 0x8000)
        let exp = Int((x >> 23) & 0xff)
        var mant = x & 0x7f_ffff
        if exp == 0xff {
            return sign | 0x7c00 | (mant != 0 ? UInt16(0x200 | (mant >> 13)) : 0)
        }
        let e = exp - 127 + 15
        if e >= 0x1f { return sign | 0x7c00 }
        if e <= 0 {
            // Subnormal or zero in binary16.
            if e < -10 { return sign }
            mant |= 0x80_0000
            let shift = UInt32(14 - e)
            var half = mant >> shift
            let rem = mant & ((1 << shift) - 1)
            let halfway = UInt32(1) << (shift - 1)
            if rem > halfway || (rem == halfway && (half & 1) != 0) { half += 1 }
            return sign | UInt16(half)
        }
        var half = UInt32(e << 10) | (mant >> 13)
        let rem = mant & 0x1fff
        if rem > 0x1000 || (rem == 0x1000 && (half & 1) != 0) { half += 1 }
        return sign | UInt16(half)
    }

    /// bfloat16 bits -> Float (exact).
    @inline(__always)
    public static func bf16ToFloat(_ b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) << 16)
    }

    /// Float -> bfloat16 bits, round to nearest even; NaN becomes a quiet NaN (as gguf-py does).
    @inline(__always)
    public static func bf16FromFloat(_ f: Float) -> UInt16 {
        let n = f.bitPattern
        if (n & 0x7fff_ffff) > 0x7f80_0000 { return UInt16((n >> 16) | 64) }
        return UInt16(truncatingIfNeeded: (n &+ (0x7fff &+ ((n >> 16) & 1))) >> 16)
    }
}
