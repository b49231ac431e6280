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
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: blockElements) { q in
            unpackCodes(block + 4, bits: bits, count: blockElements, into: q.baseAddress!)
            for j in 0 ..< blockElements { out[j] = d * Float(q[j]) + m }
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

/// Unpacks `count` codes of `bits` bits from the LSB-first stream at `codes` (the inverse of `packCodes`).
@inline(__always)
func unpackCodes(_ codes: UnsafeRawPointer, bits: Int, count: Int, into q: UnsafeMutablePointer<UInt8>) {
    let mask = UInt32(1) << UInt32(bits) - 1
    var acc: UInt32 = 0, have = 0, byte = 0
    for j in 0 ..< count {
        while have < bits {
            acc |= UInt32(codes.load(fromByteOffset: byte, as: UInt8.self)) << UInt32(have)
            byte += 1
            have += 8
        }
        q[j] = UInt8(acc & mask)
        acc >>= UInt32(bits)
        have -= bits
    }
}

/// f32 rounded to the nearest f16 value.
@inline(__always)
func roundToF16(_ x: Float) -> Float { HalfFloat.toFloat(HalfFloat.fromFloat(x)) }

/// Type-level bit widths and group sizes, so that one generic codec serves every Squish type and is specialized
/// (constant `bits` and `blockElements`) for each of them.
protocol SquishConstant { static var value: Int { get } }
enum SquishBits2: SquishConstant { static let value = 2 }
enum SquishBits3: SquishConstant { static let value = 3 }
enum SquishBits4: SquishConstant { static let value = 4 }
enum SquishBits5: SquishConstant { static let value = 5 }
enum SquishBits6: SquishConstant { static let value = 6 }
enum SquishBits7: SquishConstant { static let value = 7 }
enum SquishBits8: SquishConstant { static let value = 8 }
enum SquishGroup16: SquishConstant { static let value = 16 }
enum SquishGroup32: SquishConstant { static let value = 32 }
enum SquishGroup64: SquishConstant { static let value = 64 }
enum SquishGroup128: SquishConstant { static let value = 128 }
enum SquishGroup256: SquishConstant { static let value = 256 }

/// The affine codec with `Bits` per code in groups of `Group` (`SQ<b>_G<g>`).
enum BlockSquishAffine<Bits: SquishConstant, Group: SquishConstant>: SquishAffineBlock {
    static var bits: Int { Bits.value }
    static var blockElements: Int { Group.value }
}

/// The symmetric codec with `Bits` per code in groups of `Group` (`SQ<b>S_G<g>`).
enum BlockSquishSymmetric<Bits: SquishConstant, Group: SquishConstant>: SquishSymmetricBlock {
    static var bits: Int { Bits.value }
    static var blockElements: Int { Group.value }
}

/// The codec of a Squish block type (nil for ggml's own types).
func squishCodec(for type: GGMLType) -> (any BlockEncoder.Type)? {
    guard let (bits, group, symmetric) = type.squishBlock else { return nil }
    func grouped<B: SquishConstant>(_: B.Type) -> (any BlockEncoder.Type)? {
        func codec<G: SquishConstant>(_: G.Type) -> any BlockEncoder.Type {
            symmetric ? BlockSquishSymmetric<B, G>.self : BlockSquishAffine<B, G>.self
        }
        switch group {
        case 16: return codec(SquishGroup16.self)
        case 32: return codec(SquishGroup32.self)
        case 64: return codec(SquishGroup64.self)
        case 128: return codec(SquishGroup128.self)
        case 256: return codec(SquishGroup256.self)
        default: return nil
        }
    }
    switch bits {
    case 2: return grouped(SquishBits2.self)
    case 3: return grouped(SquishBits3.self)
    case 4: return grouped(SquishBits4.self)
    case 5: return grouped(SquishBits5.self)
    case 6: return grouped(SquishBits6.self)
    case 7: return grouped(SquishBits7.self)
    case 8: return grouped(SquishBits8.self)
    default: return nil
    }
}

/// Squish's own symmetric block types: w = d · (q − 2^(b−1)) with q in 0 ... 2^b − 1, i.e. signed codes
/// −2^(b−1) ... 2^(b−1) − 1 times one scale (Q4_0's arithmetic, for any bits and group).
///
/// Block of `group` weights (2 + group · bits / 8 bytes):
///   d f16 @0 | codes @2: code j occupies bits [j·b, j·b + b) of the little-endian bit stream, i.e.
///   bit i of the stream is bit (i mod 8) of byte i / 8 (the same packing as `SquishAffineBlock`).
/// The encoder below is Q4_0's rule: the weight of largest magnitude v maps to code 0 (d = v / −2^(b−1), rounded to
/// f16 first), the others to round(x / d) + 2^(b−1) clamped to the code range; the quantizers in SquishQuantize
/// choose d better (`SymmetricFit`) and pack through the same layout.
protocol SquishSymmetricBlock: BlockEncoder {
    static var bits: Int { get }
}

extension SquishSymmetricBlock {
    static var blockBytes: Int { 2 + blockElements * bits / 8 }

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 0)
        let half = Int32(1) << Int32(bits - 1)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: blockElements) { q in
            unpackCodes(block + 2, bits: bits, count: blockElements, into: q.baseAddress!)
            for j in 0 ..< blockElements { out[j] = d * Float(Int32(q[j]) - half) }
        }
    }

    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        let half = Float(1 << (bits - 1))
        let d = roundToF16(blockSignedAbsMax(x, blockElements) / -half)
        storeF16(d, block, 0)
        let id = inverseOrZero(d)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: blockElements) { q in
            for j in 0 ..< blockElements {
                let v = (x[j] * id).rounded() + half
                q[j] = v.isNaN || id == 0 ? UInt8(half) : UInt8(v < 0 ? 0 : v > 2 * half - 1 ? 2 * half - 1 : v)
            }
            packCodes(q.baseAddress!, bits: bits, count: blockElements, into: block + 2)
        }
    }
}

