/// Q8_0: 32 weights with one f16 scale, w = d * q, q an int8.
/// Block (34 bytes): d f16 @0 | qs[32] int8 @2.
enum BlockQ8_0: BlockEncoder {
    static let blockElements = 32, blockBytes = 34

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 0)
        let qs = block + 2
        for j in 0 ..< 32 {
            out[j] = Float(qs.load(fromByteOffset: j, as: Int8.self)) * d
        }
    }

    /// gguf-py `Q8_0.quantize_blocks` (same as ggml's reference): d = max |x| / 127, q = round-half-away(x / d).
    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        let d = blockAbsMax(x, 32) / 127
        let id = inverseOrZero(d)
        storeF16(d, block, 0)
        for j in 0 ..< 32 {
            block.storeBytes(of: numpyLowByte(numpyRoundAwayFromZero(x[j] * id)), toByteOffset: 2 + j, as: UInt8.self)
        }
    }
}
