import Foundation
import Testing
import SquishCore
import SquishFormats
import SquishKernels
import SquishQuantize

@Suite("GPTQ")
struct GPTQTests {
    let rows = 48, cols = 256, samples = 1024

    /// A random layer and correlated inputs (mixed Gaussian features with uneven scales), H = XᵀX.
    func problem(seed: UInt64) -> (w: [Float], h: [Double]) {
        var rng = SplitMix64(seed: seed)
        func gauss() -> Double {
            let u = Double.random(in: 1e-12 ..< 1, using: &rng), v = Double.random(in: 0 ..< 1, using: &rng)
            return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
        }
        let k = 64
        let mix = (0 ..< k * cols).map { _ in gauss() }
        let scale = (0 ..< cols).map { _ in exp(gauss()) }
        var x = [Double](repeating: 0, count: samples * cols)
        for s in 0 ..< samples {
            let z = (0 ..< k).map { _ in gauss() }
            for c in 0 ..< cols {
                var v = 0.2 * gauss()
                for i in 0 ..< k { v += z[i] * mix[i * cols + c] }
                x[s * cols + c] = v * scale[c] / 8
            }
        }
        var h = [Double](repeating: 0, count: cols * cols)
        for s in 0 ..< samples { for i in 0 ..< cols { let xi = x[s * cols + i]; for j in 0 ..< cols { h[i * cols + j] += xi * x[s * cols + j] } } }
        let w = (0 ..< rows * cols).map { _ in Float(gauss() * 0.05) }
        return (w, h)
    }

    /// tr((W − Q) H (W − Q)ᵀ): the layer-output error GPTQ minimizes.
    func proxyLoss(_ w: [Float], _ q: [Float], _ h: [Double]) -> Double {
        var total = 0.0
        for r in 0 ..< rows {
            let d = (0 ..< cols).map { Double(w[r * cols + $0] - q[r * cols + $0]) }
            for i in 0 ..< cols { var s = 0.0; for j in 0 ..< cols { s += h[i * cols + j] * d[j] }; total += d[i] * s }
        }
        return total
    }

    func rtn(_ w: [Float], _ grid: BlockGrid) -> [Float] {
        var q = w
        var block = [UInt8](repeating: 0, count: grid.blockBytes)
        let n = grid.groupSize
        for b in 0 ..< w.count / n {
            w.withUnsafeBufferPointer { wp in q.withUnsafeMutableBufferPointer { qp in block.withUnsafeMutableBytes {
                grid.quantizeBlock(wp.baseAddress! + n * b, into: $0.baseAddress!, rounded: qp.baseAddress! + n * b) } } }
        }
        return q
    }

    func gptq(_ w: [Float], _ h: [Double], _ grid: BlockGrid, actOrder: Bool = false, refit: Bool = true) throws -> (q: [Float], bytes: [UInt8]) {
        var q = w
        var options = GPTQOptions()
        options.actOrder = actOrder
        options.refitParameters = refit
        let bytes = try q.withUnsafeMutableBufferPointer {
            try GPTQQuantizer.quantize(weights: $0.baseAddress!, rows: rows, columns: cols, hessian: h, grid: grid, options: options,
                                       pool: WorkerPool(threads: 2))
        }
        return (q, bytes)
    }

    @Test(arguments: [BlockGrid.q4_0, .q4_1, .iq4_NL, .nonLinear(group: 64), .nonLinearX(group: 128), .mxfp4], [false, true])
    func lowersTheProxyLossBelowRTN(grid: BlockGrid, actOrder: Bool) throws {
        let (w, h) = problem(seed: 42)
        let (q, bytes) = try gptq(w, h, grid, actOrder: actOrder)
        // The packed blocks decode to exactly the values GPTQ reports.
        #expect(try bytes.withUnsafeBytes { try Codecs.dequantize(grid.type, $0, count: rows * cols) } == q)
        let lossRTN = proxyLoss(w, rtn(w, grid), h), lossGPTQ = proxyLoss(w, q, h)
        print("\(grid) act-order \(actOrder): proxy loss RTN \(lossRTN), GPTQ \(lossGPTQ)")
        #expect(lossGPTQ < 0.8 * lossRTN)
    }

