/// Q5_1: 32 weights with an f16 scale and an f16 minimum, w = d * q + m, q in 0...31.
/// Block (24 bytes): d f16 @0 | m f16 @2 | qh u32 LE @4 (bit i = bit 4 of q[i]) | qs[16] @8,
/// where qs[j] = (q[j] & 15) | (q[j + 16] & 15) << 4.
enum BlockQ5_1: BlockEncoder {
    static let blockElements = 32, blockBytes = 24

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 0)
        let m = loadF16(block, 2)
        let qh = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let qs = block + 8
        for j in 0 ..< 16 {
            let byte = qs.load(fromByteOffset: j, as: UInt8.self)
            let lo = (byte & 0x0f) | UInt8((qh >> UInt32(j)) & 1) << 4
            let hi = (byte >> 4) | UInt8((qh >> UInt32(j + 16)) & 1) << 4
            out[j] = d * Float(lo) + m
            out[j + 16] = d * Float(hi) + m
        }
    }

    /// gguf-py `Q5_1.quantize_blocks`: d = (max - min) / 31, q = trunc((x - min) / d + 0.5) clipped to 31.
    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        let mx = blockMax(x, 32)
        let mn = blockMin(x, 32)
        let d = (mx - mn) / 31
        let id = inverseOrZero(d)
        storeF16(d, block, 0)
        storeF16(mn, block, 2)
        var qh: UInt32 = 0
        for j in 0 ..< 16 {
            let lo = min(numpyLowByte(((x[j] - mn) * id + 0.5).rounded(.towardZero)), 31)
            let hi = min(numpyLowByte(((x[j + 16] - mn) * id + 0.5).rounded(.towardZero)), 31)
            qh |= UInt32(lo >> 4) << UInt32(j) | UInt32(hi >> 4) << UInt32(j + 16)
            block.storeBytes(of: (lo & 0x0f) | hi << 4, toByteOffset: 8 + j, as: UInt8.self)
        }
        block.storeBytes(of: qh.littleEndian, toByteOffset: 4, as: UInt32.self)
    }
}
