import Foundation
import Testing
import SquishCore
import SquishData
import SquishFormats
import SquishKernels
import SquishModel
import SquishTokenizer
import SquishEval

/// Model-level checks on the default model (slow group: each loads the 98 MB model; CI runs them).
@Suite("Model-level (slow): default model against an independent numpy forward pass")
struct ModelReferenceTests {
    static let prompts: [[Int]] = [[1, 504, 3458, 314, 253, 2145, 30, 216, 52, 52], [28, 1029, 47, 30], [2]]

    /// Per-position comparison of logits with the numpy forward pass. With exact (f32) activations Squish computes the
    /// same function up to float rounding: KL(ref ‖ ours) < 1e-8 and max |Δ| < 1e-4 of the logit range (measured:
    /// ~4e-11 and ~3e-6). With the fast path's 8-bit activations (as llama.cpp computes), the top-1 token is the
    /// same everywhere and KL < 0.1 (measured: at most 0.044, typically 0.004).
    @Test(arguments: [true, false])
    func logitsMatchNumpyReference(exact: Bool) throws {
        let path = try TestSupport.defaultModelPath()
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try JSONEncoder().encode(Self.prompts).write(to: URL(fileURLWithPath: dir + "/ids.json"))
        try TestSupport.runPython("llama_reference.py", [path, dir + "/ids.json", dir + "/out.bin"])
        let reference = try Data(contentsOf: URL(fileURLWithPath: dir + "/out.bin")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let model = try TransformerModel(path: path)
        let vocab = model.config.vocabSize
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 64, exactActivations: exact)
        var offset = 0
        var worstKL = 0.0, worstRel = 0.0
        for prompt in Self.prompts {
            session.reset()
            let ours = try session.forward(prompt, logitsFor: prompt.count)
            for t in 0 ..< prompt.count {
                let a = Array(reference[(offset + t) * vocab ..< (offset + t + 1) * vocab])
                let b = Array(ours[t * vocab ..< (t + 1) * vocab])
                #expect(Sampler.argmax(a) == Sampler.argmax(b), "top-1 differs at prompt \(prompt) position \(t)")
                let kl = klDivergence(a, b)
                let spread = (a.max()! - a.min()!)
                let maxDiff = zip(a, b).map { abs($0 - $1) }.max()!
                worstKL = max(worstKL, kl)
                worstRel = max(worstRel, Double(maxDiff / spread))
            }
            offset += prompt.count
        }
        print("numpy reference (exact activations: \(exact)): worst KL \(worstKL), worst max|Δ|/range \(worstRel)")
        if exact {
            #expect(worstKL < 1e-8)
            #expect(worstRel < 1e-4)
        } else {
            #expect(worstKL < 0.1)
        }
    }

    func klDivergence(_ p: [Float], _ q: [Float]) -> Double {
        func logSoftmax(_ l: [Float]) -> [Double] {
            let m = Double(l.max()!)
            let s = l.reduce(0.0) { $0 + exp(Double($1) - m) }
            return l.map { Double($0) - m - log(s) }
        }
        let lp = logSoftmax(p), lq = logSoftmax(q)
        return zip(lp, lq).reduce(0.0) { $0 + exp($1.0) * ($1.0 - $1.1) }
    }

    /// Decoding token by token gives the same logits as one batched prefill.
    @Test func decodeMatchesPrefill() throws {
        let model = try TransformerModel(path: try TestSupport.defaultModelPath())
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 32)
        let prompt = Self.prompts[0]
        let batched = try session.forward(prompt, logitsFor: prompt.count)
        session.reset()
        let vocab = model.config.vocabSize
        for (t, id) in prompt.enumerated() {
            let one = try session.forward([id])
            let ref = Array(batched[t * vocab ..< (t + 1) * vocab])
            let maxDiff = zip(one, ref).map { abs($0 - $1) }.max()!
            #expect(maxDiff < 1e-3, "position \(t): max |Δ| \(maxDiff)")
        }
    }

    @Test func badInputIsRejected() throws {
        let model = try TransformerModel(path: try TestSupport.defaultModelPath())
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 1), contextLength: 8)
        #expect(throws: ModelError.emptyInput("the token sequence")) { try session.forward([]) }
        #expect(throws: ModelError.invalidToken(49152, vocabulary: 49152)) { try session.forward([49152]) }
        #expect(throws: ModelError.contextOverflow(tokens: 9, context: 8)) { try session.forward(Array(repeating: 1, count: 9)) }
    }
}