    /// K-quants: super-blocks of 256 with sub-block grids fixed at the super-block's first column (or up front with
    /// act-order); GPTQ's output error is below RTN's with the same K-quant fit, and the blocks decode to GPTQ's values.
    @Test(arguments: [GGMLType.q2_K, .q3_K, .q4_K, .q5_K, .q6_K], [false, true])
    func kQuantsLowerTheProxyLossBelowRTN(type: GGMLType, actOrder: Bool) throws {
        let grid = try #require(BlockGrid(type))
        #expect(grid.groupSize == 256 && grid.isKQuant)
        let (w, h) = problem(seed: 7)
        let (q, bytes) = try gptq(w, h, grid, actOrder: actOrder)
        #expect(try bytes.withUnsafeBytes { try Codecs.dequantize(type, $0, count: rows * cols) } == q)
        // RTN: the codec's own encoding of every row.
        let rtnBytes = try Codecs.quantize(type, w)
        let r = try rtnBytes.withUnsafeBytes { try Codecs.dequantize(type, $0, count: w.count) }
        let lossRTN = proxyLoss(w, r, h), lossGPTQ = proxyLoss(w, q, h)
        print("\(type) act-order \(actOrder): proxy loss RTN \(lossRTN), GPTQ \(lossGPTQ)")
        #expect(lossGPTQ < 0.8 * lossRTN)
    }

    /// The Squish family (symmetric and affine, groups 16-256): GPTQ's blocks decode to its values and its output
    /// error is below RTN's with the same grid.
    @Test(arguments: [BlockGrid.symmetric(bits: 3, group: 64), .symmetric(bits: 6, group: 128), .symmetric(bits: 2, group: 16),
                      .affine(bits: 3, group: 16), .affine(bits: 5, group: 256)])
    func squishFamilyLowersTheProxyLossBelowRTN(grid: BlockGrid) throws {
        let (w, h) = problem(seed: 11)
        let (q, bytes) = try gptq(w, h, grid)
        #expect(try bytes.withUnsafeBytes { try Codecs.dequantize(grid.type, $0, count: rows * cols) } == q)
        var r = w
        var block = [UInt8](repeating: 0, count: grid.blockBytes)
        let g = grid.groupSize
        for b in 0 ..< w.count / g {
            w.withUnsafeBufferPointer { wp in r.withUnsafeMutableBufferPointer { rp in block.withUnsafeMutableBytes {
                grid.quantizeBlock(wp.baseAddress! + g * b, into: $0.baseAddress!, rounded: rp.baseAddress! + g * b) } } }
        }
        let lossRTN = proxyLoss(w, r, h), lossGPTQ = proxyLoss(w, q, h)
        print("\(grid.type): proxy loss RTN \(lossRTN), GPTQ \(lossGPTQ)")
        #expect(lossGPTQ < 0.8 * lossRTN)
    }

    /// With H = I no error is spread to other columns, so GPTQ is RTN with the same grid.
    @Test func identityHessianIsRTN() throws {
        let (w, _) = problem(seed: 1)
        var h = [Double](repeating: 0, count: cols * cols)
        for i in 0 ..< cols { h[i * cols + i] = 1 }
        #expect(try gptq(w, h, .q4_0, refit: false).q == rtn(w, .q4_0))
    }

