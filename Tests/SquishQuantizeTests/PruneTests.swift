import Foundation
import Testing
import SquishCore
import SquishEval
import SquishFormats
import SquishKernels
import SquishModel
import SquishQuantize

/// `squish prune` on the tiny reference models (Tests/Fixtures/tiny-models) against Tests/Python/prune_reference.py:
/// the same blocks, FFN channels and KV groups cut out of the checkpoint with NumPy and run by tiny_model_numpy's
/// forward pass (float64) give the logits Squish computes from the GGUF that `prune` wrote.
@Suite("Pruning (tiny reference models, NumPy references)")
struct PruneTests {
    static let families = ["llama", "qwen2", "qwen3", "gemma3"]

    static func calibration() throws -> CalibrationOptions {
        var c = CalibrationOptions()
        c.textPath = try TestSupport.austenPath("emma")
        c.textBytes = 20_000
        c.sequenceLength = 64
        c.tokens = 128
        return c
    }

    /// Plans with differing widths per block (per-layer metadata arrays; Llama becomes "deci"): block 0 keeps every
    /// other FFN channel and its last KV group, the others stay whole; the second plan also drops the first block
    /// (not for Gemma 3, whose pattern of sliding and global layers would change).
    static func plans(_ c: ModelConfig, family: String) -> [StructurePlan] {
        var plans: [StructurePlan] = []
        var p = StructurePlan.identity(c)
        p.ffnChannels[0] = Array(stride(from: 1, to: c.hiddenDim(layer: 0), by: 2))
        p.kvGroups[0] = [c.kvHeads(layer: 0) - 1]
        plans.append(p)
        if family != "gemma3" {
            var q = StructurePlan.identity(c)
            q.keptLayers.removeFirst()
            q.ffnChannels.removeFirst()
            q.kvGroups.removeFirst()
            q.ffnChannels[0] = Array(0 ..< c.hiddenDim(layer: 1) / 2).map { 2 * $0 + ($0 % 3 == 0 ? 1 : 0) }
            plans.append(q)
        }
        return plans
    }

    /// f32 weights are cut exactly, so the logits agree as the unpruned models do with transformers (measured at most
    /// 4e-6 there; bound 5e-5).
    @Test(arguments: families)
    func structuredPruningMatchesNumpy(family: String) throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = WorkerPool(threads: 2)
        let input = FamilyQuantizeTests.fixture(family)
        let original = try TransformerModel(hfDirectory: input).config
        let tokens = (0 ..< 24).map { (7 * $0 + 3) % original.vocabSize }
        try Data(tokens.map { Int32($0) }.withUnsafeBytes { Array($0) }).write(to: URL(fileURLWithPath: dir + "/tokens.i32"))
        for (n, plan) in Self.plans(original, family: family).enumerated() {
            var options = PruneOptions(method: .width)
            options.plan = plan
            options.recover = false
            options.calibration = try Self.calibration()
            let out = dir + "/pruned-\(n).gguf"
            let outcome = try ModelPruner.prune(input: input, output: out, options: options, pool: pool)
            #expect(outcome.plan == plan)
            let model = try TransformerModel(path: out)
            let c = model.config
            #expect(c.layers == plan.keptLayers.count)
            for i in 0 ..< c.layers {
                #expect(c.hiddenDim(layer: i) == plan.ffnChannels[i].count)
                #expect(c.kvHeads(layer: i) == plan.kvGroups[i].count)
                #expect(c.heads(layer: i) == plan.kvGroups[i].count * original.heads / original.kvHeads)
            }
            #expect(outcome.report.keptBlockParameters < outcome.report.blockParameters)
            let session = try ModelSession(model: model, pool: pool, contextLength: 32, exactActivations: true)
            let ours = try session.forward(tokens, logitsFor: tokens.count)
            try JSONEncoder().encode(plan).write(to: URL(fileURLWithPath: dir + "/plan.json"))
            try TestSupport.runPython("prune_reference.py", ["forward", input, dir + "/plan.json", dir + "/tokens.i32", dir + "/logits.f32"])
            let reference = try Data(contentsOf: URL(fileURLWithPath: dir + "/logits.f32")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            #expect(reference.count == ours.count)
            let worst = zip(ours, reference).map { abs($0 - $1) }.max() ?? .infinity
            print("\(family) plan \(n): max |Δlogit| vs numpy \(worst)")
            #expect(worst < 5e-5, "\(family) plan \(n): max |Δlogit| \(worst)")
        }
    }

