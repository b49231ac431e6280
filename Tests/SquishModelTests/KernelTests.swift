import Foundation
import Testing
import SquishFormats
import SquishKernels

/// Random weights in every integer-kernel block type: the AVX2 and portable kernels agree with each other and
/// with dequantize-then-f32 dot products on quantized activations, for many shapes.
@Suite(.serialized) struct KernelTests {
    static let types: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .f16, .f32]

    /// Valid random blocks: f16 scales in a sane range, random quant bytes.
    func randomWeights(_ type: GGMLType, rows: Int, columns: Int, rng: inout SplitMix64) -> [UInt8] {
        let rowBytes = type.rowBytes(elements: columns)!
        var bytes = (0 ..< rows * rowBytes).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
        func f16(_ x: Float) -> (UInt8, UInt8) {
            let h = Float16(x).bitPattern
            return (UInt8(h & 0xFF), UInt8(h >> 8))
        }
        switch type {
        case .f32:
            for i in 0 ..< rows * columns {
                let v = Float.random(in: -1 ... 1, using: &rng).bitPattern
                for k in 0 ..< 4 { bytes[4 * i + k] = UInt8((v >> (8 * k)) & 0xFF) }
            }
        case .f16:
            for i in 0 ..< rows * columns { (bytes[2 * i], bytes[2 * i + 1]) = f16(Float.random(in: -1 ... 1, using: &rng)) }
        default:
            let bb = type.blockBytes
            for b in 0 ..< rows * columns / 32 {
                (bytes[b * bb], bytes[b * bb + 1]) = f16(Float.random(in: 0.001 ... 0.05, using: &rng))
                if type == .q4_1 || type == .q5_1 { (bytes[b * bb + 2], bytes[b * bb + 3]) = f16(Float.random(in: -0.3 ... 0.3, using: &rng)) }
            }
        }
        return bytes
    }

    @Test(arguments: types)
    func kernelsAgreeWithReference(type: GGMLType) throws {
        var rng = SplitMix64(seed: UInt64(type.rawValue) + 7)
        let pool = WorkerPool(threads: 2)
        let matmul = Matmul(pool: pool)
        let portableMatmul = Matmul(pool: pool)
        portableMatmul.portable = true
        for (rows, columns, tokens) in [(1, 32, 1), (5, 64, 1), (7, 96, 3), (33, 128, 4), (64, 576, 9), (19, 1536, 70)] {
            let bytes = randomWeights(type, rows: rows, columns: columns, rng: &rng)
            let x = (0 ..< tokens * columns).map { _ in Float.random(in: -2 ... 2, using: &rng) }
            try bytes.withUnsafeBytes { raw in
                let w = try WeightMatrix(name: "w", type: type, data: raw, rows: rows, columns: columns)
                var fast = [Float](repeating: 0, count: tokens * rows)
                var portable = fast
                try x.withUnsafeBufferPointer { xp in
                    try fast.withUnsafeMutableBufferPointer { try matmul(w, xp.baseAddress!, tokens: tokens, $0.baseAddress!) }
                    try portable.withUnsafeMutableBufferPointer { try portableMatmul(w, xp.baseAddress!, tokens: tokens, $0.baseAddress!) }
                }
                // Reference: dequantized weights · activations rounded as the kernel rounds them (8 bits per block of
                // 32, scale max|x|/127) for block types; plain f32 for F16/F32.
                var wf = [Float](repeating: 0, count: columns)
                for r in 0 ..< rows {
                    try wf.withUnsafeMutableBufferPointer { try w.dequantizeRow(r, into: $0.baseAddress!) }
                    for t in 0 ..< tokens {
                        let xt = Array(x[t * columns ..< (t + 1) * columns])
                        let xq = w.usesQ8Kernel ? quantized(xt) : xt
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

    @Test func poolCoversEveryIndexOnce() {
        let pool = WorkerPool(threads: 3)
        for count in [0, 1, 2, 7, 100, 1001] {
            var hits = [Int](repeating: 0, count: count)
            hits.withUnsafeMutableBufferPointer { h in
                pool.parallelFor(count, granularity: 4) { range in for i in range { h[i] += 1 } }
            }
            #expect(hits.allSatisfy { $0 == 1 })
        }
    }
}
