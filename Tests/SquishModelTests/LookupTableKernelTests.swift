import CSquishKernels
import Foundation
import Testing
import SquishCore
import SquishEval
import SquishFormats
import SquishKernels
import SquishModel

/// Lookup-table (bit-plane, T-MAC style) kernels: against dot products, in Double, of the weights as the Swift codecs
/// dequantize them with the unrounded f32 activations, within the bound that the int8 tables allow (lut.c):
/// |Δy[r]| ≤ Σ_g |d[r, g]| · (2^b − 1) · (G / 4) · s_g / 2, s_g = max over the group's 4-activation chunks of the
/// largest |subset sum| / 127, plus float rounding; the AVX2 and portable kernels agree bit for bit.
@Suite(.serialized) struct LookupTableKernelTests {
    static let types: [GGMLType] = [.sq2_G32, .sq2_G64, .sq3_G32, .sq3_G64, .sq4_G32, .sq4_G64, .tq2_0, .tq1_0]

    /// (rows, columns, tokens): odd row counts (partial 32-row blocks), columns multiples of the group but not of 256.
    static func shapes(_ type: GGMLType) -> [(Int, Int, Int)] {
        if type == .tq2_0 || type == .tq1_0 { return [(1, 256, 1), (31, 256, 1), (33, 512, 2), (65, 1536, 1), (200, 768, 3)] }
        let g = type.squishAffine!.group
        return [(1, g, 1), (1, 3 * g, 1), (31, g, 1), (32, 5 * g, 1), (33, 7 * g, 2), (65, 576, 1), (97, 192, 3), (200, 320, 1),
                (7, 1536, 1), (577, 64, 1)]
    }

    /// Random blocks: random codes, then d (positive, f16) and m (f16) per group; ternary: d per 256.
    static func randomWeights(_ type: GGMLType, rows: Int, columns: Int, rng: inout SplitMix64) -> [UInt8] {
        let rowBytes = type.rowBytes(elements: columns)!
        var bytes = (0 ..< rows * rowBytes).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
        func f16(_ x: Float, at o: Int) {
            let h = Float16(x).bitPattern
            (bytes[o], bytes[o + 1]) = (UInt8(h & 0xFF), UInt8(h >> 8))
        }
        let bb = type.blockBytes, blocks = rows * columns / type.blockElements
        for b in 0 ..< blocks {
            switch type {
            case .tq2_0: f16(Float.random(in: 0.001 ... 0.05, using: &rng), at: b * bb + 64)
            case .tq1_0: f16(Float.random(in: 0.001 ... 0.05, using: &rng), at: b * bb + 52)
            default:
                f16(Float.random(in: 0.001 ... 0.05, using: &rng), at: b * bb)
                f16(Float.random(in: -0.3 ... 0.3, using: &rng), at: b * bb + 2)
            }
        }
        return bytes
    }

    /// Σ_g |d[r, g]| (2^b − 1) (G / 4) s_g / 2 for one row, with |d| per group of G from `dOfGroup`.
    static func tableBound(x: ArraySlice<Float>, group: Int, bits: Int, dOfGroup: (Int) -> Double) -> Double {
        var bound = 0.0
        let x = Array(x)
        for g in 0 ..< x.count / group {
            var amax = 0.0
            for c in 0 ..< group / 4 {
                var pos = 0.0, neg = 0.0
                for j in 0 ..< 4 { let v = Double(x[g * group + 4 * c + j]); if v > 0 { pos += v } else { neg -= v } }
                amax = max(amax, pos, neg)
            }
            bound += dOfGroup(g) * Double((1 << bits) - 1) * Double(group / 4) * (amax / 127) / 2
        }
        return bound
    }

