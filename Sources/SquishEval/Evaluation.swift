import Foundation
import SquishCore
import SquishKernels
import SquishModel
import SquishTokenizer

/// A model to evaluate: weights, tokenizer and where they came from.
public struct EvalModel {
    public let path: String
    public let model: TransformerModel
    public let tokenizer: Tokenizer

    public init(path: String, model: TransformerModel, tokenizer: Tokenizer) {
        self.path = path
        self.model = model
        self.tokenizer = tokenizer
    }

    /// Bytes on disk (a GGUF file, or the sum of a checkpoint directory's files).
    public var fileBytes: Int { LanguageModel.fileBytes(path) }

    /// Content hash of the model (file, or the directory's files in name order).
    public func contentHash() throws -> String { try FNV1a64.file(path) }
}

/// What `squish eval` measures; the defaults size a full run of one candidate on the default model and a 60 kB text
/// to a couple of minutes on two cores.
public struct EvalOptions: Sendable {
    public var context = 512
    /// Reference tokens kept per position for KL (see `TopKDistribution`).
    public var topK = 256
    /// Reference tail tokens sampled per position for KL (see `TopKDistribution`).
    public var tailSamples = 64
    public var tasks: [String] = EvalOptions.allTasks
    public var lastWordItems = 80
    public var clozeItems = 60
    public var retrievalLengths = [64, 128, 256, 512]
    public var retrievalDepths = [0.1, 0.5, 0.9]
    public var retrievalPerCell = 3
    public var cacheDirectory = ReferenceLogits.defaultDirectory
    /// Recompute the reference even when a valid cache entry exists.
    public var refreshReference = false
    /// The candidates' KV cache; the reference always runs with the f32 cache (so `--kv` alone, with the candidate
    /// the reference model, measures what the cache costs on the same tokens).
    public var kvCache = KVCacheSpec.f32

    public static let allTasks = [LastWordTask.name, ClozeTask.name, RetrievalTask.name, RetrievalTask.multiKeyName]
    /// Facts in each passage of the multi-key retrieval task.
    public var multiKeys = 4

    public init() {}

    /// Positions a session needs: the scoring context, or the longest retrieval passage and its question.
    public var sessionContext: Int {
        let retrieves = tasks.contains(RetrievalTask.name) || tasks.contains(RetrievalTask.multiKeyName)
        return max(context, retrieves ? (retrievalLengths.max() ?? 0) + 64 : 0)
    }
}

/// The text all models are scored on.
public struct EvalText {
    public let name: String
    public let bytes: [UInt8]
    public let text: String

    public init(name: String, bytes: [UInt8]) throws {
        guard let text = String(bytes: bytes, encoding: .utf8) else { throw EvalError.invalidArgument("\(name): not valid UTF-8") }
        guard !bytes.isEmpty else { throw EvalError.invalidArgument("\(name): the text is empty") }
        self.name = name
        self.bytes = bytes
        self.text = text
    }

    public var hash: String {
        var h = FNV1a64()
        h.update(bytes)
        return h.hex
    }
}

/// The items of every selected task, built once from the corpora and run on every model.
public struct TaskSet {
    public var lastWord: [LastWordTask.Item] = []
    public var cloze: [ClozeTask.Item] = []
    public var retrieval: [RetrievalTask.Item] = []
    public var multiKey: [RetrievalTask.Item] = []

    public init() {}

    public var count: Int { lastWord.count + cloze.count + retrieval.count + multiKey.count }

