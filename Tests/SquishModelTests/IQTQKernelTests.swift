import Foundation
import Testing
import SquishFormats
import SquishKernels

/// IQ4_NL, IQ4_XS, TQ1_0 and TQ2_0 weights: the AVX2 and portable int8-activation kernels agree with
/// dequantize-then-f32 dot products on quantized activations, and the C row dequantizer matches the Swift codecs
/// (which match gguf-py) bit for bit.
@Suite(.serialized) struct IQTQKernelTests {
    static let types: [GGMLType] = [.iq4_NL, .tq2_0, .iq4_XS, .tq1_0]

    /// Byte offset of the f16 super-block scale d in one block.
    static func scaleOffset(_ type: GGMLType) -> Int {
        switch type {
        case .tq1_0: return 52  // qs[48] | qh[4] | d
        case .tq2_0: return 64  // qs[64] | d
        default: return 0       // IQ4_NL: d | qs[16]; IQ4_XS: d | scales_h | scales_l[4] | qs[128]
        }
    }

    /// (rows, columns, tokens): columns a multiple of the block size; rows and tokens off the kernels' tiles of 4;
    /// the widest shape has more than 64 groups of 256 columns (the AVX2 prefill tile splits it in passes) and, for
    /// IQ4_NL, blocks past the last whole group of 8.
    static func shapes(_ type: GGMLType) -> [(Int, Int, Int)] {
        if type.blockElements == 32 {
            return [(1, 32, 1), (5, 64, 1), (7, 96, 3), (33, 128, 4), (64, 576, 9), (19, 1536, 70), (3, 16_672, 5)]
        }
        return [(1, 256, 1), (5, 512, 1), (7, 768, 3), (33, 256, 4), (64, 512, 9), (19, 1536, 70), (3, 16_896, 5)]
    }

    /// Valid random blocks. Even rows: random quant bytes with f16 scales in 0.001...0.05 (every byte value has a
    /// defined meaning: TQ2_0 code 3 decodes to +2, a TQ1_0 byte's digits are 0...2 whatever its value).
    /// Odd rows of the ternary types: the codec's quantization of random floats (the blocks a real file holds).
    func randomWeights(_ type: GGMLType, rows: Int, columns: Int, rng: inout SplitMix64) throws -> [UInt8] {
        let rowBytes = type.rowBytes(elements: columns)!
        var bytes = (0 ..< rows * rowBytes).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
        let bb = type.blockBytes, so = Self.scaleOffset(type)
        for b in 0 ..< rows * columns / type.blockElements {
            let h = Float16(Float.random(in: 0.001 ... 0.05, using: &rng)).bitPattern
            bytes[b * bb + so] = UInt8(h & 0xFF)
            bytes[b * bb + so + 1] = UInt8(h >> 8)
        }
        if Codecs.canQuantize(type) {
            for r in stride(from: 1, to: rows, by: 2) {
                let x = (0 ..< columns).map { _ in Float.random(in: -0.05 ... 0.05, using: &rng) }
                let q = try Codecs.quantize(type, x)
                bytes.replaceSubrange(r * rowBytes ..< (r + 1) * rowBytes, with: q)
            }
        }
        return bytes
    }

