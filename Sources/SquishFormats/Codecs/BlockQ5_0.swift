/// Q5_0: 32 weights with one f16 scale, w = d * (q - 16), q in 0...31.
/// Block (22 bytes): d f16 @0 | qh u32 LE @2 (bit i = bit 4 of q[i]) | qs[16] @6,
/// where qs[j] = (q[j] & 15) | (q[j + 16] & 15) << 4.
enum BlockQ5_0: BlockEncoder {
    static let blockElements = 32, blockBytes = 22

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = loadF16(block, 0)
        let qh = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
        let qs = block + 6
        for j in 0 ..< 16 {
            let byte = qs.load(fromByteOffset: j, as: UInt8.self)
            let lo = (byte & 0x0f) | UInt8((qh >> UInt32(j)) & 1) << 4
            let hi = (byte >> 4) | UInt8((qh >> UInt32(j + 16)) & 1) << 4
            out[j] = d * Float(Int8(lo) - 16)
            out[j + 16] = d * Float(Int8(hi) - 16)
        }
    }

    /// gguf-py `Q5_0.quantize_blocks`: d = x[argmax |x|] / -16, q = trunc(x / d + 16.5) clipped to 31.
    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        let d = blockSignedAbsMax(x, 32) / -16
        let id = inverseOrZero(d)
        storeF16(d, block, 0)
        var qh: UInt32 = 0
        for j in 0 ..< 16 {
            let lo = min(numpyLowByte((x[j] * id + 16.5).rounded(.towardZero)), 31)
            let hi = min(numpyLowByte((x[j + 16] * id + 16.5).rounded(.towardZero)), 31)
            qh |= UInt32(lo >> 4) << UInt32(j) | UInt32(hi >> 4) << UInt32(j + 16)
            block.storeBytes(of: (lo & 0x0f) | hi << 4, toByteOffset: 6 + j, as: UInt8.self)
        }
        block.storeBytes(of: qh.littleEndian, toByteOffset: 2, as: UInt32.self)
    }
}