    @Test(arguments: types)
    func lookupTableAgreesWithReferenceAndPortable(type: GGMLType) throws {
        var rng = SplitMix64(seed: UInt64(type.rawValue & 0xffff) + 99)
        let pool = WorkerPool(threads: 2)
        let matmul = Matmul(pool: pool), portableMatmul = Matmul(pool: pool)
        portableMatmul.portable = true
        matmul.lookupTableMaxTokens = 8
        portableMatmul.lookupTableMaxTokens = 8
        let bits = type.squishAffine?.bits ?? 2
        var worstRatio = 0.0
        for (rows, columns, tokens) in Self.shapes(type) {
            let bytes = Self.randomWeights(type, rows: rows, columns: columns, rng: &rng)
            let x = (0 ..< tokens * columns).map { _ in Float.random(in: -2 ... 2, using: &rng) }
            try bytes.withUnsafeBytes { raw in
                let plain = try WeightMatrix(name: "w", type: type, data: raw, rows: rows, columns: columns)
                #expect(plain.canUseLookupTable)
                let w = plain.withLookupTable()
                #expect(w.lut != nil && w.lutBits == bits)
                let group = w.lutGroup
                var fast = [Float](repeating: 0, count: tokens * rows)
                var portable = fast
                try x.withUnsafeBufferPointer { xp in
                    try fast.withUnsafeMutableBufferPointer { try matmul(w, xp.baseAddress!, tokens: tokens, $0.baseAddress!) }
                    try portable.withUnsafeMutableBufferPointer { try portableMatmul(w, xp.baseAddress!, tokens: tokens, $0.baseAddress!) }
                }
                let differing = (0 ..< fast.count).filter { fast[$0].bitPattern != portable[$0].bitPattern }
                #expect(differing.isEmpty, "\(type) \(rows)x\(columns)x\(tokens): AVX2 and portable differ at \(differing.prefix(4))")
                for r in 0 ..< rows {
                    let rowBytes = UnsafeRawBufferPointer(rebasing: raw[r * plain.rowBytes ..< (r + 1) * plain.rowBytes])
                    let wf = try Codecs.dequantize(type, rowBytes, count: columns)
                    // |d| per group of the packed layout, from the stored block (ternary: the 256-block's d).
                    let dOfGroup: (Int) -> Double = { g in
                        let block = g * group / type.blockElements
                        let o = block * type.blockBytes + (type == .tq2_0 ? 64 : type == .tq1_0 ? 52 : 0)
                        return abs(Double(Float16(bitPattern: UInt16(rowBytes[o]) | UInt16(rowBytes[o + 1]) << 8)))
                    }
                    for t in 0 ..< tokens {
                        var ref = 0.0, magnitude = 0.0
                        for k in 0 ..< columns {
                            ref += Double(wf[k]) * Double(x[t * columns + k]); magnitude += abs(Double(wf[k]) * Double(x[t * columns + k]))
                        }
                        let bound = Self.tableBound(x: x[t * columns ..< (t + 1) * columns], group: group, bits: bits, dOfGroup: dOfGroup)
                        let err = abs(Double(fast[t * rows + r]) - ref)
                        #expect(err <= bound + 1e-5 * magnitude + 1e-6, "\(type) \(rows)x\(columns) t\(t) r\(r): \(err) > \(bound)")
                        worstRatio = max(worstRatio, err / (bound + 1e-12))
                    }
                }
            }
        }
        // The bound is a worst case: independent rounding errors keep the actual error far below it.
        #expect(worstRatio < 0.5, "\(type): worst error / bound = \(worstRatio)")
    }

