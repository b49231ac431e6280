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

/// Lossless re-encoding of Squish affine blocks with at most 5 bits into the llama.cpp block with the same
/// arithmetic (w = d · q + m, d and m in f16): Q4_1 for 2-4 bits, Q5_1 for 5 bits; a group of 64 becomes two blocks
/// of 32 that share d and m. The runtime does this at load so these types run on the int8 kernels.
public enum SquishAffineConversion {
    /// The ggml type that holds `type`'s values exactly, if any.
    public static func nativeEquivalent(of type: GGMLType) -> GGMLType? {
        guard let (bits, group) = type.squishAffine, group % 32 == 0 else { return nil }
        return bits <= 4 ? .q4_1 : bits == 5 ? .q5_1 : nil
    }

    /// Converts `count` values (whole groups) from `src` (Squish blocks) into `dst` (blocks of the native type).
    public static func convert(_ type: GGMLType, _ src: UnsafeRawPointer, into dst: UnsafeMutableRawPointer, count: Int) {
        guard let (bits, group) = type.squishAffine, let native = nativeEquivalent(of: type) else { return }
        let inBytes = type.blockBytes, outBytes = native.blockBytes
        let mask = UInt32(1) << UInt32(bits) - 1
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: group) { q in
            for g in 0 ..< count / group {
                let block = src + g * inBytes
                let d = block.loadUnaligned(fromByteOffset: 0, as: UInt16.self)
                let m = block.loadUnaligned(fromByteOffset: 2, as: UInt16.self)
                var acc: UInt32 = 0, have = 0, byte = 4
                for j in 0 ..< group {
                    while have < bits {
                        acc |= UInt32(block.load(fromByteOffset: byte, as: UInt8.self)) << UInt32(have)
                        byte += 1
                        have += 8
                    }
                    q[j] = UInt8(acc & mask)
                    acc >>= UInt32(bits)
                    have -= bits
                }
                for h in 0 ..< group / 32 {
                    let out = dst + (g * group / 32 + h) * outBytes
                    let c = q.baseAddress! + 32 * h
                    out.storeBytes(of: d, toByteOffset: 0, as: UInt16.self)
                    out.storeBytes(of: m, toByteOffset: 2, as: UInt16.self)
                    if native == .q4_1 {
                        for j in 0 ..< 16 { out.storeBytes(of: c[j] | c[j + 16] << 4, toByteOffset: 4 + j, as: UInt8.self) }
                    } else {  // Q5_1: qh (bit 4 of each code) @4, low nibbles @8
                        var qh: UInt32 = 0
                        for j in 0 ..< 32 { qh |= UInt32(c[j] >> 4 & 1) << UInt32(j) }
                        out.storeBytes(of: qh.littleEndian, toByteOffset: 4, as: UInt32.self)
                        for j in 0 ..< 16 { out.storeBytes(of: (c[j] & 0x0f) | (c[j + 16] & 0x0f) << 4, toByteOffset: 8 + j, as: UInt8.self) }
                    }
                }
            }
        }
    }
}
