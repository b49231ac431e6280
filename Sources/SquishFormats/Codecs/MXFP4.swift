import Foundation

/// MXFP4 (OCP Microscaling, as llama.cpp stores it, ggml type 39): 32 weights, each an FP4 E2M1 value (sign, 2-bit
/// exponent, 1-bit mantissa: 0, ±0.5, ±1, ±1.5, ±2, ±3, ±4, ±6) times one shared power-of-two scale (E8M0).
/// Block (17 bytes): e u8 @0 | qs[16] @1, qs[j] = q[j] | q[j + 16] << 4 (IQ4_NL's nibble order).
/// llama.cpp keeps the E2M1 values doubled as integers (`kvalues_mxfp4`) and halves the scale:
/// w = 2^(e − 128) · level[q].
public enum MXFP4 {
    /// The doubled E2M1 values, indexed by the 4-bit code (bit 3 is the sign; code 8 is −0).
    public static let levels: [Float] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12]

    /// The scale a block's exponent byte stands for: 2^(e − 128), exact in f32 for every e (subnormal below e = 2).
    @inline(__always)
    public static func scale(_ e: UInt8) -> Float {
        e < 2 ? Float(bitPattern: UInt32(0x0020_0000) << UInt32(e)) : Float(bitPattern: UInt32(e - 1) << 23)
    }

    /// The exponent byte of `scale` (a power of two in 2^-128 ... 2^127).
    @inline(__always)
    public static func exponent(ofScale scale: Float) -> UInt8 {
        UInt8(clamping: Int(scale.exponent) + 128)
    }

    /// The code whose level is nearest to `x` at scale `d`: the first in code order among equally near ones (as
    /// gguf-py's argmin), |d · level − x| computed in f32.
    @inline(__always)
    public static func nearest(_ x: Float, scale d: Float) -> UInt8 {
        var best: UInt8 = 0
        var bestError = abs(d * levels[0] - x)
        for q in 1 ..< 16 {
            let e = abs(d * levels[q] - x)
            if e < bestError { bestError = e; best = UInt8(q) }
        }
        return best
    }
}

enum BlockMXFP4: BlockEncoder {
    static let blockElements = 32, blockBytes = 17

    static func decode(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = MXFP4.scale(block.load(as: UInt8.self))
        for j in 0 ..< 16 {
            let byte = block.load(fromByteOffset: 1 + j, as: UInt8.self)
            out[j] = d * MXFP4.levels[Int(byte & 0x0f)]
            out[j + 16] = d * MXFP4.levels[Int(byte >> 4)]
        }
    }

    /// gguf-py `MXFP4.quantize_blocks`: e = floor(log2 max |x|) − 2 + 127 (0 for an all-zero block; log2 in f32,
    /// the cast to u8 as numpy's), then each weight's nearest level.
    static func encode(_ x: UnsafePointer<Float>, _ block: UnsafeMutableRawPointer) {
        let amax = blockAbsMax(x, 32)
        let e = amax > 0 ? numpyLowByte(log2f(amax).rounded(.down) - 2 + 127) : 0
        let d = MXFP4.scale(e)
        block.storeBytes(of: e, as: UInt8.self)
        for j in 0 ..< 16 {
            let lo = MXFP4.nearest(x[j], scale: d), hi = MXFP4.nearest(x[j + 16], scale: d)
            block.storeBytes(of: lo | hi << 4, toByteOffset: 1 + j, as: UInt8.self)
        }
    }
}
