import Foundation
import Testing
import SquishCore
import SquishEval
import SquishFormats
import SquishKernels
import SquishModel

/// The generator's decode loop on a small random model (2 layers of width 64, the default model's vocabulary): what it
/// produces is exactly the greedy chain computed step by step with the session, and each way of stopping (length,
/// stop token, caller, full context) stops where it should and says why.
@Suite("Generator")
struct GeneratorTests {
    static let model: Result<TransformerModel, Error> = Result {
        let dir = NSTemporaryDirectory() + "squish-generator-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let shape = SyntheticModelShape(name: "tiny", dim: 64, hiddenDim: 128, layers: 2, heads: 4, kvHeads: 2, contextLength: 64)
        _ = try SyntheticModel.write(shape: shape, type: .q8_0, tokenizerFrom: GGUFFile(path: try TestSupport.defaultModelPath()),
                                     to: dir + "/tiny.gguf", seed: 11)
        return try TransformerModel(path: dir + "/tiny.gguf")
    }

    static let prompt = [1, 504, 3458, 314, 253]

    /// The greedy chain after `prompt`, one session step at a time (independent of the generator's loop).
    func greedyChain(_ model: TransformerModel, count: Int) throws -> [Int] {
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 1), contextLength: 64)
        var logits = try session.forward(Self.prompt, logitsFor: 1)
        var out: [Int] = []
        for _ in 0 ..< count {
            let t = Sampler.argmax(logits)
            out.append(t)
            logits = try session.forward([t], logitsFor: 1)
        }
        return out
    }

    func generate(_ model: TransformerModel, context: Int = 64, maxTokens: Int, stop: Set<Int> = [],
                  until: ((Int) -> Bool)? = nil) throws -> ([Int], GenerationStats) {
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: context)
        var g = Generator(session: session, sampler: .greedy)
        var got: [Int] = []
        let stats = try g.generate(prompt: Self.prompt, maxTokens: maxTokens, stop: stop) { t in
            got.append(t)
            return until?(got.count) ?? true
        }
        return (got, stats)
    }

    @Test func greedyGenerationIsTheStepByStepChain() throws {
        let model = try Self.model.get()
        let chain = try greedyChain(model, count: 8)
        let (got, stats) = try generate(model, maxTokens: 8)
        #expect(got == chain)
        #expect(stats.stoppedBy == "length" && stats.generatedTokens == 8 && stats.promptTokens == Self.prompt.count)
        #expect(stats.decodeSteps == 7)
        let (none, zero) = try generate(model, maxTokens: 0)
        #expect(none.isEmpty && zero.generatedTokens == 0 && zero.stoppedBy == "length")
    }

    @Test func stopsAtAStopTokenWithoutPassingItOn() throws {
        let model = try Self.model.get()
        let chain = try greedyChain(model, count: 6)
        // The first occurrence of chain[3] decides where generation stops.
        let at = chain.firstIndex(of: chain[3])!
        let (got, stats) = try generate(model, maxTokens: 6, stop: [chain[3]])
        #expect(got == Array(chain.prefix(at)))
        #expect(stats.stoppedBy == "stop token" && stats.generatedTokens == at)
    }

    @Test func stopsWhenTheCallerSaysSoOrTheContextIsFull() throws {
        let model = try Self.model.get()
        let chain = try greedyChain(model, count: 6)
        let (got, stats) = try generate(model, maxTokens: 6, until: { $0 < 2 })
        #expect(got == Array(chain.prefix(2)) && stats.stoppedBy == "caller")
        // A context of prompt + 3: three tokens fit in the cache after the prompt's, then generation stops.
        let (full, fullStats) = try generate(model, context: Self.prompt.count + 3, maxTokens: 10)
        #expect(full == Array(chain.prefix(full.count)) && fullStats.stoppedBy == "context", "\(fullStats)")
        #expect(full.count == 4)  // the fourth token is sampled from the logits of the last position that fits
    }

    @Test func badPromptsAreTypedErrors() throws {
        let model = try Self.model.get()
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 1), contextLength: 8)
        var g = Generator(session: session, sampler: .greedy)
        #expect(throws: ModelError.emptyInput("the prompt")) { try g.generate(prompt: [], maxTokens: 1, stop: []) { _ in true } }
        #expect(throws: ModelError.contextOverflow(tokens: 9, context: 8)) {
            try g.generate(prompt: Array(repeating: 1, count: 8), maxTokens: 1, stop: []) { _ in true }
        }
    }
}
