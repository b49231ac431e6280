import Foundation
import Testing
import SquishFormats
import SquishKernels

/// Row-interleaved (repacked) Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/IQ4_NL/Q3_K/Q4_K/Q5_K/Q6_K weights: the AVX512-VNNI (where the CPU
/// has it), AVX2 and portable packed kernels agree bit for bit,
/// and they agree with the unpacked kernel and with dot products, in Double, of the weights as the Swift codecs
/// dequantize them (independent of the C code) with the rounded activations.
@Suite(.serialized) struct RepackKernelTests {
    static let types: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .iq4_NL, .q3_K, .q4_K, .q5_K, .q6_K]
    static let superBlockTypes: [GGMLType] = [.q3_K, .q4_K, .q5_K, .q6_K]
    /// (rows, columns, tokens): rows a multiple of 8; odd token counts exercise the 4-token tile and its remainder.
    static let shapes = [(8, 32, 1), (16, 64, 3), (24, 96, 5), (8, 288, 4), (64, 576, 9), (40, 1536, 70), (192, 576, 1),
                         (576, 64, 2), (32, 1536, 1)]
    /// The same for super-block types (256 columns per block).
    static let superBlockShapes = [(8, 256, 1), (16, 512, 3), (24, 1536, 5), (64, 256, 9), (40, 1536, 70), (576, 256, 2)]
    static func shapes(_ type: GGMLType) -> [(Int, Int, Int)] { superBlockTypes.contains(type) ? superBlockShapes : shapes }

    @Test(arguments: types)
    func packedAgreesWithUnpackedAndReference(type: GGMLType) throws {
        var rng = SplitMix64(seed: UInt64(type.rawValue) + 1234)
        let helper = KernelTests()
        let pool = WorkerPool(threads: 2)
        let matmul = Matmul(pool: pool)
        let portableMatmul = Matmul(pool: pool)
        portableMatmul.portable = true
        let avx2Matmul = Matmul(pool: pool)
        avx2Matmul.allowVNNI = false
        for (rows, columns, tokens) in Self.shapes(type) {
            let bytes = helper.randomWeights(type, rows: rows, columns: columns, rng: &rng)
            let x = (0 ..< tokens * columns).map { _ in Float.random(in: -2 ... 2, using: &rng) }
            try bytes.withUnsafeBytes { raw in
                let plain = try WeightMatrix(name: "w", type: type, data: raw, rows: rows, columns: columns)
                #expect(plain.canRepack)
                let packed = plain.repacked()
                #expect(packed.packed != nil)
                var fast = [Float](repeating: 0, count: tokens * rows)
                var portable = fast, avx2 = fast, unpacked = fast
                try x.withUnsafeBufferPointer { xp in
                    try fast.withUnsafeMutableBufferPointer { try matmul(packed, xp.baseAddress!, tokens: tokens, $0.baseAddress!) }
                    try avx2.withUnsafeMutableBufferPointer { try avx2Matmul(packed, xp.baseAddress!, tokens: tokens, $0.baseAddress!) }
                    try portable.withUnsafeMutableBufferPointer { try portableMatmul(packed, xp.baseAddress!, tokens: tokens, $0.baseAddress!) }
                    try unpacked.withUnsafeMutableBufferPointer { try matmul(plain, xp.baseAddress!, tokens: tokens, $0.baseAddress!) }
                }
                // The dispatched kernel (AVX512-VNNI where the CPU has it), the AVX2 one and the portable one agree bit for bit.
                let differing = (0 ..< fast.count).filter { fast[$0].bitPattern != portable[$0].bitPattern }
                #expect(differing.isEmpty, "\(type) \(rows)x\(columns)x\(tokens): dispatched and portable differ at \(differing.prefix(4))")
                let differingAVX2 = (0 ..< fast.count).filter { avx2[$0].bitPattern != portable[$0].bitPattern }
                #expect(differingAVX2.isEmpty, "\(type) \(rows)x\(columns)x\(tokens): AVX2 and portable differ at \(differingAVX2.prefix(4))")
                let xqs = (0 ..< tokens).map { t in helper.quantized(Array(x[t * columns ..< (t + 1) * columns])) }
                for r in 0 ..< rows {
                    let wf = try Codecs.dequantize(type, UnsafeRawBufferPointer(rebasing: raw[r * plain.rowBytes ..< (r + 1) * plain.rowBytes]),
                                                   count: columns)
                    for t in 0 ..< tokens {
                        let xq = xqs[t]
                        var ref = 0.0, magnitude = 0.0
                        for k in 0 ..< columns { ref += Double(wf[k]) * Double(xq[k]); magnitude += abs(Double(wf[k]) * Double(xq[k])) }
                        let tol = 1e-4 * magnitude + 1e-6
                        #expect(abs(Double(fast[t * rows + r]) - ref) <= tol, "\(type) \(rows)x\(columns) t\(t) r\(r)")
                        #expect(abs(Double(unpacked[t * rows + r]) - Double(fast[t * rows + r])) <= tol, "\(type) vs unpacked t\(t) r\(r)")
                    }
                }
            }
        }
    }

    /// Row counts that are not a multiple of 8 keep the plain layout, and the matrix still multiplies correctly
    /// (against the Swift codecs' weights, in Double).
    @Test(arguments: types)
    func onlyWholeGroupsOfEightRowsAreRepacked(type: GGMLType) throws {
        var rng = SplitMix64(seed: 5 + UInt64(type.rawValue))
        let helper = KernelTests()
        let matmul = Matmul(pool: WorkerPool(threads: 2))
        let shapes = Self.superBlockTypes.contains(type) ? [(7, 256, 1), (1, 512, 3), (12, 1536, 5), (577, 256, 1)]
                                   : [(7, 64, 1), (1, 32, 3), (12, 576, 5), (20, 96, 2), (577, 64, 1)]
        for (rows, columns, tokens) in shapes {
            let bytes = helper.randomWeights(type, rows: rows, columns: columns, rng: &rng)
            let x = (0 ..< tokens * columns).map { _ in Float.random(in: -2 ... 2, using: &rng) }
            try bytes.withUnsafeBytes { raw in
                let w = try WeightMatrix(name: "w", type: type, data: raw, rows: rows, columns: columns)
                #expect(!w.canRepack)
                let r = w.repacked()
                #expect(r.packed == nil)
                var y = [Float](repeating: 0, count: tokens * rows)
                try x.withUnsafeBufferPointer { xp in
                    try y.withUnsafeMutableBufferPointer { try matmul(r, xp.baseAddress!, tokens: tokens, $0.baseAddress!) }
                }
                for t in 0 ..< tokens {
                    let xq = helper.quantized(Array(x[t * columns ..< (t + 1) * columns]))
                    for row in 0 ..< rows {
                        let wf = try Codecs.dequantize(type, UnsafeRawBufferPointer(rebasing: raw[row * w.rowBytes ..< (row + 1) * w.rowBytes]),
                                                       count: columns)
                        var ref = 0.0, magnitude = 0.0
                        for k in 0 ..< columns { ref += Double(wf[k]) * Double(xq[k]); magnitude += abs(Double(wf[k]) * Double(xq[k])) }
                        #expect(abs(Double(y[t * rows + row]) - ref) <= 1e-4 * magnitude + 1e-6, "\(type) \(rows)x\(columns) t\(t) r\(row)")
                    }
                }
            }
        }
        let f16 = [UInt8](repeating: 0, count: 8 * 32 * 2)
        try f16.withUnsafeBytes { raw in
            let w = try WeightMatrix(name: "w", type: .f16, data: raw, rows: 8, columns: 32)
            #expect(!w.canRepack)
        }
    }

    /// Three matrices of mixed types on the same input: 96 columns of 32-weight blocks, and K-quant mixes like Gemma 3's
    /// layers on 512 columns (the first matrix, 40 rows, is also the paired form's).
    static let fusedCases: [(Int, [GGMLType])] = [(96, [.q4_1, .iq4_NL, .q8_0]), (512, [.q4_K, .q5_0, .q6_K]), (512, [.q6_K, .q5_K, .q8_0])]

    /// The fused calls (one quantization, one job) give the same numbers as one call per matrix, and the paired
    /// form's rowsDone sees every row once, after both outputs for those rows are written.
    @Test(arguments: 0 ..< fusedCases.count)
    func fusedMatchesSeparateCalls(caseIndex: Int) throws {
        var rng = SplitMix64(seed: 77 + UInt64(caseIndex))
        let helper = KernelTests()
        let pool = WorkerPool(threads: 2)
        let matmul = Matmul(pool: pool)
        let (columns, types) = Self.fusedCases[caseIndex]
        let tokens = 6
        let shapes: [(GGMLType, Int)] = [(types[0], 40), (types[1], 16), (types[2], 24)]
        let blobs = shapes.map { helper.randomWeights($0.0, rows: $0.1, columns: columns, rng: &rng) }
        let x = (0 ..< tokens * columns).map { _ in Float.random(in: -2 ... 2, using: &rng) }
        try blobs[0].withUnsafeBytes { r0 in try blobs[1].withUnsafeBytes { r1 in try blobs[2].withUnsafeBytes { r2 in
            let ws = try [r0, r1, r2].enumerated().map { i, raw in
                try WeightMatrix(name: "w\(i)", type: shapes[i].0, data: raw, rows: shapes[i].1, columns: columns).repacked()
            }
            var separate = ws.map { [Float](repeating: 0, count: tokens * $0.rows) }
            var (f0, f1, f2) = (separate[0], separate[1], separate[2])
            try x.withUnsafeBufferPointer { xp in
                for i in 0 ..< 3 { try separate[i].withUnsafeMutableBufferPointer { try matmul(ws[i], xp.baseAddress!, tokens: tokens, $0.baseAddress!) } }
                try f0.withUnsafeMutableBufferPointer { y0 in try f1.withUnsafeMutableBufferPointer { y1 in
                    try f2.withUnsafeMutableBufferPointer { y2 in
                        try matmul.fused(ws[0], y0.baseAddress!, ws[1], y1.baseAddress!, ws[2], y2.baseAddress!, input: xp.baseAddress!, tokens: tokens)
                    } } }
            }
            #expect([f0, f1, f2] == separate)
            // Paired: a and b with equal rows; rowsDone sums a + b into a for its rows.
            var ya = [Float](repeating: 0, count: tokens * 40), yb = ya
            var seen = [Int](repeating: 0, count: 40)
            try x.withUnsafeBufferPointer { xp in
                try ya.withUnsafeMutableBufferPointer { pa in try yb.withUnsafeMutableBufferPointer { pb in
                    let (a, b) = (pa.baseAddress!, pb.baseAddress!)
                    try matmul.fused(ws[0], a, ws[0], b, input: xp.baseAddress!, tokens: tokens) { rows in
                        for r in rows { seen[r] += 1 }
                        for t in 0 ..< tokens { for r in rows { a[t * 40 + r] += b[t * 40 + r] } }
                    }
                } }
            }
            #expect(seen == [Int](repeating: 1, count: 40))
            #expect(ya == separate[0].map { $0 + $0 })
        } } }
    }
}
