import Dispatch
import Foundation
import SquishKernels
import SquishModel
import SquishTokenizer

/// The scheduler thread of one served model: continuous batching. Each step runs one batch through the forward pass:
/// the next token of every decoding sequence plus up to `prefillChunk` prompt tokens of sequences still reading
/// their prompts, so every weight matrix is read once per step for all of them. Sequences join as soon as a slot is
/// free and leave when they finish. Only this thread touches the sequences, slots and buffers below.
final class Scheduler {
    let served: ServedModel
    let model: TransformerModel
    let tokenizer: Tokenizer
    let pass: ForwardPass
    let pool: WorkerPool
    let options: EngineOptions
    let context: Int
    let dim: Int, vocab: Int
    let stopTokens: Set<Int>
    /// Most tokens in one step: every slot decoding plus one prefill chunk.
    let maxStep: Int
    private let x: UnsafeMutablePointer<Float>  // residual stream of a step [maxStep × dim]
    private let rows: UnsafeMutablePointer<Float>  // residual rows whose logits are wanted [parallel × dim]
    private let normed: UnsafeMutablePointer<Float>  // final-normed rows of embedding sequences [maxStep × dim]
    private let logits: UnsafeMutablePointer<Float>  // [parallel × vocab]
    private var slots: [Slot]
    private var active: [Sequence] = []
    private var clock: UInt64 = 0
    private var delta = ModelStatistics()

    /// A KV cache kept between requests with the tokens it holds, so that the next request sharing a prefix (the
    /// conversation's next turn, a repeated system prompt) starts after it.
    struct Slot {
        var cache: KVCache?
        var tokens: [Int] = []  // positions 0 ..< tokens.count of `cache`
        var busy = false
        var lastUsed: UInt64 = 0
    }

    /// One request being served.
    final class Sequence {
        let request: PendingRequest
        let prompt: [Int]
        let parameters: GenerationParameters
        let isEmbedding: Bool
        var cache: KVCache
        var slot: Int?
        /// Positions in the cache.
        var position: Int
        /// Index of the first prompt token not yet run.
        var nextPrompt: Int
        let cachedPrompt: Int
        /// The sampled token to run in the next step.
        var pendingToken: Int?
        var sampler: Sampler
        var constraint: JSONTokenConstraint?
        var generated: [Int] = []
        var text: TextAssembler
        let maxTokens: Int
        var firstToken: UInt64?
        var embeddingSum: [Double] = []
        // Results of this step's sampling (written by the worker that sampled this sequence).
        var sampled = -1
        var sampledLogprobs: TokenLogprobs?
        var failure: String?
        var done = false

        init(request: PendingRequest, prompt: [Int], parameters: GenerationParameters, isEmbedding: Bool, cache: KVCache,
             slot: Int?, cached: Int, constraint: JSONTokenConstraint?, maxTokens: Int) {
            self.request = request
            self.prompt = prompt
            self.parameters = parameters
            self.isEmbedding = isEmbedding
            self.cache = cache
            self.slot = slot
            position = cached
            nextPrompt = cached
            cachedPrompt = cached
            sampler = Sampler(parameters.sampling)
            self.constraint = constraint
            text = TextAssembler(stops: parameters.stop)
            self.maxTokens = maxTokens
        }
    }

    init(_ served: ServedModel) {
        self.served = served
        model = served.language.model
        tokenizer = served.language.tokenizer
        pool = served.pool
        options = served.options
        context = served.context
        let c = model.config
        dim = c.dim
        vocab = c.vocabSize
        stopTokens = served.stopTokens
        maxStep = options.parallel + options.prefillChunk
        pass = ForwardPass(model: model, pool: pool, maxBatch: maxStep)
        pass.reserve(positions: context)
        x = .allocate(capacity: maxStep * dim)
        rows = .allocate(capacity: options.parallel * dim)
        normed = .allocate(capacity: maxStep * dim)
        logits = .allocate(capacity: options.parallel * vocab)
        slots = Array(repeating: Slot(), count: options.parallel)
    }

    deinit {
        x.deallocate()
        rows.deallocate()
        normed.deallocate()
        logits.deallocate()
    }

    // MARK: The loop

