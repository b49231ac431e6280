/// Q4_1: 32 weights with an f16 scale and an f16 minimum, w = d * q + m, q in 0...15.
/// Block (20 bytes): d f16 @0 | m f16 @2 | qs[16] @4, where qs[j] = q[j] | q[j + 16] << 4.
enum BlockQ4_1: BlockEncoder {
    static let blockElements = 32, blockBytes = 20

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 0)
        let m = loadF16(block, 2)
        let qs = block + 4
        for j in 0 ..< 16 {
            let byte = qs.load(fromByteOffset: j, as: UInt8.self)
            out[j] = d * Float(byte & 0x0f) + m
            out[j + 16] = d * Float(byte >> 4) + m
        }
    }

    /// gguf-py `Q4_1.quantize_blocks`: d = (max - min) / 15, q = trunc((x - min) / d + 0.5) clipped to 15.
    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        let mx = blockMax(x, 32)
        let mn = blockMin(x, 32)
        let d = (mx - mn) / 15
        let id = inverseOrZero(d)
        storeF16(d, block, 0)
        storeF16(mn, block, 2)
        for j in 0 ..< 16 {
            let lo = min(numpyLowByte(((x[j] - mn) * id + 0.5).rounded(.towardZero)), 15)
            let hi = min(numpyLowByte(((x[j + 16] - mn) * id + 0.5).rounded(.towardZero)), 15)
            block.storeBytes(of: lo | hi << 4, toByteOffset: 4 + j, as: UInt8.self)
        }
    }
}
