/// Q4_0 (18 bytes: f16 d, u8 qs[16]; w = d·(q − 8)) and Q4_1 (20 bytes: f16 d, f16 m, u8 qs[16]; w = d·q + m).
/// Element j < 16 is the low nibble of qs[j], element j + 16 its high nibble.
enum BlockQ4 {
    static func dequantizeQ4_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadF16(b)
        for j in 0 ..< 16 {
            let q = byte(b, 2 + j)
            y[j] = d * Float(Int8(q & 0x0F) - 8)
            y[j + 16] = d * Float(Int8(q >> 4) - 8)
        }
    }

    static func dequantizeQ4_1(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadF16(b), m = loadF16(b, 2)
        for j in 0 ..< 16 {
            let q = byte(b, 4 + j)
            y[j] = d * Float(q & 0x0F) + m
            y[j + 16] = d * Float(q >> 4) + m
        }
    }

    /// d = x[argmax |x|] / −8, q = trunc(x/d + 8.5) clipped to 0…15.
    static func quantizeQ4_0(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
        var amax = abs(x[0]), mx = x[0]  // the first element of largest magnitude, as numpy's argmax picks
        for i in 1 ..< 32 where abs(x[i]) > amax { amax = abs(x[i]); mx = x[i] }
        let d = mx / -8
        let id: Float = d == 0 ? 0 : 1 / d
        storeF16(out, 0, d)
        for j in 0 ..< 16 {
            let lo = clipToUInt8((x[j] * id + 8.5).rounded(.towardZero), 15)
            let hi = clipToUInt8((x[j + 16] * id + 8.5).rounded(.towardZero), 15)
            out.storeBytes(of: lo | hi << 4, toByteOffset: 2 + j, as: UInt8.self)
        }
    }

    /// d = (max − min) / 15, m = min, q = trunc((x − min)/d + 0.5) clipped to 0…15.
    static func quantizeQ4_1(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
        var mx = x[0], mn = x[0]
        for i in 1 ..< 32 { mx = max(mx, x[i]); mn = min(mn, x[i]) }
        let d = (mx - mn) / 15
        let id: Float = d == 0 ? 0 : 1 / d
        storeF16(out, 0, d)
        storeF16(out, 2, mn)
        for j in 0 ..< 16 {
            let lo = clipToUInt8(((x[j] - mn) * id + 0.5).rounded(.towardZero), 15)
            let hi = clipToUInt8(((x[j + 16] - mn) * id + 0.5).rounded(.towardZero), 15)
            out.storeBytes(of: lo | hi << 4, toByteOffset: 4 + j, as: UInt8.self)
        }
    }
}

/// Q5_0 (22 bytes: f16 d, u32 qh, u8 qs[16]; w = d·(q − 16)) and Q5_1 (24 bytes: f16 d, f16 m, u32 qh, u8 qs[16];
/// w = d·q + m). Bit 4 of element i's q is bit i of qh.
enum BlockQ5 {
    @inline(__always) static func unpack(_ b: UnsafeRawPointer, qhAt: Int, _ body: (Int, UInt8) -> Void) {
        let qh = b.loadUnaligned(fromByteOffset: qhAt, as: UInt32.self).littleEndian
        for j in 0 ..< 16 {
            let q = byte(b, qhAt + 4 + j)
            body(j, (q & 0x0F) | UInt8((qh >> UInt32(j)) & 1) << 4)
            body(j + 16, (q >> 4) | UInt8((qh >> UInt32(j + 16)) & 1) << 4)
        }
    }

    static func dequantizeQ5_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadF16(b)
        unpack(b, qhAt: 2) { i, q in y[i] = d * Float(Int8(q) - 16) }
    }

    static func dequantizeQ5_1(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadF16(b), m = loadF16(b, 2)
        unpack(b, qhAt: 4) { i, q in y[i] = d * Float(q) + m }
    }

    @inline(__always) static func pack(_ q: [UInt8], _ out: UnsafeMutableRawPointer, qhAt: Int) {
        var qh: UInt32 = 0
        for i in 0 ..< 32 where q[i] >> 4 != 0 { qh |= 1 << UInt32(i) }
        out.storeBytes(of: qh.littleEndian, toByteOffset: qhAt, as: UInt32.self)
        for j in 0 ..< 16 { out.storeBytes(of: (q[j] & 0x0F) | (q[j + 16] << 4), toByteOffset: qhAt + 4 + j, as: UInt8.self) }
    }

    static func quantizeQ5_0(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
        var amax = abs(x[0]), mx = x[0]
        for i in 1 ..< 32 where abs(x[i]) > amax { amax = abs(x[i]); mx = x[i] }
        let d = mx / -16
        let id: Float = d == 0 ? 0 : 1 / d
        storeF16(out, 0, d)
        let q = (0 ..< 32).map { clipToUInt8((x[$0] * id + 16.5).rounded(.towardZero), 31) }
        pack(q, out, qhAt: 2)
    }

    static func quantizeQ5_1(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
        var mx = x[0], mn = x[0]
        for i in 1 ..< 32 { mx = max(mx, x[i]); mn = min(mn, x[i]) }
        let d = (mx - mn) / 31
        let id: Float = d == 0 ? 0 : 1 / d
        storeF16(out, 0, d)
        storeF16(out, 2, mn)
        let q = (0 ..< 32).map { clipToUInt8(((x[$0] - mn) * id + 0.5).rounded(.towardZero), 31) }
        pack(q, out, qhAt: 4)
    }
}

/// Q8_0 (34 bytes: f16 d, i8 qs[32]; w = d·q), d = max|x| / 127, q = round-half-away(x/d).
enum BlockQ8_0 {
    static func dequantize(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadF16(b)
        for i in 0 ..< 32 { y[i] = Float(Int8(bitPattern: byte(b, 2 + i))) * d }
    }

    static func quantize(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for i in 0 ..< 32 { amax = max(amax, abs(x[i])) }
        let d = amax / 127
        let id: Float = d == 0 ? 0 : 1 / d
        storeF16(out, 0, d)
        for i in 0 ..< 32 {
            let q = roundHalfAway(x[i] * id)
            out.storeBytes(of: UInt8(bitPattern: Int8(max(-128, min(127, q.isFinite ? q : 0)))), toByteOffset: 2 + i, as: UInt8.self)
        }
    }
}
