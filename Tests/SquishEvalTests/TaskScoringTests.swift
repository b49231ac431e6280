import Foundation
import Testing
import SquishCore
import SquishEval
import SquishFormats
import SquishKernels
import SquishModel
import SquishTokenizer

/// Task scoring with a model (a small random one with the default model's tokenizer): the scorer's log-likelihoods,
/// computed with a shared context and KV-cache reuse, equal a plain forward pass over context + continuation; greedy
/// matching follows the model's own greedy chain; the cloze task picks the choice with the best log-likelihood per
/// byte and counts it.
@Suite("Task scoring with a model")
struct TaskScoringTests {
    static let setup: Result<(TransformerModel, Tokenizer), Error> = Result {
        let dir = NSTemporaryDirectory() + "squish-task-scoring-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let shape = SyntheticModelShape(name: "tiny", dim: 64, hiddenDim: 128, layers: 2, heads: 4, kvHeads: 2, contextLength: 256)
        _ = try SyntheticModel.write(shape: shape, type: .q8_0, tokenizerFrom: GGUFFile(path: try TestSupport.defaultModelPath()),
                                     to: dir + "/tiny.gguf", seed: 3)
        let file = try GGUFFile(path: dir + "/tiny.gguf")
        return (try TransformerModel(gguf: file), try Tokenizer(gguf: file))
    }

    func scorer() throws -> TaskScorer {
        let (model, tokenizer) = try Self.setup.get()
        return TaskScorer(session: try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 256), tokenizer: tokenizer)
    }

    /// Σ log p(continuation | context) from one forward pass over the joined tokens.
    func plainLogLikelihood(_ context: [Int], _ continuation: [Int]) throws -> Double {
        let (model, _) = try Self.setup.get()
        let vocab = model.config.vocabSize
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 1), contextLength: 256)
        let logits = try session.forward(context + continuation, logitsFor: continuation.count + 1)
        var ll = 0.0
        for (j, token) in continuation.enumerated() {
            let row = Array(logits[j * vocab ..< (j + 1) * vocab])
            let m = Double(row.max()!)
            ll += Double(row[token]) - m - log(row.reduce(0.0) { $0 + exp(Double($1) - m) })
        }
        return ll
    }

    @Test func logLikelihoodsEqualAPlainForwardPass() throws {
        let s = try scorer()
        let context = s.tokenizer.encode("It is a truth universally acknowledged, that a single man")
        let continuations = [" in possession of a good fortune", " must be in want of a wife", " walked", ""].map { s.tokenizer.encode($0) }
        let ll = try s.logLikelihoods(context: context, continuations: continuations)
        for (c, got) in zip(continuations, ll) {
            let expected = c.isEmpty ? 0 : try plainLogLikelihood(context, c)
            // Batched and token-by-token passes differ by the int8 activations' rounding (max |Δlogit| < 1e-3).
            #expect(abs(got - expected) <= 2e-3 * Double(max(1, c.count)), "\(c): \(got) vs \(expected)")
        }
    }

    /// The model's greedy continuation of `context`, decoded token by token.
    func greedyChain(after context: [Int], count: Int) throws -> [Int] {
        let (model, _) = try Self.setup.get()
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 1), contextLength: 256)
        var chain: [Int] = []
        var logits = try session.forward(context, logitsFor: 1)
        for _ in 0 ..< count {
            chain.append(Sampler.argmax(logits))
            logits = try session.forward([chain.last!], logitsFor: 1)
        }
        return chain
    }

    /// An f32 cache that logs the size of each batch layer 0 stores.
    final class BatchLog: KVCache {
        let inner: F32KVCache
        var batches: [Int] = []
        init(_ inner: F32KVCache) { self.inner = inner }
        var capacity: Int { inner.capacity }
        func beginBatch(layer: Int, start: Int, count: Int) { if layer == 0 { batches.append(count) } }
        func store(layer: Int, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
            inner.store(layer: layer, position: position, key: key, value: value)
        }
        func attend(layer: Int, kvHead: Int, queries: UnsafePointer<Float>, heads: Int, headDim: Int, positions: Range<Int>,
                    scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
            inner.attend(layer: layer, kvHead: kvHead, queries: queries, heads: heads, headDim: headDim, positions: positions,
                         scale: scale, scores: scores, output: output)
        }
        func truncate(to count: Int) { inner.truncate(to: count) }
        func copy(prefix count: Int) throws -> KVCache { try inner.copy(prefix: count) }
        func bytes(positions count: Int) -> Int { inner.bytes(positions: count) }
    }

    /// Greedy matching reads the context as a prompt, then the answer one token at a time, as generation does (a
    /// cache that compresses a prompt when generation starts, SnapKV, must see that), stopping at the first miss.
    @Test func greedyMatchingDecodesTheAnswer() throws {
        let (model, tokenizer) = try Self.setup.get()
        let log = BatchLog(try F32KVCache(config: model.config, capacity: 256))
        let s = TaskScorer(session: try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 256, cache: log),
                           tokenizer: tokenizer)
        let context = tokenizer.encode("She was the youngest of the two daughters of a most affectionate, indulgent")
        let chain = try greedyChain(after: context, count: 3)
        _ = try s.greedyMatches(context: context, answer: chain)
        #expect(log.batches == [context.count, 1, 1, 1])
        log.batches = []
        var wrong = chain
        wrong[0] = (wrong[0] + 1) % model.config.vocabSize
        #expect(try s.greedyMatches(context: context, answer: wrong) == false)
        #expect(log.batches == [context.count])
    }

    @Test func greedyMatchingFollowsTheGreedyChain() throws {
        let s = try scorer()
        let (model, tokenizer) = try Self.setup.get()
        let vocab = model.config.vocabSize
        let context = tokenizer.encode("She was the youngest of the two daughters of a most affectionate, indulgent")
        // The model's own greedy chain of three tokens, and what comes after it.
        let chain = try greedyChain(after: context, count: 4)
        let answer = Array(chain.prefix(3))
        let next = tokenizer.bytes(for: chain[3]).first
        let continuesWord = next.map { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) } ?? false
        #expect(try s.greedyMatches(context: context, answer: answer) == !continuesWord)
        var wrong = answer
        wrong[1] = (wrong[1] + 1) % vocab
        #expect(try s.greedyMatches(context: context, answer: wrong) == false)
    }

    @Test func clozePicksTheBestLogLikelihoodPerByte() throws {
        let s = try scorer()
        let context = "The evening was fine, and the party walked"
        let choices = ["out into the garden together", "into the library to read", "home before the rain", "xq zv"]
        let split = choices.map { s.split(context: context, answer: " " + $0) }
        let perByte = try zip(split, choices).map { try plainLogLikelihood($0.0.context, $0.0.answer) / Double($0.1.utf8.count + 1) }
        let best = perByte.indices.max { perByte[$0] < perByte[$1] }!
        // The best choice is unambiguous here (no near tie within the scorer's rounding).
        #expect(perByte.indices.filter { $0 != best }.allSatisfy { perByte[best] - perByte[$0] > 1e-3 })
        let right = ClozeTask.Item(source: "test", context: context, choices: choices, answer: best)
        let wrong = ClozeTask.Item(source: "test", context: context, choices: choices, answer: (best + 1) % choices.count)
        let r = try ClozeTask.evaluate([right, wrong, right], scorer: s)
        #expect(r.correct == 2 && r.total == 3 && abs(r.accuracy - 2.0 / 3) < 1e-12)
        #expect(r.interval[0] < r.accuracy && r.accuracy < r.interval[1])
    }
}