    /// Against an independent numpy implementation (float64, H⁻¹ formed explicitly, no lazy batches).
    @Test func matchesNumpyReference() throws {
        let (w, h) = problem(seed: 9)
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try w.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: dir + "/w.f32")) }
        try h.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: dir + "/h.f64")) }
        try TestSupport.runPython("gptq_reference.py", [dir + "/w.f32", dir + "/h.f64", "\(rows)", "\(cols)", dir + "/q.f32"])
        let reference = try Data(contentsOf: URL(fileURLWithPath: dir + "/q.f32")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let ours = try gptq(w, h, .q4_0, refit: false).q
        let same = zip(ours, reference).filter { $0 == $1 }.count
        let lossOurs = proxyLoss(w, ours, h), lossReference = proxyLoss(w, reference, h)
        print("numpy GPTQ: \(same)/\(ours.count) values identical, proxy loss \(lossOurs) vs reference \(lossReference)")
        #expect(Double(same) >= 0.97 * Double(ours.count))
        #expect(abs(lossOurs - lossReference) <= 0.02 * lossReference)
    }

    /// The parameter refit keeps GPTQ's codes, never raises a row's output error, and lowers the total.
    @Test(arguments: [BlockGrid.q4_0, .q4_1, .iq4_NL, .nonLinear(group: 64), .symmetric(bits: 3, group: 64),
                      .affine(bits: 2, group: 64), .affine(bits: 3, group: 128), .nonLinearX(group: 128),
                      BlockGrid(.q2_K)!, BlockGrid(.q3_K)!, BlockGrid(.q4_K)!, BlockGrid(.q5_K)!, BlockGrid(.q6_K)!], [false, true])
    func refitLowersTheOutputError(grid: BlockGrid, actOrder: Bool) throws {
        let (w, h) = problem(seed: 23)
        let (plain, plainBytes) = try gptq(w, h, grid, actOrder: actOrder, refit: false)
        let (refitted, bytes) = try gptq(w, h, grid, actOrder: actOrder)
        #expect(try bytes.withUnsafeBytes { try Codecs.dequantize(grid.type, $0, count: rows * cols) } == refitted)
        // Same codes and integer sub-block scales: only a block's f16 d (and minimum or dmin) may differ.
        let bb = grid.blockBytes
        let changed = (0 ..< bytes.count / bb).map { b in (b * bb ..< (b + 1) * bb).filter { bytes[$0] != plainBytes[$0] }.count }
        #expect(changed.allSatisfy { $0 <= (grid.hasMinimum ? 4 : 2) })
        // The refit minimizes the damped error (H + λI, λ = 1% of H's mean diagonal, GPTQ's damping) and keeps a row's
        // new parameters only where that error went down.
        let damp = 0.01 * (0 ..< cols).reduce(0.0) { $0 + h[$1 * cols + $1] } / Double(cols)
        var worse = 0
        for r in 0 ..< rows {
            let row = r * cols ..< (r + 1) * cols
            func loss(_ q: [Float]) -> Double {
                let d = row.map { Double(w[$0] - q[$0]) }
                var total = 0.0
                for i in 0 ..< cols { var s = damp * d[i]; for j in 0 ..< cols { s += h[i * cols + j] * d[j] }; total += d[i] * s }
                return total
            }
            if loss(refitted) > loss(plain) * (1 + 1e-9) { worse += 1 }
        }
        let before = proxyLoss(w, plain, h), after = proxyLoss(w, refitted, h)
        print("\(grid.type) act-order \(actOrder): proxy loss GPTQ \(before), refitted \(after)")
        #expect(worse == 0)
        // Only d and dmin move where integer sub-block scales stay (K-quants, SQ4NX): a smaller gain there.
        #expect(after < (grid.hasSuperBlockParameters ? 1 : 0.97) * before)
    }

    /// The refit's Q4_1 parameters against an independent numpy least-squares solution on the same codes.
    @Test func refitMatchesNumpyLeastSquares() throws {
        let (w, h) = problem(seed: 31)
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (q, bytes) = try gptq(w, h, .q4_1)
        try w.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: dir + "/w.f32")) }
        try h.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: dir + "/h.f64")) }
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/blocks.q4_1"))
        let printed = try TestSupport.runPython("refit_reference.py", [dir + "/w.f32", dir + "/h.f64", dir + "/blocks.q4_1", "\(rows)", "\(cols)"])
        let reference = try #require(Double(printed.trimmingCharacters(in: .whitespacesAndNewlines)))
        let ours = proxyLoss(w, q, h)
        print("Q4_1 refit: proxy loss \(ours), numpy least squares \(reference)")
        #expect(abs(ours - reference) <= 1e-4 * reference)
    }
}
