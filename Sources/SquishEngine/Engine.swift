import Foundation
import Synchronization
import SquishData
import SquishKernels
import SquishModel

/// Several models served side by side on one worker pool, each with its own scheduler (see `ServedModel`); a
/// request picks its model by name. Models load in the background: the engine answers for the ones that are ready
/// and says which are still loading.
///
/// ```swift
/// let engine = Engine(threads: 2)
/// let model = try await engine.load("smollm2-135m")
/// for try await text in try model.textStream(chat: [ChatMessage(role: "user", content: "Hi")], maxTokens: 32) {
///     print(text, terminator: "")
/// }
/// ```
public final class Engine: Sendable {
    public let pool: WorkerPool
    public let options: EngineOptions
    private let entries = Mutex<[Entry]>([])

    /// The state of one model the engine was asked to serve.
    public enum Status: Sendable {
        case loading
        case ready(ServedModel)
        case failed(String)
    }

    struct Entry: Sendable {
        var name: String
        var aliases: [String]
        var status: Status
    }

    /// An engine whose models share a pool of `threads` threads (default: all cores).
    public init(threads: Int? = nil, options: EngineOptions = EngineOptions()) {
        pool = WorkerPool(threads: threads)
        self.options = options
    }

    public init(pool: WorkerPool, options: EngineOptions = EngineOptions()) {
        self.pool = pool
        self.options = options
    }

    /// The name a model reference is served under: a known model's short name as given, else the file or directory
    /// name.
    public static func servedName(for reference: String) -> String {
        if KnownModel.named(reference) != nil && !FileManager.default.fileExists(atPath: reference) { return reference.lowercased() }
        return URL(fileURLWithPath: reference).lastPathComponent
    }

    /// Loads a model (a path, or a known model's short name) and starts serving it under `name` (default:
    /// `servedName(for:)`). Loading runs on its own thread; meanwhile the model is listed as loading.
    @discardableResult
    public func load(_ reference: String, as name: String? = nil) async throws -> ServedModel {
        let path = try KnownModel.resolve(reference)
        let id = name ?? Self.servedName(for: reference)
        var aliases = [id, reference, path, URL(fileURLWithPath: path).lastPathComponent]
        if path.hasSuffix(".gguf") { aliases.append(String(URL(fileURLWithPath: path).lastPathComponent.dropLast(5))) }
        if let known = KnownModel.all.first(where: { $0.path == path }) { aliases.append(known.name) }
        aliases = aliases.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
        try entries.withLock { list in
            if list.contains(where: { $0.name == id }) {
                throw EngineError.invalidRequest("a model named '\(id)' is already served; give it another name")
            }
            list.append(Entry(name: id, aliases: aliases, status: .loading))
        }
        let options = self.options, pool = self.pool
        do {
            let language = try await Self.onThread { try LanguageModel(path: path, layout: options.layout) }
            let served = try ServedModel(id: id, aliases: aliases, language: language, pool: pool, options: options)
            setStatus(id, .ready(served))
            return served
        } catch {
            setStatus(id, .failed("\(error)"))
            throw error
        }
    }

    private func setStatus(_ id: String, _ status: Status) {
        entries.withLock { list in
            if let i = list.firstIndex(where: { $0.name == id }) { list[i].status = status }
        }
    }

    /// Runs blocking work (loading weights) on a thread of its own rather than on Swift's cooperative pool.
    static func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let t = Thread {
                do { continuation.resume(returning: try work()) } catch { continuation.resume(throwing: error) }
            }
            t.stackSize = 8 << 20
            t.start()
        }
    }

    /// Every model asked for, in order, with its state.
    public var models: [(name: String, status: Status)] { entries.withLock { $0.map { ($0.name, $0.status) } } }

    /// True when every model has loaded (and at least one was asked for).
    public var isReady: Bool {
        entries.withLock { list in
            !list.isEmpty && list.allSatisfy { if case .ready = $0.status { return true } else { return false } }
        }
    }

    /// The served model called `name` (its name or an alias); nil: the first model.
    public func model(_ name: String?) throws -> ServedModel {
        let list = entries.withLock { $0 }
        let entry: Entry?
        if let name, !name.isEmpty {
            entry = list.first { $0.name == name } ?? list.first { $0.aliases.contains(name) }
        } else {
            entry = list.first
        }
        guard let entry else { throw EngineError.unknownModel(name ?? "", available: list.map(\.name)) }
        switch entry.status {
        case .ready(let m): return m
        case .loading: throw EngineError.notReady("the model '\(entry.name)' is still loading")
        case .failed(let reason): throw EngineError.notReady("the model '\(entry.name)' failed to load: \(reason)")
        }
    }

    /// Stops every model: no new requests; in-flight ones get `grace` seconds to finish.
    public func shutdown(grace: Double) async {
        let served = entries.withLock { list in list.compactMap { e -> ServedModel? in if case .ready(let m) = e.status { return m } else { return nil } } }
        await withTaskGroup(of: Void.self) { group in
            for m in served { group.addTask { await m.shutdown(grace: grace) } }
        }
    }
}

extension ServedModel {
    /// The generated text, piece by piece (the embeddable API's simplest form).
    public func textStream(chat messages: [ChatMessage], maxTokens: Int? = nil, sampling: SamplerSettings = .greedy) throws -> AsyncThrowingStream<String, Error> {
        Self.text(of: try generate(chat: messages, parameters: GenerationParameters(maxTokens: maxTokens, sampling: sampling)))
    }

    /// The continuation of `text` (no chat template), piece by piece.
    public func textStream(continuing text: String, maxTokens: Int? = nil, sampling: SamplerSettings = .greedy) throws -> AsyncThrowingStream<String, Error> {
        Self.text(of: try generate(text: text, parameters: GenerationParameters(maxTokens: maxTokens, sampling: sampling)))
    }

    static func text(of events: Generation) -> AsyncThrowingStream<String, Error> {
        let (stream, continuation) = AsyncThrowingStream<String, Error>.makeStream()
        let task = Task {
            do {
                for try await e in events {
                    switch e {
                    case .token(let t) where !t.text.isEmpty: continuation.yield(t.text)
                    case .text(let s): continuation.yield(s)
                    default: break
                    }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }
}
