import Foundation
import SquishData
import SquishEngine
import SquishKernels
import SquishModel
import SquishTokenizer
import Testing

/// The engine against one sequence at a time: continuous batching (several sequences decoding together with another's
/// prefill) gives each request the tokens it gets alone; prefix reuse skips the shared tokens and changes nothing;
/// the queue bound, cancellation, shutdown and context limits behave as documented.
struct EngineTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny-models").path

    /// Greedy tokens of `prompt` through a plain session (no engine).
    static func alone(_ lm: LanguageModel, _ prompt: [Int], maxTokens: Int, pool: WorkerPool, kv: KVCacheSpec = .f32,
                      maxBatch: Int = 512, stop: Set<Int> = []) throws -> [Int] {
        let session = try ModelSession(model: lm.model, pool: pool, contextLength: 256, maxBatch: maxBatch, kv: kv)
        var generator = Generator(session: session, sampler: .greedy)
        var out: [Int] = []
        _ = try generator.generate(prompt: prompt, maxTokens: maxTokens, stop: stop) { out.append($0); return true }
        return out
    }

    /// Runs a request to its end; returns token ids, text, the summary and the cached-token count.
    static func collect(_ g: Generation) async throws -> (tokens: [Int], text: String, summary: GenerationSummary, cached: Int) {
        var tokens: [Int] = [], text = "", cached = -1
        var summary: GenerationSummary?
        for try await e in g {
            switch e {
            case .started(_, let c): cached = c
            case .token(let t): tokens.append(t.id); text += t.text
            case .text(let s): text += s
            case .finished(let s): summary = s
            case .embedding: break
            }
        }
        return (tokens, text, try #require(summary), cached)
    }

    /// Token ids of every prompt, all submitted before any is collected.
    static func concurrently(_ served: ServedModel, _ prompts: [[Int]], _ parameters: GenerationParameters) async throws -> [[Int]] {
        try await withThrowingTaskGroup(of: (Int, [Int]).self) { group in
            for (i, p) in prompts.enumerated() {
                let g = try served.generate(prompt: p, parameters: parameters)
                group.addTask { (i, try await Self.collect(g).tokens) }
            }
            var r = [[Int]](repeating: [], count: prompts.count)
            for try await (i, t) in group { r[i] = t }
            return r
        }
    }

    /// Statistics are published by the scheduler between steps: waits up to 2 s for `condition`.
    static func eventually(_ condition: () -> Bool) async -> Bool {
        for _ in 0 ..< 200 {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }

    static func prompts(_ lm: LanguageModel, count: Int) -> [[Int]] {
        let words = ["It is a truth universally acknowledged", "Mr. Bennet was among the earliest", "Elizabeth had",
                     "The village of Longbourn", "Mrs. Bennet", "Jane", "a single man in possession", "Netherfield Park is let at last"]
        return (0 ..< count).map { i in lm.tokenizer.encode(words[i % words.count] + String(repeating: " and so on", count: i % 3), addSpecial: true) }
    }

    @Test func batchedSequencesGetTheTokensTheyGetAlone() async throws {
        let engine = Engine(threads: 2, options: EngineOptions(parallel: 4, context: 256, maxQueue: 16, prefillChunk: 7))
        let served = try await engine.load(Self.fixtures + "/llama")
        let lm = served.language
        let prompts = Self.prompts(lm, count: 7)
        var parameters = GenerationParameters(maxTokens: 24)
        parameters.ignoreEOS = true
        // 7 requests on 4 slots with 7-token prefill chunks: decoding sequences share steps with later prefills.
        let results = try await Self.concurrently(served, prompts, parameters)
        for (i, p) in prompts.enumerated() {
            let expected = try Self.alone(lm, p, maxTokens: 24, pool: engine.pool)
            #expect(results[i] == expected, "request \(i)")
        }
        #expect(await Self.eventually { served.statistics.completedRequests == prompts.count })
        #expect(served.statistics.steps < prompts.count * 24, "steps were shared: \(served.statistics.steps)")
        await engine.shutdown(grace: 1)
    }

    /// `serve --kv`: the first request, whose prompt the engine reads in 7-token chunks, gets the tokens of a session
    /// with the same cache reading 7 at a time; so do all the others where the cache's arithmetic does not depend on
    /// how prompts are cut (f16 and 8-bit rows; StreamingLLM's ring of the same size). The head-aware cache's slot order
    /// follows its evictions, so its other requests may sum attention in another order: they must finish. The
    /// selections evict (some tokens differ from the f32 cache's), and an evicting cache is not reused for a repeated
    /// prompt (nothing cached).
    @Test(arguments: ["f16", "q8", "streaming:sink2,window12", "duo:sink2,budget80,full1+q8"])
    func compressedCachesServeTheTokensASessionGets(spec: String) async throws {
        var options = EngineOptions(parallel: 4, context: 256, maxQueue: 16, prefillChunk: 7)
        let kv = try KVCacheSpec.parse(spec)
        options.kv = kv
        let engine = Engine(threads: 2, options: options)
        let served = try await engine.load(Self.fixtures + "/llama")
        let lm = served.language
        let prompts = Self.prompts(lm, count: 7)
        let parameters = GenerationParameters(maxTokens: 24)  // up to the end of sequence, as a session stopping there
        let results = try await Self.concurrently(served, prompts, parameters)
        var differs = false
        for (i, p) in prompts.enumerated() {
            #expect(!results[i].isEmpty)
            if i == 0 || !spec.hasPrefix("duo") {
                let alone = try Self.alone(lm, p, maxTokens: 24, pool: engine.pool, kv: kv, maxBatch: 7, stop: lm.stopTokens)
                #expect(results[i] == alone, "\(spec) request \(i)")
            }
            if try results[i] != Self.alone(lm, p, maxTokens: 24, pool: engine.pool, stop: lm.stopTokens) { differs = true }
        }
        if kv.selection != nil {
            #expect(differs, "\(spec): nothing was evicted")
            let again = try await Self.collect(try served.generate(prompt: prompts[6], parameters: parameters))
            #expect(again.tokens == results[6] && again.cached == 0, "\(spec): cached \(again.cached)")
        }
        await engine.shutdown(grace: 1)
    }

    @Test func nextTurnReusesTheCachedPrefixAndChangesNothing() async throws {
        let engine = Engine(threads: 2, options: EngineOptions(parallel: 2, context: 256))
        let served = try await engine.load(Self.fixtures + "/llama")
        var messages = [ChatMessage(role: "system", content: "You answer briefly."), ChatMessage(role: "user", content: "Who is Jane?")]
        let first = try await Self.collect(try served.generate(chat: messages, parameters: GenerationParameters(maxTokens: 12)))
        messages.append(ChatMessage(role: "assistant", content: first.text))
        messages.append(ChatMessage(role: "user", content: "And Elizabeth?"))
        let prompt = served.language.chatTokens(messages)
        let second = try await Self.collect(try served.generate(prompt: prompt, parameters: GenerationParameters(maxTokens: 12)))
        // The first turn's prompt is in the cache (its reply too, up to where re-tokenization differs).
        let firstPrompt = served.language.chatTokens(Array(messages.prefix(2)))
        #expect(second.cached >= firstPrompt.count, "cached \(second.cached) of \(prompt.count); first prompt \(firstPrompt.count)")
        #expect(second.summary.cachedPromptTokens == second.cached)
        #expect(second.tokens == (try Self.alone(served.language, prompt, maxTokens: 12, pool: engine.pool)))
        await engine.shutdown(grace: 1)
    }

    @Test func concurrentRequestsShareASystemPromptByCopy() async throws {
        let engine = Engine(threads: 2, options: EngineOptions(parallel: 3, context: 256, prefillChunk: 512))
        let served = try await engine.load(Self.fixtures + "/llama")
        let system = String(repeating: "You are a careful reader of Jane Austen. ", count: 6)
        func prompt(_ q: String) -> [Int] {
            served.language.chatTokens([ChatMessage(role: "system", content: system), ChatMessage(role: "user", content: q)])
        }
        var long = GenerationParameters(maxTokens: 40)
        long.ignoreEOS = true
        let a = try served.generate(prompt: prompt("Who is Jane?"), parameters: long)
        // Wait until the first request has prefilled (its first token), so its cache holds the system prompt.
        var it = a.makeAsyncIterator()
        while let e = try await it.next() { if case .token = e { break } }
        let bPrompt = prompt("Who is Lydia?")
        let b = try await Self.collect(try served.generate(prompt: bPrompt, parameters: GenerationParameters(maxTokens: 8)))
        let shared = zip(prompt("Who is Jane?"), bPrompt).prefix { $0 == $1 }.count
        #expect(b.cached == min(shared, bPrompt.count - 1), "cached \(b.cached), shared \(shared)")
        #expect(b.tokens == (try Self.alone(served.language, bPrompt, maxTokens: 8, pool: engine.pool)))
        a.cancel()
        await engine.shutdown(grace: 1)
    }

    /// On the default model: its 500 tokens take far longer than the checks before the shutdown (the tiny fixture
    /// could finish them first, and the shutdown would find nothing running).
    @Test func fullQueueContextAndShutdownAreRefusedCleanly() async throws {
        let model = KnownModel.defaultModel
        guard model.isCached else { throw TestSetupError("the default model is not cached at \(model.path): run `squish fetch`") }
        let engine = Engine(threads: 2, options: EngineOptions(parallel: 1, context: 512, maxQueue: 1))
        let served = try await engine.load(model.path)
        var p = GenerationParameters(maxTokens: 500)
        p.ignoreEOS = true
        let prompt = served.language.tokenizer.encode("Elizabeth", addSpecial: true)
        let running = try served.generate(prompt: prompt, parameters: p)
        var it = running.makeAsyncIterator()
        _ = try await it.next()  // admitted
        let waiting = try served.generate(prompt: prompt, parameters: p)
        #expect(throws: EngineError.queueFull(limit: 1)) { try served.generate(prompt: prompt, parameters: p) }
        #expect(throws: EngineError.contextExceeded(tokens: prompt.count + 512, context: 512)) {
            try served.generate(prompt: prompt, parameters: GenerationParameters(maxTokens: 512))
        }
        #expect(throws: EngineError.contextExceeded(tokens: 513, context: 512)) {
            try served.generate(prompt: Array(repeating: prompt[0], count: 512), parameters: GenerationParameters())
        }
        #expect(throws: EngineError.self) { try served.generate(prompt: [1_000_000], parameters: GenerationParameters()) }
        // Shutdown with no grace: the waiting request is refused, the running one (500 tokens) ends with an error.
        await engine.shutdown(grace: 0)
        await #expect(throws: EngineError.shuttingDown) { for try await _ in waiting {} }
        await #expect(throws: EngineError.shuttingDown) { while try await it.next() != nil {} }
        #expect(throws: EngineError.shuttingDown) { try served.generate(prompt: prompt, parameters: p) }
    }

    /// On the default model, whose 500 tokens take far longer than dropping the request (the tiny fixture could
    /// generate all of them before the drop is seen).
    @Test func droppedRequestsFreeTheirSequence() async throws {
        let model = KnownModel.defaultModel
        guard model.isCached else { throw TestSetupError("the default model is not cached at \(model.path): run `squish fetch`") }
        let engine = Engine(threads: 2, options: EngineOptions(parallel: 1, context: 512, maxQueue: 4))
        let served = try await engine.load(model.path)
        var p = GenerationParameters(maxTokens: 500)
        p.ignoreEOS = true
        let prompt = served.language.tokenizer.encode("Mr. Darcy", addSpecial: true)
        do {
            let g = try served.generate(prompt: prompt, parameters: p)
            var it = g.makeAsyncIterator()
            for _ in 0 ..< 3 { _ = try await it.next() }
        }  // dropped after two of its 500 tokens
        // The one slot is free again: a new request runs to its end, and the dropped one stopped early.
        let r = try await Self.collect(try served.generate(prompt: prompt, parameters: GenerationParameters(maxTokens: 5)))
        #expect(r.summary.completionTokens >= 1)
        #expect(await Self.eventually { served.statistics.completedRequests == 1 }, "\(served.statistics)")
        #expect(served.statistics.generatedTokens < 500, "\(served.statistics)")
        await engine.shutdown(grace: 1)
    }

    @Test func stopTextsEndTheTextBeforeThem() async throws {
        let engine = Engine(threads: 2, options: EngineOptions(parallel: 2, context: 256))
        let served = try await engine.load(Self.fixtures + "/llama")
        let prompt = served.language.tokenizer.encode("It is a truth universally acknowledged", addSpecial: true)
        var p = GenerationParameters(maxTokens: 40)
        p.ignoreEOS = true
        let full = try await Self.collect(try served.generate(prompt: prompt, parameters: p))
        // A stop text taken from the middle of the unconstrained output.
        let chars = Array(full.text)
        try #require(chars.count > 12)
        let stop = String(chars[8 ..< 11])
        p.stop = [stop]
        let cut = try await Self.collect(try served.generate(prompt: prompt, parameters: p))
        let expected = String(full.text[..<full.text.range(of: stop)!.lowerBound])
        #expect(cut.text == expected)
        #expect(cut.summary.finishReason == .stop)
        await engine.shutdown(grace: 1)
    }

    @Test func embeddingsAreUnitMeanPooledStates() async throws {
        let engine = Engine(threads: 2, options: EngineOptions(parallel: 2, context: 256))
        let served = try await engine.load(Self.fixtures + "/llama")
        let (v, n) = try await served.embedding(of: "Elizabeth Bennet")
        let ids = served.language.tokenizer.encode("Elizabeth Bennet", addSpecial: true)
        #expect(n == ids.count)
        // Reference: final normed hidden states of a plain session's forward pass, averaged and normalized.
        let model = served.language.model, c = model.config
        let pass = ForwardPass(model: model, pool: engine.pool, maxBatch: ids.count)
        let cache = try F32KVCache(layers: c.layers, capacity: ids.count, kvHeads: c.kvHeads, headDim: c.headDim)
        let x = UnsafeMutablePointer<Float>.allocate(capacity: ids.count * c.dim)
        defer { x.deallocate() }
        try pass.embed(ids, into: x)
        for (li, layer) in model.layers.enumerated() { try pass.block(li, layer, x: x, tokens: ids.count, start: 0, cache: cache, cacheLayer: li) }
        pass.finalNorm(x, rows: ids.count, into: x)
        var mean = [Double](repeating: 0, count: c.dim)
        for t in 0 ..< ids.count { for i in 0 ..< c.dim { mean[i] += Double(x[t * c.dim + i]) / Double(ids.count) } }
        let norm = mean.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let worst = zip(v, mean).map { abs(Double($0) - $1 / norm) }.max()!
        #expect(worst < 1e-6)
        await engine.shutdown(grace: 1)
    }

    @Test func modelsAreFoundByNameAndAlias() async throws {
        let engine = Engine(threads: 2, options: EngineOptions(parallel: 1, context: 64))
        try await engine.load(Self.fixtures + "/llama")
        try await engine.load(Self.fixtures + "/qwen2", as: "small")
        #expect(try engine.model("llama").id == "llama")
        #expect(try engine.model(Self.fixtures + "/qwen2").id == "small")
        #expect(try engine.model(nil).id == "llama")
        #expect(throws: EngineError.unknownModel("nope", available: ["llama", "small"])) { try engine.model("nope") }
        await #expect(throws: EngineError.self) { try await engine.load(Self.fixtures + "/llama") }
        await engine.shutdown(grace: 1)
    }
}
