import Foundation
import Testing
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel
import SquishTokenizer

/// Every family against Hugging Face `transformers` itself: tiny random-weight checkpoints with the real models'
/// structure and transformers' logits at every position (Tests/Fixtures/tiny-models, made by
/// Tests/Python/make_tiny_models.py). Squish loads each checkpoint directly and as a GGUF written by its own
/// converter, and computes the same logits in f32.
@Suite("Families against transformers (tiny reference models)")
struct FamilyReferenceTests {
    static let families = ["llama", "qwen2", "qwen3", "gemma3", "gemma"]

    static func fixture(_ family: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tiny-models/\(family)").path
    }

    struct Reference {
        let tokens: [Int]
        let logits: [Float]  // [tokens × vocab]
        let maxAbs: Float
        let text: String
    }

    static func reference(_ family: String) throws -> Reference {
        let f = try SafetensorsFile(path: fixture(family) + "/reference.safetensors")
        let t = try #require(f.tensor(named: "tokens")), l = try #require(f.tensor(named: "logits"))
        #expect(t.dtype == .I32 && l.dtype == .F32)
        let tokens = f.data(for: t).bindMemory(to: Int32.self).map { Int($0) }
        let logits = Array(f.data(for: l).bindMemory(to: Float.self))
        return Reference(tokens: tokens, logits: logits, maxAbs: Float(f.metadata["logits_max_abs"] ?? "") ?? 0,
                         text: f.metadata["text"] ?? "")
    }

