import SquishCore
import SquishFormats

/// The parameters of one block as the block stores them: already rounded to f16, so `value(code)` is exactly what
/// a decoder will produce.
public struct BlockParameters: Equatable, Sendable {
    public var scale: Float
    public var minimum: Float  // 0 for the symmetric formats
    public init(scale: Float, minimum: Float = 0) {
        self.scale = scale
        self.minimum = minimum
    }
}

/// The quantization grid of one block format (a ggml type of 32 weights, or a Squish affine type of `groupSize`
/// weights): how a block's parameters follow from its weights, which code each weight gets given those parameters,
/// and how codes and parameters are packed into the block.
///
/// Splitting "parameters" from "code" is what error-compensating quantizers (GPTQ) need: they fix a block's
/// parameters when they reach its first column and then round one column at a time. RTN is the special case that
/// rounds every weight of the block with its own parameters.
public enum BlockGrid: Sendable, Equatable {
    case q4_0, q4_1, q5_0, q5_1, q8_0, iq4_NL
    /// MXFP4 (SquishFormats `MXFP4`): 32 E2M1 values with one power-of-two scale.
    case mxfp4
    /// A Squish affine type: `bits`-bit codes, w = d · q + m, one f16 d and m per group (SquishFormats `SquishAffineBlock`).
    case affine(bits: Int, group: Int)
    /// A Squish symmetric type: `bits`-bit codes, w = d · (q − 2^(bits−1)), one f16 d per group (SquishFormats
    /// `SquishSymmetricBlock`).
    case symmetric(bits: Int, group: Int)
    /// IQ4_NL's 16 levels with one f16 scale per `group` weights: IQ4_NL itself for 32, a Squish non-linear type
    /// (`SQ4N_G<g>`) for 64, 128 and 256.
    case nonLinear(group: Int)
    /// IQ4_NL's 16 levels with one f16 d per `group` weights (128 or 256) and a 6-bit multiplier m per 32, the 32
    /// weights scaled by f16(d · m): a Squish non-linear type with sub-scales (`SQ4NX_G<g>`, SquishFormats
    /// `SquishNonLinearX`). Like a K-quant, a block's `parameters(_:into:)` are one `BlockParameters` per 32 weights.
    case nonLinearX(group: Int)
    /// Ternary weights (BitNet b1.58, Ma et al. 2024, eq. 1-3): per block γ = mean |w| and w ≈ γ · t with
    /// t = clamp(round(w / γ), −1, 1), stored as TQ1_0/TQ2_0 (blocks of 256) or as a Squish 2-bit affine type with
    /// m = −γ (codes 0, 1, 2) where rows are not multiples of 256.
    case ternary(GGMLType)
    /// A K-quant (Q2_K ... Q6_K): blocks of 256 whose sub-blocks of 16 or 32 each get their own step and offset, the
    /// sub-block scales stored as small integers relative to the block's f16 d / dmin (see SquishFormats
    /// `KQuantFormat`). A block's `parameters(_:into:)` are one `BlockParameters` per sub-block (`codeGroupSize`).
    case kQuant(KQuantFormat)

    public init?(_ type: GGMLType) {
        if let (bits, group) = type.squishAffine { self = .affine(bits: bits, group: group); return }
        if let (bits, group) = type.squishSymmetric { self = .symmetric(bits: bits, group: group); return }
        if let group = type.squishNonLinearGroup { self = .nonLinear(group: group); return }
        if let group = type.squishNonLinearXGroup { self = .nonLinearX(group: group); return }
        if let format = KQuantFormat(type) { self = .kQuant(format); return }
        switch type {
        case .q4_0: self = .q4_0
        case .q4_1: self = .q4_1
        case .q5_0: self = .q5_0
        case .q5_1: self = .q5_1
        case .q8_0: self = .q8_0
        case .iq4_NL: self = .iq4_NL
        case .mxfp4: self = .mxfp4
        default: return nil
        }
    }

    public var type: GGMLType {
        switch self {
        case .q4_0: return .q4_0
        case .q4_1: return .q4_1
        case .q5_0: return .q5_0
        case .q5_1: return .q5_1
        case .q8_0: return .q8_0
        case .iq4_NL: return .iq4_NL
        case .mxfp4: return .mxfp4
        case .affine(let bits, let group): return GGMLType.squishAffine(bits: bits, group: group)!
        case .symmetric(let bits, let group): return GGMLType.squishSymmetric(bits: bits, group: group)!
        case .nonLinear(let group): return GGMLType.squishNonLinear(group: group)!
        case .nonLinearX(let group): return GGMLType.squishNonLinearX(group: group)!
        case .ternary(let type): return type
        case .kQuant(let format): return format.type
        }
    }

