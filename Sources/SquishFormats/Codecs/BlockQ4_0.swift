/// Q4_0: 32 weights with one f16 scale, w = d * (q - 8), q in 0...15.
/// Block (18 bytes): d f16 @0 | qs[16] @2, where qs[j] = q[j] | q[j + 16] << 4.
enum BlockQ4_0: BlockEncoder {
    static let blockElements = 32, blockBytes = 18

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 0)
        let qs = block + 2
        for j in 0 ..< 16 {
            let byte = qs.load(fromByteOffset: j, as: UInt8.self)
            out[j] = d * Float(Int8(byte & 0x0f) - 8)
            out[j + 16] = d * Float(Int8(byte >> 4) - 8)
        }
    }

    /// gguf-py `Q4_0.quantize_blocks`: d = x[argmax |x|] / -8, q = trunc(x / d + 8.5) clipped to 15.
    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        let d = blockSignedAbsMax(x, 32) / -8
        let id = inverseOrZero(d)
        storeF16(d, block, 0)
        for j in 0 ..< 16 {
            let lo = min(numpyLowByte((x[j] * id + 8.5).rounded(.towardZero)), 15)
            let hi = min(numpyLowByte((x[j + 16] * id + 8.5).rounded(.towardZero)), 15)
            block.storeBytes(of: lo | hi << 4, toByteOffset: 2 + j, as: UInt8.self)
        }
    }
}
