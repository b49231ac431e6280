// 4-bit non-linear quants: each 4-bit index selects one of 16 fixed int8 levels (ggml-common.h
// `kvalues_iq4nl`), which are then scaled. Decoding only.

/// The 16 IQ4 levels (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113), spaced
/// to fit a bell-shaped weight distribution; `index` uses its low 4 bits.
@inline(__always)
func iq4Level(_ index: UInt8) -> Float {
    // A 16-entry switch keeps the hot loop free of array bounds checks and retain/release.
    switch index & 0x0f {
    case 0: return -127; case 1: return -104; case 2: return -83; case 3: return -65
    case 4: return -49; case 5: return -35; case 6: return -22; case 7: return -10
    case 8: return 1; case 9: return 13; case 10: return 25; case 11: return 38
    case 12: return 53; case 13: return 69; case 14: return 89; default: return 113
    }
}

/// The nibbles of the IQ4 family: per 32 weights 16 bytes, byte j holding q[j] in its low nibble and q[j + 16] in its
/// high nibble (IQ4_NL's order, kept by SQ4N and SQ4NX for each 32 weights).
public enum IQ4Nibbles {
    /// Writes `count` 4-bit codes (a multiple of 32) as `count / 2` bytes from `offset` of `block`.
    public static func pack(_ codes: UnsafePointer<UInt8>, count: Int, into block: UnsafeMutableRawPointer, at offset: Int) {
        for s in 0 ..< count / 32 {
            for j in 0 ..< 16 {
                block.storeBytes(of: (codes[32 * s + j] & 0x0f) | (codes[32 * s + j + 16] & 0x0f) << 4, toByteOffset: offset + 16 * s + j,
                                 as: UInt8.self)
            }
        }
    }

    /// Decodes the 32 weights whose 16 bytes start at `bytes`, scaled by `scale`.
    @inline(__always)
    static func decode32(_ bytes: UnsafeRawPointer, scale: Float, into out: UnsafeMutablePointer<Float>) {
        for j in 0 ..< 16 {
            let byte = bytes.load(fromByteOffset: j, as: UInt8.self)
            out[j] = scale * iq4Level(byte)
            out[j + 16] = scale * iq4Level(byte >> 4)
        }
    }
}

/// IQ4_NL: 32 weights with one f16 scale, w = d * level[q].
/// Block (18 bytes): d f16 @0 | qs[16] @2, where qs[j] = q[j] | q[j + 16] << 4.
enum BlockIQ4_NL: BlockDecoder {
    static let blockElements = 32, blockBytes = 18

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        IQ4Nibbles.decode32(block + 2, scale: loadF16(block, 0), into: out)
    }
}

/// IQ4_XS: 8 sub-blocks of 32 with 6-bit signed scales, w = (d * (sc - 32)) * level[q].
/// Block (136 bytes): d f16 @0 | scales_h u16 LE @2 (2 bits per sub-block) | scales_l[4] @4 (4 bits per
/// sub-block, low nibble first) | qs[128] @8, where sub-block s takes qs[16 s ..< 16 s + 16]: low nibbles
/// are weights 0..<16, high nibbles weights 16..<32.
enum BlockIQ4_XS: BlockDecoder {
    static let blockElements = 256, blockBytes = 136

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 0)
        let scalesHigh = UInt16(littleEndian: block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        for s in 0 ..< 8 {
            let low = (block.load(fromByteOffset: 4 + (s >> 1), as: UInt8.self) >> UInt8(4 * (s & 1))) & 0x0f
            let high = UInt8(truncatingIfNeeded: scalesHigh >> UInt16(2 * s)) & 0x03
            let dl = d * Float(Int8(low | high << 4) - 32)
            let qs = block + 8 + 16 * s
            let o = out + 32 * s
            for k in 0 ..< 16 {
                let byte = qs.load(fromByteOffset: k, as: UInt8.self)
                o[k] = dl * iq4Level(byte)
                o[k + 16] = dl * iq4Level(byte >> 4)
            }
        }
    }
}

/// Squish non-linear type `SQ4N_G<g>`: IQ4_NL's levels with one f16 scale per group of `Group` weights (64, 128 or 256),
/// w = d * level[q]: 4 + 16 / g bits per weight (4.25 for g = 64) instead of IQ4_NL's 4.5.
/// Block (2 + g / 2 bytes): d f16 @0 | for each 32 weights s: qs[16] @2 + 16 s as in IQ4_NL, so a group is g / 32
/// IQ4_NL blocks sharing d (which is how the runtime runs it, see `SquishAffineConversion`).
/// The encoder takes the scale from `IQ4NLScale.search` over the whole group and each weight's nearest level.
enum BlockSquishNonLinear<Group: SquishConstant>: BlockEncoder {
    static var blockElements: Int { Group.value }
    static var blockBytes: Int { 2 + Group.value / 2 }

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 0)
        for s in 0 ..< blockElements / 32 { IQ4Nibbles.decode32(block + 2 + 16 * s, scale: d, into: out + 32 * s) }
    }

    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        let d = IQ4NLScale.search(x, count: blockElements, importance: nil)
        storeF16(d, block, 0)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: blockElements) { codes in
            for i in 0 ..< blockElements { codes[i] = d == 0 ? IQ4NLScale.zeroIndex : IQ4NLScale.nearest(x[i] / d) }
            IQ4Nibbles.pack(codes.baseAddress!, count: blockElements, into: block, at: 2)
        }
    }
}