    public var isKQuant: Bool {
        if case .kQuant = self { return true }
        return false
    }

    /// True where a block stores parameters shared by its code groups (a K-quant's d and dmin with integer sub-block
    /// scales, `SQ4NX`'s d with multipliers): `parameters(_:into:)` returns them and `pack(_:_:superBlock:into:)` needs them.
    public var hasSuperBlockParameters: Bool {
        switch self {
        case .kQuant, .nonLinearX: return true
        default: return false
        }
    }

    /// True where `parameters` differs from the format's reference encoder in SquishFormats (which RTN then uses
    /// to stay bit-identical with llama-quantize).
    public var usesParameterSearch: Bool {
        switch self {
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: return false
        case .iq4_NL, .nonLinear, .nonLinearX, .affine, .symmetric, .ternary, .kQuant, .mxfp4: return true
        }
    }

    /// Weights per block (one set of parameters, fitted together).
    public var groupSize: Int {
        switch self {
        case .affine(_, let group), .symmetric(_, let group), .nonLinear(let group), .nonLinearX(let group): return group
        case .ternary(let type): return type.blockElements
        case .kQuant: return 256
        default: return 32
        }
    }

    /// Weights sharing one `BlockParameters`: a K-quant's sub-block (16 or 32), else the whole block.
    public var codeGroupSize: Int {
        if case .kQuant(let format) = self { return format.subBlockSize }
        if case .nonLinearX = self { return 32 }
        return groupSize
    }

    /// Bits per code.
    public var bits: Int {
        switch self {
        case .q4_0, .q4_1, .iq4_NL, .nonLinear, .nonLinearX, .mxfp4: return 4
        case .q5_0, .q5_1: return 5
        case .q8_0: return 8
        case .affine(let bits, _), .symmetric(let bits, _): return bits
        case .ternary: return 2
        case .kQuant(let format): return (format.codeRange.upperBound - format.codeRange.lowerBound + 1).trailingZeroBitCount
        }
    }

    /// True when the block stores a float minimum (w = d·q + m) rather than being symmetric around zero.
    public var hasMinimum: Bool {
        switch self {
        case .q4_1, .q5_1, .affine: return true
        case .kQuant(let format): return format.hasMinimum
        default: return false
        }
    }

    // MARK: parameters