    /// f32 activations: every logit within 2e-5 of transformers' (measured: at most 4e-6 for any family, with logits
    /// up to 11.4); the checkpoint and Squish's GGUF of it agree with each other to the same bound.
    @Test(arguments: families)
    func logitsMatchTransformers(family: String) throws {
        let ref = try Self.reference(family)
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let checkpoint = try HFCheckpoint(directory: Self.fixture(family))
        #expect(checkpoint.family.name == family)
        try GGUFConversion.write(checkpoint: checkpoint, to: dir + "/model.gguf")
        let sources = [("checkpoint", try TransformerModel(hfDirectory: Self.fixture(family))),
                       ("converted GGUF", try TransformerModel(path: dir + "/model.gguf"))]
        for (name, model) in sources {
            let vocab = model.config.vocabSize
            #expect(ref.logits.count == ref.tokens.count * vocab)
            let session = try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 64, exactActivations: true)
            let ours = try session.forward(ref.tokens, logitsFor: ref.tokens.count)
            let worst = zip(ours, ref.logits).map { abs($0 - $1) }.max()!
            print("\(family) \(name): max |Δlogit| \(worst) (max |logit| \(ref.maxAbs))")
            #expect(worst < 2e-5, "\(family) \(name): max |Δlogit| \(worst)")
            // Decoding one token at a time gives the same logits as the batch (KV cache, windows, positions).
            session.reset()
            var stepwise: [Float] = []
            for t in ref.tokens { stepwise += try session.forward([t]) }
            let decodeWorst = zip(stepwise, ref.logits).map { abs($0 - $1) }.max()!
            #expect(decodeWorst < 2e-5, "\(family) \(name) decoding: max |Δlogit| \(decodeWorst)")
        }
    }

    /// The fast path (activations rounded to 8 bits per block of 32, as llama.cpp computes) keeps the same top token
    /// at nearly every position; measured: all 40 positions agree for every family.
    @Test(arguments: families)
    func fastPathKeepsTheTopToken(family: String) throws {
        let ref = try Self.reference(family)
        let model = try TransformerModel(hfDirectory: Self.fixture(family))
        let vocab = model.config.vocabSize
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 64)
        let ours = try session.forward(ref.tokens, logitsFor: ref.tokens.count)
        var same = 0
        for t in 0 ..< ref.tokens.count {
            let a = Array(ref.logits[t * vocab ..< (t + 1) * vocab]), b = Array(ours[t * vocab ..< (t + 1) * vocab])
            if Sampler.argmax(a) == Sampler.argmax(b) { same += 1 }
        }
        #expect(same >= ref.tokens.count - 2, "\(family): top token agrees at \(same) of \(ref.tokens.count) positions")
    }

    /// Logits do not depend on the thread count, bit for bit (prefill and token-by-token decoding, the fast path):
    /// `squish zip` decodes with whatever threads the machine has. Multi-query families decode with their heads split
    /// over the workers: the grouped attention kernel must give each head the same result in any grouping.
    @Test(arguments: families)
    func logitsAreIdenticalAcrossThreadCounts(family: String) throws {
        let ref = try Self.reference(family)
        let model = try TransformerModel(hfDirectory: Self.fixture(family))
        var runs: [[Float]] = []
        for threads in [1, 2, 3] {
            let session = try ModelSession(model: model, pool: WorkerPool(threads: threads), contextLength: 64)
            var logits = try session.forward(ref.tokens, logitsFor: ref.tokens.count)
            session.reset()
            for t in ref.tokens { logits += try session.forward([t]) }
            runs.append(logits)
        }
        // WorkerPool caps threads to the cores available: on one core all three runs use one thread.
        #expect(runs[1] == runs[0] && runs[2] == runs[0], "\(family): logits differ between thread counts")
    }

    /// The checkpoint's tokenizer and chat template load with the model; the reference text encodes to the
    /// reference tokens (BOS as the family adds it).
    @Test(arguments: families)
    func tokenizerAndTemplateLoad(family: String) throws {
        let ref = try Self.reference(family)
        let lm = try LanguageModel(path: Self.fixture(family))
        #expect(lm.tokenizer.encode(ref.text, addSpecial: true) == ref.tokens)
        let expected: [String: String] = ["llama": "llama3", "qwen2": "chatML", "qwen3": "qwen3", "gemma3": "gemma3", "gemma": "gemma3"]
        #expect("\(lm.template)".hasPrefix(expected[family]!), "\(family): \(lm.template)")
        #expect(!lm.stopTokens.isEmpty)
    }

    /// One batch holding two sequences (one decoding a token at position 11, one prefilling 6 tokens from position 0)
    /// computes what the two compute alone: per-token positions, caches and sliding windows (continuous batching).
    @Test(arguments: ["gemma3", "qwen3"])
    func mixedBatchMatchesSeparateSequences(family: String) throws {
        let ref = try Self.reference(family)
        let model = try TransformerModel(hfDirectory: Self.fixture(family))
        let c = model.config, pool = WorkerPool(threads: 2)
        let a = Array(ref.tokens.prefix(12)), b = Array(ref.tokens.suffix(6))
        // Alone: a's last token decoded after its first 11; b prefilled.
        let sa = try ModelSession(model: model, pool: pool, contextLength: 32, exactActivations: true)
        _ = try sa.forward(Array(a.prefix(11)))
        let aloneA = try sa.forward([a[11]])
        let aloneB = try ModelSession(model: model, pool: pool, contextLength: 32, exactActivations: true).forward(b, logitsFor: b.count)
        // Together: a's cache holds its first 11 tokens; one batch of [a[11]] + b.
        let cacheA = try F32KVCache(layers: c.layers, capacity: 32, kvHeads: c.kvHeads, headDim: c.headDim)
        let cacheB = try F32KVCache(layers: c.layers, capacity: 32, kvHeads: c.kvHeads, headDim: c.headDim)
        let pass = ForwardPass(model: model, pool: pool, maxBatch: 16, exactActivations: true)
        let x = UnsafeMutablePointer<Float>.allocate(capacity: 16 * c.dim)
        defer { x.deallocate() }
        try pass.embed(Array(a.prefix(11)), into: x)
        for (li, layer) in model.layers.enumerated() {
            try pass.block(li, layer, x: x, tokens: 11, start: 0, cache: cacheA, cacheLayer: li)
        }
        try pass.embed([a[11]] + b, into: x)
        let segments = [BatchSegment(cache: cacheA, start: 11, count: 1), BatchSegment(cache: cacheB, start: 0, count: b.count)]
        for (li, layer) in model.layers.enumerated() { try pass.block(li, layer, x: x, segments: segments, cacheLayer: li) }
        var logits = [Float](repeating: 0, count: 7 * c.vocabSize)
        try logits.withUnsafeMutableBufferPointer { try pass.logits(x, rows: 7, into: $0.baseAddress!) }
        let worstA = zip(logits.prefix(c.vocabSize), aloneA).map { abs($0 - $1) }.max()!
        let worstB = zip(logits.dropFirst(c.vocabSize), aloneB).map { abs($0 - $1) }.max()!
        #expect(worstA < 1e-5 && worstB < 1e-5, "\(family): \(worstA) \(worstB)")
    }
}