    /// Austen (except `exclude`, the novel the perplexity text comes from) for last-word prediction and the
    /// retrieval filler; Austen and Shakespeare for the cloze.
    public static func build(options: EvalOptions, austen: [CorpusText], shakespeare: [CorpusText],
                             tokenizer: Tokenizer) -> TaskSet {
        var set = TaskSet()
        if options.tasks.contains(LastWordTask.name) {
            set.lastWord = LastWordTask.items(from: austen, count: options.lastWordItems)
        }
        if options.tasks.contains(ClozeTask.name) {
            // Interleave the two corpora's paragraphs' sources by building half the items from each.
            let a = ClozeTask.items(from: austen, count: (options.clozeItems + 1) / 2)
            let s = ClozeTask.items(from: shakespeare, count: options.clozeItems / 2)
            set.cloze = a + s
        }
        if let filler = austen.first {
            // Tokens per word of the filler, measured on its first 20,000 words.
            let sample = filler.paragraphs.flatMap { $0 }.prefix(20_000).joined(separator: " ")
            let measured = Double(tokenizer.encode(sample).count) / Double(max(1, sample.split(separator: " ").count))
            func passages(keys: Int) -> [RetrievalTask.Item] {
                var ratio = measured, items: [RetrievalTask.Item] = []
                // A passage, its question and answer must fit in the session (length + 64 positions): where the
                // filler's words take more tokens than the sample's, size the fillers again with the worst ratio seen.
                for _ in 0 ..< 4 {
                    items = RetrievalTask.items(from: [filler], lengths: options.retrievalLengths, depths: options.retrievalDepths,
                                                perCell: options.retrievalPerCell, tokensPerWord: ratio, keys: keys)
                    let over = items.map {
                        Double(tokenizer.encode($0.prompt + " " + $0.word).count + 1) / Double($0.contextTokens + 64)
                    }.max() ?? 1
                    if over <= 1 { break }
                    ratio *= over * 1.01
                }
                return items
            }
            if options.tasks.contains(RetrievalTask.name) { set.retrieval = passages(keys: 1) }
            if options.tasks.contains(RetrievalTask.multiKeyName) { set.multiKey = passages(keys: options.multiKeys) }
        }
        return set
    }

    /// A hash of all items (keys the reference's cached task results).
    public var hash: String {
        var h = FNV1a64()
        for i in lastWord { h.update(i.context); h.update(i.word) }
        for i in cloze { h.update(i.context); for c in i.choices { h.update(c) }; h.update("\(i.answer)") }
        for i in retrieval { h.update(i.prompt); h.update(i.word) }
        for i in multiKey { h.update(i.prompt); h.update(i.word) }
        return h.hex
    }

    public func run(scorer: TaskScorer, progress: ProgressBar?) throws -> [String: TaskResult] {
        var out: [String: TaskResult] = [:]
        if !lastWord.isEmpty { out[LastWordTask.name] = try LastWordTask.evaluate(lastWord, scorer: scorer, progress: progress) }
        if !cloze.isEmpty { out[ClozeTask.name] = try ClozeTask.evaluate(cloze, scorer: scorer, progress: progress) }
        if !retrieval.isEmpty { out[RetrievalTask.name] = try RetrievalTask.evaluate(retrieval, scorer: scorer, progress: progress) }
        if !multiKey.isEmpty {
            out[RetrievalTask.multiKeyName] = try RetrievalTask.evaluate(multiKey, name: RetrievalTask.multiKeyName, scorer: scorer,
                                                                         progress: progress)
        }
        return out
    }
}

/// One candidate measured against the reference (`--json` prints it).
public struct ModelEvalResult: Codable, Sendable {
    public var model: String
    public var reference: String
    public var modelBytes: Int
    public var referenceBytes: Int
    public var text: String
    public var textBytes: Int
    public var textTokens: Int
    public var context: Int
    /// llama.cpp protocol (as `squish perplexity --protocol llamacpp`).
    public var perplexity: Double
    public var perplexityStderr: Double
    public var referencePerplexity: Double
    /// Non-overlapping windows protocol.
    public var perplexityWindows: Double
    public var referencePerplexityWindows: Double
    /// KL(reference ‖ model) per scored position (llama.cpp protocol positions), nats.
    public var klDivergence: SampleSummary
    /// Fraction of positions where both models' most likely token is the same.
    public var top1Agreement: Double
    public var top1AgreementStderr: Double
    /// p_model(correct token) − p_reference(correct token) per position.
    public var deltaP: SampleSummary
    /// Σ NLL / (ln 2 · bytes) over the whole text (windows protocol: every token scored once).
    public var bitsPerByte: Double
    public var referenceBitsPerByte: Double
    public var klPositions: Int
    /// Reference tokens per position used for KL, and tail tokens sampled per position.
    public var klTopK: Int
    public var klTailSamples: Int
    /// Mean tail mass outside the reference's top-k (the part of the distribution KL sees as one bucket).
    public var klMeanTailMass: Double
    public var tasks: [String: TaskResult]
    public var referenceTasks: [String: TaskResult]
    public var seconds: Double
    public var referenceCached: Bool
    /// The candidate's KV cache (`--kv`) and its bytes per position at the scoring context (absent in results
    /// written before caches were selectable: those ran with f32).
    public var kvCache: String? = nil
    public var kvCacheBytesPerToken: Double? = nil