    /// The block's parameters from its (current) 32 weights, computed as the format's reference quantizer does:
    /// d = x[argmax |x|] / -2^(b-1) for Q4_0/Q5_0; d = (max - min) / (2^b - 1), m = min for Q4_1/Q5_1;
    /// d = max |x| / 127 for Q8_0; a scale search for IQ4_NL (see `IQ4NLScale`); a least-squares search over
    /// clipped ranges for the Squish affine types (see `AffineFit`), a least-squares scale search for the Squish
    /// symmetric types (see `SymmetricFit`; never worse than the codec's max-magnitude rule).
    /// K-quants have one set of parameters per sub-block: use `parameters(_:into:)`.
    ///
    /// `importance` (optional, `groupSize` non-negative weights, imatrix style): the parameters then minimize the
    /// importance-weighted squared error Σ wᵢ (xᵢ − x̂ᵢ)² instead (a weighted scale search for Q4_0/Q5_0, the weighted
    /// least-squares range search `AffineFit` for Q4_1/Q5_1 and the affine types, IQ4_NL's weighted scale search);
    /// Q8_0 and ternary blocks ignore it.
    public func parameters(_ x: UnsafePointer<Float>, importance: UnsafePointer<Float>? = nil) -> BlockParameters {
        let n = groupSize
        if let importance {
            switch self {
            case .q4_0: return SymmetricFit.search(x, count: n, top: 8, importance: importance)
            case .q5_0: return SymmetricFit.search(x, count: n, top: 16, importance: importance)
            case .q4_1: return AffineFit.search(x, count: n, levels: 15, importance: importance)
            case .q5_1: return AffineFit.search(x, count: n, levels: 31, importance: importance)
            default: break
            }
        }
        switch self {
        case .kQuant, .nonLinearX:
            preconditionFailure("\(type) blocks have parameters per sub-block: use parameters(_:into:)")
        case .q4_0, .q5_0:
            var best: Float = 0
            for i in 0 ..< n where abs(x[i]) > abs(best) { best = x[i] }
            return BlockParameters(scale: f16(best / (self == .q4_0 ? -8 : -16)))
        case .q4_1, .q5_1:
            var lo = x[0], hi = x[0]
            for i in 1 ..< n { lo = min(lo, x[i]); hi = max(hi, x[i]) }
            return BlockParameters(scale: f16((hi - lo) / (self == .q4_1 ? 15 : 31)), minimum: f16(lo))
        case .q8_0:
            var amax: Float = 0
            for i in 0 ..< n { amax = max(amax, abs(x[i])) }
            return BlockParameters(scale: f16(amax / 127))
        case .iq4_NL, .nonLinear:
            return BlockParameters(scale: IQ4NLScale.search(x, count: n, importance: importance))
        case .mxfp4:
            // The reference's exponent (its largest level 1.5 · 2^floor(log2 max |x|)) or the next one, whichever
            // gives the smaller (importance-weighted) squared error.
            var amax: Float = 0
            for i in 0 ..< n { amax = max(amax, abs(x[i])) }
            guard amax > 0, amax.isFinite else { return BlockParameters(scale: MXFP4.scale(0)) }
            let e0 = Int(amax.exponent) - 2 + 127
            var best = BlockParameters(scale: MXFP4.scale(UInt8(clamping: e0))), bestError = Float.infinity
            for e in [e0, e0 + 1] where (0 ... 255).contains(e) {
                let d = MXFP4.scale(UInt8(e))
                var error: Float = 0
                for i in 0 ..< n {
                    let r = x[i] - d * MXFP4.levels[Int(MXFP4.nearest(x[i], scale: d))]
                    error += (importance?[i] ?? 1) * r * r
                }
                if error < bestError { (best, bestError) = (BlockParameters(scale: d), error) }
            }
            return best
        case .affine(let bits, let group):
            return AffineFit.search(x, count: group, levels: (1 << bits) - 1, importance: importance)
        case .symmetric(let bits, let group):
            return SymmetricFit.search(x, count: group, top: 1 << (bits - 1), importance: importance)
        case .ternary:
            var sum: Float = 0
            for i in 0 ..< n { sum += abs(x[i]) }
            let gamma = f16(sum / Float(n))
            return BlockParameters(scale: gamma, minimum: -gamma)
        }
    }

    /// The parameters of one block (`groupSize` weights at `x`) as `groupSize / codeGroupSize` entries of `p`, one per
    /// code group. Where `hasSuperBlockParameters`, also the block's stored parameters (a K-quant's integer sub-block
    /// scales, d and dmin; `SQ4NX`'s d and multipliers in `scales`), which `pack` needs; nil for the other grids.
    public func parameters(_ x: UnsafePointer<Float>, into p: UnsafeMutablePointer<BlockParameters>,
                           importance: UnsafePointer<Float>? = nil) -> KQuantParameters? {
        let k: KQuantParameters
        switch self {
        case .nonLinearX(let group): k = IQ4NLScale.searchSubScaled(x, count: group, importance: importance)
        case .kQuant(let format): k = format.fit(x, weights: importance)
        default:
            p[0] = parameters(x, importance: importance)
            return nil
        }
        for s in 0 ..< groupSize / codeGroupSize { p[s] = subBlockParameters(k, s) }
        return k
    }

    /// The parameters of sub-block `s` that a block's stored parameters `k` decode to: a K-quant's d · sc and −dmin · m
    /// (value = step · q − offset, written as scale · q + minimum with minimum = −offset: the same f32 result), SQ4NX's
    /// f16(d · m).
    public func subBlockParameters(_ k: KQuantParameters, _ s: Int) -> BlockParameters {
        switch self {
        case .nonLinearX: return BlockParameters(scale: IQ4NLScale.subScale(k.d, k.scales[s]))
        case .kQuant: return BlockParameters(scale: k.step(s), minimum: -k.offset(s))
        default: preconditionFailure("\(type) blocks have no stored sub-block parameters")
        }
    }

    // MARK: codes

