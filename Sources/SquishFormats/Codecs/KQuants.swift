/// K-quants: super-blocks of 256 weights in 16 or 8 sub-blocks with quantized sub-block scales (ggml's
/// `block_q2_K` … `block_q6_K`). Dequantization only (quantizing to K-quants is the quantizers' job).
enum KQuants {
    /// Q2_K (84 bytes): u8 scales[16] (low nibble scale, high nibble min), u8 qs[64], f16 d, f16 dmin.
    /// Element h·128 + k·32 + j (h < 2, k < 4, j < 32) = (qs[h·32 + j] >> 2k) & 3, sub-block = element / 16.
    static func dequantizeQ2K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadF16(b, 80), dmin = loadF16(b, 82)
        for h in 0 ..< 2 {
            for k in 0 ..< 4 {
                for j in 0 ..< 32 {
                    let e = h * 128 + k * 32 + j
                    let sc = byte(b, e / 16)
                    let dl = d * Float(sc & 0x0F), ml = dmin * Float(sc >> 4)
                    let q = (byte(b, 16 + h * 32 + j) >> UInt8(2 * k)) & 3
                    y[e] = dl * Float(q) - ml
                }
            }
        }
    }

    /// Q3_K (110 bytes): u8 hmask[32], u8 qs[64], u8 scales[12] (16 six-bit scales), f16 d.
    /// q = low 2 bits − 4 when the hmask bit is clear; scale = 6-bit value − 32.
    static func dequantizeQ3K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadF16(b, 108)
        var dl = [Float](repeating: 0, count: 16)
        for i in 0 ..< 16 {
            let low = i < 8 ? byte(b, 96 + i) & 0x0F : byte(b, 96 + i - 8) >> 4
            let high = (byte(b, 96 + 8 + i % 4) >> UInt8(2 * (i / 4))) & 3
            dl[i] = d * Float(Int8(bitPattern: low | high << 4) - 32)
        }
        for h in 0 ..< 2 {
            for k in 0 ..< 4 {
                for j in 0 ..< 32 {
                    let e = h * 128 + k * 32 + j
                    let ql = Int8((byte(b, 32 + h * 32 + j) >> UInt8(2 * k)) & 3)
                    let hbit = ((byte(b, j) >> UInt8(e / 32)) & 1) ^ 1
                    y[e] = dl[e / 16] * Float(ql - Int8(hbit << 2))
                }
            }
        }
    }

    /// The 8 six-bit scales and mins of Q4_K/Q5_K packed in 12 bytes at `at`.
    @inline(__always) static func scaleMin(_ b: UnsafeRawPointer, at: Int, _ i: Int) -> (UInt8, UInt8) {
        if i < 4 {
            return (byte(b, at + i) & 0x3F, byte(b, at + 4 + i) & 0x3F)
        }
        let md = byte(b, at + 8 + i - 4)
        return ((md & 0x0F) | ((byte(b, at + i - 4) >> 2) & 0x30), (md >> 4) | ((byte(b, at + i) >> 2) & 0x30))
    }

    /// Q4_K (144 bytes): f16 d, f16 dmin, u8 scales[12], u8 qs[128]; sub-block s = 2g + k holds
    /// (qs[32g + j] >> 4k) & 15; w = d·sc·q − dmin·m.
    static func dequantizeQ4K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadF16(b), dmin = loadF16(b, 2)
        for s in 0 ..< 8 {
            let (sc, m) = scaleMin(b, at: 4, s)
            let ds = d * Float(sc), dm = dmin * Float(m)
            let g = s / 2, k = s % 2
            for j in 0 ..< 32 {
                let q = (byte(b, 16 + 32 * g + j) >> UInt8(4 * k)) & 0x0F
                y[32 * s + j] = ds * Float(q) - dm
            }
        }
    }

    /// Q5_K (176 bytes): f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]; as Q4_K with bit 4 of sub-block s
    /// element j = (qh[j] >> s) & 1.
    static func dequantizeQ5K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadF16(b), dmin = loadF16(b, 2)
        for s in 0 ..< 8 {
            let (sc, m) = scaleMin(b, at: 4, s)
            let ds = d * Float(sc), dm = dmin * Float(m)
            let g = s / 2, k = s % 2
            for j in 0 ..< 32 {
                let ql = (byte(b, 48 + 32 * g + j) >> UInt8(4 * k)) & 0x0F
                let qh = (byte(b, 16 + j) >> UInt8(s)) & 1
                y[32 * s + j] = ds * Float(ql | qh << 4) - dm
            }
        }
    }

    /// Q6_K (210 bytes): u8 ql[128], u8 qh[64], i8 scales[16], f16 d. Element h·128 + k·64 + j has low bits
    /// (ql[64h + j] >> 4k) & 15 and element h·128 + k·32 + j high bits (qh[32h + j] >> 2k) & 3; q − 32.
    static func dequantizeQ6K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadF16(b, 208)
        var low = [UInt8](repeating: 0, count: 256), high = [UInt8](repeating: 0, count: 256)
        for h in 0 ..< 2 {
            for k in 0 ..< 2 { for j in 0 ..< 64 { low[h * 128 + k * 64 + j] = (byte(b, 64 * h + j) >> UInt8(4 * k)) & 0x0F } }
            for k in 0 ..< 4 { for j in 0 ..< 32 { high[h * 128 + k * 32 + j] = (byte(b, 128 + 32 * h + j) >> UInt8(2 * k)) & 3 } }
        }
        for e in 0 ..< 256 {
            let ds = d * Float(Int8(bitPattern: byte(b, 192 + e / 16)))
            y[e] = ds * Float(Int8(low[e] | high[e] << 4) - 32)
        }
    }
}

