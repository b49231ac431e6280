import SquishCore

/// Squish's sparse block types `SP<b>_K<k>`: of every 64 consecutive weights of a row, k are kept (the others are
/// zero), stored as a mask and the kept values as symmetric b-bit codes with one scale, w = d · (q − 2^(b−1)).
/// What a pruner produces for unstructured sparsity within groups of 64 (at most k nonzero of 64) and for N:M
/// patterns (2:4, 4:8 keep 32 of 64); the kernels read the mask and the k codes instead of 64 dense codes.
///
/// Block of 64 weights (10 + k · b / 8 bytes):
///   mask u64 @0 (little-endian; bit j set: weight j is kept) | d f16 @8 |
///   codes @10: the kept weights in increasing position, code i occupying bits [i·b, i·b + b) of the little-endian
///   bit stream (the packing of `SquishAffineBlock`).
/// A mask with fewer than k bits set leaves the remaining codes unused (they decode to nothing); more than k set bits
/// are invalid, and a decoder treats positions beyond the k-th kept one as zero.
/// The encoder below keeps the k weights of largest magnitude (ties: the earlier position) and rounds them with
/// Q4_0's rule (the kept weight of largest magnitude v maps to code 0, d = v / −2^(b−1)); pruners choose the mask
/// and the values better (Wanda, SparseGPT) and pack through `SquishSparsePacking`.
protocol SquishSparseBlock: BlockEncoder {
    static var bits: Int { get }
    static var kept: Int { get }
}

extension SquishSparseBlock {
    static var blockElements: Int { GGMLType.sparseGroup }
    static var blockBytes: Int { 10 + kept * bits / 8 }

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let mask = UInt64(littleEndian: block.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        let d = loadF16(block, 8)
        let half = Int32(1) << Int32(bits - 1)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: kept) { q in
            unpackCodes(block + 10, bits: bits, count: kept, into: q.baseAddress!)
            var i = 0
            for j in 0 ..< 64 {
                if mask >> UInt64(j) & 1 != 0 && i < kept {
                    out[j] = d * Float(Int32(q[i]) - half)
                    i += 1
                } else {
                    out[j] = 0
                }
            }
        }
    }

    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        // The k largest magnitudes (stable: ties keep the earlier position).
        let order = (0 ..< 64).sorted { (abs(x[$0]), -$0) > (abs(x[$1]), -$1) }
        var mask: UInt64 = 0
        for j in order.prefix(kept) { mask |= 1 << UInt64(j) }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: kept) { v in
            var i = 0
            for j in 0 ..< 64 where mask >> UInt64(j) & 1 != 0 { v[i] = x[j]; i += 1 }
            let half = Float(1 << (bits - 1))
            let d = roundToF16(blockSignedAbsMax(v.baseAddress!, kept) / -half)
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: kept) { q in
                let id = inverseOrZero(d)
                for i in 0 ..< kept {
                    let c = (v[i] * id).rounded() + half
                    q[i] = c.isNaN || id == 0 ? UInt8(half) : UInt8(c < 0 ? 0 : c > 2 * half - 1 ? 2 * half - 1 : c)
                }
                SquishSparsePacking.pack(mask: mask, scale: d, codes: q.baseAddress!, bits: bits, kept: kept, into: block)
            }
        }
    }
}

/// Writing sparse blocks from a chosen mask, scale and codes (the pruners' packer).
public enum SquishSparsePacking {
    /// One block: `mask` (at most `kept` bits set), the f16 scale `d` and `kept` codes (the kept weights in position
    /// order, then padding), packed LSB-first.
    public static func pack(mask: UInt64, scale d: Float, codes: UnsafePointer<UInt8>, bits: Int, kept: Int,
                            into block: UnsafeMutableRawPointer) {
        block.storeBytes(of: mask.littleEndian, toByteOffset: 0, as: UInt64.self)
        storeF16(d, block, 8)
        packCodes(codes, bits: bits, count: kept, into: block + 10)
    }
}

enum SquishKept16: SquishConstant { static let value = 16 }
enum SquishKept32: SquishConstant { static let value = 32 }
enum SquishKept48: SquishConstant { static let value = 48 }

/// The sparse codec with `Bits` per kept code and `Kept` of 64 weights kept (`SP<b>_K<k>`).
enum BlockSquishSparse<Bits: SquishConstant, Kept: SquishConstant>: SquishSparseBlock {
    static var bits: Int { Bits.value }
    static var kept: Int { Kept.value }
}

/// The codec of a Squish sparse type (nil for every other type).
func sparseCodec(for type: GGMLType) -> (any BlockEncoder.Type)? {
    guard let (bits, kept) = type.squishSparse else { return nil }
    func withKept<B: SquishConstant>(_: B.Type) -> (any BlockEncoder.Type)? {
        switch kept {
        case 16: return BlockSquishSparse<B, SquishKept16>.self
        case 32: return BlockSquishSparse<B, SquishKept32>.self
        case 48: return BlockSquishSparse<B, SquishKept48>.self
        default: return nil
        }
    }
    switch bits {
    case 2: return withKept(SquishBits2.self)
    case 3: return withKept(SquishBits3.self)
    case 4: return withKept(SquishBits4.self)
    case 5: return withKept(SquishBits5.self)
    case 6: return withKept(SquishBits6.self)
    case 8: return withKept(SquishBits8.self)
    default: return nil
    }
}