    enum CodingKeys: String, CodingKey {
        case model, reference, text, context, perplexity, tasks, seconds
        case modelBytes = "model_bytes", referenceBytes = "reference_bytes", textBytes = "text_bytes", textTokens = "text_tokens"
        case perplexityStderr = "perplexity_stderr", referencePerplexity = "reference_perplexity"
        case perplexityWindows = "perplexity_windows", referencePerplexityWindows = "reference_perplexity_windows"
        case klDivergence = "kl_divergence", top1Agreement = "top1_agreement", top1AgreementStderr = "top1_agreement_stderr"
        case deltaP = "delta_p", bitsPerByte = "bits_per_byte", referenceBitsPerByte = "reference_bits_per_byte"
        case klPositions = "kl_positions", klTopK = "kl_top_k", klTailSamples = "kl_tail_samples", klMeanTailMass = "kl_mean_tail_mass"
        case referenceTasks = "reference_tasks", referenceCached = "reference_cached"
        case kvCache = "kv_cache", kvCacheBytesPerToken = "kv_cache_bytes_per_token"
    }
}

/// Compares candidates with a reference model on one text and a task set.
public final class CompressionEvaluator {
    public let reference: EvalModel
    public let text: EvalText
    public let options: EvalOptions
    public let pool: WorkerPool
    public let tokens: [Int]
    let bos: Int?
    let log: (String) -> Void
    let quiet: Bool

    public init(reference: EvalModel, text: EvalText, options: EvalOptions, pool: WorkerPool, quiet: Bool = false,
                log: @escaping (String) -> Void = { _ in }) throws {
        self.reference = reference
        self.text = text
        self.options = options
        self.pool = pool
        self.quiet = quiet
        self.log = log
        tokens = reference.tokenizer.encode(text.text)
        bos = reference.tokenizer.addBOS ? reference.tokenizer.bosID : nil
        guard options.context >= 4, options.context <= reference.model.config.contextLength else {
            throw EvalError.invalidArgument("context \(options.context) must be between 4 and the model's \(reference.model.config.contextLength)")
        }
        guard options.topK >= 1 else { throw EvalError.invalidArgument("top-k must be at least 1") }
    }

    var vocab: Int { reference.model.config.vocabSize }

    // MARK: Reference

    private var referenceHash: String?
    public func referenceModelHash() throws -> String {
        if let referenceHash { return referenceHash }
        let h = try reference.contentHash()
        referenceHash = h
        return h
    }

    public func referenceCachePath() throws -> String {
        options.cacheDirectory + "/" + ReferenceLogits.fileName(modelHash: try referenceModelHash(), textHash: text.hash,
                                                                context: options.context, k: options.topK,
                                                                tailSamples: options.tailSamples)
    }

    /// The cached reference logits, or computes and caches them. A corrupt cache file is reported through `log`
    /// and recomputed.
    public func referenceLogits() throws -> (ReferenceLogits, cached: Bool) {
        let path = try referenceCachePath()
        if !options.refreshReference, FileManager.default.fileExists(atPath: path) {
            do {
                let r = try ReferenceLogits.read(from: path)
                if r.header.vocab == vocab && r.header.codeFingerprint == CodeFingerprint.current { return (r, true) }
                log("\(path): computed by other code or for another vocabulary; recomputing")
            } catch let error as EvalError {
                log("\(error); recomputing")
            }
        }
        let r = try computeReference()
        try r.write(to: path)
        return (r, false)
    }

    /// A session for the reference (f32 cache) or for a candidate (the options' cache).
    func session(for model: TransformerModel, candidate: Bool = false) throws -> ModelSession {
        try ModelSession(model: model, pool: pool, contextLength: options.sessionContext, kv: candidate ? options.kvCache : .f32)
    }

    /// llama.cpp protocol chunks: (chunk tokens, first scored index).
    func llamaChunks() throws -> [[Int]] {
        let context = options.context
        let all = (bos.map { [$0] } ?? []) + tokens
        let n = all.count / context
        guard n > 0 else { throw EvalError.textTooShort(tokens: all.count, needed: context) }
        return (0 ..< n).map { i in
            var chunk = Array(all[i * context ..< (i + 1) * context])
            if let bos { chunk[0] = bos }
            return chunk
        }
    }

    func windowsCount() -> Int {
        Perplexity.chunkCount(tokens: tokens.count, context: options.context, protocol: .windows, hasBOS: bos != nil)
    }

