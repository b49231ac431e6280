// K-quants: 256-weight super-blocks split into sub-blocks with small integer scales, themselves scaled by
// f16 super-block factors (ggml PR #1684, "k-quants"). Decoding only; the arithmetic order follows
// gguf-py's `dequantize_blocks` (sub-block scale first, then times q, then minus the offset).

/// Q2_K: 16 sub-blocks of 16, w = d * (sc & 15) * q - dmin * (sc >> 4), q in 0...3.
/// Block (84 bytes): scales[16] @0 | qs[64] @16 | d f16 @80 | dmin f16 @82.
/// q[128 g + 32 j + k] = (qs[32 g + k] >> 2j) & 3 for g in 0..<2, j in 0..<4, k in 0..<32.
enum BlockQ2_K: BlockDecoder {
    static let blockElements = 256, blockBytes = 84

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 80)
        let dmin = loadF16(block, 82)
        let qs = block + 16
        // Weight i = 128 g + 32 j + 16 h + k' lies in sub-block s = 8 g + 2 j + h.
        for g in 0 ..< 2 {
            for j in 0 ..< 4 {
                for h in 0 ..< 2 {
                    let s = 8 * g + 2 * j + h
                    let sc = block.load(fromByteOffset: s, as: UInt8.self)
                    let dl = d * Float(sc & 0x0f)
                    let ml = dmin * Float(sc >> 4)
                    for k in 16 * h ..< 16 * h + 16 {
                        let q = (qs.load(fromByteOffset: 32 * g + k, as: UInt8.self) >> UInt8(2 * j)) & 3
                        out[128 * g + 32 * j + k] = dl * Float(q) - ml
                    }
                }
            }
        }
    }
}

/// Q3_K: 16 sub-blocks of 16 with 6-bit signed scales, w = d * (sc - 32) * (q - 4 * !hbit), q in 0...3.
/// Block (110 bytes): hmask[32] @0 | qs[64] @32 | scales[12] @96 | d f16 @108.
/// Scale s: low 4 bits = scales[s % 8] >> (4 * (s / 8)), high 2 bits = scales[8 + s % 4] >> (2 * (s / 4)).
/// q[128 g + 32 j + k] = (qs[32 g + k] >> 2j) & 3; its high bit i / 32 of hmask[i % 32] (set means no -4).
enum BlockQ3_K: BlockDecoder {
    static let blockElements = 256, blockBytes = 110

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 108)
        let hmask = block
        let qs = block + 32
        let scales = block + 96
        // Weight i = 128 g + 32 j + 16 h + k' lies in sub-block s = 8 g + 2 j + h; its high bit is bit i / 32.
        for g in 0 ..< 2 {
            for j in 0 ..< 4 {
                let hshift = UInt8(4 * g + j)
                for h in 0 ..< 2 {
                    let s = 8 * g + 2 * j + h
                    let low = (scales.load(fromByteOffset: s & 7, as: UInt8.self) >> UInt8(4 * (s >> 3))) & 0x0f
                    let high = (scales.load(fromByteOffset: 8 + (s & 3), as: UInt8.self) >> UInt8(2 * (s >> 2))) & 0x03
                    let dl = d * Float(Int8(low | high << 4) - 32)
                    for k in 16 * h ..< 16 * h + 16 {
                        let ql = Int8((qs.load(fromByteOffset: 32 * g + k, as: UInt8.self) >> UInt8(2 * j)) & 3)
                        let hbit = (hmask.load(fromByteOffset: k, as: UInt8.self) >> hshift) & 1
                        out[128 * g + 32 * j + k] = dl * Float(ql - Int8((hbit ^ 1) << 2))
                    }
                }
            }
        }
    }
}

/// The 8 six-bit scales and 8 six-bit minimums of Q4_K/Q5_K, packed in 12 bytes:
/// for s < 4: sc = b[s] & 63, m = b[s + 4] & 63;
/// for s >= 4: sc = (b[s + 4] & 15) | (b[s - 4] >> 6) << 4, m = (b[s + 4] >> 4) | (b[s] >> 6) << 4.
@inline(__always)
func kQuantScaleMin(_ b: UnsafeRawPointer, _ s: Int) -> (scale: UInt8, min: UInt8) {
    if s < 4 {
        return (b.load(fromByteOffset: s, as: UInt8.self) & 63, b.load(fromByteOffset: s + 4, as: UInt8.self) & 63)
    }
    let md = b.load(fromByteOffset: s + 4, as: UInt8.self)
    let dHigh = (b.load(fromByteOffset: s - 4, as: UInt8.self) >> 2) & 0x30
    let mHigh = (b.load(fromByteOffset: s, as: UInt8.self) >> 2) & 0x30
    return ((md & 0x0f) | dHigh, (md >> 4) | mHigh)
}

