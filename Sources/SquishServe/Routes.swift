import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SquishEngine
import SquishFormats
import SquishModel
import SquishTokenizer

/// Used by one task at a time: the handler awaits the first event, then hands the iterator to the response body
/// writer, which runs after the handler has returned.
final class EventIterator: @unchecked Sendable {
    var iterator: Generation.AsyncIterator
    let generation: Generation
    init(_ generation: Generation) {
        self.generation = generation
        iterator = generation.makeAsyncIterator()
    }
    func next() async throws -> GenerationEvent? { try await iterator.next() }
}

/// The endpoints.
struct Routes: Sendable {
    let engine: Engine
    let configuration: ServerConfiguration
    let metrics: ServerMetrics
    let logger: Logger

    /// Paths counted by name in the request metrics (anything else is "other").
    static let known: Set<String> = ["/", "/health", "/metrics", "/openapi.json", "/v1/models", "/v1/chat/completions",
                                     "/v1/completions", "/v1/embeddings"]

    func register(on router: Router<BasicRequestContext>) {
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: WebPage.html)))
        }
        router.get("/health") { _, _ in health() }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.render(engine: engine))))
        }
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: OpenAPIDocument.json(maxTokens: maxContext()))))
        }
        router.get("/v1/models") { _, _ in
            jsonResponse(.object([("object", .string("list")), ("data", .array(engine.models.map { modelObject($0.name, $0.status) }))]))
        }
        router.get("/v1/models/{model}") { _, context in
            let name = context.parameters.get("model") ?? ""
            guard let m = engine.models.first(where: { $0.name == name }) else {
                throw EngineError.unknownModel(name, available: engine.models.map(\.name))
            }
            return jsonResponse(modelObject(m.name, m.status))
        }
        router.post("/v1/chat/completions") { request, _ in try await chat(request) }
        router.post("/v1/completions") { request, _ in try await complete(request) }
        router.post("/v1/embeddings") { request, _ in try await embed(request) }
    }

    /// The largest context among the ready models (4096 before any is ready).
    func maxContext() -> Int {
        let contexts = engine.models.compactMap { e -> Int? in if case .ready(let m) = e.status { return m.context } else { return nil } }
        return contexts.max() ?? 4096
    }

    func health() -> Response {
        let states = engine.models
        if engine.isReady { return jsonResponse(.object([("status", .string("ok"))])) }
        var failed: [JSONValue] = []
        for s in states { if case .failed(let reason) = s.status { failed.append(.string("\(s.name): \(reason)")) } }
        return jsonResponse(.object([("status", .string(failed.isEmpty ? "loading" : "error"))] + (failed.isEmpty ? [] : [("errors", .array(failed))])),
                            status: .serviceUnavailable)
    }

    func modelObject(_ name: String, _ status: Engine.Status) -> JSONValue {
        var fields: [(key: String, value: JSONValue)] = [("id", .string(name)), ("object", .string("model"))]
        switch status {
        case .ready(let m):
            fields += [("created", .int(Int64(m.created))), ("owned_by", .string("squish")), ("status", .string("ready")),
                       ("context_length", .int(Int64(m.context))), ("architecture", .string(m.language.model.config.architecture))]
        case .loading:
            fields += [("created", .int(0)), ("owned_by", .string("squish")), ("status", .string("loading"))]
        case .failed:
            fields += [("created", .int(0)), ("owned_by", .string("squish")), ("status", .string("failed"))]
        }
        return .object(fields)
    }

    /// The body as bytes, at most `maxBodyBytes` (413 beyond, without reading further when Content-Length says so).
    func body(_ request: Request) async throws -> RequestFields {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > configuration.maxBodyBytes {
            throw APIError.tooLarge(configuration.maxBodyBytes)
        }
        let buffer = try await request.body.collect(upTo: configuration.maxBodyBytes)
        return try RequestFields(Array(buffer.readableBytesView))
    }

    // MARK: Chat and completions

    func chat(_ request: Request) async throws -> Response {
        let req = try ChatRequest(try await body(request))
        let served = try engine.model(req.options.model)
        let prompt = served.language.chatTokens(req.messages)
        let generation = try served.generate(prompt: prompt, parameters: req.options.parameters)
        return try await respond(generation, served: served, options: req.options, chat: true)
    }

    func complete(_ request: Request) async throws -> Response {
        let req = try CompletionRequest(try await body(request))
        let served = try engine.model(req.options.model)
        let prompt: [Int]
        switch req.prompt {
        case .text(let s):
            prompt = served.language.tokenizer.encode(s, parseSpecial: false, addSpecial: true)
            guard !prompt.isEmpty else { throw APIError.invalid("'prompt' is empty", param: "prompt", code: "invalid_value") }
        case .tokens(let ids): prompt = ids
        }
        let generation = try served.generate(prompt: prompt, parameters: req.options.parameters)
        return try await respond(generation, served: served, options: req.options, chat: false)
    }

    /// Waits until the request is admitted (refusals become plain error responses, before anything is streamed),
    /// then streams SSE chunks or collects one JSON response.
    func respond(_ generation: Generation, served: ServedModel, options: CommonOptions, chat: Bool) async throws -> Response {
        let events = EventIterator(generation)
        guard case .started? = try await events.next() else { throw EngineError.shuttingDown }
        let id = OpenAIJSON.id(chat ? "chatcmpl" : "cmpl")
        let created = OpenAIJSON.now()
        let tokenizer = served.language.tokenizer
        let model = served.id
        if !options.stream {
            var text = ""
            var logprobs: [TokenLogprobs] = []
            var summary: GenerationSummary?
            while let e = try await events.next() {
                switch e {
                case .token(let t):
                    text += t.text
                    if let lp = t.logprobs { logprobs.append(lp) }
                case .text(let s): text += s
                case .finished(let s): summary = s
                default: break
                }
            }
            guard let summary else { throw EngineError.shuttingDown }
            metrics.firstToken(model: model, seconds: summary.timeToFirstToken)
            log(model, summary)
            let wantsLogprobs = options.parameters.logprobs != nil
            let choice: JSONValue
            if chat {
                choice = .object([
                    ("index", .int(0)),
                    ("message", .object([("role", .string("assistant")), ("content", .string(text))])),
                    ("logprobs", wantsLogprobs ? .object([("content", .array(logprobs.map { OpenAIJSON.chatLogprob(tokenizer, $0) }))]) : .null),
                    ("finish_reason", .string(summary.finishReason.rawValue)),
                ])
            } else {
                choice = .object([
                    ("text", .string(text)), ("index", .int(0)),
                    ("logprobs", wantsLogprobs ? OpenAIJSON.completionLogprobs(tokenizer, logprobs, offset: 0) : .null),
                    ("finish_reason", .string(summary.finishReason.rawValue)),
                ])
            }
            return jsonResponse(.object([
                ("id", .string(id)), ("object", .string(chat ? "chat.completion" : "text_completion")), ("created", .int(Int64(created))),
                ("model", .string(model)), ("choices", .array([choice])), ("usage", OpenAIJSON.usage(summary)),
                ("system_fingerprint", .string("squish")),
            ]))
        }
        let wantsLogprobs = options.parameters.logprobs != nil
        let includeUsage = options.includeUsage
        let metrics = self.metrics
        let routes = self
        let body = ResponseBody { writer in
            func chunk(_ choice: [(key: String, value: JSONValue)]?, usage: JSONValue? = nil) -> JSONValue {
                var fields: [(key: String, value: JSONValue)] = [
                    ("id", .string(id)), ("object", .string(chat ? "chat.completion.chunk" : "text_completion")),
                    ("created", .int(Int64(created))), ("model", .string(model)), ("system_fingerprint", .string("squish")),
                    ("choices", .array(choice.map { [.object([("index", .int(0))] + $0)] } ?? [])),
                ]
                if let usage { fields.append(("usage", usage)) }
                return .object(fields)
            }
            func send(_ text: String) async throws { try await writer.write(ByteBuffer(string: text)) }
            func content(_ text: String, _ lps: [TokenLogprobs], offset: Int) -> [(key: String, value: JSONValue)] {
                if chat {
                    return [("delta", .object([("content", .string(text))])),
                            ("logprobs", wantsLogprobs ? .object([("content", .array(lps.map { OpenAIJSON.chatLogprob(tokenizer, $0) }))]) : .null),
                            ("finish_reason", .null)]
                }
                return [("text", .string(text)),
                        ("logprobs", wantsLogprobs ? OpenAIJSON.completionLogprobs(tokenizer, lps, offset: offset) : .null),
                        ("finish_reason", .null)]
            }
            var offset = 0
            var last = DispatchTime.now().uptimeNanoseconds
            var sawToken = false
            do {
                if chat {
                    try await send(OpenAIJSON.sse(chunk([("delta", .object([("role", .string("assistant")), ("content", .string(""))])),
                                                         ("logprobs", .null), ("finish_reason", .null)])))
                }
                while let e = try await events.next() {
                    switch e {
                    case .token(let t):
                        let now = DispatchTime.now().uptimeNanoseconds
                        if sawToken { metrics.tokenLatency(model: model, seconds: Double(now - last) / 1e9) }
                        sawToken = true
                        last = now
                        // A token whose text is held back (a possible stop text, a split character) still reports
                        // its logprobs.
                        if !t.text.isEmpty || (wantsLogprobs && t.logprobs != nil) {
                            try await send(OpenAIJSON.sse(chunk(content(t.text, t.logprobs.map { [$0] } ?? [], offset: offset))))
                            offset += t.text.utf16.count
                        }
                    case .text(let s):
                        try await send(OpenAIJSON.sse(chunk(content(s, [], offset: offset))))
                        offset += s.utf16.count
                    case .finished(let s):
                        metrics.firstToken(model: model, seconds: s.timeToFirstToken)
                        routes.log(model, s)
                        let end: [(key: String, value: JSONValue)] = chat
                            ? [("delta", .object([])), ("logprobs", .null), ("finish_reason", .string(s.finishReason.rawValue))]
                            : [("text", .string("")), ("logprobs", .null), ("finish_reason", .string(s.finishReason.rawValue))]
                        try await send(OpenAIJSON.sse(chunk(end)))
                        if includeUsage { try await send(OpenAIJSON.sse(chunk(nil, usage: OpenAIJSON.usage(s)))) }
                    default: break
                    }
                }
                try await send(OpenAIJSON.done)
            } catch let e as EngineError {
                // Ended after streaming began (shutdown past its grace period, a failed forward pass): a final error
                // event, then the end of the stream.
                try? await send(OpenAIJSON.sse(APIError(e).json))
                try? await send(OpenAIJSON.done)
            } catch {
                // The client went away (a write failed): stop generating for it.
                events.generation.cancel()
                throw error
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    func log(_ model: String, _ s: GenerationSummary) {
        logger.info("generation", metadata: [
            "model": "\(model)", "prompt_tokens": "\(s.promptTokens)", "cached_tokens": "\(s.cachedPromptTokens)",
            "completion_tokens": "\(s.completionTokens)", "finish_reason": "\(s.finishReason.rawValue)",
            "ttft_ms": "\(String(format: "%.1f", s.timeToFirstToken * 1000))", "total_ms": "\(String(format: "%.1f", s.totalSeconds * 1000))",
        ])
    }

    // MARK: Embeddings

    func embed(_ request: Request) async throws -> Response {
        let req = try EmbeddingRequest(try await body(request))
        let served = try engine.model(req.model)
        if let d = req.dimensions, d != served.language.model.config.dim {
            throw APIError.invalid("'dimensions' must be \(served.language.model.config.dim), this model's width", param: "dimensions", code: "invalid_value")
        }
        var data: [JSONValue] = []
        var tokens = 0
        for (i, text) in req.inputs.enumerated() {
            let (vector, n) = try await served.embedding(of: text)
            tokens += n
            let embedding: JSONValue
            if req.base64 {
                var bytes: [UInt8] = []
                bytes.reserveCapacity(vector.count * 4)
                for v in vector { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
                embedding = .string(Data(bytes).base64EncodedString())
            } else {
                embedding = .array(vector.map { .double(Double($0)) })
            }
            data.append(.object([("object", .string("embedding")), ("index", .int(Int64(i))), ("embedding", embedding)]))
        }
        return jsonResponse(.object([
            ("object", .string("list")), ("data", .array(data)), ("model", .string(served.id)),
            ("usage", .object([("prompt_tokens", .int(Int64(tokens))), ("total_tokens", .int(Int64(tokens)))])),
        ]))
    }
}
