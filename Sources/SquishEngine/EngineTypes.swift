import SquishModel

/// How the engine runs a model: how many sequences decode together, the context each may use, how many requests
/// may wait, and how much prompt is prefilled per step beside the decoding sequences.
public struct EngineOptions: Sendable {
    /// Sequences generating at once (each with its own KV cache, reused by the next request with the same prefix).
    public var parallel = 32
    /// Positions per sequence (prompt + generated); nil: the model's trained context, at most 4096.
    public var context: Int?
    /// Requests waiting for a free sequence before new ones are refused (`EngineError.queueFull`).
    public var maxQueue = 128
    /// Prompt tokens prefilled per step, shared by the sequences still reading their prompts (bounded so that the
    /// decoding sequences' next tokens are never delayed by more than one such chunk).
    public var prefillChunk = 256
    /// A busy sequence's cached prefix is copied for a new request when it is at least this many tokens longer than
    /// what a free sequence already holds (a system prompt shared by concurrent requests).
    public var minimumCopiedPrefix = 16
    /// How weights are laid out for the kernels at load.
    public var layout = KernelLayout()
    /// The KV cache of generating sequences (embeddings read their input with the f32 cache). With a selection (an
    /// evicting cache), a sequence's cache is not reused for a later request's prefix: what it evicted depended on
    /// the tokens after that prefix.
    public var kv = KVCacheSpec.f32

    public init(parallel: Int = 32, context: Int? = nil, maxQueue: Int = 128, prefillChunk: Int = 256) {
        self.parallel = parallel
        self.context = context
        self.maxQueue = maxQueue
        self.prefillChunk = prefillChunk
    }
}

/// Constrained output (`response_format`).
public enum ResponseFormat: Sendable {
    /// Any JSON object.
    case jsonObject
    /// A JSON value valid under the compiled schema.
    case jsonSchema(JSONSchemaGrammar)

    var grammar: JSONSchemaGrammar {
        switch self {
        case .jsonObject: return .anyObject()
        case .jsonSchema(let g): return g
        }
    }
}

/// What one request asks of generation.
public struct GenerationParameters: Sendable {
    /// Most tokens to generate; nil: until a stop or the end of the context.
    public var maxTokens: Int?
    public var sampling: SamplerSettings
    /// Texts that end generation (not included in the output).
    public var stop: [String] = []
    /// Keep generating through EOS and end-of-turn tokens (benchmarks).
    public var ignoreEOS = false
    /// nil: no log-probabilities; n: the chosen token's and the n most likely tokens' (0 ... 20).
    public var logprobs: Int?
    public var responseFormat: ResponseFormat?

    /// Greedy unless `sampling` says otherwise.
    public init(maxTokens: Int? = nil, sampling: SamplerSettings = .greedy) {
        self.maxTokens = maxTokens
        self.sampling = sampling
    }
}

/// Why generation ended.
public enum FinishReason: String, Sendable {
    /// EOS, an end-of-turn token, a stop text, or a complete constrained value.
    case stop
    /// `maxTokens` or the end of the context.
    case length
}

/// One generated token and the text it releases.
public struct GeneratedToken: Sendable {
    public let id: Int
    /// The token's bytes.
    public let bytes: [UInt8]
    /// Text released with this token: complete UTF-8 characters, held back while they might begin a stop text.
    public let text: String
    public let logprobs: TokenLogprobs?
}

/// Counts and timings of a finished request.
public struct GenerationSummary: Sendable {
    public var finishReason: FinishReason
    public var promptTokens: Int
    /// Prompt tokens whose keys and values came from the cache (not computed again).
    public var cachedPromptTokens: Int
    public var completionTokens: Int
    /// From submission to the first token (queueing included).
    public var timeToFirstToken: Double
    /// From submission to the end.
    public var totalSeconds: Double
}

/// What a request's stream delivers, in order: `started` once admitted, then `token`s (and a last `text`), then `finished`
/// (or `embedding` for an embedding request). Errors end the stream by throwing `EngineError`.
public enum GenerationEvent: Sendable {
    case started(promptTokens: Int, cachedTokens: Int)
    case token(GeneratedToken)
    /// Text released without a new token: what was held back when generation ends.
    case text(String)
    case finished(GenerationSummary)
    case embedding([Float], promptTokens: Int)
}

public enum EngineError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The waiting queue is full.
    case queueFull(limit: Int)
    /// The engine is shutting down: no new requests, and in-flight ones past the grace period end with this.
    case shuttingDown
    /// Prompt (plus requested tokens) beyond the context.
    case contextExceeded(tokens: Int, context: Int)
    case invalidRequest(String)
    case unknownModel(String, available: [String])
    /// The model is still loading (or failed to load: the reason).
    case notReady(String)
    /// The forward pass failed (e.g. non-finite activations); the request cannot continue.
    case modelFailed(String)

    public var description: String {
        switch self {
        case .queueFull(let limit): return "the server is busy: \(limit) requests are already waiting; retry later"
        case .shuttingDown: return "the server is shutting down"
        case .contextExceeded(let tokens, let context):
            return "this model's context is \(context) tokens, but \(tokens) were requested (prompt plus max_tokens)"
        case .invalidRequest(let reason): return reason
        case .unknownModel(let name, let available):
            return "the model '\(name)' is not served here; available: \(available.joined(separator: ", "))"
        case .notReady(let reason): return reason
        case .modelFailed(let reason): return "generation failed: \(reason)"
        }
    }
}

/// Counters and gauges of one served model, for metrics.
public struct ModelStatistics: Sendable {
    public var waiting = 0
    public var active = 0
    /// Bytes of KV cache holding positions (busy and idle sequences).
    public var kvBytes = 0
    public var promptTokens = 0
    public var cachedPromptTokens = 0
    public var generatedTokens = 0
    public var steps = 0
    public var completedRequests = 0
    public var refusedRequests = 0

    public init() {}
}
