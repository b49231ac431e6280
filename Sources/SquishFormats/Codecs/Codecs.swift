import SquishCore

/// One codec per ggml block type: dequantize to f32 and, where implemented, quantize from f32. Bit-exact with
/// the `gguf` Python package's numpy (de)quantizers (same f32/f16 operations in the same order, no fused
/// multiply-adds). Block layouts follow ggml's `block_*` structs; each file documents its types.
public enum Codecs {
    public static func canDequantize(_ t: GGMLType) -> Bool {
        switch t {
        case .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_NL, .iq4_XS,
             .tq1_0, .tq2_0:
            return true
        default: return false
        }
    }

    public static func canQuantize(_ t: GGMLType) -> Bool {
        switch t {
        case .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .tq1_0, .tq2_0: return true
        default: return false
        }
    }

    static func checkSizes(_ t: GGMLType, elements: Int, bytes: Int, operation: String) throws -> Int {
        let (be, bb) = t.blockLayout
        guard elements % be == 0 else {
            throw FormatError.sizeMismatch(type: t, elements: elements, bytes: bytes, reason: "\(operation): elements are not whole blocks of \(be)")
        }
        let blocks = elements / be
        guard let need = Checked.mul(blocks, bb), need == bytes else {
            throw FormatError.sizeMismatch(type: t, elements: elements, bytes: bytes,
                                           reason: "\(operation): \(blocks) blocks need \(blocks * bb) bytes")
        }
        return blocks
    }

    /// Dequantizes `dst.count` values from `src`, which must hold exactly that many values' blocks.
    public static func dequantize(_ t: GGMLType, _ src: UnsafeRawBufferPointer, into dst: UnsafeMutableBufferPointer<Float>) throws {
        guard canDequantize(t) else { throw FormatError.unsupportedType(t, operation: "dequantize") }
        let blocks = try checkSizes(t, elements: dst.count, bytes: src.count, operation: "dequantize")
        guard blocks > 0, let s = src.baseAddress, let d = dst.baseAddress else { return }
        let bb = t.blockBytes, be = t.blockElements
        let fn: (UnsafeRawPointer, UnsafeMutablePointer<Float>) -> Void
        switch t {
        case .f32: fn = { $1.pointee = Float(bitPattern: $0.loadUnaligned(as: UInt32.self).littleEndian) }
        case .f16: fn = { $1.pointee = HalfFloat.toFloat($0.loadUnaligned(as: UInt16.self).littleEndian) }
        case .bf16: fn = { $1.pointee = HalfFloat.bf16ToFloat($0.loadUnaligned(as: UInt16.self).littleEndian) }
        case .q4_0: fn = BlockQ4.dequantizeQ4_0
        case .q4_1: fn = BlockQ4.dequantizeQ4_1
        case .q5_0: fn = BlockQ5.dequantizeQ5_0
        case .q5_1: fn = BlockQ5.dequantizeQ5_1
        case .q8_0: fn = BlockQ8_0.dequantize
        case .q2_K: fn = KQuants.dequantizeQ2K
        case .q3_K: fn = KQuants.dequantizeQ3K
        case .q4_K: fn = KQuants.dequantizeQ4K
        case .q5_K: fn = KQuants.dequantizeQ5K
        case .q6_K: fn = KQuants.dequantizeQ6K
        case .iq4_NL: fn = IQ4.dequantizeNL
        case .iq4_XS: fn = IQ4.dequantizeXS
        case .tq1_0: fn = Ternary.dequantizeTQ1
        case .tq2_0: fn = Ternary.dequantizeTQ2
        default: throw FormatError.unsupportedType(t, operation: "dequantize")
        }
        for b in 0 ..< blocks { fn(s + b * bb, d + b * be) }
    }