@Suite struct SamplerTests {
    let logits: [Float] = (0 ..< 100).map { Float(($0 * 37) % 100) / 10 }

    @Test func greedyIsArgmax() throws {
        var s = Sampler(.greedy)
        #expect(try s.sample(logits) == Sampler.argmax(logits))
        #expect(logits[Sampler.argmax(logits)] == logits.max())
    }

    @Test func seededSamplingIsReproducible() throws {
        var settings = SamplerSettings()
        settings.temperature = 1.5
        settings.topK = 0
        settings.topP = 1
        settings.minP = 0
        settings.seed = 42
        var a = Sampler(settings), b = Sampler(settings)
        let x = try (0 ..< 50).map { _ in try a.sample(logits) }
        let y = try (0 ..< 50).map { _ in try b.sample(logits) }
        #expect(x == y)
        #expect(Set(x).count > 5)  // it really samples
    }

    @Test func filtersRestrictTheCandidates() throws {
        var settings = SamplerSettings()
        settings.temperature = 1
        settings.topK = 3
        settings.topP = 1
        settings.minP = 0
        var s = Sampler(settings)
        let top3 = Set(logits.enumerated().sorted { $0.element > $1.element }.prefix(3).map(\.offset))
        for _ in 0 ..< 200 { #expect(top3.contains(try s.sample(logits))) }
        settings.topK = 0
        settings.minP = 0.95  // the runner-up has p = e^-0.1 ≈ 0.905 · p_max, so only the best survives
        s = Sampler(settings)
        for _ in 0 ..< 50 { #expect(try s.sample(logits) == Sampler.argmax(logits)) }
    }

    /// The sampler selects candidates without sorting the vocabulary; it must draw exactly what the plain
    /// definition (sort everything, truncate to top-k, then min-p, then top-p) draws from the same random stream.
    /// (Without any filter it draws in vocabulary order instead, without a sort: `unfilteredDrawIsInVocabularyOrder`.)
    @Test(arguments: [(40, Float(0.95), Float(0.05)), (0, 0.9, 0), (5, 1, 0), (0, 1, 0.2), (1, 1, 0), (40, 1, 0.3)])
    func selectionMatchesFullSort(topK: Int, topP: Float, minP: Float) throws {
        var gen = Xoshiro256(seed: 7)
        // Many ties (quantized logits) to exercise the tie-break on ids.
        let big: [Float] = (0 ..< 5000).map { _ in Float(Int(gen.next() % 400)) / 40 - 5 }
        var settings = SamplerSettings()
        settings.temperature = 0.7
        settings.topK = topK
        settings.topP = topP
        settings.minP = minP
        settings.seed = 3
        var fast = Sampler(settings)
        var rng = Xoshiro256(seed: 3)
        for _ in 0 ..< 200 {
            var c = big.enumerated().map { (id: $0.offset, logit: $0.element / settings.temperature) }
            c.sort { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) }
            if topK > 0 { c = Array(c.prefix(topK)) }
            let mx = c[0].logit
            var probs = c.map { Double(expf($0.logit - mx)) }
            if minP > 0 { probs = Array(probs.prefix(max(1, probs.prefix { $0 >= Double(minP) }.count))) }
            var total = probs.reduce(0, +)
            if topP < 1 {
                var mass = 0.0, keep = probs.count
                for (i, p) in probs.enumerated() { mass += p / total; if mass >= Double(topP) { keep = i + 1; break } }
                probs = Array(probs.prefix(keep))
                total = probs.reduce(0, +)
            }
            let r = Double(rng.next() >> 11) / Double(1 << 53) * total
            var acc = 0.0, expected = c[probs.count - 1].id
            for (i, p) in probs.enumerated() { acc += p; if r < acc { expected = c[i].id; break } }
            #expect(try fast.sample(big) == expected)
        }
    }

    /// No top-k, top-p or min-p (OpenAI's defaults): the draw walks the vocabulary in order, so no sort is needed;
    /// the same random number picks the token whose cumulative tempered probability first exceeds it.
    @Test func unfilteredDrawIsInVocabularyOrder() throws {
        var gen = Xoshiro256(seed: 11)
        let big: [Float] = (0 ..< 5000).map { _ in Float(Int(gen.next() % 400)) / 40 - 5 } + [-.infinity, -.infinity]
        var settings = SamplerSettings()
        settings.temperature = 0.7
        settings.topK = 0
        settings.topP = 1
        settings.minP = 0
        settings.seed = 5
        var fast = Sampler(settings)
        var rng = Xoshiro256(seed: 5)
        let mx = big.max()! / settings.temperature
        let probs = big.map { Double(expf($0 / settings.temperature - mx)) }
        let total = probs.reduce(0, +)
        for _ in 0 ..< 200 {
            let r = Double(rng.next() >> 11) / Double(1 << 53) * total
            var acc = 0.0, expected = 0
            for (i, p) in probs.enumerated() where p > 0 { acc += p; expected = i; if r < acc { break } }
            #expect(try fast.sample(big) == expected)
        }
    }

    @Test func repetitionPenaltyDemotesSeenTokens() throws {
        var settings = SamplerSettings.greedy
        settings.repetitionPenalty = 100
        var s = Sampler(settings)
        let best = Sampler.argmax(logits)
        #expect(try s.sample(logits, history: [best]) != best)
    }

    /// NaN or +infinity anywhere, or nothing but −infinity, is a typed error in every mode: no trap on an empty
    /// candidate list, and no silent token 0 from greedy decoding. −infinity alone masks a token.
    @Test(arguments: [Float.nan, .infinity])
    func nonFiniteLogitsAreATypedError(bad: Float) throws {
        var broken = logits
        broken[17] = bad
        var all = SamplerSettings()
        all.temperature = 0.8
        all.topK = 0
        all.topP = 1
        all.minP = 0.05
        for settings in [SamplerSettings.greedy, SamplerSettings(), all] {
            var s = Sampler(settings)
            #expect(throws: ModelError.nonFiniteLogits(count: logits.count)) { try s.sample(broken) }
            #expect(throws: ModelError.nonFiniteLogits(count: 4)) { try s.sample([Float](repeating: .nan, count: 4)) }
            #expect(throws: ModelError.nonFiniteLogits(count: 3)) { try s.sample([Float](repeating: -.infinity, count: 3)) }
            var masked = logits
            masked[Sampler.argmax(logits)] = -.infinity
            #expect(try s.sample(masked) != Sampler.argmax(logits))
        }
    }
}

@Suite("Model-level (slow): Hugging Face checkpoint export and load")
struct HFCheckpointTests {
    /// The default model written as an HF checkpoint (F16 safetensors, config.json, tokenizer.json) and loaded back
    /// gives the same next-token choices as the GGUF (both with f32 activations); the only difference is the f16
    /// rounding of the dequantized weights (measured KL ≈ 1e-5).
    @Test func exportedCheckpointMatchesGGUF() throws {
        let path = try TestSupport.defaultModelPath()
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let gguf = try GGUFFile(path: path)
        try HFExport.write(gguf: gguf, to: dir)
        let hf = try TransformerModel(hfDirectory: dir)
        #expect(hf.config.ropeStyle == .halfSplit && hf.config.tiedEmbeddings && hf.embedding.type == .f16)
        let original = try TransformerModel(gguf: gguf)
        let pool = WorkerPool(threads: 2)
        let a = try ModelSession(model: original, pool: pool, contextLength: 64, exactActivations: true)
        let b = try ModelSession(model: hf, pool: pool, contextLength: 64)
        let vocab = original.config.vocabSize
        // Tokenizers from GGUF metadata and from tokenizer.json agree; so does the HF package on our tokenizer.json.
        let t1 = try Tokenizer(gguf: gguf)
        let t2 = try Tokenizer(tokenizerJSON: dir + "/tokenizer.json")
        let sample = String(decoding: try Data(contentsOf: URL(fileURLWithPath: Corpora.austenPath("emma"))).prefix(20_000), as: UTF8.self)
        let ids = t1.encode(sample)
        #expect(t2.encode(sample) == ids)
        try AtomicFileWriter.write(Array(sample.utf8), to: dir + "/sample.txt")
        try TestSupport.runPython("tokenizer_json_check.py", [dir + "/tokenizer.json", dir + "/sample.txt", dir + "/sample.ids"])
        let pyIDs = try Data(contentsOf: URL(fileURLWithPath: dir + "/sample.ids")).withUnsafeBytes { $0.bindMemory(to: UInt32.self).map { Int($0) } }
        #expect(pyIDs == ids)
        var worst = 0.0
        for prompt in [Array(ids.prefix(40)), [1, 504, 3458, 314, 253, 2145, 30]] {
            a.reset()
            b.reset()
            let la = try a.forward(prompt, logitsFor: prompt.count), lb = try b.forward(prompt, logitsFor: prompt.count)
            for t in 0 ..< prompt.count {
                let x = Array(la[t * vocab ..< (t + 1) * vocab]), y = Array(lb[t * vocab ..< (t + 1) * vocab])
                #expect(Sampler.argmax(x) == Sampler.argmax(y), "position \(t)")
                worst = max(worst, ModelReferenceTests().klDivergence(x, y))
            }
        }
        print("HF export: worst KL between GGUF and exported F16 checkpoint \(worst)")
        #expect(worst < 1e-3)
    }

