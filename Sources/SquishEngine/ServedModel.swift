import Dispatch
import Foundation
import Synchronization
import SquishKernels
import SquishModel
import SquishTokenizer

/// One model being served: its weights (read-only, shared by every request), a bounded queue of requests, and a
/// scheduler thread that runs continuous batching on the shared worker pool. Requests are submitted from any thread
/// or task and answered through an `AsyncThrowingStream` of `GenerationEvent`s; dropping the stream (a client that
/// went away) cancels the request at the next step.
public final class ServedModel: Sendable {
    /// The name requests use (`model` field).
    public let id: String
    /// Other names that select this model (the path given, the file name, a known model's short name).
    public let aliases: [String]
    public let language: LanguageModel
    public let options: EngineOptions
    /// Positions per sequence.
    public let context: Int
    /// Seconds since 1970 when loading finished (OpenAI's `created`).
    public let created: Int
    let pool: WorkerPool
    let shared = Mutex(SharedState())
    /// Signalled whenever there is something for the scheduler to do.
    let wake = DispatchSemaphore(value: 0)
    /// The vocabulary's trie for constrained decoding, built on first use.
    private let trieBox = Mutex<TokenTrie?>(nil)
    private let nextRequestID = Atomic<UInt64>(1)

    struct SharedState {
        var waiting: [PendingRequest] = []
        var draining = false
        /// Uptime nanoseconds after which in-flight requests are ended.
        var deadline: UInt64?
        var stopped = false
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
        var statistics = ModelStatistics()
    }

    init(id: String, aliases: [String], language: LanguageModel, pool: WorkerPool, options: EngineOptions) throws {
        let trained = language.model.config.contextLength
        let context = options.context ?? min(trained, 4096)
        guard context >= 2, context <= trained else {
            throw EngineError.invalidRequest("a context of \(context) positions is outside 2 ... \(trained), what \(language.path) was trained for")
        }
        guard options.parallel >= 1, options.maxQueue >= 0, options.prefillChunk >= 1 else {
            throw EngineError.invalidRequest("parallel and prefillChunk must be at least 1, maxQueue at least 0")
        }
        self.id = id
        self.aliases = aliases
        self.language = language
        self.pool = pool
        self.options = options
        self.context = context
        created = Int(Date().timeIntervalSince1970)
        let thread = Thread { [self] in
            let scheduler = Scheduler(self)
            scheduler.run()
        }
        thread.stackSize = 8 << 20
        thread.name = "squish-engine-\(id)"
        thread.start()
    }

    /// Tokens that end generation (EOS and the template's end-of-turn tokens).
    public var stopTokens: Set<Int> { language.stopTokens }

    public var statistics: ModelStatistics { shared.withLock { $0.statistics } }

    var trie: TokenTrie {
        trieBox.withLock { box in
            if let t = box { return t }
            let tok = language.tokenizer
            let bytes = (0 ..< tok.vocabularySize).map { tok.bytes(for: $0) }
            let special = Set((0 ..< tok.vocabularySize).filter { tok.isSpecial($0) })
            let t = TokenTrie(tokenBytes: bytes, excluded: special)
            box = t
            return t
        }
    }

    // MARK: Submitting

    /// Generates from prompt token ids. Throws right away (before anything is queued) when the request cannot be
    /// served: prompt beyond the context, a full queue, shutting down.
    public func generate(prompt: [Int], parameters: GenerationParameters) throws -> Generation {
        guard !prompt.isEmpty else { throw EngineError.invalidRequest("the prompt is empty") }
        let vocabulary = language.model.config.vocabSize
        if let bad = prompt.first(where: { $0 < 0 || $0 >= vocabulary }) {
            throw EngineError.invalidRequest("token \(bad) is outside the vocabulary (0 ..< \(vocabulary))")
        }
        guard prompt.count < context else { throw EngineError.contextExceeded(tokens: prompt.count + 1, context: context) }
        if let m = parameters.maxTokens {
            guard m >= 1 else { throw EngineError.invalidRequest("max_tokens must be at least 1") }
            guard m <= context - prompt.count else { throw EngineError.contextExceeded(tokens: prompt.count + m, context: context) }
        }
        if let n = parameters.logprobs, !(0 ... 20).contains(n) {
            throw EngineError.invalidRequest("top_logprobs must be between 0 and 20")
        }
        var constraint: JSONTokenConstraint?
        if let format = parameters.responseFormat {
            constraint = JSONTokenConstraint(grammar: format.grammar, trie: trie, stopTokens: stopTokens)
        }
        return try submit(.generate(prompt: prompt, parameters: parameters, constraint: constraint))
    }