    @Test(arguments: types)
    func kernelsAgreeWithReference(type: GGMLType) throws {
        var rng = SplitMix64(seed: UInt64(type.rawValue) + 11)
        let pool = WorkerPool(threads: 2)
        let matmul = Matmul(pool: pool)
        let portableMatmul = Matmul(pool: pool)
        portableMatmul.portable = true
        for (rows, columns, tokens) in Self.shapes(type) {
            let bytes = try randomWeights(type, rows: rows, columns: columns, rng: &rng)
            let x = (0 ..< tokens * columns).map { _ in Float.random(in: -2 ... 2, using: &rng) }
            try bytes.withUnsafeBytes { raw in
                let w = try WeightMatrix(name: "w", type: type, data: raw, rows: rows, columns: columns)
                #expect(w.usesQ8Kernel)
                var fast = [Float](repeating: 0, count: tokens * rows)
                var portable = fast
                try x.withUnsafeBufferPointer { xp in
                    try fast.withUnsafeMutableBufferPointer { try matmul(w, xp.baseAddress!, tokens: tokens, $0.baseAddress!) }
                    try portable.withUnsafeMutableBufferPointer { try portableMatmul(w, xp.baseAddress!, tokens: tokens, $0.baseAddress!) }
                }
                // Reference: dequantized weights · activations rounded as the kernel rounds them (8 bits per block
                // of 32, scale max|x|/127).
                var wf = [Float](repeating: 0, count: columns)
                for r in 0 ..< rows {
                    try wf.withUnsafeMutableBufferPointer { try w.dequantizeRow(r, into: $0.baseAddress!) }
                    for t in 0 ..< tokens {
                        let xq = quantized(Array(x[t * columns ..< (t + 1) * columns]))
                        var ref = 0.0, magnitude = 0.0
                        for k in 0 ..< columns { ref += Double(wf[k]) * Double(xq[k]); magnitude += abs(Double(wf[k]) * Double(xq[k])) }
                        let tol = 1e-4 * magnitude + 1e-6
                        #expect(abs(Double(fast[t * rows + r]) - ref) <= tol, "\(type) \(rows)x\(columns) t\(t) r\(r)")
                        #expect(abs(Double(portable[t * rows + r]) - ref) <= tol, "portable \(type) \(rows)x\(columns) t\(t) r\(r)")
                    }
                }
            }
        }
    }

    /// The C row dequantizer (WeightMatrix.dequantizeRow) against the Swift codecs on entirely random bytes,
    /// f16 scales included (zeros, subnormals, infinities and NaNs among them): equal bit patterns, or both NaN.
    @Test(arguments: types)
    func dequantizeRowMatchesCodec(type: GGMLType) throws {
        var rng = SplitMix64(seed: UInt64(type.rawValue) + 101)
        let rows = 64, columns = 4 * 256
        var bytes = (0 ..< rows * type.rowBytes(elements: columns)!).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
        // Half the blocks with sane scales, so most outputs are ordinary numbers.
        let bb = type.blockBytes, so = Self.scaleOffset(type)
        for b in stride(from: 0, to: rows * columns / type.blockElements, by: 2) {
            let h = Float16(Float.random(in: -0.05 ... 0.05, using: &rng)).bitPattern
            bytes[b * bb + so] = UInt8(h & 0xFF)
            bytes[b * bb + so + 1] = UInt8(h >> 8)
        }
        try bytes.withUnsafeBytes { raw in
            let w = try WeightMatrix(name: "w", type: type, data: raw, rows: rows, columns: columns)
            let expected = try Codecs.dequantize(type, raw, count: rows * columns)
            var got = [Float](repeating: 0, count: columns)
            var mismatches = 0
            for r in 0 ..< rows {
                try got.withUnsafeMutableBufferPointer { try w.dequantizeRow(r, into: $0.baseAddress!) }
                for k in 0 ..< columns {
                    let e = expected[r * columns + k], g = got[k]
                    if !(e.bitPattern == g.bitPattern || (e.isNaN && g.isNaN)) { mismatches += 1 }
                }
            }
            #expect(mismatches == 0, "\(type): \(mismatches) values differ")
        }
    }

    /// Activations as the int8 kernels see them.
    func quantized(_ x: [Float]) -> [Float] {
        var out = x
        for b in 0 ..< x.count / 32 {
            let block = x[b * 32 ..< (b + 1) * 32]
            let amax = block.map(abs).max()!
            let d = amax / 127
            let id = d != 0 ? 127 / amax : 0
            for i in b * 32 ..< (b + 1) * 32 { out[i] = (x[i] * id).rounded(.toNearestOrEven) * d }
        }
        return out
    }
}