    /// A plan that does not fit the model is refused with the model's path; so are impossible drop counts.
    @Test func badPlansThrow() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = FamilyQuantizeTests.fixture("llama")
        let c = try TransformerModel(hfDirectory: input).config
        var bad = StructurePlan.identity(c)
        bad.ffnChannels[0] = [3, 2]
        for plan in [bad, StructurePlan(keptLayers: [], ffnChannels: [], kvGroups: []), nil] {
            var options = PruneOptions(method: .shortgpt)
            options.plan = plan
            options.dropLayers = c.layers  // used where no plan is given: all blocks
            options.calibration = try Self.calibration()
            #expect(throws: QuantizeError.self) {
                try ModelPruner.prune(input: input, output: dir + "/out.gguf", options: options, pool: WorkerPool(threads: 2))
            }
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/out.gguf"))
    }

    /// Wanda's mask (unstructured within each 64 and 2:4) equals NumPy's from the same weights and input norms; the
    /// kept weights are the inputs rounded to the 8-bit grid (within half a step), no weight update.
    @Test func wandaMaskMatchesNumpy() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SplitMix64(seed: 20)
        let rows = 12, columns = 256
        let w = (0 ..< rows * columns).map { _ in Float.random(in: -1 ... 1, using: &rng) }
        // Input mean squares spanning four orders of magnitude, so that Wanda's choice differs from magnitude's.
        let diag = (0 ..< columns).map { _ in Float(pow(10, Double.random(in: -2 ... 2, using: &rng))) }
        var hessian = [Double](repeating: 0, count: columns * columns)
        for j in 0 ..< columns { hessian[j * columns + j] = Double(diag[j]) }
        try Data(w.withUnsafeBytes { Array($0) }).write(to: URL(fileURLWithPath: dir + "/w.f32"))
        try Data(diag.withUnsafeBytes { Array($0) }).write(to: URL(fileURLWithPath: dir + "/diag.f32"))
        for (pattern, n, m) in [(SparsityPattern.perGroup(kept: 32), 32, 64), (.nOfM(n: 2, m: 4), 2, 4), (.perGroup(kept: 16), 16, 64)] {
            var pruned = w
            let bytes = try pruned.withUnsafeMutableBufferPointer {
                try SparsityPruner.prune(weights: $0.baseAddress!, rows: rows, columns: columns, hessian: hessian, method: .wanda,
                                         pattern: pattern, bits: 8, pool: WorkerPool(threads: 2))
            }
            try TestSupport.runPython("prune_reference.py", ["mask", dir + "/w.f32", dir + "/diag.f32", "\(rows)", "\(columns)", "\(n)", "\(m)",
                                                             dir + "/mask.u8"])
            let expected = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/mask.u8")))
            let type = try #require(GGMLType.squishSparse(bits: 8, kept: pattern.kept))
            let bb = type.blockBytes
            #expect(bytes.count == rows * columns / 64 * bb)
            var differing = 0
            for r in 0 ..< rows {
                for g in 0 ..< columns / 64 {
                    let b = (r * columns / 64 + g) * bb
                    let mask = (0 ..< 8).reduce(UInt64(0)) { $0 | UInt64(bytes[b + $1]) << UInt64(8 * $1) }
                    for j in 0 ..< 64 where (mask >> UInt64(j) & 1) != UInt64(expected[r * columns + g * 64 + j]) { differing += 1 }
                }
            }
            #expect(differing == 0, "\(pattern): \(differing) mask bits differ from numpy")
            let decoded = try bytes.withUnsafeBytes { try Codecs.dequantize(type, $0, count: rows * columns) }
            #expect(decoded == pruned)
            for r in 0 ..< rows {
                for g in 0 ..< columns / 64 {
                    let b = (r * columns / 64 + g) * bb
                    let d = HalfFloat.toFloat(UInt16(bytes[b + 8]) | UInt16(bytes[b + 9]) << 8)  // the block's scale
                    for i in r * columns + g * 64 ..< r * columns + g * 64 + 64 where expected[i] == 1 {
                        // The scale search (weighted by the input norms) may clip: a weight at the end of the grid
                        // lies beyond it, every other one within half a step.
                        let q = (decoded[i] / d).rounded()
                        if q == -128 || q == 127 {
                            #expect(abs(w[i]) >= abs(decoded[i]) - 0.5 * abs(d) * 1.001, "\(pattern) weight \(i)")
                        } else {
                            #expect(abs(decoded[i] - w[i]) <= 0.5 * abs(d) * 1.001, "\(pattern) weight \(i)")
                        }
                    }
                }
            }
        }
    }
}