    /// One bit per weight (no GGUF type uses it yet; Squish's affine layout with b = 1), through the C entry points.
    @Test(arguments: [32, 64])
    func oneBitPlane(group: Int) throws {
        var rng = SplitMix64(seed: UInt64(group))
        let type = Int32(0x5351_0000 + 256 + group)
        var bits: Int32 = 0, g: Int32 = 0
        #expect(sq_lut_supported(type, &bits, &g) != 0 && bits == 1 && g == group)
        for (rows, columns) in [(1, group), (45, 3 * group), (64, 576)] {
            let blockBytes = 4 + group / 8, rowBytes = columns / group * blockBytes
            var bytes = (0 ..< rows * rowBytes).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            for b in 0 ..< rows * columns / group {
                let d = Float16(Float.random(in: 0.001 ... 0.05, using: &rng)).bitPattern
                let m = Float16(Float.random(in: -0.05 ... 0.0, using: &rng)).bitPattern
                (bytes[b * blockBytes], bytes[b * blockBytes + 1]) = (UInt8(d & 0xFF), UInt8(d >> 8))
                (bytes[b * blockBytes + 2], bytes[b * blockBytes + 3]) = (UInt8(m & 0xFF), UInt8(m >> 8))
            }
            let x = (0 ..< columns).map { _ in Float.random(in: -2 ... 2, using: &rng) }
            let packed = UnsafeMutableRawPointer.allocate(byteCount: sq_lut_packed_bytes(Int64(rows), Int64(columns), 1, Int32(group)), alignment: 64)
            let tables = UnsafeMutableRawPointer.allocate(byteCount: sq_lut_table_bytes(Int64(columns), Int32(group)), alignment: 64)
            defer { packed.deallocate(); tables.deallocate() }
            #expect(sq_lut_repack(type, bytes, rowBytes, Int64(rows), Int64(columns), packed) != 0)
            sq_lut_build_tables(x, Int64(columns), Int32(group), tables)
            var fast = [Float](repeating: 0, count: rows), portable = fast
            sq_lut_gemv(packed, 1, Int32(group), Int64(rows), Int64(columns), 0, Int64((rows + 31) / 32), tables, 0, 1, &fast, Int64(rows))
            sq_lut_gemv_portable(packed, 1, Int32(group), Int64(rows), Int64(columns), 0, Int64((rows + 31) / 32), tables, 0, 1, &portable, Int64(rows))
            #expect(fast.map(\.bitPattern) == portable.map(\.bitPattern))
            for r in 0 ..< rows {
                var ref = 0.0, magnitude = 0.0, bound = 0.0
                for gi in 0 ..< columns / group {
                    let blk = r * rowBytes + gi * blockBytes
                    let d = Double(Float16(bitPattern: UInt16(bytes[blk]) | UInt16(bytes[blk + 1]) << 8))
                    let m = Double(Float16(bitPattern: UInt16(bytes[blk + 2]) | UInt16(bytes[blk + 3]) << 8))
                    for j in 0 ..< group {
                        let bit = Double((bytes[blk + 4 + j / 8] >> UInt8(j % 8)) & 1)
                        let v = (d * bit + m) * Double(x[gi * group + j])
                        ref += v; magnitude += abs(v)
                    }
                    bound += Self.tableBound(x: x[gi * group ..< (gi + 1) * group], group: group, bits: 1) { _ in abs(d) }
                }
                #expect(abs(Double(fast[r]) - ref) <= bound + 1e-5 * magnitude + 1e-6, "\(rows)x\(columns) r\(r)")
            }
        }
    }