    public func computeReference() throws -> ReferenceLogits {
        let chunks = try llamaChunks()
        let context = options.context, first = context / 2, k = min(options.topK, vocab)
        let progress = ProgressBar(total: chunks.count + windowsCount(), label: "reference", quiet: quiet)
        let session = try session(for: reference.model)
        var acc = NLLAccumulator()
        var running: [Double] = []
        var targets: [Int32] = [], targetLogProbs: [Float] = [], tail: [Double] = [], ids: [Int32] = [], logProbs: [Float] = []
        var tailIDs: [Int32] = [], tailLogProbs: [Float] = []
        let m = k < vocab ? options.tailSamples : 0
        var top1Correct = 0
        for chunk in chunks {
            session.reset()
            let logits = try session.score(chunk, last: context - first)  // [(context − first) × vocab]
            logits.withUnsafeBufferPointer { l in
                for j in first ..< context - 1 {
                    let row = l.baseAddress! + (j - first) * vocab
                    let target = chunk[j + 1]
                    acc.add(logits: row, vocab: vocab, target: target)
                    if acc.firstNonFinite != nil { return }  // reported below, before anything uses the row
                    let norm = Divergence.normalizer(row, vocab: vocab)
                    let lse = norm.logSumExp
                    // A different systematic-sampling offset at each position (golden-ratio sequence).
                    let offset = (Double(targets.count) * 0.6180339887498949).truncatingRemainder(dividingBy: 1)
                    let d = Divergence.topK(row, vocab: vocab, k: k, normalizer: norm, tailSamples: m, offset: offset)
                    targets.append(Int32(target))
                    targetLogProbs.append(Divergence.logProb(row[target], lse))
                    tail.append(d.tailMass)
                    ids += d.ids
                    logProbs += d.logProbs
                    tailIDs += d.tailIDs
                    tailLogProbs += d.tailLogProbs
                    if Int(d.ids[0]) == target { top1Correct += 1 }
                }
            }
            try acc.checkFinite(reference.path)
            running.append(acc.perplexity)
            progress.advance()
        }
        let llama = PerplexityResult(perplexity: acc.perplexity, stderr: acc.standardError, tokens: acc.count,
                                     textTokens: tokens.count, chunks: chunks.count, context: context, protocol: .llamacpp,
                                     runningPerplexity: running, meanNLL: acc.mean)
        let windows = try Perplexity.evaluate(session: session, tokens: tokens, context: context, protocol: .windows, bos: bos,
                                              progress: progress)
        progress.finish()
        let header = ReferenceLogits.Header(version: ReferenceLogits.version, modelHash: try referenceModelHash(),
                                            textHash: text.hash, context: context, k: k, tailSamples: m, vocab: vocab,
                                            positions: targets.count, llamacpp: llama, windows: windows,
                                            top1Accuracy: Double(top1Correct) / Double(max(1, targets.count)))
        return ReferenceLogits(header: header, targets: targets, targetLogProbs: targetLogProbs, tailMass: tail, ids: ids,
                               logProbs: logProbs, tailIDs: tailIDs, tailLogProbs: tailLogProbs)
    }

    /// Task results of the reference, cached next to the logits (keyed by model hash and the items' hash).
    public func referenceTasks(_ set: TaskSet) throws -> [String: TaskResult] {
        guard set.count > 0 else { return [:] }
        let path = options.cacheDirectory + "/reference-tasks-\(try referenceModelHash())-\(set.hash)-\(CodeFingerprint.current).json"
        if !options.refreshReference, let data = FileManager.default.contents(atPath: path),
           let r = try? JSONDecoder().decode([String: TaskResult].self, from: data) {
            return r
        }
        let progress = ProgressBar(total: set.count, label: "reference tasks", quiet: quiet)
        let r = try set.run(scorer: TaskScorer(session: try session(for: reference.model), tokenizer: reference.tokenizer),
                            progress: progress)
        progress.finish()
        try FileManager.default.createDirectory(atPath: options.cacheDirectory, withIntermediateDirectories: true)
        try AtomicFileWriter.write(Array(try jsonString(r).utf8), to: path)
        return r
    }

    // MARK: Candidates

    /// Bits per byte from a windows-protocol result: total NLL over the scored tokens' bytes.
    func bitsPerByte(_ r: PerplexityResult) -> Double {
        var bytes = text.bytes.count
        if bos == nil {
            // Without BOS each window's first token is not scored: leave its bytes out.
            var i = 0
            while i < tokens.count {
                bytes -= reference.tokenizer.bytes(for: tokens[i]).count
                i += options.context
            }
        }
        return r.meanNLL * Double(r.tokens) / (Foundation.log(2.0) * Double(max(1, bytes)))
    }