/// The block layout of the Squish non-linear types with sub-scales `SQ4NX_G<g>` (g = 128, 256): IQ4_NL's levels, one f16
/// d per group and a signed 6-bit multiplier m per 32 weights, w = f16(d · m) · level[q] (see `IQ4NLScale.subScale`):
/// 4 + 16 / g + 6 / 32 bits per weight (4.3125 for g = 128, 4.25 for 256).
/// Block (2 + 3 g / 128 + g / 2 bytes): d f16 @0 | multipliers @2, three bytes per four sub-blocks, each a 24-bit
/// little-endian word holding m + 32 of sub-block s in bits 6 (s mod 4) ..< 6 (s mod 4) + 6 | for each 32 weights s:
/// qs[16] @2 + 3 g / 128 + 16 s as in IQ4_NL. So a group is g / 32 IQ4_NL blocks with scales f16(d · m), which is
/// how the runtime runs it (see `SquishAffineConversion`).
public enum SquishNonLinearX {
    /// Offset of the codes of a block of `group` weights.
    @inline(__always)
    public static func codesOffset(group: Int) -> Int { 2 + 3 * group / 128 }

    /// The multiplier of sub-block `s`.
    @inline(__always)
    public static func multiplier(_ block: UnsafeRawPointer, _ s: Int) -> Int32 {
        let base = 2 + 3 * (s / 4), shift = 6 * (s % 4)
        let word = UInt32(block.load(fromByteOffset: base, as: UInt8.self)) | UInt32(block.load(fromByteOffset: base + 1, as: UInt8.self)) << 8
            | UInt32(block.load(fromByteOffset: base + 2, as: UInt8.self)) << 16
        return Int32(word >> UInt32(shift) & 0x3f) - 32
    }

    /// Writes a block of `group` weights from d, the multipliers (`p.scales[s]`, in `IQ4NLScale.multiplierRange`) and
    /// one 4-bit code per weight.
    public static func pack(_ p: KQuantParameters, codes: UnsafePointer<UInt8>, group: Int, into block: UnsafeMutableRawPointer) {
        storeF16(p.d, block, 0)
        for quad in 0 ..< group / 128 {
            var word: UInt32 = 0
            for k in 0 ..< 4 { word |= (UInt32(p.scales[4 * quad + k] + 32) & 0x3f) << UInt32(6 * k) }
            for b in 0 ..< 3 { block.storeBytes(of: UInt8(truncatingIfNeeded: word >> UInt32(8 * b)), toByteOffset: 2 + 3 * quad + b, as: UInt8.self) }
        }
        IQ4Nibbles.pack(codes, count: group, into: block, at: codesOffset(group: group))
    }
}

/// The codec of `SQ4NX_G<g>` (layout in `SquishNonLinearX`). The encoder takes d and the multipliers from
/// `IQ4NLScale.searchSubScaled` and each weight's nearest level.
enum BlockSquishNonLinearX<Group: SquishConstant>: BlockEncoder {
    static var blockElements: Int { Group.value }
    static var blockBytes: Int { SquishNonLinearX.codesOffset(group: Group.value) + Group.value / 2 }

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 0), qs = SquishNonLinearX.codesOffset(group: blockElements)
        for s in 0 ..< blockElements / 32 {
            IQ4Nibbles.decode32(block + qs + 16 * s, scale: IQ4NLScale.subScale(d, SquishNonLinearX.multiplier(block, s)), into: out + 32 * s)
        }
    }

    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        let p = IQ4NLScale.searchSubScaled(x, count: blockElements, importance: nil)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: blockElements) { codes in
            for s in 0 ..< blockElements / 32 {
                let scale = IQ4NLScale.subScale(p.d, p.scales[s])
                for j in 0 ..< 32 { codes[32 * s + j] = scale == 0 ? IQ4NLScale.zeroIndex : IQ4NLScale.nearest(x[32 * s + j] / scale) }
            }
            SquishNonLinearX.pack(p, codes: codes.baseAddress!, group: blockElements, into: block)
        }
    }
}

/// The codec of a Squish non-linear type, with or without sub-scales (nil for every other type).
func nonLinearCodec(for type: GGMLType) -> (any BlockEncoder.Type)? {
    switch (type.squishNonLinearGroup, type.squishNonLinearXGroup) {
    case (64, _): return BlockSquishNonLinear<SquishGroup64>.self
    case (128, _): return BlockSquishNonLinear<SquishGroup128>.self
    case (256, _): return BlockSquishNonLinear<SquishGroup256>.self
    case (_, 128): return BlockSquishNonLinearX<SquishGroup128>.self
    case (_, 256): return BlockSquishNonLinearX<SquishGroup256>.self
    default: return nil
    }
}