    /// The fused calls give the same numbers as one call per matrix (same tables, same kernel), and the paired
    /// form's rowsDone sees every row once.
    @Test func fusedMatchesSeparateCalls() throws {
        var rng = SplitMix64(seed: 3)
        let matmul = Matmul(pool: WorkerPool(threads: 2))
        let columns = 192
        let specs: [(GGMLType, Int)] = [(.sq2_G64, 70), (.sq3_G64, 33), (.sq4_G64, 64)]
        let blobs = specs.map { Self.randomWeights($0.0, rows: $0.1, columns: columns, rng: &rng) }
        let x = (0 ..< columns).map { _ in Float.random(in: -2 ... 2, using: &rng) }
        try blobs[0].withUnsafeBytes { r0 in try blobs[1].withUnsafeBytes { r1 in try blobs[2].withUnsafeBytes { r2 in
            let ws = try [r0, r1, r2].enumerated().map { i, raw in
                try WeightMatrix(name: "w\(i)", type: specs[i].0, data: raw, rows: specs[i].1, columns: columns).withLookupTable()
            }
            var separate = ws.map { [Float](repeating: 0, count: $0.rows) }
            var (f0, f1, f2) = (separate[0], separate[1], separate[2])
            for i in 0 ..< 3 { try separate[i].withUnsafeMutableBufferPointer { try matmul(ws[i], x, tokens: 1, $0.baseAddress!) } }
            try f0.withUnsafeMutableBufferPointer { y0 in try f1.withUnsafeMutableBufferPointer { y1 in
                try f2.withUnsafeMutableBufferPointer { y2 in
                    try matmul.fused(ws[0], y0.baseAddress!, ws[1], y1.baseAddress!, ws[2], y2.baseAddress!, input: x, tokens: 1)
                } } }
            let fused = [f0, f1, f2]
            for i in 0 ..< 3 { #expect(fused[i].map(\.bitPattern) == separate[i].map(\.bitPattern), "matrix \(i)") }
            // Paired: a and b with the same rows.
            let b = try WeightMatrix(name: "b", type: specs[0].0, data: r0, rows: specs[0].1, columns: columns).withLookupTable()
            var ya = [Float](repeating: 0, count: b.rows), yb = ya
            var seen = [Int](repeating: 0, count: b.rows)
            let lock = NSLock()
            try ya.withUnsafeMutableBufferPointer { pa in try yb.withUnsafeMutableBufferPointer { pb in
                try matmul.fused(ws[0], pa.baseAddress!, b, pb.baseAddress!, input: x, tokens: 1) { rows in
                    lock.lock(); for r in rows { seen[r] += 1 }; lock.unlock()
                }
            } }
            #expect(seen.allSatisfy { $0 == 1 })
            #expect(ya.map(\.bitPattern) == separate[0].map(\.bitPattern) && yb.map(\.bitPattern) == separate[0].map(\.bitPattern))
        } } }
    }

    /// A tiny random SQ2_G64 model decodes through the lookup tables (int8 tables) about as accurately as through the
    /// int8 kernels (int8 activations): against the exact path (dequantized weights × f32 activations), the tables'
    /// RMS logit error stays within 4× the int8 kernels'. Expected ratio: a table entry sums 4 activations, so its
    /// rounding step is up to 4× the int8 step of one activation while there are 4× fewer roundings per weight
    /// (√4 = 2× the RMS), and the scale is per 64 instead of 32 (up to another ~1.5×); measured: 2.5×.
    @Test func modelDecodesAboutAsAccuratelyAsTheInt8Kernels() throws {
        let t0 = Date()
        let tokenizerSource = try GGUFFile(path: try TestSupport.defaultModelPath())
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/sq2.gguf"
        let shape = SyntheticModelShape(name: "test", dim: 128, hiddenDim: 320, layers: 2, heads: 4, kvHeads: 2)
        _ = try SyntheticModel.write(shape: shape, type: .sq2_G64, tokenizerFrom: tokenizerSource, to: path)
        let t1 = Date()
        let model = try TransformerModel(path: path)
        print("synthetic model written in \(t1.timeIntervalSince(t0)) s, loaded in \(Date().timeIntervalSince(t1)) s")
        #expect(model.layers.allSatisfy { $0.wq.lut != nil && $0.down.lut != nil && $0.gate.lut != nil } && model.output.lut != nil)
        var replacements: [String: WeightMatrix] = ["output.weight": model.output.droppingLookupTable(),
                                                    "token_embd.weight": model.embedding.droppingLookupTable()]
        for (i, l) in model.layers.enumerated() {
            let p = "blk.\(i)."
            for (n, m) in [("attn_q", l.wq), ("attn_k", l.wk), ("attn_v", l.wv), ("attn_output", l.wo),
                           ("ffn_gate", l.gate), ("ffn_up", l.up), ("ffn_down", l.down)] {
                replacements[p + n + ".weight"] = m.droppingLookupTable()
            }
        }
        let plain = try TransformerModel(base: model, replacing: replacements)
        #expect(plain.layers.allSatisfy { $0.wq.lut == nil } && plain.output.lut == nil)
        let pool = WorkerPool(threads: 2)
        let a = try ModelSession(model: model, pool: pool, contextLength: 32, maxBatch: 4)
        let b = try ModelSession(model: plain, pool: pool, contextLength: 32, maxBatch: 4)
        let exact = try ModelSession(model: plain, pool: pool, contextLength: 32, maxBatch: 4, exactActivations: true)
        let prompt = [1, 200, 3000, 17]
        let start = Date()
        // Prefill runs on the int8 kernels in both (only the last position's output matrix, one token, uses tables).
        _ = try a.forward(prompt)
        _ = try b.forward(prompt)
        _ = try exact.forward(prompt)
        var token = 42
        var (sqA, sqB) = (0.0, 0.0)
        for _ in 0 ..< 4 {
            let xa = try a.forward([token]), xb = try b.forward([token]), xe = try exact.forward([token])
            for i in xe.indices {
                sqA += Double(xa[i] - xe[i]) * Double(xa[i] - xe[i])
                sqB += Double(xb[i] - xe[i]) * Double(xb[i] - xe[i])
            }
            token = xe.indices.max { xe[$0] < xe[$1] }!
        }
        #expect(sqA > 0 && sqB > 0)
        #expect(sqA.squareRoot() <= 4 * sqB.squareRoot(), "RMS error: tables \(sqA.squareRoot()), int8 \(sqB.squareRoot())")
        print("lookup tables: RMS logit error \(sqA.squareRoot()), int8 kernels \(sqB.squareRoot()) (sums over 4 steps), \(Date().timeIntervalSince(start)) s")
    }
}