/// Lossless re-encoding of Squish blocks into the llama.cpp block with the same arithmetic, so that they run on the
/// int8 kernels (the runtime does this at load), for groups that are multiples of 32 (a group of 64, 128 or 256
/// becomes 2, 4 or 8 blocks of 32 that share d and m):
/// - affine (w = d · q + m, d and m in f16): Q4_1 for 2-4 bits, Q5_1 for 5 bits (codes unchanged);
/// - symmetric (w = d · (q − 2^(b−1))): Q4_0 for 2-4 bits (q' = q − 2^(b−1) + 8, so d · (q' − 8) is the same product),
///   Q5_0 for 5 bits (codes unchanged), Q8_0 for 6-8 bits (int8 q − 2^(b−1));
/// - non-linear (`SQ4N_G<g>`, w = d · L[q]): IQ4_NL (codes unchanged, d repeated per 32 weights); with sub-scales
///   (`SQ4NX_G<g>`, w = f16(d · m) · L[q]): IQ4_NL with that f16 per 32 weights;
/// - MXFP4 (w = 2^(e − 128) · L[q], L the doubled E2M1 values, small integers): Q8_0 with d = 2^(e − 128) and q = L[q],
///   where every block's scale is an f16 value (2^-24 ... 2^15, see `convertible`): twice the bytes, the same floats.
/// Each decodes to exactly the same floats: the same f16 d (and m) times the same small integer (plus m).
public enum SquishAffineConversion {
    /// The ggml type that holds `type`'s values exactly, if any.
    public static func nativeEquivalent(of type: GGMLType) -> GGMLType? {
        if type == .mxfp4 { return .q8_0 }
        if type.squishNonLinearGroup != nil || type.squishNonLinearXGroup != nil { return .iq4_NL }
        guard let (bits, group, symmetric) = type.squishBlock, group % 32 == 0 else { return nil }
        if symmetric { return bits <= 4 ? .q4_0 : bits == 5 ? .q5_0 : .q8_0 }
        return bits <= 4 ? .q4_1 : bits == 5 ? .q5_1 : nil
    }

    /// False where `count` values at `src` hold a block `convert` cannot carry over exactly (an MXFP4 scale outside
    /// f16's range); true for every other type `nativeEquivalent` names.
    public static func convertible(_ type: GGMLType, _ src: UnsafeRawPointer, count: Int) -> Bool {
        guard type == .mxfp4 else { return nativeEquivalent(of: type) != nil }
        return (0 ..< count / 32).allSatisfy { b in
            let scale = MXFP4.scale(src.load(fromByteOffset: b * 17, as: UInt8.self))
            return HalfFloat.toFloat(HalfFloat.fromFloat(scale)) == scale
        }
    }