    /// Quantizes `src.count` values into `dst`, which must have exactly the bytes of that many values' blocks.
    public static func quantize(_ t: GGMLType, _ src: UnsafeBufferPointer<Float>, into dst: UnsafeMutableRawBufferPointer) throws {
        guard canQuantize(t) else { throw FormatError.unsupportedType(t, operation: "quantize") }
        let blocks = try checkSizes(t, elements: src.count, bytes: dst.count, operation: "quantize")
        guard blocks > 0, let s = src.baseAddress, let d = dst.baseAddress else { return }
        let bb = t.blockBytes, be = t.blockElements
        let fn: (UnsafePointer<Float>, UnsafeMutableRawPointer) -> Void
        switch t {
        case .f32: fn = { $1.storeBytes(of: $0.pointee.bitPattern.littleEndian, as: UInt32.self) }
        case .f16: fn = { $1.storeBytes(of: HalfFloat.fromFloat($0.pointee).littleEndian, as: UInt16.self) }
        case .bf16: fn = { $1.storeBytes(of: HalfFloat.bf16FromFloat($0.pointee).littleEndian, as: UInt16.self) }
        case .q4_0: fn = BlockQ4.quantizeQ4_0
        case .q4_1: fn = BlockQ4.quantizeQ4_1
        case .q5_0: fn = BlockQ5.quantizeQ5_0
        case .q5_1: fn = BlockQ5.quantizeQ5_1
        case .q8_0: fn = BlockQ8_0.quantize
        case .tq1_0: fn = Ternary.quantizeTQ1
        case .tq2_0: fn = Ternary.quantizeTQ2
        default: throw FormatError.unsupportedType(t, operation: "quantize")
        }
        for b in 0 ..< blocks { fn(s + b * be, d + b * bb) }
    }

    public static func dequantize(_ t: GGMLType, _ src: UnsafeRawBufferPointer, count: Int) throws -> [Float] {
        var out = [Float](repeating: 0, count: count)
        try out.withUnsafeMutableBufferPointer { try dequantize(t, src, into: $0) }
        return out
    }

    public static func quantize(_ t: GGMLType, _ src: [Float]) throws -> [UInt8] {
        guard src.count % t.blockElements == 0 else {
            throw FormatError.sizeMismatch(type: t, elements: src.count, bytes: 0, reason: "quantize: elements are not whole blocks")
        }
        var out = [UInt8](repeating: 0, count: src.count / t.blockElements * t.blockBytes)
        try src.withUnsafeBufferPointer { s in try out.withUnsafeMutableBytes { try quantize(t, s, into: $0) } }
        return out
    }
}

// MARK: helpers shared by the block files

@inline(__always) func loadF16(_ p: UnsafeRawPointer, _ offset: Int = 0) -> Float {
    HalfFloat.toFloat(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian)
}

@inline(__always) func storeF16(_ p: UnsafeMutableRawPointer, _ offset: Int, _ v: Float) {
    p.storeBytes(of: HalfFloat.fromFloat(v).littleEndian, toByteOffset: offset, as: UInt16.self)
}

@inline(__always) func byte(_ p: UnsafeRawPointer, _ i: Int) -> UInt8 { p.load(fromByteOffset: i, as: UInt8.self) }

/// numpy's `np_roundf` in gguf: round half away from zero, computed as floor(|x|) + floor(2·frac) with the sign.
@inline(__always) func roundHalfAway(_ x: Float) -> Float {
    let a = abs(x)
    let f = a.rounded(.down)
    let b = f + (2 * (a - f)).rounded(.down)
    return x < 0 ? -b : (x > 0 ? b : 0 * b)
}

/// numpy float32 → uint8 `astype` of values already truncated and in [0, 255], then `clip(0, hi)`.
@inline(__always) func clipToUInt8(_ v: Float, _ hi: UInt8) -> UInt8 {
    guard v.isFinite else { return 0 }
    if v <= 0 { return 0 }
    if v >= Float(hi) { return hi }
    return UInt8(v)
}
