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
            let model = try LlamaModel(gguf: file)
            let tokenizer = try Tokenizer(gguf: file)
            let session = LlamaSession(model: model, pool: pool, contextLength: 128)
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
    @Test func gptqOnTheDefaultModelRuns() throws {
        let input = try TestSupport.defaultModelPath()
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = WorkerPool(threads: 2)
        var options = QuantizeOptions(method: .gptq, target: try .resolve(type: "Q4_0", bits: nil, group: nil, symmetric: false))
        options.calibration.textPath = try TestSupport.austenPath("emma")
        options.calibration.textBytes = 20_000
        options.calibration.sequenceLength = 64
        options.calibration.tokens = 128
        let report = try ModelQuantizer.quantize(input: input, output: dir + "/gptq.gguf", options: options, pool: pool)
        #expect(report.calibrationTokens == 128)
        let file = try GGUFFile(path: dir + "/gptq.gguf")
        #expect(file.tensors.filter { $0.name.hasPrefix("blk.") && $0.shape.count == 2 }.allSatisfy { $0.type == .q4_0 })
        let model = try LlamaModel(gguf: file)
        let tokenizer = try Tokenizer(gguf: file)
        let text = try String(contentsOfFile: TestSupport.austenPath("persuasion"), encoding: .utf8).prefix(2000)
        let session = LlamaSession(model: model, pool: pool, contextLength: 128)
        let r = try Perplexity.evaluate(session: session, tokens: Array(tokenizer.encode(String(text)).prefix(256)), context: 128,
                                        protocol: .llamacpp, bos: tokenizer.bosID)
        print("GPTQ Q4_0 (128 calibration tokens): perplexity \(r.perplexity) on 256 tokens of Persuasion")
        #expect(r.perplexity.isFinite && r.perplexity < 100)

        try "A short text.".write(toFile: dir + "/short.txt", atomically: true, encoding: .utf8)
        options.calibration.textPath = dir + "/short.txt"
        options.calibration.textBytes = nil
        #expect(throws: QuantizeError.self) {
            try ModelQuantizer.quantize(input: input, output: dir + "/short.gguf", options: options, pool: pool)
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/short.gguf"))
    }
}