    public func evaluate(_ candidate: EvalModel, reference ref: ReferenceLogits, referenceCached: Bool,
                         tasks: TaskSet, referenceTasks: [String: TaskResult]) throws -> ModelEvalResult {
        let start = Date()
        guard candidate.model.config.vocabSize == vocab, candidate.tokenizer.tokens == reference.tokenizer.tokens else {
            throw EvalError.incompatible("\(candidate.path): its vocabulary differs from the reference's; KL needs the same tokens")
        }
        let chunks = try llamaChunks()
        let context = options.context, first = context / 2, k = ref.header.k
        guard ref.header.positions == chunks.count * (context - 1 - first) else {
            throw EvalError.incompatible("the reference cache has \(ref.header.positions) positions, the text gives \(chunks.count * (context - 1 - first))")
        }
        let progress = ProgressBar(total: chunks.count + windowsCount() + tasks.count,
                                   label: (candidate.path as NSString).lastPathComponent, quiet: quiet)
        let session = try session(for: candidate.model, candidate: true)
        var acc = NLLAccumulator()
        var kl: [Double] = [], deltaP: [Double] = []
        kl.reserveCapacity(ref.header.positions)
        var same = 0, position = 0
        for chunk in chunks {
            session.reset()
            let logits = try session.score(chunk, last: context - first)  // [(context − first) × vocab]
            try logits.withUnsafeBufferPointer { l in
                for j in first ..< context - 1 {
                    let row = l.baseAddress! + (j - first) * vocab
                    let target = chunk[j + 1]
                    guard Int(ref.targets[position]) == target else {
                        throw EvalError.incompatible("reference cache position \(position): token \(ref.targets[position]), text has \(target)")
                    }
                    acc.add(logits: row, vocab: vocab, target: target)
                    if acc.firstNonFinite != nil { return }  // reported below, before anything uses the row
                    let norm = Divergence.normalizer(row, vocab: vocab)
                    let lse = norm.logSumExp
                    kl.append(Divergence.klDivergence(reference: ref.distribution(at: position), candidate: row, vocab: vocab,
                                                      normalizer: norm))
                    if Divergence.argmax(row, vocab: vocab) == Int(ref.ids[position * k]) { same += 1 }
                    deltaP.append(exp(Double(Divergence.logProb(row[target], lse))) - exp(Double(ref.targetLogProbs[position])))
                    position += 1
                }
            }
            try acc.checkFinite(candidate.path)
            progress.advance()
        }
        let windows = try Perplexity.evaluate(session: session, tokens: tokens, context: context, protocol: .windows, bos: bos,
                                              progress: progress)
        let taskResults = try tasks.run(scorer: TaskScorer(session: session, tokenizer: candidate.tokenizer), progress: progress)
        progress.finish()
        let n = Double(max(1, position))
        let top1 = Double(same) / n
        var result = ModelEvalResult(
            model: candidate.path, reference: reference.path, modelBytes: candidate.fileBytes, referenceBytes: reference.fileBytes,
            text: text.name, textBytes: text.bytes.count, textTokens: tokens.count, context: context,
            perplexity: acc.perplexity, perplexityStderr: acc.standardError, referencePerplexity: ref.header.llamacpp.perplexity,
            perplexityWindows: windows.perplexity, referencePerplexityWindows: ref.header.windows.perplexity,
            klDivergence: SampleSummary(kl), top1Agreement: top1,
            top1AgreementStderr: position > 1 ? (top1 * (1 - top1) / (n - 1)).squareRoot() : 0,
            deltaP: SampleSummary(deltaP), bitsPerByte: bitsPerByte(windows), referenceBitsPerByte: bitsPerByte(ref.header.windows),
            klPositions: position, klTopK: k, klTailSamples: ref.header.tailSamples, klMeanTailMass: ref.tailMass.reduce(0, +) / n,
            tasks: taskResults, referenceTasks: referenceTasks, seconds: Date().timeIntervalSince(start),
            referenceCached: referenceCached)
        result.kvCache = options.kvCache.description
        result.kvCacheBytesPerToken = Double(session.cache.bytes(positions: context)) / Double(context)
        return result
    }
}
