// Ternary quants (weights in {-1, 0, +1} times one f16 scale per 256), as used for BitNet b1.58-style
// models (ggml PR #8151). Both quantize like gguf-py: d = max |x|, t = round-half-away(x / d) + 1.

/// Powers of three for TQ1_0's base-3 digits.
@inline(__always) private func pow3(_ j: Int) -> UInt8 {
    switch j { case 0: return 1; case 1: return 3; case 2: return 9; case 3: return 27; default: return 81 }
}

/// The ternary digit t in 0...2 of a weight, as gguf-py computes it (uint8 arithmetic).
@inline(__always) private func ternaryDigit(_ x: Float, _ id: Float) -> UInt8 {
    numpyLowByte(numpyRoundAwayFromZero(x * id)) &+ 1
}

/// TQ1_0: 1.6875 bits per weight, five ternary digits per byte as a fixed-point base-3 fraction.
/// Block (54 bytes): qs[48] @0 | qh[4] @48 | d f16 @52.
/// qs[0..<32] carry weights 32 j + k (j in 0..<5, k in 0..<32), qs[32..<48] weights 160 + 16 j + k (k < 16),
/// qh[k] weights 240 + 4 j + k (j in 0..<4). A byte b = ceil(256 * v / 243) for v = sum t_j * 3^(4 - j)
/// holds its j-th digit as (uint8(b * 3^j) * 3) >> 8.
enum BlockTQ1_0: BlockEncoder {
    static let blockElements = 256, blockBytes = 54

    @inline(__always) private static func digit(_ byte: UInt8, _ j: Int) -> Float {
        let v = (UInt16(byte &* pow3(j)) * 3) >> 8
        return Float(Int8(truncatingIfNeeded: v) &- 1)
    }

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 52)
        for j in 0 ..< 5 {
            for k in 0 ..< 32 {
                out[32 * j + k] = d * digit(block.load(fromByteOffset: k, as: UInt8.self), j)
            }
            for k in 0 ..< 16 {
                out[160 + 16 * j + k] = d * digit(block.load(fromByteOffset: 32 + k, as: UInt8.self), j)
            }
        }
        for j in 0 ..< 4 {
            for k in 0 ..< 4 {
                out[240 + 4 * j + k] = d * digit(block.load(fromByteOffset: 48 + k, as: UInt8.self), j)
            }
        }
    }

    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        let d = blockAbsMax(x, 256)
        let id = inverseOrZero(d)
        // Packs `digits` ternary digits, weights `first + stride * j` (most significant first), into one byte.
        @inline(__always) func pack(_ first: Int, _ stride: Int, _ digits: Int) -> UInt8 {
            var v: UInt16 = 0  // numpy sums uint8 products in a wider integer
            for j in 0 ..< digits {
                v &+= UInt16(ternaryDigit(x[first + stride * j], id) &* pow3(4 - j))
            }
            return UInt8(truncatingIfNeeded: (v &* 256 &+ 242) / 243)
        }
        for k in 0 ..< 32 { block.storeBytes(of: pack(k, 32, 5), toByteOffset: k, as: UInt8.self) }
        for k in 0 ..< 16 { block.storeBytes(of: pack(160 + k, 16, 5), toByteOffset: 32 + k, as: UInt8.self) }
        for k in 0 ..< 4 { block.storeBytes(of: pack(240 + k, 4, 4), toByteOffset: 48 + k, as: UInt8.self) }
        storeF16(d, block, 52)
    }
}

/// TQ2_0: 2 bits per weight, t = q + 1 stored in 2-bit fields, w = d * (t - 1).
/// Block (66 bytes): qs[64] @0 | d f16 @64; weight 128 g + 32 j + k is (qs[32 g + k] >> 2j) & 3.
enum BlockTQ2_0: BlockEncoder {
    static let blockElements = 256, blockBytes = 66

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 64)
        for i in 0 ..< 256 {
            let g = i >> 7, j = (i >> 5) & 3, k = i & 31
            let t = (block.load(fromByteOffset: 32 * g + k, as: UInt8.self) >> UInt8(2 * j)) & 3
            out[i] = d * Float(Int8(t) - 1)
        }
    }

    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        let d = blockAbsMax(x, 256)
        let id = inverseOrZero(d)
        for g in 0 ..< 2 {
            for k in 0 ..< 32 {
                var byte: UInt8 = 0
                for j in 0 ..< 4 {
                    byte |= ternaryDigit(x[128 * g + 32 * j + k], id) << UInt8(2 * j)
                }
                block.storeBytes(of: byte, toByteOffset: 32 * g + k, as: UInt8.self)
            }
        }
        storeF16(d, block, 64)
    }
}
