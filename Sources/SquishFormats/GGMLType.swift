/// ggml tensor types as numbered in GGUF files (ggml.h `enum ggml_type`), with their block layout, plus Squish's own
/// block types, which llama.cpp cannot load, for every bits b in 2 ... 8 and group g in {16, 32, 64, 128, 256}:
/// - affine `SQ<b>_G<g>` (w = d · q + m), numbered 0x5351_0000 + b · 256 + (g mod 256);
/// - symmetric `SQ<b>S_G<g>` (w = d · (q − 2^(b−1))), numbered 0x5351_8000 + b · 256 + (g mod 256).
/// The low byte is the group size, with 0 meaning 256 (the only group that does not fit a byte); bit 15 marks the
/// symmetric types.
/// - sparse `SP<b>_K<k>`: of every 64 weights k are kept (k = 16, 32, 48: 75%, 50%, 25% sparsity), stored as a 64-bit
///   mask and k symmetric b-bit codes (b = 2, 3, 4, 5, 6, 8) with one f16 scale, numbered 0x5350_0000 + b · 256 + k.
/// - non-linear `SQ4N_G<g>` (w = d · L[q] with IQ4_NL's 16 levels L, one f16 d per group of g = 64, 128, 256: IQ4_NL
///   with a group larger than 32), numbered 0x5352_0400 + (g mod 256);
/// - non-linear with sub-scales `SQ4NX_G<g>` (the same levels; one f16 d per group of g = 128, 256 and a 6-bit signed
///   multiplier per 32 weights, as IQ4_XS does per 256), numbered 0x5352_0500 + (g mod 256).
/// All of these are far from ggml's range; the ids of the first Squish types (SQ2_G32 ... SQ8_G64)
/// are unchanged, so files written before the family grew still load.
public enum GGMLType: UInt32, CaseIterable, Sendable, Codable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3
    case q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_XXS = 16, iq2_XS = 17, iq3_XXS = 18, iq1_S = 19, iq4_NL = 20, iq3_S = 21, iq2_S = 22, iq4_XS = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_M = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39
    // Squish affine types (see `SquishAffineBlock`): b-bit codes in groups of g with an f16 scale and f16 minimum.
    case sq2_G16 = 0x5351_0210, sq2_G32 = 0x5351_0220, sq2_G64 = 0x5351_0240, sq2_G128 = 0x5351_0280, sq2_G256 = 0x5351_0200
    case sq3_G16 = 0x5351_0310, sq3_G32 = 0x5351_0320, sq3_G64 = 0x5351_0340, sq3_G128 = 0x5351_0380, sq3_G256 = 0x5351_0300
    case sq4_G16 = 0x5351_0410, sq4_G32 = 0x5351_0420, sq4_G64 = 0x5351_0440, sq4_G128 = 0x5351_0480, sq4_G256 = 0x5351_0400
    case sq5_G16 = 0x5351_0510, sq5_G32 = 0x5351_0520, sq5_G64 = 0x5351_0540, sq5_G128 = 0x5351_0580, sq5_G256 = 0x5351_0500
    case sq6_G16 = 0x5351_0610, sq6_G32 = 0x5351_0620, sq6_G64 = 0x5351_0640, sq6_G128 = 0x5351_0680, sq6_G256 = 0x5351_0600
    case sq7_G16 = 0x5351_0710, sq7_G32 = 0x5351_0720, sq7_G64 = 0x5351_0740, sq7_G128 = 0x5351_0780, sq7_G256 = 0x5351_0700
    case sq8_G16 = 0x5351_0810, sq8_G32 = 0x5351_0820, sq8_G64 = 0x5351_0840, sq8_G128 = 0x5351_0880, sq8_G256 = 0x5351_0800
    // Squish symmetric types (see `SquishSymmetricBlock`): b-bit codes in groups of g with an f16 scale only.
    case sq2s_G16 = 0x5351_8210, sq2s_G32 = 0x5351_8220, sq2s_G64 = 0x5351_8240, sq2s_G128 = 0x5351_8280, sq2s_G256 = 0x5351_8200
    case sq3s_G16 = 0x5351_8310, sq3s_G32 = 0x5351_8320, sq3s_G64 = 0x5351_8340, sq3s_G128 = 0x5351_8380, sq3s_G256 = 0x5351_8300
    case sq4s_G16 = 0x5351_8410, sq4s_G32 = 0x5351_8420, sq4s_G64 = 0x5351_8440, sq4s_G128 = 0x5351_8480, sq4s_G256 = 0x5351_8400
    case sq5s_G16 = 0x5351_8510, sq5s_G32 = 0x5351_8520, sq5s_G64 = 0x5351_8540, sq5s_G128 = 0x5351_8580, sq5s_G256 = 0x5351_8500
    case sq6s_G16 = 0x5351_8610, sq6s_G32 = 0x5351_8620, sq6s_G64 = 0x5351_8640, sq6s_G128 = 0x5351_8680, sq6s_G256 = 0x5351_8600
    case sq7s_G16 = 0x5351_8710, sq7s_G32 = 0x5351_8720, sq7s_G64 = 0x5351_8740, sq7s_G128 = 0x5351_8780, sq7s_G256 = 0x5351_8700
    case sq8s_G16 = 0x5351_8810, sq8s_G32 = 0x5351_8820, sq8s_G64 = 0x5351_8840, sq8s_G128 = 0x5351_8880, sq8s_G256 = 0x5351_8800
    // Squish sparse types (see `SquishSparseBlock`): k of 64 weights kept, a mask and b-bit symmetric codes.
    case sp2_K16 = 0x5350_0210, sp2_K32 = 0x5350_0220, sp2_K48 = 0x5350_0230
    case sp3_K16 = 0x5350_0310, sp3_K32 = 0x5350_0320, sp3_K48 = 0x5350_0330
    case sp4_K16 = 0x5350_0410, sp4_K32 = 0x5350_0420, sp4_K48 = 0x5350_0430
    case sp5_K16 = 0x5350_0510, sp5_K32 = 0x5350_0520, sp5_K48 = 0x5350_0530
    case sp6_K16 = 0x5350_0610, sp6_K32 = 0x5350_0620, sp6_K48 = 0x5350_0630
    case sp8_K16 = 0x5350_0810, sp8_K32 = 0x5350_0820, sp8_K48 = 0x5350_0830
    // Squish non-linear types (see `BlockSquishNonLinear`): IQ4_NL's levels with one f16 scale per group.
    case sq4n_G64 = 0x5352_0440, sq4n_G128 = 0x5352_0480, sq4n_G256 = 0x5352_0400
    // ... and with a 6-bit multiplier per 32 weights (see `BlockSquishNonLinearX`).
    case sq4nx_G128 = 0x5352_0580, sq4nx_G256 = 0x5352_0500

    /// Elements per block and bytes per block (ggml's type traits).
    public var blockLayout: (elements: Int, bytes: Int) {
        switch self {
        case .f32: return (1, 4)
        case .f16, .bf16: return (1, 2)
        case .f64, .i64: return (1, 8)
        case .i32: return (1, 4)
        case .i16: return (1, 2)
        case .i8: return (1, 1)
        case .q4_0: return (32, 18)
        case .q4_1: return (32, 20)
        case .q5_0: return (32, 22)
        case .q5_1: return (32, 24)
        case .q8_0: return (32, 34)
        case .q8_1: return (32, 40)
        case .q2_K: return (256, 84)
        case .q3_K: return (256, 110)
        case .q4_K: return (256, 144)
        case .q5_K: return (256, 176)
        case .q6_K: return (256, 210)
        case .q8_K: return (256, 292)
        case .iq2_XXS: return (256, 66)
        case .iq2_XS: return (256, 74)
        case .iq3_XXS: return (256, 98)
        case .iq1_S: return (256, 50)
        case .iq4_NL: return (32, 18)
        case .iq3_S: return (256, 110)
        case .iq2_S: return (256, 82)
        case .iq4_XS: return (256, 136)
        case .iq1_M: return (256, 56)
        case .tq1_0: return (256, 54)
        case .tq2_0: return (256, 66)
        case .mxfp4: return (32, 17)
        default:
            if let (bits, kept) = squishSparse { return (Self.sparseGroup, 10 + kept * bits / 8) }
            if let group = squishNonLinearGroup { return (group, 2 + group / 2) }
            if let group = squishNonLinearXGroup { return (group, 2 + 3 * group / 128 + group / 2) }
            let (bits, group, symmetric) = squishBlock!
            return (group, (symmetric ? 2 : 4) + group * bits / 8)
        }
    }

    public var blockElements: Int { blockLayout.elements }
    public var blockBytes: Int { blockLayout.bytes }

    /// Bits per weight of the storage format.
    public var bitsPerWeight: Double { Double(blockBytes * 8) / Double(blockElements) }

    /// The name llama.cpp prints (e.g. "Q4_K", "IQ4_NL", "F16").
    public var name: String {
        switch self {
        case .f32: return "F32"; case .f16: return "F16"; case .bf16: return "BF16"; case .f64: return "F64"
        case .i8: return "I8"; case .i16: return "I16"; case .i32: return "I32"; case .i64: return "I64"
        case .q4_0: return "Q4_0"; case .q4_1: return "Q4_1"; case .q5_0: return "Q5_0"; case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"; case .q8_1: return "Q8_1"
        case .q2_K: return "Q2_K"; case .q3_K: return "Q3_K"; case .q4_K: return "Q4_K"; case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"; case .q8_K: return "Q8_K"
        case .iq2_XXS: return "IQ2_XXS"; case .iq2_XS: return "IQ2_XS"; case .iq3_XXS: return "IQ3_XXS"
        case .iq1_S: return "IQ1_S"; case .iq4_NL: return "IQ4_NL"; case .iq3_S: return "IQ3_S"; case .iq2_S: return "IQ2_S"
        case .iq4_XS: return "IQ4_XS"; case .iq1_M: return "IQ1_M"
        case .tq1_0: return "TQ1_0"; case .tq2_0: return "TQ2_0"; case .mxfp4: return "MXFP4"
        default:
            if let (bits, kept) = squishSparse { return "SP\(bits)_K\(kept)" }
            if let group = squishNonLinearGroup { return "SQ4N_G\(group)" }
            if let group = squishNonLinearXGroup { return "SQ4NX_G\(group)" }
            let (bits, group, symmetric) = squishBlock!
            return "SQ\(bits)\(symmetric ? "S" : "")_G\(group)"
        }
    }

    public var description: String { name }

    /// Bits per code, group size and kind of a Squish block type (`SquishAffineBlock` or `SquishSymmetricBlock`);
    /// nil for ggml's own types.
    public var squishBlock: (bits: Int, group: Int, symmetric: Bool)? {
        guard rawValue & 0xffff_0000 == 0x5351_0000 else { return nil }
        let low = Int(rawValue & 0xff)
        return (Int(rawValue >> 8 & 0x7f), low == 0 ? 256 : low, rawValue & 0x8000 != 0)
    }

    /// Bits per code and group size of a Squish affine type; nil for ggml's own types and the symmetric Squish types.
    public var squishAffine: (bits: Int, group: Int)? {
        guard let (bits, group, symmetric) = squishBlock, !symmetric else { return nil }
        return (bits, group)
    }

    /// Bits per code and group size of a Squish symmetric type; nil for every other type.
    public var squishSymmetric: (bits: Int, group: Int)? {
        guard let (bits, group, symmetric) = squishBlock, symmetric else { return nil }
        return (bits, group)
    }

    /// Bit widths and group sizes the Squish block types exist for.
    public static let squishBits = 2 ... 8
    public static let squishGroups = [16, 32, 64, 128, 256]

    /// The Squish affine (or, with `symmetric`, symmetric) type with `bits` per code in groups of `group`, if Squish
    /// defines one.
    public static func squishType(bits: Int, group: Int, symmetric: Bool) -> GGMLType? {
        guard squishBits.contains(bits), squishGroups.contains(group) else { return nil }
        return GGMLType(rawValue: 0x5351_0000 | (symmetric ? 0x8000 : 0) | UInt32(bits) << 8 | UInt32(group & 0xff))
    }

    /// The Squish affine type with `bits` per code in groups of `group`, if Squish defines one.
    public static func squishAffine(bits: Int, group: Int) -> GGMLType? { squishType(bits: bits, group: group, symmetric: false) }

    /// The Squish symmetric type with `bits` per code in groups of `group`, if Squish defines one.
    public static func squishSymmetric(bits: Int, group: Int) -> GGMLType? { squishType(bits: bits, group: group, symmetric: true) }

    /// Bits per kept code and kept weights per 64 of a Squish sparse type; nil for every other type.
    public var squishSparse: (bits: Int, kept: Int)? {
        guard rawValue & 0xffff_0000 == 0x5350_0000 else { return nil }
        return (Int(rawValue >> 8 & 0xff), Int(rawValue & 0xff))
    }

    /// Weights per sparse block (one mask word).
    public static let sparseGroup = 64
    /// Bits and kept counts the sparse types exist for.
    public static let sparseBits = [2, 3, 4, 5, 6, 8]
    public static let sparseKept = [16, 32, 48]

    /// The Squish sparse type keeping `kept` of every 64 weights as `bits`-bit codes, if Squish defines one.
    public static func squishSparse(bits: Int, kept: Int) -> GGMLType? {
        guard sparseBits.contains(bits), sparseKept.contains(kept) else { return nil }
        return GGMLType(rawValue: 0x5350_0000 | UInt32(bits) << 8 | UInt32(kept))
    }

    /// Group size of a Squish non-linear type (`SQ4N_G<g>`); nil for every other type.
    public var squishNonLinearGroup: Int? {
        guard rawValue & 0xffff_ff00 == 0x5352_0400 else { return nil }
        let low = Int(rawValue & 0xff)
        return low == 0 ? 256 : low
    }

    /// The Squish non-linear type with one scale per `group` weights, if Squish defines one (IQ4_NL for 32).
    public static func squishNonLinear(group: Int) -> GGMLType? {
        group == 32 ? .iq4_NL : [64, 128, 256].contains(group) ? GGMLType(rawValue: 0x5352_0400 | UInt32(group & 0xff)) : nil
    }

    /// Group size of a Squish non-linear type with sub-scales (`SQ4NX_G<g>`); nil for every other type.
    public var squishNonLinearXGroup: Int? {
        guard rawValue & 0xffff_ff00 == 0x5352_0500 else { return nil }
        let low = Int(rawValue & 0xff)
        return low == 0 ? 256 : low
    }

    /// The Squish non-linear type with one d per `group` weights and a multiplier per 32, if Squish defines one.
    public static func squishNonLinearX(group: Int) -> GGMLType? {
        [128, 256].contains(group) ? GGMLType(rawValue: 0x5352_0500 | UInt32(group & 0xff)) : nil
    }

    /// True for the types llama.cpp can load (everything but Squish's own).
    public var isGGMLNative: Bool {
        squishBlock == nil && squishSparse == nil && squishNonLinearGroup == nil && squishNonLinearXGroup == nil
    }

    /// Parses a name as printed by `name` (case-insensitive).
    public init?(name: String) {
        guard let t = GGMLType.allCases.first(where: { $0.name.lowercased() == name.lowercased() }) else { return nil }
        self = t
    }

    /// Bytes needed for `elements` values in one row, nil if `elements` is not a multiple of the block.
    public func rowBytes(elements: Int) -> Int? {
        let (be, bb) = blockLayout
        guard elements >= 0, elements % be == 0 else { return nil }
        return Checked.mul(elements / be, bb)
    }
}
import SquishCore
