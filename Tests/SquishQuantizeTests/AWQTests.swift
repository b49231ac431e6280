import Foundation
import Testing
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel
import SquishTokenizer
import SquishEval
import SquishQuantize

@Suite("AWQ")
struct AWQTests {
    /// A layer whose inputs have a few channels with 30× larger activations (the outliers AWQ is about).
    func problem(seed: UInt64, rows: Int, n: Int, tokens: Int) -> (w: [Float], x: [Float], meanAbs: [Float]) {
        var rng = SplitMix64(seed: seed)
        func gauss() -> Float {
            let u = Double.random(in: 1e-12 ..< 1, using: &rng), v = Double.random(in: 0 ..< 1, using: &rng)
            return Float((-2 * log(u)).squareRoot() * cos(2 * .pi * v))
        }
        let w = (0 ..< rows * n).map { _ in gauss() * 0.05 }
        let channelScale = (0 ..< n).map { j in j % 37 == 5 ? Float(30) : 1 }
        let x = (0 ..< tokens * n).map { i in gauss() * channelScale[i % n] }
        let meanAbs = (0 ..< n).map { j in (0 ..< tokens).reduce(Float(0)) { $0 + abs(x[$1 * n + j]) } / Float(tokens) }
        return (w, x, meanAbs)
    }

    /// With outlier channels the searched scales cut the output error well below plain rounding (α = 0), and the
    /// reported error is the real ‖X W'ᵀ − X Wᵀ‖² of the scaled-and-rounded layer.
    @Test(arguments: [BlockGrid.q4_0, .q4_1, .iq4_NL])
    func searchBeatsPlainRounding(grid: BlockGrid) throws {
        let rows = 64, n = 256, tokens = 128
        let (w, x, meanAbs) = problem(seed: 11, rows: rows, n: n, tokens: tokens)
        let pool = WorkerPool(threads: 2)
        let r = try x.withUnsafeBufferPointer {
            try AWQScaleSearch.search(weights: [(rows: rows, values: w)], n: n, x: $0.baseAddress!, tokens: tokens,
                                      meanAbs: meanAbs, grid: grid, options: AWQOptions(), pool: pool)
        }
        #expect(r.alpha > 0)
        #expect(r.error < 0.8 * r.plainError, "AWQ \(r.error) vs RTN \(r.plainError)")
        // Recompute the chosen configuration's error independently in Double.
        var s = r.scales
        let q = roundTrip(w, rows: rows, n: n, scales: &s, grid: grid)
        var e = 0.0
        for t in 0 ..< tokens {
            for o in 0 ..< rows {
                var a = 0.0, b = 0.0
                for j in 0 ..< n { a += Double(x[t * n + j]) * Double(q[o * n + j]); b += Double(x[t * n + j]) * Double(w[o * n + j]) }
                e += (a - b) * (a - b)
            }
        }
        #expect(abs(e - r.error) <= 1e-3 * r.error)
    }

    /// Q(W·diag(s))·diag(s)⁻¹ through the public codecs.
    func roundTrip(_ w: [Float], rows: Int, n: Int, scales s: inout [Float], grid: BlockGrid) -> [Float] {
        var out = [Float](repeating: 0, count: rows * n)
        let rowBytes = grid.type.rowBytes(elements: n)!
        var block = [UInt8](repeating: 0, count: rowBytes)
        for r in 0 ..< rows {
            let scaled = (0 ..< n).map { w[r * n + $0] * s[$0] }
            scaled.withUnsafeBufferPointer { sp in block.withUnsafeMutableBytes { RTNQuantizer.quantize(sp.baseAddress!, count: n, grid: grid, into: $0.baseAddress!) } }
            let v = try! block.withUnsafeBytes { try Codecs.dequantize(grid.type, $0, count: n) }
            for j in 0 ..< n { out[r * n + j] = v[j] / s[j] }
        }
        return out
    }

    /// AWQ end to end on the default model with a tiny calibration set: linear layers in the target type, the norms
    /// carry the folded scales (they differ from the input's), and the model runs with a finite perplexity.
    @Test func awqOnTheDefaultModelRuns() throws {
        let input = try TestSupport.defaultModelPath()
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = WorkerPool(threads: 2)
        var options = try TestSupport.tinyCalibration(.awq, type: "Q4_0")
        options.awq.gridSize = 5
        options.awq.searchTokens = 64
        let report = try ModelQuantizer.quantize(input: input, output: dir + "/awq.gguf", options: options, pool: pool)
        #expect(report.calibrationTokens == 128)
        let file = try GGUFFile(path: dir + "/awq.gguf"), original = try GGUFFile(path: input)
        #expect(file.tensors.filter { $0.name.hasPrefix("blk.") && $0.shape.count == 2 }.allSatisfy { $0.type == .q4_0 })
        let a = try Codecs.dequantize(.f32, file.data(for: file.tensor(named: "blk.3.ffn_norm.weight")!), count: 576)
        let b = try Codecs.dequantize(original.tensor(named: "blk.3.ffn_norm.weight")!.type,
                                      original.data(for: original.tensor(named: "blk.3.ffn_norm.weight")!), count: 576)
        #expect(a != b)
        TestSupport.expectPerplexity(try TestSupport.persuasionPerplexity(file, pool: pool), measured: 41.601, "AWQ Q4_0 (128 calibration tokens)")
    }
}

