import Foundation
import Testing
import SquishFormats
import SquishKernels

/// Random weights in every integer-kernel block type: the AVX2 and portable kernels agree with each other and
/// with dequantize-then-f32 dot products on quantized activations, for many shapes.
@Suite(.serialized) struct KernelTests {
    static let types: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .f16, .f32, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]
    static let kQuants: [GGMLType] = [.q2_K, .q3_K, .q4_K, .q5_K, .q6_K]

    /// Byte offsets of the f16 super-block factors (d, then dmin where the type has one) in K-quant blocks.
    static func kQuantScaleOffsets(_ type: GGMLType) -> [Int] {
        switch type {
        case .q2_K: return [80, 82]
        case .q3_K: return [108]
        case .q4_K, .q5_K: return [0, 2]
        default: return [208]  // Q6_K
        }
    }

    /// (rows, columns, tokens): columns a multiple of the block size (256 for K-quants).
    static func shapes(_ type: GGMLType) -> [(Int, Int, Int)] {
        if kQuants.contains(type) {
            return [(1, 256, 1), (5, 512, 1), (7, 768, 3), (33, 256, 4), (8, 2048, 5), (19, 1536, 70)]
        }
        return [(1, 32, 1), (5, 64, 1), (7, 96, 3), (33, 128, 4), (64, 576, 9), (19, 1536, 70)]
    }

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
        case _ where Self.kQuants.contains(type):
            let bb = type.blockBytes
            for b in 0 ..< rows * columns / 256 {
                for o in Self.kQuantScaleOffsets(type) {
                    (bytes[b * bb + o], bytes[b * bb + o + 1]) = f16(Float.random(in: 0.001 ... 0.05, using: &rng))
                }
            }
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
        for (rows, columns, tokens) in Self.shapes(type) {
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

    /// The sparse types SP<b>_K<k> (sparse.c): random masks (exactly k kept, and some blocks with fewer), random
    /// codes; AVX2 and portable kernels bit-identical, both equal to dequantized weights · 8-bit activations.
    @Test(arguments: GGMLType.allCases.filter { $0.squishSparse != nil })
    func sparseKernelsAgreeWithReference(type: GGMLType) throws {
        var rng = SplitMix64(seed: UInt64(type.rawValue) + 11)
        let pool = WorkerPool(threads: 2)
        let matmul = Matmul(pool: pool)
        let portableMatmul = Matmul(pool: pool)
        portableMatmul.portable = true
        let (_, kept) = type.squishSparse!
        let bb = type.blockBytes
        for (rows, columns, tokens) in [(1, 64, 1), (5, 128, 1), (7, 192, 3), (33, 576, 4), (19, 1536, 70)] {
            var bytes = (0 ..< rows * columns / 64 * bb).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            for b in 0 ..< rows * columns / 64 {
                let count = b % 5 == 4 ? Int.random(in: 0 ... kept, using: &rng) : kept
                var mask: UInt64 = 0
                while mask.nonzeroBitCount < count { mask |= 1 << UInt64.random(in: 0 ..< 64, using: &rng) }
                for k in 0 ..< 8 { bytes[b * bb + k] = UInt8(truncatingIfNeeded: mask >> UInt64(8 * k)) }
                let h = Float16(Float.random(in: -0.05 ... 0.05, using: &rng)).bitPattern
                (bytes[b * bb + 8], bytes[b * bb + 9]) = (UInt8(h & 0xFF), UInt8(h >> 8))
            }
            let x = (0 ..< tokens * columns).map { _ in Float.random(in: -2 ... 2, using: &rng) }
            try bytes.withUnsafeBytes { raw in
                let w = try WeightMatrix(name: "w", type: type, data: raw, rows: rows, columns: columns)
                var fast = [Float](repeating: 0, count: tokens * rows)
                var portable = fast
                try x.withUnsafeBufferPointer { xp in
                    try fast.withUnsafeMutableBufferPointer { try matmul(w, xp.baseAddress!, tokens: tokens, $0.baseAddress!) }
                    try portable.withUnsafeMutableBufferPointer { try portableMatmul(w, xp.baseAddress!, tokens: tokens, $0.baseAddress!) }
                }
                #expect(zip(fast, portable).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(type) \(rows)x\(columns): AVX2 and portable differ")
                let dq = try Codecs.dequantize(type, raw, count: rows * columns)
                for t in 0 ..< tokens {
                    let xq = quantized(Array(x[t * columns ..< (t + 1) * columns]))
                    for r in 0 ..< rows {
                        var ref = 0.0, magnitude = 0.0
                        for k in 0 ..< columns {
                            let p = Double(dq[r * columns + k]) * Double(xq[k])
                            ref += p
                            magnitude += abs(p)
                        }
                        #expect(abs(Double(fast[t * rows + r]) - ref) <= 1e-4 * magnitude + 1e-6, "\(type) \(rows)x\(columns) t\(t) r\(r)")
                    }
                }
            }
        }
    }

    /// The C dequantizer behind `WeightMatrix.dequantizeRow` equals the Swift codec bit for bit on random blocks
    /// (every byte random, so scales include subnormals, infinities and NaNs).
    @Test(arguments: kQuants)
    func kQuantRowsMatchCodec(type: GGMLType) throws {
        var rng = SplitMix64(seed: UInt64(type.rawValue) + 99)
        let rows = 16, columns = 1024
        for pass in 0 ..< 2 {
            var bytes = randomWeights(type, rows: rows, columns: columns, rng: &rng)
            if pass == 1 { for i in bytes.indices { bytes[i] = UInt8.random(in: 0 ... 255, using: &rng) } }
            try bytes.withUnsafeBytes { raw in
                let w = try WeightMatrix(name: "w", type: type, data: raw, rows: rows, columns: columns)
                #expect(w.usesQ8Kernel)
                var row = [Float](repeating: 0, count: columns)
                for r in 0 ..< rows {
                    try row.withUnsafeMutableBufferPointer { try w.dequantizeRow(r, into: $0.baseAddress!) }
                    let reference = try Codecs.dequantize(type, UnsafeRawBufferPointer(rebasing: raw[r * w.rowBytes ..< (r + 1) * w.rowBytes]),
                                                          count: columns)
                    let mismatches = (0 ..< columns).filter { k in
                        !(row[k].bitPattern == reference[k].bitPattern || (row[k].isNaN && reference[k].isNaN))
                    }
                    #expect(mismatches.isEmpty, "\(type) pass \(pass) row \(r): \(mismatches.count) values differ, first at \(mismatches.first ?? -1)")
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
