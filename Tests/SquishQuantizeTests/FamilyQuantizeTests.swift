import Foundation
import Testing
import SquishCore
import SquishEval
import SquishFormats
import SquishKernels
import SquishModel
import SquishQuantize
import SquishTokenizer

/// Every quantization method and a preset on every family, from the tiny reference checkpoints
/// (Tests/Fixtures/tiny-models; Hugging Face directories, converted to GGUF on the way in): the output loads, runs
/// with its tokenizer, and stays close to the input.
@Suite("Quantizing every family (tiny reference models)")
struct FamilyQuantizeTests {
    static let families = ["llama", "qwen2", "qwen3", "gemma3", "gemma"]

    static func fixture(_ family: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tiny-models/\(family)").path
    }

    /// KL(input ‖ output) on 256 tokens of Persuasion.
    static func kl(_ input: String, _ output: String, pool: WorkerPool) throws -> Double {
        let a = try LanguageModel(path: input), b = try LanguageModel(path: output)
        let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: try TestSupport.austenPath("persuasion"))).prefix(3000),
                          as: UTF8.self)
        let tokens = Array(a.tokenizer.encode(text).prefix(256))
        #expect(b.tokenizer.encode(text).prefix(256) == tokens[...])
        return try ModelAgreement.measure(reference: a.model, candidate: b.model, tokens: tokens, bos: nil, context: 128,
                                          pool: pool).klDivergence
    }

    @Test(arguments: families)
    func everyMethodOnEveryFamily(family: String) throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = WorkerPool(threads: 2)
        let input = Self.fixture(family)
        var results: [String: Double] = [:]
        for (method, type) in [(QuantizationMethod.rtn, "SQ4_G32"), (.gptq, "SQ4_G32"), (.awq, "SQ4_G32"), (.ternary, "SQ2_G32"),
                               (.gptq, "Q4_K_M"), (.gptq, "MXFP4")] {
            var options = try TestSupport.tinyCalibration(method, type: type)
            if method == .ternary { options.target = try .ternary(type: type) }
            let out = dir + "/\(method.rawValue)-\(type).gguf"
            let report = try ModelQuantizer.quantize(input: input, output: out, options: options, pool: pool)
            #expect(report.input == input && report.tensorsQuantized > 0, "\(family) \(method) \(type)")
            let session = try ModelSession(model: try TransformerModel(path: out), pool: pool, contextLength: 32)
            _ = try session.forward([1, 2, 3])
            results["\(method.rawValue) \(type)"] = try Self.kl(input, out, pool: pool)
        }
        print("\(family): KL vs input \(results.sorted { $0.key < $1.key })")
        // Every 4-bit method stays close (measured 0.02-0.15; MXFP4, which loads as Q8_0, up to 0.31 with its
        // power-of-two scales; on random weights and 128 calibration tokens GPTQ and AWQ
        // are not reliably better than RTN on held-out text, which the default model's tests check instead); ternary
        // weights are far (measured 0.7-3.2) but finite.
        for (name, kl) in results {
            #expect(kl.isFinite && kl < (name.hasPrefix("ternary") ? 10 : name.hasSuffix("MXFP4") ? 0.6 : 0.3), "\(family) \(name): KL \(kl)")
        }
    }
}
