import Foundation
import Testing
import SquishCore
import SquishEval
import SquishFormats
import SquishKernels
import SquishModel
import SquishQuantize
import SquishTokenizer

@Suite("Quantizing whole files")
struct QuantizeFileTests {
    /// A tiny GGUF with one matrix of `columns` and one norm vector.
    func tinyModel(_ path: String, columns: Int) throws {
        var rng = SplitMix64(seed: 1)
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        let m = (0 ..< columns * 4).map { _ in Float.random(in: -1 ... 1, using: &rng) }
        w.addTensor(name: "blk.0.attn_q.weight", shape: [columns, 4], type: .f32, source: .bytes(m.withUnsafeBytes { Array($0) }))
        w.addTensor(name: "blk.0.attn_norm.weight", shape: [columns], type: .f32,
                    source: .bytes([Float](repeating: 1, count: columns).withUnsafeBytes { Array($0) }))
        try w.write(to: path)
    }

    func entries(_ dir: String) -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] }

    @Test func writesTheTargetTypeAndMetadata() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try tinyModel(dir + "/in.gguf", columns: 64)
        let options = QuantizeOptions(method: .rtn, target: try .resolve(type: "Q5_1", bits: nil, group: nil, symmetric: false))
        let report = try ModelQuantizer.quantize(input: dir + "/in.gguf", output: dir + "/out.gguf", options: options, pool: WorkerPool(threads: 1))
        let out = try GGUFFile(path: dir + "/out.gguf")
        #expect(out.tensor(named: "blk.0.attn_q.weight")?.type == .q5_1)
        #expect(out.tensor(named: "blk.0.attn_norm.weight")?.type == .f32)
        #expect(out["general.file_type"]?.int == 9)
        #expect(out["general.architecture"]?.string == "llama")
        #expect(report.bytes == out.file.count)
        #expect(Set(entries(dir)) == ["in.gguf", "out.gguf"])
    }

    @Test func badInputIsATypedErrorAndLeavesNoFile() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try tinyModel(dir + "/in.gguf", columns: 48)  // 48 is not a multiple of 32
        let options = QuantizeOptions(method: .rtn, target: try .resolve(type: "Q4_0", bits: nil, group: nil, symmetric: false))
        let pool = WorkerPool(threads: 1)
        #expect(throws: QuantizeError.rowLength(tensor: "blk.0.attn_q.weight", rowLength: 48, type: .q4_0)) {
            try ModelQuantizer.quantize(input: dir + "/in.gguf", output: dir + "/out.gguf", options: options, pool: pool)
        }
        try tinyModel(dir + "/ok.gguf", columns: 64)
        #expect(throws: QuantizeError.self) {  // output == input, also through a different spelling of the path
            try ModelQuantizer.quantize(input: dir + "/ok.gguf", output: dir + "/./ok.gguf", options: options, pool: pool)
        }
        #expect(throws: QuantizeError.self) {
            try ModelQuantizer.quantize(input: dir + "/ok.gguf", output: dir + "/missing/out.gguf", options: options, pool: pool)
        }
        #expect(throws: (any Error).self) {  // not a GGUF file
            try ModelQuantizer.quantize(input: dir + "/nothing.gguf", output: dir + "/out.gguf", options: options, pool: pool)
        }
        #expect(Set(entries(dir)) == ["in.gguf", "ok.gguf"])
    }

    /// K-quant targets with every method on a tiny file: rows of 512 get the K type, rows of 320 (not a multiple of
    /// 256) the Squish affine type of the same bits in groups of 64, as the report says.
    @Test(arguments: [("Q2_K", GGMLType.sq2_G64), ("Q3_K", .sq3_G64), ("Q4_K", .sq4_G64), ("Q5_K", .sq5_G64), ("Q6_K", .sq6_G64)])
    func kQuantTargetsFallBackOnShortRows(name: String, fallback: GGMLType) throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = WorkerPool(threads: 1)
        let target = try QuantizationTarget.resolve(type: name, bits: nil, group: nil, symmetric: false, pure: true)
        for (columns, expected) in [(512, GGMLType(name: name)!), (320, fallback)] {
            try tinyModel(dir + "/in.gguf", columns: columns)
            let report = try ModelQuantizer.quantize(input: dir + "/in.gguf", output: dir + "/out.gguf",
                                                     options: QuantizeOptions(method: .rtn, target: target), pool: pool)
            let out = try GGUFFile(path: dir + "/out.gguf")
            let t = try #require(out.tensor(named: "blk.0.attn_q.weight"))
            #expect(t.type == expected)
            #expect(report.tensorTypes == [expected.name: 1])
            // RTN into a K type is the codec's encoding of the input rows.
            let input = try GGUFFile(path: dir + "/in.gguf")
            let x = try Codecs.dequantize(.f32, input.data(for: input.tensor(named: "blk.0.attn_q.weight")!), count: 4 * columns)
            if expected.blockElements == 256 { #expect(Array(out.data(for: t)) == (try Codecs.quantize(expected, x))) }
        }
    }

    /// GPTQ and AWQ into Q4_K on the default model (tiny calibration set): ffn_down (rows of 1536) takes Q4_K, the
    /// other linear layers (rows of 576) SQ4_G64; the Q4_K tensors decode identically with gguf-py; the model runs.
    @Test(arguments: [QuantizationMethod.gptq, .awq])
    func calibratedQ4_KOnTheDefaultModel(method: QuantizationMethod) throws {
        let input = try TestSupport.defaultModelPath()
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = WorkerPool(threads: 2)
        let options = try TestSupport.tinyCalibration(method, type: "Q4_K")
        let report = try ModelQuantizer.quantize(input: input, output: dir + "/q4k.gguf", options: options, pool: pool)
        let file = try GGUFFile(path: dir + "/q4k.gguf")
        let linear = file.tensors.filter { $0.name.hasPrefix("blk.") && $0.shape.count == 2 }
        #expect(linear.allSatisfy { $0.type == ($0.name.hasSuffix("ffn_down.weight") ? .q4_K : .sq4_G64) })
        #expect(report.tensorTypes["Q4_K"] == linear.filter { $0.name.hasSuffix("ffn_down.weight") }.count)

        // gguf-py decodes the written Q4_K tensors to exactly our values.
        let ref = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: ref) }
        try TestSupport.runPython("kquant_reference.py", ["model", dir + "/q4k.gguf", ref])
        struct Entry: Decodable { let name: String, type: String, count: Int, bytes: String, output: String }
        let manifest = try JSONDecoder().decode([Entry].self, from: Data(contentsOf: URL(fileURLWithPath: ref + "/manifest.json")))
        let kCases = manifest.filter { $0.type == "Q4_K" }
        #expect(!kCases.isEmpty)
        for e in kCases {
            let raw = try Data(contentsOf: URL(fileURLWithPath: ref + "/" + e.bytes))
            let expected = try Data(contentsOf: URL(fileURLWithPath: ref + "/" + e.output)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let ours = try raw.withUnsafeBytes { try Codecs.dequantize(.q4_K, $0, count: e.count) }
            #expect(ours == expected, "\(e.name)")
        }

        // Measured: GPTQ 40.738, AWQ 43.859.
        TestSupport.expectPerplexity(try TestSupport.persuasionPerplexity(file, pool: pool), measured: method == .gptq ? 40.738 : 43.859,
                                     "\(method) Q4_K (128 calibration tokens)")
    }

    /// The Q3_K_S preset on the default model keeps every linear layer's Q4_1 blocks (its bytes allow no more and
    /// need no less) and quantizes only the tied embedding/output matrix, to SQ5_G64. GPTQ fits it with the final
    /// normed hidden state's statistics, so the logits follow the original more closely than with plain RTN.
    @Test func gptqFitsTheTiedEmbeddingToTheLogits() throws {
        let input = try TestSupport.defaultModelPath()
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = WorkerPool(threads: 2)
        let gptq = try ModelQuantizer.quantize(input: input, output: dir + "/gptq.gguf",
                                               options: try TestSupport.tinyCalibration(.gptq, type: "Q3_K_S"), pool: pool)
        let rtn = try ModelQuantizer.quantize(input: input, output: dir + "/rtn.gguf",
                                              options: QuantizeOptions(method: .rtn, target: try .resolve(type: "Q3_K_S", bits: nil, group: nil, symmetric: false)),
                                              pool: pool)
        #expect(gptq.tensorTypes == ["SQ5_G64": 1] && rtn.tensorTypes == ["SQ5_G64": 1])
        let original = try GGUFFile(path: input), a = try GGUFFile(path: dir + "/gptq.gguf"), b = try GGUFFile(path: dir + "/rtn.gguf")
        let embd = try #require(a.tensor(named: "token_embd.weight"))
        #expect(embd.type == .sq5_G64 && !a.data(for: embd).elementsEqual(b.data(for: b.tensor(named: "token_embd.weight")!)))
        let tokenizer = try Tokenizer(gguf: original)
        let text = try String(contentsOfFile: TestSupport.austenPath("persuasion"), encoding: .utf8).prefix(3000)
        let tokens = Array(tokenizer.encode(String(text)).prefix(384))
        let reference = try TransformerModel(gguf: original)
        let kl = try [a, b].map {
            try ModelAgreement.measure(reference: reference, candidate: try TransformerModel(gguf: $0), tokens: tokens, bos: tokenizer.bosID,
                                       context: 128, pool: pool).klDivergence
        }
        print("Q3_K_S tied embedding SQ5_G64: KL \(kl[0]) (GPTQ, 128 calibration tokens), \(kl[1]) (RTN)")
        #expect(kl[0] < 0.8 * kl[1])
    }

    /// Default model (Q4_1): re-quantizing Q4_1 -> Q4_1 through dequantize and re-encode reproduces every tensor's
    /// bytes (lossless), and an RTN Q4_0 model loads and has a finite perplexity close to the original's.
    @Test func defaultModelRequantizesLosslesslyAndQ4_0Runs() throws {
        let input = try TestSupport.defaultModelPath()
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = WorkerPool(threads: 2)
        var same = QuantizeOptions(method: .rtn, target: try .resolve(type: "Q4_1", bits: nil, group: nil, symmetric: false))
        same.requantize = true
        _ = try ModelQuantizer.quantize(input: input, output: dir + "/q41.gguf", options: same, pool: pool)
        let a = try GGUFFile(path: input), b = try GGUFFile(path: dir + "/q41.gguf")
        for t in a.tensors {
            let u = try #require(b.tensor(named: t.name))
            #expect(u.type == t.type && a.data(for: t).elementsEqual(b.data(for: u)), "\(t.name)")
        }

        let q40 = QuantizeOptions(method: .rtn, target: try .resolve(type: "Q4_0", bits: nil, group: nil, symmetric: false))
        _ = try ModelQuantizer.quantize(input: input, output: dir + "/q40.gguf", options: q40, pool: pool)
        let text = try String(contentsOfFile: TestSupport.austenPath("emma"), encoding: .utf8).prefix(3000)
        var ppl: [Double] = []
        for path in [input, dir + "/q40.gguf"] {
            let file = try GGUFFile(path: path)
            let model = try TransformerModel(gguf: file)
            let tokenizer = try Tokenizer(gguf: file)
            let session = try ModelSession(model: model, pool: pool, contextLength: 128)
            let r = try Perplexity.evaluate(session: session, tokens: Array(tokenizer.encode(String(text)).prefix(384)), context: 128,
                                            protocol: .llamacpp, bos: tokenizer.addBOS ? tokenizer.bosID : nil)
            ppl.append(r.perplexity)
        }
        print("perplexity on 384 tokens of Emma: Q4_1 \(ppl[0]), RTN Q4_0 \(ppl[1])")
        #expect(ppl[1].isFinite && ppl[1] > ppl[0] * 0.9 && ppl[1] < ppl[0] * 1.5)
    }

    /// GPTQ end to end on the default model with a tiny calibration set (2 sequences of 64 tokens, to stay fast):
    /// every block's linear layers come out in the target type and the model runs with a finite perplexity.
    /// A calibration text too short for the requested tokens is a typed error before anything is written.
    /// The reference figure the quantized models' bounds compare with: the default model itself on the same tokens.
    @Test func defaultModelPersuasionFigure() throws {
        let value = try TestSupport.persuasionPerplexity(GGUFFile(path: try TestSupport.defaultModelPath()), pool: WorkerPool(threads: 2))
        print("default model: perplexity \(value) on 256 tokens of Persuasion")
        #expect(abs(value - TestSupport.defaultModelPersuasionPerplexity) <= 0.005 * TestSupport.defaultModelPersuasionPerplexity)
    }

    @Test func gptqOnTheDefaultModelRuns() throws {
        let input = try TestSupport.defaultModelPath()
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = WorkerPool(threads: 2)
        var options = try TestSupport.tinyCalibration(.gptq, type: "Q4_0")
        let report = try ModelQuantizer.quantize(input: input, output: dir + "/gptq.gguf", options: options, pool: pool)
        #expect(report.calibrationTokens == 128)
        let file = try GGUFFile(path: dir + "/gptq.gguf")
        #expect(file.tensors.filter { $0.name.hasPrefix("blk.") && $0.shape.count == 2 }.allSatisfy { $0.type == .q4_0 })
        TestSupport.expectPerplexity(try TestSupport.persuasionPerplexity(file, pool: pool), measured: 47.104, "GPTQ Q4_0 (128 calibration tokens)")

        try "A short text.".write(toFile: dir + "/short.txt", atomically: true, encoding: .utf8)
        options.calibration.textPath = dir + "/short.txt"
        options.calibration.textBytes = nil
        #expect(throws: QuantizeError.self) {
            try ModelQuantizer.quantize(input: input, output: dir + "/short.gguf", options: options, pool: pool)
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/short.gguf"))
    }
}