/// Q4_K: 8 sub-blocks of 32, w = (d * sc) * q - dmin * m, q in 0...15.
/// Block (144 bytes): d f16 @0 | dmin f16 @2 | scales[12] @4 | qs[128] @16.
/// Sub-block s = 2 g + j holds q[32 s + k] = (qs[32 g + k] >> 4j) & 15.
enum BlockQ4_K: BlockDecoder {
    static let blockElements = 256, blockBytes = 144

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 0)
        let dmin = loadF16(block, 2)
        let qs = block + 16
        for s in 0 ..< 8 {
            let (sc, m) = kQuantScaleMin(block + 4, s)
            let ds = d * Float(sc)
            let dm = dmin * Float(m)
            let g = s >> 1, shift = UInt8(4 * (s & 1))
            for k in 0 ..< 32 {
                let q = (qs.load(fromByteOffset: 32 * g + k, as: UInt8.self) >> shift) & 0x0f
                out[32 * s + k] = ds * Float(q) - dm
            }
        }
    }
}

/// Q5_K: like Q4_K with a fifth bit per weight, q in 0...31.
/// Block (176 bytes): d f16 @0 | dmin f16 @2 | scales[12] @4 | qh[32] @16 | qs[128] @48.
/// q[32 s + k] = ((qs[32 (s / 2) + k] >> 4 (s % 2)) & 15) | ((qh[k] >> s) & 1) << 4.
enum BlockQ5_K: BlockDecoder {
    static let blockElements = 256, blockBytes = 176

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 0)
        let dmin = loadF16(block, 2)
        let qh = block + 16
        let qs = block + 48
        for s in 0 ..< 8 {
            let (sc, m) = kQuantScaleMin(block + 4, s)
            let ds = d * Float(sc)
            let dm = dmin * Float(m)
            let g = s >> 1, shift = UInt8(4 * (s & 1))
            for k in 0 ..< 32 {
                let low = (qs.load(fromByteOffset: 32 * g + k, as: UInt8.self) >> shift) & 0x0f
                let high = (qh.load(fromByteOffset: k, as: UInt8.self) >> UInt8(s)) & 1
                out[32 * s + k] = ds * Float(low | high << 4) - dm
            }
        }
    }
}

/// Q6_K: 16 sub-blocks of 16 with int8 scales, w = (d * sc) * (q - 32), q in 0...63.
/// Block (210 bytes): ql[128] @0 | qh[64] @128 | scales[16] int8 @192 | d f16 @208.
/// For i = 128 g + r: low 4 bits = ql[64 g + r % 64] >> 4 (r / 64), high 2 bits = qh[32 g + r % 32] >> 2 (r / 32).
enum BlockQ6_K: BlockDecoder {
    static let blockElements = 256, blockBytes = 210

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 208)
        let ql = block
        let qh = block + 128
        // Weight i = 128 g + 32 j + 16 h + k' lies in sub-block s = 8 g + 2 j + h.
        for g in 0 ..< 2 {
            for j in 0 ..< 4 {
                let lowBase = 64 * g + 32 * (j & 1), lowShift = UInt8(4 * (j >> 1)), highShift = UInt8(2 * j)
                for h in 0 ..< 2 {
                    let ds = d * Float(block.load(fromByteOffset: 192 + 8 * g + 2 * j + h, as: Int8.self))
                    for k in 16 * h ..< 16 * h + 16 {
                        let low = (ql.load(fromByteOffset: lowBase + k, as: UInt8.self) >> lowShift) & 0x0f
                        let high = (qh.load(fromByteOffset: 32 * g + k, as: UInt8.self) >> highShift) & 0x03
                        out[128 * g + 32 * j + k] = ds * Float(Int8(low | high << 4) - 32)
                    }
                }
            }
        }
    }
}
