import Foundation
import Testing
import SquishQuantize
import SquishCore
import SquishEval
import SquishFormats
import SquishKernels
import SquishModel
import SquishTokenizer
// The helpers every test target shares (Tests/SquishTestSupport).
@_exported import SquishTestSupport

/// Helpers of the quantization tests.
extension TestSupport {
    /// Options for a calibrated method on the default model with a tiny calibration set (2 sequences of 64 tokens
    /// from the first 20 kB of Emma), so that model-level tests stay fast.
    static func tinyCalibration(_ method: QuantizationMethod, type: String) throws -> QuantizeOptions {
        var options = QuantizeOptions(method: method, target: try .resolve(type: type, bits: nil, group: nil, symmetric: false))
        options.calibration.textPath = try austenPath("emma")
        options.calibration.textBytes = 20_000
        options.calibration.sequenceLength = 64
        options.calibration.tokens = 128
        return options
    }

    /// Perplexity on the first 256 tokens of Persuasion's first 2,000 characters (llama.cpp's protocol: 2 chunks of
    /// 128 with BOS first, the second half of each scored): the quick check the quantization tests run on their outputs.
    static func persuasionPerplexity(_ file: GGUFFile, pool: WorkerPool) throws -> Double {
        let model = try TransformerModel(gguf: file)
        let tokenizer = try Tokenizer(gguf: file)
        let text = try String(contentsOfFile: austenPath("persuasion"), encoding: .utf8).prefix(2000)
        let session = try ModelSession(model: model, pool: pool, contextLength: 128)
        return try Perplexity.evaluate(session: session, tokens: Array(tokenizer.encode(String(text)).prefix(256)), context: 128,
                                       protocol: .llamacpp, bos: tokenizer.bosID).perplexity
    }

    /// The default model's own figure in `persuasionPerplexity` (measured: 38.692; its perplexity on the first 60,000
    /// bytes of Pride and Prejudice at context 512 is 21.82, within 0.5% of llama.cpp's 21.80). The quantized
    /// models' bounds derive from their measured figures on the same tokens.
    static let defaultModelPersuasionPerplexity = 38.692

    /// Checks a quantized model's `persuasionPerplexity` against its measured figure: at most 10% above it (a
    /// regression of the method; the measured figures lie 5-22% above the original's 38.692, so the bound is a
    /// quarter or less of the degradation a 4-bit method shows), and not below the original's (256 tokens are few,
    /// so 5% below is allowed).
    static func expectPerplexity(_ value: Double, measured: Double, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        print("\(what): perplexity \(value) on 256 tokens of Persuasion (measured \(measured); the original \(defaultModelPersuasionPerplexity))")
        #expect(value.isFinite && value <= measured * 1.10, "\(what): \(value) exceeds the measured \(measured) by more than 10%",
                sourceLocation: sourceLocation)
        #expect(value >= defaultModelPersuasionPerplexity * 0.95, "\(what): \(value) below the original's \(defaultModelPersuasionPerplexity)",
                sourceLocation: sourceLocation)
    }
}