/// Non-linear 4-bit: IQ4_NL (18 bytes: f16 d, u8 qs[16]) and IQ4_XS (136 bytes: f16 d, u16 scales_h,
/// u8 scales_l[4], u8 qs[128]); each nibble indexes a fixed table of 16 levels.
enum IQ4 {
    static let levels: [Int8] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]

    static func dequantizeNL(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadF16(b)
        for j in 0 ..< 16 {
            let q = byte(b, 2 + j)
            y[j] = d * Float(levels[Int(q & 0x0F)])
            y[j + 16] = d * Float(levels[Int(q >> 4)])
        }
    }

    static func dequantizeXS(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadF16(b)
        let sh = b.loadUnaligned(fromByteOffset: 2, as: UInt16.self).littleEndian
        for s in 0 ..< 8 {
            let l = (byte(b, 4 + s / 2) >> UInt8(4 * (s % 2))) & 0x0F
            let h = UInt8((sh >> UInt16(2 * s)) & 3)
            let dl = d * Float(Int8(bitPattern: l | h << 4) - 32)
            for j in 0 ..< 16 {
                let q = byte(b, 8 + 16 * s + j)
                y[32 * s + j] = dl * Float(levels[Int(q & 0x0F)])
                y[32 * s + j + 16] = dl * Float(levels[Int(q >> 4)])
            }
        }
    }
}

/// Ternary weights {−1, 0, 1}·d: TQ1_0 (54 bytes: 52 bytes of base-3 digits, 5 per byte stored as
/// ⌈x·256/243⌉, then f16 d) and TQ2_0 (66 bytes: u8 qs[64] with 2 bits per weight, then f16 d).
enum Ternary {
    static let pow3: [UInt8] = [1, 3, 9, 27, 81]

    /// Digits of element e: bytes 0..<32 hold elements k·32 + j (k < 5), bytes 32..<48 elements 160 + k·16 + j,
    /// bytes 48..<52 elements 240 + k·4 + j (k < 4). Digit k of byte x is ((x·3^k mod 256) · 3) >> 8.
    static func dequantizeTQ1(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadF16(b, 52)
        @inline(__always) func digit(_ x: UInt8, _ k: Int) -> Float {
            let v = x &* pow3[k]
            return Float(Int8((UInt16(v) * 3) >> 8) - 1)
        }
        for k in 0 ..< 5 { for j in 0 ..< 32 { y[k * 32 + j] = d * digit(byte(b, j), k) } }
        for k in 0 ..< 5 { for j in 0 ..< 16 { y[160 + k * 16 + j] = d * digit(byte(b, 32 + j), k) } }
        for k in 0 ..< 4 { for j in 0 ..< 4 { y[240 + k * 4 + j] = d * digit(byte(b, 48 + j), k) } }
    }

    /// d = max|x|, q = round-half-away(x/d) + 1 ∈ {0, 1, 2}.
    static func ternaryDigits(_ x: UnsafePointer<Float>) -> (Float, [UInt8]) {
        var d: Float = 0
        for i in 0 ..< 256 { d = max(d, abs(x[i])) }
        let id: Float = d == 0 ? 0 : 1 / d
        let q = (0 ..< 256).map { i -> UInt8 in
            let r = roundHalfAway(x[i] * id)
            return UInt8(Int8(r.isFinite ? max(-1, min(1, r)) : 0) + 1)
        }
        return (d, q)
    }

    static func quantizeTQ1(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
        let (d, q) = ternaryDigits(x)
        func store(_ at: Int, _ v: UInt16) { out.storeBytes(of: UInt8((v * 256 + 242) / 243), toByteOffset: at, as: UInt8.self) }
        let mult: [UInt16] = [81, 27, 9, 3, 1]
        for j in 0 ..< 32 { store(j, (0 ..< 5).reduce(0) { $0 + UInt16(q[$1 * 32 + j]) * mult[$1] }) }
        for j in 0 ..< 16 { store(32 + j, (0 ..< 5).reduce(0) { $0 + UInt16(q[160 + $1 * 16 + j]) * mult[$1] }) }
        for j in 0 ..< 4 { store(48 + j, (0 ..< 4).reduce(0) { $0 + UInt16(q[240 + $1 * 4 + j]) * mult[$1] }) }
        storeF16(out, 52, d)
    }

    /// Element g·128 + k·32 + j is bits 2k…2k+1 of qs[32g + j], stored as q + 1.
    static func dequantizeTQ2(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadF16(b, 64)
        for g in 0 ..< 2 {
            for k in 0 ..< 4 {
                for j in 0 ..< 32 {
                    let q = (byte(b, 32 * g + j) >> UInt8(2 * k)) & 3
                    y[g * 128 + k * 32 + j] = d * Float(Int8(q) - 1)
                }
            }
        }
    }

    static func quantizeTQ2(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
        let (d, q) = ternaryDigits(x)
        for g in 0 ..< 2 {
            for j in 0 ..< 32 {
                var v: UInt8 = 0
                for k in 0 ..< 4 { v |= q[g * 128 + k * 32 + j] << UInt8(2 * k) }
                out.storeBytes(of: v, toByteOffset: 32 * g + j, as: UInt8.self)
            }
        }
        storeF16(out, 64, d)
    }
}