    /// Generates the assistant's reply to a conversation, rendered with the model's chat template.
    public func generate(chat messages: [ChatMessage], parameters: GenerationParameters) throws -> Generation {
        try generate(prompt: language.chatTokens(messages), parameters: parameters)
    }

    /// Continues a text (no chat template; the tokenizer's BOS is added when the model wants one).
    public func generate(text: String, parameters: GenerationParameters) throws -> Generation {
        try generate(prompt: language.tokenizer.encode(text, parseSpecial: false, addSpecial: true), parameters: parameters)
    }

    /// Mean of the final normed hidden states over the text's tokens, L2-normalized.
    public func embedding(of text: String) async throws -> (vector: [Float], tokens: Int) {
        let ids = language.tokenizer.encode(text, parseSpecial: false, addSpecial: true)
        guard !ids.isEmpty else { throw EngineError.invalidRequest("the input is empty") }
        guard ids.count <= context else { throw EngineError.contextExceeded(tokens: ids.count, context: context) }
        for try await event in try submit(.embed(prompt: ids)) {
            if case .embedding(let v, let n) = event { return (v, n) }
        }
        throw EngineError.shuttingDown
    }

    private func submit(_ work: PendingRequest.Work) throws -> Generation {
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, Error>.makeStream()
        let request = PendingRequest(id: nextRequestID.add(1, ordering: .relaxed).oldValue, work: work, continuation: continuation)
        continuation.onTermination = { [weak self, request] termination in
            if case .cancelled = termination {
                request.cancelled.store(true, ordering: .releasing)
                self?.wake.signal()
            }
        }
        try shared.withLock { s in
            if s.draining || s.stopped { s.statistics.refusedRequests += 1; throw EngineError.shuttingDown }
            guard s.waiting.count < options.maxQueue else {
                s.statistics.refusedRequests += 1
                throw EngineError.queueFull(limit: options.maxQueue)
            }
            s.waiting.append(request)
            s.statistics.waiting = s.waiting.count
        }
        wake.signal()
        return Generation(stream: stream, request: request, model: self)
    }

    // MARK: Shutting down

    /// Refuses new requests, fails the waiting ones with `shuttingDown`, lets in-flight ones finish for up to
    /// `grace` seconds (then ends them with `shuttingDown`), and returns when the scheduler has stopped.
    public func shutdown(grace: Double) async {
        shared.withLock { s in
            if !s.draining {
                s.draining = true
                s.deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, grace) * 1e9)
            }
        }
        wake.signal()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = shared.withLock { s -> Bool in
                if s.stopped { return true }
                s.stopWaiters.append(c)
                return false
            }
            if resumeNow { c.resume() }
        }
    }
}

/// The events of one request (see `GenerationEvent`). Dropping it, or calling `cancel()`, ends the request: the
/// engine frees its sequence at the next step.
public final class Generation: AsyncSequence, Sendable {
    public typealias Element = GenerationEvent
    private let stream: AsyncThrowingStream<GenerationEvent, Error>
    private let request: PendingRequest
    private weak let model: ServedModel?

    init(stream: AsyncThrowingStream<GenerationEvent, Error>, request: PendingRequest, model: ServedModel) {
        self.stream = stream
        self.request = request
        self.model = model
    }

    deinit { cancel() }

    public func makeAsyncIterator() -> Iterator { Iterator(base: stream.makeAsyncIterator(), owner: self) }

    /// Keeps the generation alive while it is iterated (`for try await e in model.generate(...)`).
    public struct Iterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<GenerationEvent, Error>.AsyncIterator
        let owner: Generation
        public mutating func next() async throws -> GenerationEvent? { try await base.next() }
    }

    /// Stops the request (nothing more is delivered).
    public func cancel() {
        guard !request.cancelled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        model?.wake.signal()
    }
}

/// A request between submission and its end.
final class PendingRequest: Sendable {
    enum Work: Sendable {
        case generate(prompt: [Int], parameters: GenerationParameters, constraint: JSONTokenConstraint?)
        case embed(prompt: [Int])
    }
    let id: UInt64
    let work: Work
    let continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation
    let cancelled = Atomic<Bool>(false)
    let submitted = DispatchTime.now().uptimeNanoseconds

    init(id: UInt64, work: Work, continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation) {
        self.id = id
        self.work = work
        self.continuation = continuation
    }

    var isCancelled: Bool { cancelled.load(ordering: .acquiring) }
}