    /// Range of codes: 0 ..< levels (Q8_0 codes are offset by 128 here: code 128 means q = 0).
    @inline(__always)
    public func code(_ x: Float, _ p: BlockParameters) -> UInt8 {
        let d = p.scale
        switch self {
        case .q4_0: return d == 0 ? 8 : UInt8(clamp((x / d).rounded() + 8, 0, 15))
        case .q5_0: return d == 0 ? 16 : UInt8(clamp((x / d).rounded() + 16, 0, 31))
        case .q4_1: return d == 0 ? 0 : UInt8(clamp(((x - p.minimum) / d).rounded(), 0, 15))
        case .q5_1: return d == 0 ? 0 : UInt8(clamp(((x - p.minimum) / d).rounded(), 0, 31))
        case .q8_0: return d == 0 ? 128 : UInt8(clamp((x / d).rounded(), -127, 127) + 128)
        case .iq4_NL, .nonLinear, .nonLinearX: return d == 0 ? IQ4NLScale.zeroIndex : IQ4NLScale.nearest(x / d)
        case .mxfp4: return MXFP4.nearest(x, scale: d)
        case .affine(let bits, _):
            return d == 0 ? 0 : UInt8(clamp(((x - p.minimum) / d).rounded(), 0, Float((1 << bits) - 1)))
        case .symmetric(let bits, _):
            let half = Float(1 << (bits - 1))
            return d == 0 ? UInt8(half) : UInt8(clamp((x / d).rounded() + half, 0, 2 * half - 1))
        case .ternary: return d == 0 ? 1 : UInt8(clamp((x / d).rounded(), -1, 1) + 1)
        case .kQuant(let f):
            // Codes are offset by the lowest code (Q3_K: q + 4, Q6_K: q + 32).
            let lo = Float(f.codeRange.lowerBound)
            return d == 0 ? UInt8(-lo) : UInt8(clamp(((x - p.minimum) / d).rounded(), lo, Float(f.codeRange.upperBound)) - lo)
        }
    }

    /// The weight a decoder reproduces from `code` (same f32 expression as the SquishFormats codecs).
    @inline(__always)
    public func value(_ code: UInt8, _ p: BlockParameters) -> Float {
        switch self {
        case .q4_0: return p.scale * Float(Int(code) - 8)
        case .q5_0: return p.scale * Float(Int(code) - 16)
        case .q4_1, .q5_1, .affine: return p.scale * Float(code) + p.minimum
        case .symmetric(let bits, _): return p.scale * Float(Int32(code) - Int32(1) << Int32(bits - 1))
        case .q8_0: return Float(Int(code) - 128) * p.scale
        case .iq4_NL, .nonLinear, .nonLinearX: return p.scale * IQ4NLScale.levels[Int(code)]
        case .mxfp4: return p.scale * MXFP4.levels[Int(code)]
        case .ternary: return p.scale * Float(Int(code) - 1)
        case .kQuant(let f): return p.scale * Float(Int32(code) + f.codeRange.lowerBound) + p.minimum
        }
    }

    /// Rounds `x` to the grid: the code's value.
    @inline(__always)
    public func round(_ x: Float, _ p: BlockParameters) -> Float { value(code(x, p), p) }

    // MARK: packing

    /// Bytes of one block.
    public var blockBytes: Int { type.blockBytes }