    func run() {
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            let free = options.parallel - active.count
            let (admitted, refused, draining, pastDeadline) = served.shared.withLock { s in
                // Requests whose client went away before they started are dropped; while draining, waiting ones are
                // refused (nothing has been sent for them yet).
                var refused: [PendingRequest] = []
                s.waiting.removeAll { r in
                    if r.isCancelled { refused.append(r); return true }
                    return false
                }
                var admitted: [PendingRequest] = []
                if s.draining {
                    refused += s.waiting
                    s.waiting.removeAll()
                } else {
                    let n = min(free, s.waiting.count)
                    admitted = Array(s.waiting.prefix(n))
                    s.waiting.removeFirst(n)
                }
                s.statistics.waiting = s.waiting.count
                return (admitted, refused, s.draining, s.deadline.map { now > $0 } ?? false)
            }
            for r in refused { r.continuation.finish(throwing: r.isCancelled ? CancellationError() : EngineError.shuttingDown) }
            for r in admitted { start(r) }
            for seq in active where seq.request.isCancelled { end(seq) }
            if pastDeadline {
                for seq in active where !seq.done { fail(seq, EngineError.shuttingDown) }
            }
            active.removeAll { $0.done }
            publishStatistics()
            if active.isEmpty {
                if draining {
                    let waiters = served.shared.withLock { s -> [CheckedContinuation<Void, Never>] in
                        s.stopped = true
                        defer { s.stopWaiters.removeAll() }
                        return s.stopWaiters
                    }
                    for w in waiters { w.resume() }
                    return
                }
                served.wake.wait()
                continue
            }
            step()
            active.removeAll { $0.done }
            publishStatistics()
        }
    }

    private func publishStatistics() {
        var kv = 0
        for s in slots { if let c = s.cache { kv += c.bytes(positions: s.tokens.count) } }
        for seq in active where seq.isEmbedding { kv += seq.cache.bytes(positions: seq.position) }
        let d = delta
        delta = ModelStatistics()
        let activeCount = active.count
        served.shared.withLock { s in
            s.statistics.active = activeCount
            s.statistics.kvBytes = kv
            s.statistics.promptTokens += d.promptTokens
            s.statistics.cachedPromptTokens += d.cachedPromptTokens
            s.statistics.generatedTokens += d.generatedTokens
            s.statistics.steps += d.steps
            s.statistics.completedRequests += d.completedRequests
        }
    }

    // MARK: Admission

    /// Length of the common prefix of a and b.
    static func commonPrefix(_ a: [Int], _ b: [Int]) -> Int {
        var n = 0
        let m = min(a.count, b.count)
        while n < m && a[n] == b[n] { n += 1 }
        return n
    }

    private func newCache(capacity: Int, kv: KVCacheSpec) throws -> KVCache {
        try kv.makeCache(model: model, pool: pool, capacity: capacity, batch: options.prefillChunk)
    }

    private func start(_ request: PendingRequest) {
        do {
            switch request.work {
            case .embed(let prompt):
                let seq = Sequence(request: request, prompt: prompt, parameters: GenerationParameters(), isEmbedding: true,
                                   cache: try newCache(capacity: prompt.count, kv: .f32), slot: nil, cached: 0, constraint: nil, maxTokens: 0)
                seq.embeddingSum = [Double](repeating: 0, count: dim)
                active.append(seq)
                delta.promptTokens += prompt.count
            case .generate(let prompt, let parameters, let constraint):
                // The free slot sharing the longest prefix with the prompt (ties: the least recently used).
                var best = -1, bestShared = -1
                for (i, s) in slots.enumerated() where !s.busy {
                    let l = Self.commonPrefix(s.tokens, prompt)
                    if l > bestShared || (l == bestShared && s.lastUsed < slots[best].lastUsed) { best = i; bestShared = l }
                }
                precondition(best >= 0, "no free slot while fewer than `parallel` sequences are active")
                // At least the last prompt token runs, for its logits; an evicting cache starts afresh.
                let reusable = options.kv.selection == nil
                var reuse = reusable ? min(bestShared, prompt.count - 1) : 0
                // A busy slot may hold a much longer prefix (a system prompt shared by concurrent requests): copy it.
                var donor = -1, donorShared = reuse
                for (i, s) in slots.enumerated() where s.busy {
                    let l = min(Self.commonPrefix(s.tokens, prompt), prompt.count - 1)
                    if reusable && l >= reuse + options.minimumCopiedPrefix && l > donorShared { donor = i; donorShared = l }
                }
                if donor >= 0, let source = slots[donor].cache {
                    slots[best].cache = try source.copy(prefix: donorShared)
                    reuse = donorShared
                } else if slots[best].cache == nil {
                    slots[best].cache = try newCache(capacity: context, kv: options.kv)
                }
                let cache = slots[best].cache!
                cache.truncate(to: reuse)
                slots[best].tokens = Array(prompt.prefix(reuse))
                slots[best].busy = true
                let seq = Sequence(request: request, prompt: prompt, parameters: parameters, isEmbedding: false, cache: cache,
                                   slot: best, cached: reuse, constraint: constraint,
                                   maxTokens: parameters.maxTokens ?? (context - prompt.count))
                active.append(seq)
                delta.promptTokens += prompt.count
                delta.cachedPromptTokens += reuse
                request.continuation.yield(.started(promptTokens: prompt.count, cachedTokens: reuse))
            }
        } catch {
            request.continuation.finish(throwing: EngineError.modelFailed("\(error)"))
        }
    }

    // MARK: Ending

    /// Frees the sequence's slot (its cache keeps what it holds for the next request).
    private func release(_ seq: Sequence, keepCache: Bool = true) {
        seq.done = true
        guard let i = seq.slot else { return }
        clock += 1
        slots[i].busy = false
        slots[i].lastUsed = clock
        if !keepCache {
            slots[i].tokens = []
            slots[i].cache?.truncate(to: 0)
        }
        seq.slot = nil
    }

    /// A client that went away: nothing more is sent.
    private func end(_ seq: Sequence) {
        release(seq)
        seq.request.continuation.finish()
    }

    private func fail(_ seq: Sequence, _ error: EngineError, keepCache: Bool = true) {
        release(seq, keepCache: keepCache)
        seq.request.continuation.finish(throwing: error)
    }

    private func finish(_ seq: Sequence, _ reason: FinishReason) {
        let rest = seq.text.flush()
        if !rest.isEmpty { seq.request.continuation.yield(.text(rest)) }
        let now = DispatchTime.now().uptimeNanoseconds
        let submitted = seq.request.submitted
        let summary = GenerationSummary(
            finishReason: reason, promptTokens: seq.prompt.count, cachedPromptTokens: seq.cachedPrompt,
            completionTokens: seq.generated.count,
            timeToFirstToken: Double((seq.firstToken ?? now) - submitted) / 1e9, totalSeconds: Double(now - submitted) / 1e9)
        seq.request.continuation.yield(.finished(summary))
        seq.request.continuation.finish()
        delta.completedRequests += 1
        release(seq)
    }

    // MARK: One step

    private func step() {
        var segments: [BatchSegment] = []
        var tokens: [Int] = []
        var parts: [(seq: Sequence, row: Int, count: Int)] = []
        for seq in active where !seq.done {
            guard let t = seq.pendingToken else { continue }
            parts.append((seq, tokens.count, 1))
            segments.append(BatchSegment(cache: seq.cache, start: seq.position, count: 1))
            tokens.append(t)
        }
        var budget = options.prefillChunk
        for seq in active where !seq.done && seq.pendingToken == nil && seq.nextPrompt < seq.prompt.count && budget > 0 {
            let n = min(budget, seq.prompt.count - seq.nextPrompt, seq.cache.largestBatch)
            parts.append((seq, tokens.count, n))
            segments.append(BatchSegment(cache: seq.cache, start: seq.position, count: n))
            tokens += seq.prompt[seq.nextPrompt ..< seq.nextPrompt + n]
            budget -= n
        }
        guard !tokens.isEmpty else { return }
        delta.steps += 1
        do {
            try pass.embed(tokens, into: x)
            for (li, layer) in model.layers.enumerated() {
                try pass.block(li, layer, x: x, segments: segments, cacheLayer: li)
            }
        } catch {
            for p in parts { fail(p.seq, EngineError.modelFailed("\(error)"), keepCache: false) }
            return
        }
        // The step's tokens are now in the caches.
        var wanting: [Sequence] = []
        for p in parts {
            let seq = p.seq
            seq.position += p.count
            if let i = seq.slot { slots[i].tokens += tokens[p.row ..< p.row + p.count] }
            var wantsLogits = false
            if seq.pendingToken != nil {
                seq.pendingToken = nil
                wantsLogits = true
            } else {
                seq.nextPrompt += p.count
                if seq.isEmbedding {
                    accumulateEmbedding(seq, row: p.row, count: p.count)
                    if seq.nextPrompt == seq.prompt.count { finishEmbedding(seq) }
                } else if seq.nextPrompt == seq.prompt.count {
                    wantsLogits = true
                }
            }
            if wantsLogits {
                (rows + wanting.count * dim).update(from: x + (p.row + p.count - 1) * dim, count: dim)
                wanting.append(seq)
            }
        }
        guard !wanting.isEmpty else { return }
        do {
            try pass.logits(rows, rows: wanting.count, into: logits)
        } catch {
            for seq in wanting { fail(seq, EngineError.modelFailed("\(error)"), keepCache: false) }
            return
        }
        // Sampling is independent per sequence: spread over the pool.
        let logits = self.logits, vocab = self.vocab
        pool.parallelFor(wanting.count) { range in
            for j in range { self.sample(wanting[j], row: UnsafeMutableBufferPointer(start: logits + j * vocab, count: vocab)) }
        }
        for seq in wanting { deliver(seq) }
    }

    private func accumulateEmbedding(_ seq: Sequence, row: Int, count: Int) {
        pass.finalNorm(x + row * dim, rows: count, into: normed)
        for t in 0 ..< count {
            let r = normed + t * dim
            for i in 0 ..< dim { seq.embeddingSum[i] += Double(r[i]) }
        }
    }

    private func finishEmbedding(_ seq: Sequence) {
        let n = Double(seq.prompt.count)
        var v = seq.embeddingSum.map { $0 / n }
        let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        if norm > 0 { v = v.map { $0 / norm } }
        seq.request.continuation.yield(.embedding(v.map { Float($0) }, promptTokens: seq.prompt.count))
        seq.request.continuation.finish()
        delta.completedRequests += 1
        seq.done = true
    }

    /// Picks the sequence's next token from its logits row (the row may be changed: masked tokens set to −∞).
    private func sample(_ seq: Sequence, row: UnsafeMutableBufferPointer<Float>) {
        seq.failure = nil
        seq.sampledLogprobs = nil
        let p = seq.parameters
        // Log-probabilities of the model's own distribution, before any masking.
        let summary = p.logprobs.map { TokenLogprobs.summarize(UnsafeBufferPointer(row), top: $0) }
        if p.ignoreEOS { for t in stopTokens where t < row.count { row[t] = -.infinity } }
        if let c = seq.constraint {
            let allowed = c.allowedTokens()
            guard !allowed.isEmpty else {
                seq.failure = "no token can continue the response_format's JSON"
                return
            }
            var keep = [Bool](repeating: false, count: row.count)
            for id in allowed where id < row.count { keep[id] = true }
            for i in 0 ..< row.count where !keep[i] { row[i] = -.infinity }
        }
        let history = p.sampling.repetitionPenalty != 1 ? seq.prompt + seq.generated : []
        let token: Int
        do {
            token = try seq.sampler.sample(UnsafeBufferPointer(row), history: history)
        } catch {
            seq.failure = "\(error)"
            return
        }
        seq.sampled = token
        if let s = summary { seq.sampledLogprobs = TokenLogprobs(token: token, logprob: row[token] - s.logSumExp, top: s.top) }
    }

    /// Hands the sampled token to the client and decides whether the sequence goes on.
    private func deliver(_ seq: Sequence) {
        if let f = seq.failure {
            fail(seq, EngineError.modelFailed(f))
            return
        }
        let t = seq.sampled
        if seq.firstToken == nil { seq.firstToken = DispatchTime.now().uptimeNanoseconds }
        if stopTokens.contains(t) && !seq.parameters.ignoreEOS {
            finish(seq, .stop)
            return
        }
        if seq.constraint != nil, !seq.constraint!.accept(t, bytes: tokenizer.bytes(for: t)) {
            fail(seq, EngineError.modelFailed("the sampled token breaks the response_format"))
            return
        }
        seq.generated.append(t)
        delta.generatedTokens += 1
        let bytes = tokenizer.bytes(for: t)
        let (text, stopped) = seq.text.append(bytes)
        seq.request.continuation.yield(.token(GeneratedToken(id: t, bytes: bytes, text: text, logprobs: seq.sampledLogprobs)))
        if stopped || seq.constraint?.isFinished == true {
            finish(seq, .stop)
        } else if seq.generated.count >= seq.maxTokens || seq.position >= context {
            finish(seq, .length)
        } else {
            seq.pendingToken = t
        }
    }
}