    @Test func missingTensorsAndBadShapesAreTypedErrors() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try HFConfig(architectures: nil, modelType: "llama", hiddenSize: 64, intermediateSize: 128, numHiddenLayers: 1,
                     numAttentionHeads: 2, numKeyValueHeads: 1, headDim: nil, rmsNormEps: 1e-5, ropeTheta: 10000,
                     ropeScaling: nil, maxPositionEmbeddings: 128, vocabSize: 10, tieWordEmbeddings: true,
                     bosTokenID: nil, eosTokenID: nil, torchDtype: nil, attentionBias: nil).write(to: dir + "/config.json")
        var w = SafetensorsWriter()
        w.add("model.embed_tokens.weight", dtype: .F32, shape: [10, 64], bytes: [UInt8](repeating: 0, count: 2560))
        w.add("model.norm.weight", dtype: .F32, shape: [32], bytes: [UInt8](repeating: 0, count: 128))  // wrong size
        try w.write(to: dir + "/model.safetensors")
        #expect(throws: ModelError.shapeMismatch(path: dir, tensor: "output_norm.weight", expected: [64], found: [32])) {
            try TransformerModel(hfDirectory: dir)
        }
        var w2 = SafetensorsWriter()
        w2.add("model.embed_tokens.weight", dtype: .F32, shape: [10, 64], bytes: [UInt8](repeating: 0, count: 2560))
        w2.add("model.norm.weight", dtype: .F32, shape: [64], bytes: [UInt8](repeating: 0, count: 256))
        try w2.write(to: dir + "/model.safetensors")
        #expect(throws: ModelError.missingTensor(path: dir, tensor: "blk.0.attn_norm.weight")) { try TransformerModel(hfDirectory: dir) }
    }
}

