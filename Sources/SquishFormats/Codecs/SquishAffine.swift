import SquishCore

/// Squish's own affine block types, for bit widths and group sizes that no ggml type has (e.g. 3-bit codes in
/// groups of 32, 4-bit in groups of 64): w = d · q + m with q in 0 ... 2^b − 1.
///
/// Block of `group` weights (4 + group · bits / 8 bytes):
///   d f16 @0 | m f16 @2 | codes @4: code j occupies bits [j·b, j·b + b) of the little-endian bit stream, i.e.
///   bit i of the stream is bit (i mod 8) of byte i / 8.
/// The encoder below is plain round-to-nearest with d = (max − min) / (2^b − 1) and m = min (both rounded to f16
/// first); the quantizers in SquishQuantize choose d and m better and pack through the same layout.
protocol SquishAffineBlock: BlockEncoder {
    static var bits: Int { get }
}

extension SquishAffineBlock {
    static var blockBytes: Int { 4 + blockElements * bits / 8 }

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 0)
        let m = loadF16(block, 2)
        let codes = block + 4
        let b = bits, mask = UInt32(1) << UInt32(b) - 1
        var acc: UInt32 = 0, have = 0, byte = 0
        for j in 0 ..< blockElements {
            while have < b {
                acc |= UInt32(codes.load(fromByteOffset: byte, as: UInt8.self)) << UInt32(have)
                byte += 1
                have += 8
            }
            out[j] = d * Float(acc & mask) + m
            acc >>= UInt32(b)
            have -= b
        }
    }

    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        let levels = Float((1 << bits) - 1)
        let mn = roundToF16(blockMin(x, blockElements))
        let d = roundToF16((blockMax(x, blockElements) - mn) / levels)
        storeF16(d, block, 0)
        storeF16(mn, block, 2)
        let id = inverseOrZero(d)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: blockElements) { q in
            for j in 0 ..< blockElements {
                let v = ((x[j] - mn) * id).rounded()
                q[j] = v.isNaN ? 0 : UInt8(v < 0 ? 0 : v > levels ? levels : v)
            }
            packCodes(q.baseAddress!, bits: bits, count: blockElements, into: block + 4)
        }
    }
}

/// Packs `count` codes of `bits` bits LSB-first into `count · bits / 8` bytes (the Squish affine layout).
public func packCodes(_ q: UnsafePointer<UInt8>, bits: Int, count: Int, into out: UnsafeMutableRawPointer) {
    var acc: UInt32 = 0, have = 0, byte = 0
    for j in 0 ..< count {
        acc |= UInt32(q[j]) << UInt32(have)
        have += bits
        while have >= 8 {
            out.storeBytes(of: UInt8(truncatingIfNeeded: acc), toByteOffset: byte, as: UInt8.self)
            byte += 1
            acc >>= 8
            have -= 8
        }
    }
}

/// f32 rounded to the nearest f16 value.
@inline(__always)
func roundToF16(_ x: Float) -> Float { HalfFloat.toFloat(HalfFloat.fromFloat(x)) }

enum BlockSQ2_G32: SquishAffineBlock { static let bits = 2, blockElements = 32 }
enum BlockSQ2_G64: SquishAffineBlock { static let bits = 2, blockElements = 64 }
enum BlockSQ3_G32: SquishAffineBlock { static let bits = 3, blockElements = 32 }
enum BlockSQ3_G64: SquishAffineBlock { static let bits = 3, blockElements = 64 }
enum BlockSQ4_G32: SquishAffineBlock { static let bits = 4, blockElements = 32 }
enum BlockSQ4_G64: SquishAffineBlock { static let bits = 4, blockElements = 64 }
enum BlockSQ5_G64: SquishAffineBlock { static let bits = 5, blockElements = 64 }
enum BlockSQ6_G64: SquishAffineBlock { static let bits = 6, blockElements = 64 }
enum BlockSQ8_G64: SquishAffineBlock { static let bits = 8, blockElements = 64 }
