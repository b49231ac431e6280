import SquishCore

/// Converts whole tensors (or row ranges) between ggml block formats and `Float`.
///
/// Every codec reproduces the arithmetic of the `gguf` Python package's numpy reference
/// (`gguf.quants`, version 0.19.0) operation for operation in f32, so results are bit-identical to it;
/// the tests in `SquishFormatsTests` check that against the package itself.
public enum Codecs {
    /// The registry: one line per block format. A type missing here is unsupported.
    static func decoder(for type: GGMLType) -> (any BlockDecoder.Type)? {
        switch type {
        case .f32: return PlainF32.self
        case .f16: return PlainF16.self
        case .bf16: return PlainBF16.self
        case .q4_0: return BlockQ4_0.self
        case .q4_1: return BlockQ4_1.self
        case .q5_0: return BlockQ5_0.self
        case .q5_1: return BlockQ5_1.self
        case .q8_0: return BlockQ8_0.self
        case .q2_K: return BlockQ2_K.self
        case .q3_K: return BlockQ3_K.self
        case .q4_K: return BlockQ4_K.self
        case .q5_K: return BlockQ5_K.self
        case .q6_K: return BlockQ6_K.self
        case .iq4_NL: return BlockIQ4_NL.self
        case .iq4_XS: return BlockIQ4_XS.self
        case .tq1_0: return BlockTQ1_0.self
        case .tq2_0: return BlockTQ2_0.self
        case .mxfp4: return BlockMXFP4.self
        default: return squishCodec(for: type) ?? sparseCodec(for: type) ?? nonLinearCodec(for: type)  // SQ<b>_G<g>, SQ<b>S_G<g>, SP<b>_K<k>, SQ4N_G<g>, SQ4NX_G<g>
        }
    }

    /// Codecs that also quantize are the decoders that conform to `BlockEncoder`.
    static func encoder(for type: GGMLType) -> (any BlockEncoder.Type)? {
        decoder(for: type) as? any BlockEncoder.Type
    }

    public static func canDequantize(_ t: GGMLType) -> Bool { decoder(for: t) != nil }
    public static func canQuantize(_ t: GGMLType) -> Bool { encoder(for: t) != nil }

    /// Decodes `dst.count` values; `src` must hold exactly `dst.count / blockElements` blocks.
    public static func dequantize(_ t: GGMLType, _ src: UnsafeRawBufferPointer, into dst: UnsafeMutableBufferPointer<Float>) throws {
        guard let codec = decoder(for: t) else { throw FormatError.unsupportedType(t, operation: "dequantize") }
        let blocks = try blockCount(t, elements: dst.count, bytes: src.count)
        guard blocks > 0, let s = src.baseAddress, let d = dst.baseAddress else { return }
        codec.decodeBlocks(s, d, count: blocks)
    }

    /// Encodes `src.count` values into `dst`, which must be exactly `src.count / blockElements` blocks long.
    public static func quantize(_ t: GGMLType, _ src: UnsafeBufferPointer<Float>, into dst: UnsafeMutableRawBufferPointer) throws {
        guard let codec = encoder(for: t) else { throw FormatError.unsupportedType(t, operation: "quantize") }
        let blocks = try blockCount(t, elements: src.count, bytes: dst.count)
        guard blocks > 0, let s = src.baseAddress, let d = dst.baseAddress else { return }
        codec.encodeBlocks(s, d, count: blocks)
    }

    public static func dequantize(_ t: GGMLType, _ src: UnsafeRawBufferPointer, count: Int) throws -> [Float] {
        guard decoder(for: t) != nil else { throw FormatError.unsupportedType(t, operation: "dequantize") }
        // Validate before allocating: the output size is then bounded by the input size.
        _ = try blockCount(t, elements: count, bytes: src.count)
        return try [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            try dequantize(t, src, into: buffer)
            initialized = count
        }
    }

    public static func quantize(_ t: GGMLType, _ src: [Float]) throws -> [UInt8] {
        guard encoder(for: t) != nil else { throw FormatError.unsupportedType(t, operation: "quantize") }
        let blocks = try blockCount(t, elements: src.count, bytes: nil)
        let bytes = blocks * t.blockBytes  // cannot overflow: blocks * blockBytes <= 4 * src.count
        return try [UInt8](unsafeUninitializedCapacity: bytes) { buffer, initialized in
            try src.withUnsafeBufferPointer { try quantize(t, $0, into: UnsafeMutableRawBufferPointer(buffer)) }
            initialized = bytes
        }
    }

    /// Number of blocks for `elements` values, checking that they are whole blocks and (when given) that
    /// `bytes` is exactly their encoded size.
    static func blockCount(_ t: GGMLType, elements: Int, bytes: Int?) throws -> Int {
        let (be, bb) = t.blockLayout
        guard elements >= 0, elements % be == 0 else {
            throw FormatError.sizeMismatch(type: t, elements: elements, bytes: bytes ?? -1,
                                           reason: "element count is not a multiple of the block size \(be)")
        }
        let blocks = elements / be
        if let bytes {
            guard let need = Checked.mul(blocks, bb), need == bytes else {
                throw FormatError.sizeMismatch(type: t, elements: elements, bytes: bytes,
                                               reason: "expected \(blocks) blocks of \(bb) bytes")
            }
        }
        return blocks
    }
}

/// One ggml block format that can be decoded: `blockElements` values stored in `blockBytes` bytes.
protocol BlockDecoder {
    static var blockElements: Int { get }
    static var blockBytes: Int { get }
    /// Decodes one block at `block` (`blockBytes` bytes, any alignment) into `out[0 ..< blockElements]`.
    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>)
    /// Decodes `count` consecutive blocks. The default loops over `decode`; flat formats override it.
    static func decodeBlocks(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int)
}

/// A block format that can also be produced from floats.
protocol BlockEncoder: BlockDecoder {
    /// Encodes `x[0 ..< blockElements]` into one block at `block` (any alignment).
    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer)
    static func encodeBlocks(_ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, count: Int)
}

extension BlockDecoder {
    static func decodeBlocks(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        for b in 0 ..< count {
            decode(src + b * blockBytes, dst + b * blockElements)
        }
    }
}

extension BlockEncoder {
    static func encodeBlocks(_ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, count: Int) {
        for b in 0 ..< count {
            encode(src + b * blockElements, dst + b * blockBytes)
        }
    }
}