    /// Converts `count` values (whole groups) from `src` (Squish blocks) into `dst` (blocks of the native type).
    public static func convert(_ type: GGMLType, _ src: UnsafeRawPointer, into dst: UnsafeMutableRawPointer, count: Int) {
        if type == .mxfp4 {  // see `convertible`
            for b in 0 ..< count / 32 {
                let block = src + b * 17, out = dst + b * 34
                storeF16(MXFP4.scale(block.load(as: UInt8.self)), out, 0)
                for j in 0 ..< 16 {
                    let byte = block.load(fromByteOffset: 1 + j, as: UInt8.self)
                    out.storeBytes(of: Int8(MXFP4.levels[Int(byte & 0x0f)]), toByteOffset: 2 + j, as: Int8.self)
                    out.storeBytes(of: Int8(MXFP4.levels[Int(byte >> 4)]), toByteOffset: 18 + j, as: Int8.self)
                }
            }
            return
        }
        if let group = type.squishNonLinearGroup {  // d, then 16 bytes per 32 weights: IQ4_NL blocks repeat d
            for g in 0 ..< count / group {
                let block = src + g * type.blockBytes
                for h in 0 ..< group / 32 {
                    let out = dst + (g * group / 32 + h) * 18
                    out.copyMemory(from: block, byteCount: 2)
                    out.advanced(by: 2).copyMemory(from: block + 2 + 16 * h, byteCount: 16)
                }
            }
            return
        }
        if let group = type.squishNonLinearXGroup {  // per 32 weights: the f16 of d · m, then the 16 code bytes
            let qs = SquishNonLinearX.codesOffset(group: group)
            for g in 0 ..< count / group {
                let block = src + g * type.blockBytes
                let d = loadF16(block, 0)
                for h in 0 ..< group / 32 {
                    let out = dst + (g * group / 32 + h) * 18
                    storeF16(IQ4NLScale.subScale(d, SquishNonLinearX.multiplier(block, h)), out, 0)
                    out.advanced(by: 2).copyMemory(from: block + qs + 16 * h, byteCount: 16)
                }
            }
            return
        }
        guard let (bits, group, symmetric) = type.squishBlock, let native = nativeEquivalent(of: type) else { return }
        let inBytes = type.blockBytes, outBytes = native.blockBytes
        let half = UInt8(1 << (bits - 1))
        let header = symmetric ? 2 : 4  // d (and m) before the codes, in the Squish block and in the native one
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: group) { q in
            for g in 0 ..< count / group {
                let block = src + g * inBytes
                let d = block.loadUnaligned(fromByteOffset: 0, as: UInt16.self)
                let m = symmetric ? 0 : block.loadUnaligned(fromByteOffset: 2, as: UInt16.self)
                unpackCodes(block + header, bits: bits, count: group, into: q.baseAddress!)
                if symmetric && bits <= 4 {
                    for j in 0 ..< group { q[j] = q[j] &- half &+ 8 }  // Q4_0's offset is 8
                }
                for h in 0 ..< group / 32 {
                    let out = dst + (g * group / 32 + h) * outBytes
                    let c = q.baseAddress! + 32 * h
                    out.storeBytes(of: d, toByteOffset: 0, as: UInt16.self)
                    if !symmetric { out.storeBytes(of: m, toByteOffset: 2, as: UInt16.self) }
                    func nibbles(at offset: Int) {
                        for j in 0 ..< 16 { out.storeBytes(of: (c[j] & 0x0f) | (c[j + 16] & 0x0f) << 4, toByteOffset: offset + j, as: UInt8.self) }
                    }
                    func highBits(at offset: Int) {  // bit 4 of each code, one u32
                        var qh: UInt32 = 0
                        for j in 0 ..< 32 { qh |= UInt32(c[j] >> 4 & 1) << UInt32(j) }
                        out.storeBytes(of: qh.littleEndian, toByteOffset: offset, as: UInt32.self)
                    }
                    switch native {
                    case .q4_1: nibbles(at: 4)
                    case .q5_1: highBits(at: 4); nibbles(at: 8)
                    case .q4_0: nibbles(at: 2)
                    case .q5_0: highBits(at: 2); nibbles(at: 6)
                    default:  // Q8_0: int8 q − 2^(b−1) @2
                        for j in 0 ..< 32 { out.storeBytes(of: c[j] &- half, toByteOffset: 2 + j, as: UInt8.self) }
                    }
                }
            }
        }
    }
}