@Suite("AWQ clipping")
struct AWQClipTests {
    /// Heavy-tailed weights (a few outliers per block) and inputs with uneven channels: clipping by output error
    /// beats the block format's own fit on the calibration inputs, and the reported error is the real one,
    /// Σ_t ‖x_t (Ŵ − W)ᵀ‖² / T recomputed from the decoded blocks in Double.
    @Test(arguments: [BlockGrid.affine(bits: 4, group: 64), .affine(bits: 3, group: 32), .q4_1, .q4_0,
                      .symmetric(bits: 3, group: 64), .symmetric(bits: 4, group: 16), .affine(bits: 6, group: 128)])
    func clippingLowersTheOutputError(grid: BlockGrid) throws {
        let rows = 32, n = 256, tokens = 200
        var rng = SplitMix64(seed: 7)
        func gauss() -> Float {
            let u = Double.random(in: 1e-12 ..< 1, using: &rng), v = Double.random(in: 0 ..< 1, using: &rng)
            return Float((-2 * log(u)).squareRoot() * cos(2 * .pi * v))
        }
        let w = (0 ..< rows * n).map { i in gauss() * (i % 29 == 3 ? 0.2 : 0.03) }
        let channel = (0 ..< n).map { j in Float(0.5 + Double(j % 7) / 3) }
        let x = (0 ..< tokens * n).map { i in gauss() * channel[i % n] }
        let pool = WorkerPool(threads: 2)
        let gram = GroupGram(n: n, g: grid.groupSize)
        x.withUnsafeBufferPointer { gram.add($0.baseAddress!, tokens: tokens, pool: pool) }
        // The Gram blocks are the inputs' outer products.
        let h = gram.scaled(nil)
        for (b, i, j) in [(0, 0, 0), (1, 3, 5), (n / grid.groupSize - 1, grid.groupSize - 1, 2)] {
            let a = b * grid.groupSize + i, c = b * grid.groupSize + j
            let direct = (0 ..< tokens).reduce(0.0) { $0 + Double(x[$1 * n + a]) * Double(x[$1 * n + c]) } / Double(tokens)
            #expect(abs(Double(h[(b * grid.groupSize + i) * grid.groupSize + j]) - direct) <= 1e-4 * max(1, abs(direct)))
        }
        let rowBytes = grid.type.rowBytes(elements: n)!
        var clipped = [UInt8](repeating: 0, count: rows * rowBytes), plain = clipped
        let stats = w.withUnsafeBufferPointer { wp in
            clipped.withUnsafeMutableBytes {
                AWQClip.quantize(wp.baseAddress!, rows: rows, n: n, grid: grid, gram: h, steps: 20, minRatio: 0.5,
                                 into: $0.baseAddress!, pool: pool)
            }
        }
        w.withUnsafeBufferPointer { wp in
            plain.withUnsafeMutableBytes { RTNQuantizer.quantize(wp.baseAddress!, count: rows * n, grid: grid, into: $0.baseAddress!) }
        }
        /// Σ over blocks of Σ_t (x_t,b · e_b)² / T, and the whole layer's ‖X (Ŵ − W)ᵀ‖² / T, from the decoded weights.
        func errors(_ bytes: [UInt8]) throws -> (blocks: Double, layer: Double) {
            let q = try bytes.withUnsafeBytes { try Codecs.dequantize(grid.type, $0, count: rows * n) }
            let g = grid.groupSize
            var blocks = 0.0, layer = 0.0
            for t in 0 ..< tokens {
                for o in 0 ..< rows {
                    var d = 0.0
                    for b in 0 ..< n / g {
                        var db = 0.0
                        for j in b * g ..< (b + 1) * g { db += Double(x[t * n + j]) * Double(q[o * n + j] - w[o * n + j]) }
                        blocks += db * db
                        d += db
                    }
                    layer += d * d
                }
            }
            return (blocks / Double(tokens), layer / Double(tokens))
        }
        let (c, p) = (try errors(clipped), try errors(plain))
        #expect(abs(c.blocks - stats.clippedError) <= 1e-3 * c.blocks)
        // The plain error is that of `BlockGrid.parameters`, which RTN writes where the grid searches its parameters;
        // Q4_0/Q4_1 RTN goes through the reference encoders, whose codes can differ by a rounding step.
        if grid.usesParameterSearch { #expect(abs(p.blocks - stats.plainError) <= 1e-3 * p.blocks) }
        #expect(stats.clippedError < 0.97 * stats.plainError, "clipped \(stats.clippedError) vs plain \(stats.plainError)")
        #expect(c.layer < p.layer, "layer output error clipped \(c.layer) vs plain \(p.layer)")
    }
}