    /// Writes one block from its parameters and `groupSize` codes (layouts as documented in the SquishFormats codecs).
    public func pack(_ codes: UnsafePointer<UInt8>, _ p: BlockParameters, into block: UnsafeMutableRawPointer) {
        func store16(_ v: Float, _ at: Int) { block.storeBytes(of: HalfFloat.fromFloat(v).littleEndian, toByteOffset: at, as: UInt16.self) }
        func nibbles(at offset: Int) {
            for j in 0 ..< 16 {
                block.storeBytes(of: (codes[j] & 0x0f) | (codes[j + 16] & 0x0f) << 4, toByteOffset: offset + j, as: UInt8.self)
            }
        }
        func highBits(at offset: Int) {
            var qh: UInt32 = 0
            for j in 0 ..< 32 { qh |= UInt32(codes[j] >> 4 & 1) << UInt32(j) }
            block.storeBytes(of: qh.littleEndian, toByteOffset: offset, as: UInt32.self)
        }
        switch self {
        case .q4_0, .iq4_NL:
            store16(p.scale, 0); nibbles(at: 2)
        case .mxfp4:
            block.storeBytes(of: MXFP4.exponent(ofScale: p.scale), as: UInt8.self); nibbles(at: 1)
        case .q4_1:
            store16(p.scale, 0); store16(p.minimum, 2); nibbles(at: 4)
        case .q5_0:
            store16(p.scale, 0); highBits(at: 2); nibbles(at: 6)
        case .q5_1:
            store16(p.scale, 0); store16(p.minimum, 2); highBits(at: 4); nibbles(at: 8)
        case .q8_0:
            store16(p.scale, 0)
            for j in 0 ..< 32 { block.storeBytes(of: codes[j] &- 128, toByteOffset: 2 + j, as: UInt8.self) }
        case .affine(let bits, let group):
            store16(p.scale, 0); store16(p.minimum, 2)
            packCodes(codes, bits: bits, count: group, into: block + 4)
        case .symmetric(let bits, let group):
            store16(p.scale, 0)
            packCodes(codes, bits: bits, count: group, into: block + 2)
        case .nonLinear(let group):  // IQ4_NL's nibble order per 32 weights after the one scale
            store16(p.scale, 0)
            IQ4Nibbles.pack(codes, count: group, into: block, at: 2)
        case .ternary(let type):
            if let (bits, group) = type.squishAffine {
                // m = −γ turns codes 0, 1, 2 into −γ, 0, γ.
                store16(p.scale, 0); store16(-p.scale, 2)
                packCodes(codes, bits: bits, count: group, into: block + 4)
            } else {
                // TQ1_0/TQ2_0: the values −γ, 0, γ re-encode exactly (the codec's scale max |w| is γ, an f16 value).
                let n = groupSize
                withUnsafeTemporaryAllocation(of: Float.self, capacity: n) { v in
                    for j in 0 ..< n { v[j] = value(codes[j], p) }
                    try? Codecs.quantize(type, UnsafeBufferPointer(v), into: UnsafeMutableRawBufferPointer(start: block, count: blockBytes))
                }
            }
        case .kQuant, .nonLinearX:
            preconditionFailure("\(type) blocks are packed with their stored parameters: use pack(_:_:superBlock:into:)")
        }
    }

    /// Writes one block from its `groupSize` codes and its parameters as `parameters(_:into:)` gave them.
    public func pack(_ codes: UnsafePointer<UInt8>, _ p: UnsafePointer<BlockParameters>, superBlock: KQuantParameters?,
                     into block: UnsafeMutableRawPointer) {
        if case .nonLinearX(let group) = self, let superBlock {
            SquishNonLinearX.pack(superBlock, codes: codes, group: group, into: block)
            return
        }
        guard case .kQuant(let format) = self, let superBlock else {
            pack(codes, p[0], into: block)
            return
        }
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 256) { q in
            for i in 0 ..< 256 { q[i] = Int32(codes[i]) + format.codeRange.lowerBound }
            format.pack(superBlock, codes: q.baseAddress!, into: block)
        }
    }

    /// Round-to-nearest of one block: parameters from the block, every weight rounded with them, packed.
    /// `rounded` (optional) receives the `groupSize` dequantized values.
    /// `importance`: as for `parameters(_:importance:)`.
    public func quantizeBlock(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer,
                              rounded: UnsafeMutablePointer<Float>? = nil, importance: UnsafePointer<Float>? = nil) {
        if case .kQuant(let format) = self {
            format.encode(x, weights: importance, into: block, rounded: rounded)
            return
        }
        if hasSuperBlockParameters {
            let n = groupSize, perCode = codeGroupSize
            withUnsafeTemporaryAllocation(of: BlockParameters.self, capacity: n / perCode) { p in
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: n) { codes in
                    let k = parameters(x, into: p.baseAddress!, importance: importance)
                    for j in 0 ..< n {
                        codes[j] = code(x[j], p[j / perCode])
                        rounded?[j] = value(codes[j], p[j / perCode])
                    }
                    pack(codes.baseAddress!, p.baseAddress!, superBlock: k, into: block)
                }
            }
            return
        }
        let p = parameters(x, importance: importance)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: groupSize) { codes in
            for j in 0 ..< groupSize {
                codes[j] = code(x[j], p)
                rounded?[j] = value(codes[j], p)
            }
            pack(codes.baseAddress!, p, into: block)
        }
    }
}

/// f32 rounded to the nearest f16 value (the precision a block stores its scale and minimum in).
@inline(__always)
func f16(_ x: Float) -> Float { HalfFloat.toFloat(HalfFloat.fromFloat(x)) }

@inline(__always)
func clamp(_ x: Float, _ lo: Float, _ hi: Float) -> Float { x.isNaN ? lo : min(max(x, lo), hi) }