/// The default model pruned with a tiny calibration set (128 tokens of Emma), compared with itself on held-out text
/// (the first 4,000 bytes of Pride and Prejudice): outputs load, are smaller, and the damage is ordered as published
/// (more blocks dropped is worse; at 50% sparsity Wanda beats magnitude, Sun et al. 2023 Table 3).
@Suite("Model-level (slow): pruning the default model")
struct PruneModelTests {
    static func kl(_ reference: LanguageModel, _ path: String, pool: WorkerPool) throws -> Double {
        let text = try Data(contentsOf: URL(fileURLWithPath: try TestSupport.austenPath("prideprejudice"))).prefix(4000)
        let tokens = reference.tokenizer.encode(String(decoding: text, as: UTF8.self))
        return try ModelAgreement.measure(reference: reference.model, candidate: try TransformerModel(path: path), tokens: tokens,
                                          bos: reference.tokenizer.addBOS ? reference.tokenizer.bosID : nil, context: 512,
                                          pool: pool).klDivergence
    }

    @Test func damageIsOrdered() throws {
        let input = try TestSupport.defaultModelPath()
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = WorkerPool(threads: 2)
        let reference = try LanguageModel(path: input)
        var kl: [String: Double] = [:]
        for (name, method, drop, sparsity) in [("drop2", PruningMethod.shortgpt, 2, 0.0), ("drop4", .shortgpt, 4, 0),
                                               ("wanda50", .wanda, 0, 0.5), ("magnitude50", .magnitude, 0, 0.5)] {
            var options = PruneOptions(method: method)
            options.dropLayers = drop
            options.recover = false
            if sparsity > 0 { options.pattern = SparsityPattern.unstructured(sparsity: sparsity)! }
            options.calibration = try PruneTests.calibration()
            let out = dir + "/\(name).gguf"
            let outcome = try ModelPruner.prune(input: input, output: out, options: options, pool: pool)
            if method == .shortgpt {
                #expect(outcome.report.droppedLayers?.count == drop)
                #expect(outcome.report.bytes < outcome.report.inputBytes)
                #expect(try TransformerModel(path: out).config.layers == reference.model.config.layers - drop)
            }
            kl[name] = try Self.kl(reference, out, pool: pool)
        }
        print("pruned default model, KL vs input: \(kl.sorted { $0.key < $1.key })")
        #expect(kl.values.allSatisfy { $0.isFinite && $0 > 0 })
        #expect(kl["drop2"]! < kl["drop4"]!)
        #expect(kl["wanda50"]! < kl["magnitude50"]!)
    }
}