@Suite("Model-level (slow): perplexity against llama.cpp")
struct PerplexityAcceptanceTests {
    /// llama.cpp's llama-perplexity prints PPL = 21.80 ± 0.70 on the first 60,000 bytes of "Pride and Prejudice"
    /// with -c 512; Squish must land within 0.5% (21.69 … 21.91) with the same protocol.
    @Test func matchesLlamaCppOnPrideAndPrejudice() throws {
        let path = try TestSupport.defaultModelPath()
        let data = try Data(contentsOf: URL(fileURLWithPath: Corpora.austenPath("prideprejudice"))).prefix(60_000)
        let text = String(decoding: data, as: UTF8.self)
        let gguf = try GGUFFile(path: path)
        let tokenizer = try Tokenizer(gguf: gguf)
        let model = try TransformerModel(gguf: gguf)
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 512)
        let tokens = tokenizer.encode(text)
        #expect(tokens.count == 15223)
        let r = try Perplexity.evaluate(session: session, tokens: tokens, context: 512, protocol: .llamacpp,
                                        bos: tokenizer.addBOS ? tokenizer.bosID : nil)
        print("perplexity (llamacpp protocol): \(r.perplexity) ± \(r.stderr) over \(r.tokens) tokens in \(r.chunks) chunks")
        #expect(r.chunks == 29 && r.tokens == 29 * 255)
        #expect(abs(r.perplexity - 21.80) / 21.80 < 0.005)
        #expect(abs(r.stderr - 0.70) < 0.05)
    }

    /// ik_llama.cpp's `llama-perplexity -c 512 -t 2` on Gemma-3-270M Q4_K_M and the same 60,000 bytes prints
    /// PPL = 23.2309 ± 0.76712 over 28 chunks (ik_llama.cpp of August 2026); Squish must land within 0.5% with the same
    /// protocol and the same chunks (the tokenization agrees). Measured: 23.2266.
    @Test func gemma3MatchesIkLlamaCpp() throws {
        let model = KnownModel.gemma3_270M
        guard model.isCached else { throw TestSetupError("Gemma-3-270M is not cached at \(model.path): run `squish fetch --model gemma3-270m`") }
        let data = try Data(contentsOf: URL(fileURLWithPath: Corpora.austenPath("prideprejudice"))).prefix(60_000)
        let lm = try LanguageModel(path: model.path)
        let session = try ModelSession(model: lm.model, pool: WorkerPool(threads: 2), contextLength: 512)
        let r = try Perplexity.evaluate(session: session, tokens: lm.tokenizer.encode(String(decoding: data, as: UTF8.self)),
                                        context: 512, protocol: .llamacpp, bos: lm.tokenizer.addBOS ? lm.tokenizer.bosID : nil)
        print("Gemma-3-270M perplexity (llamacpp protocol): \(r.perplexity) ± \(r.stderr) over \(r.tokens) tokens in \(r.chunks) chunks")
        #expect(r.chunks == 28)
        #expect(abs(r.perplexity - 23.2309) / 23.2309 < 0.005)
        #expect(abs(r.stderr - 0.767) < 0.05)
    }

    /// The windows protocol against the numpy forward pass (Tests/Python/llama_reference.py): each window run on
    /// its own, every token but a window's first scored once; the perplexity from the reference's logits and Squish's
    /// agree within 1% (Squish multiplies with 8-bit activations, as llama.cpp does; the per-position KL of that path
    /// is below 0.1, typically 0.004, see logitsMatchNumpyReference).
    @Test func windowsProtocolScoresEveryToken() throws {
        let path = try TestSupport.defaultModelPath()
        let gguf = try GGUFFile(path: path)
        let model = try TransformerModel(gguf: gguf)
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 64)
        let tokens = try Tokenizer(gguf: gguf).encode("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families.")
        let r = try Perplexity.evaluate(session: session, tokens: tokens, context: 32, protocol: .windows, bos: nil)
        // No BOS: each window's first token is context only; every other token is scored once.
        let windows = (tokens.count + 31) / 32
        #expect(r.chunks == windows && r.tokens == tokens.count - windows)

        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let prompts = stride(from: 0, to: tokens.count, by: 32).map { Array(tokens[$0 ..< min($0 + 32, tokens.count)]) }
        try JSONEncoder().encode(prompts).write(to: URL(fileURLWithPath: dir + "/ids.json"))
        try TestSupport.runPython("llama_reference.py", [path, dir + "/ids.json", dir + "/out.bin"])
        let logits = try Data(contentsOf: URL(fileURLWithPath: dir + "/out.bin")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let vocab = model.config.vocabSize
        var nll = 0.0, scored = 0, row = 0
        for window in prompts {
            for j in 0 ..< window.count {
                defer { row += 1 }
                guard j + 1 < window.count else { continue }
                let l = logits[row * vocab ..< (row + 1) * vocab]
                let m = Double(l.max()!)
                nll -= Double(l[l.startIndex + window[j + 1]]) - m - log(l.reduce(0.0) { $0 + exp(Double($1) - m) })
                scored += 1
            }
        }
        let reference = exp(nll / Double(scored))
        print("windows protocol, 32-token windows: Squish \(r.perplexity), numpy reference \(reference)")
        #expect(scored == r.tokens)
        #expect(abs(r.perplexity - reference) / reference < 0.01)
        #expect(throws: EvalError.self) { try Perplexity.evaluate(session: session, tokens: Array(tokens.prefix(10)), context: 32, protocol: .llamacpp, bos: nil) }
    }
}
