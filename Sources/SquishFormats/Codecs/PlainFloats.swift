import SquishCore

// Unblocked float formats: a "block" is one value.

/// F32: 4-byte little-endian IEEE binary32 values, copied as they are (NaN payloads included).
enum PlainF32: BlockEncoder {
    static let blockElements = 1, blockBytes = 4
    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        out.pointee = Float(bitPattern: UInt32(littleEndian: block.loadUnaligned(as: UInt32.self)))
    }
    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        block.storeBytes(of: x.pointee.bitPattern.littleEndian, as: UInt32.self)
    }
    static func decodeBlocks(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: count * 4)
    }
    static func encodeBlocks(_ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, count: Int) {
        dst.copyMemory(from: src, byteCount: count * 4)
    }
}

/// F16: 2-byte little-endian IEEE binary16; encoding rounds to nearest even (numpy `astype(float16)`).
enum PlainF16: BlockEncoder {
    static let blockElements = 1, blockBytes = 2
    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        out.pointee = loadF16(block, 0)
    }
    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        storeF16(x.pointee, block, 0)
    }
}

/// BF16: the top 16 bits of a binary32; encoding rounds to nearest even and quiets NaNs
/// (ggml's `ggml_compute_fp32_to_bf16`, as gguf-py implements it).
enum PlainBF16: BlockEncoder {
    static let blockElements = 1, blockBytes = 2
    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        out.pointee = HalfFloat.bf16ToFloat(UInt16(littleEndian: block.loadUnaligned(as: UInt16.self)))
    }
    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        block.storeBytes(of: HalfFloat.bf16FromFloat(x.pointee).littleEndian, as: UInt16.self)
    }
}
