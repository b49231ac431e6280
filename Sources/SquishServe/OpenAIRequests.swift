import SquishEngine
import SquishFormats
import SquishModel
import SquishTokenizer

/// A request body's top-level object with typed accessors: a missing or null field is nil, a field of the wrong type
/// or outside its range is a 400 naming it. Unknown fields are ignored (as OpenAI's API does).
struct RequestFields {
    let members: [(key: String, value: JSONValue)]

    init(_ bytes: [UInt8]) throws {
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes)
        } catch let e as JSONValue.ParseError {
            throw APIError.invalid("the body is not valid JSON: \(e.description)", code: "invalid_json")
        } catch {
            throw APIError.invalid("the body is not valid JSON", code: "invalid_json")
        }
        guard let m = value.object else { throw APIError.invalid("the body must be a JSON object", code: "invalid_json") }
        members = m
    }

    subscript(_ key: String) -> JSONValue? {
        guard let v = members.last(where: { $0.key == key })?.value, v != .null else { return nil }
        return v
    }

    func string(_ key: String) throws -> String? {
        guard let v = self[key] else { return nil }
        guard case .string(let s) = v else { throw APIError.wrongType(key, "a string") }
        return s
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = self[key] else { return nil }
        guard case .bool(let b) = v else { throw APIError.wrongType(key, "a boolean") }
        return b
    }

    func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let v = self[key] else { return nil }
        let n: Int
        switch v {
        case .int(let i): n = Int(i)
        case .double(let d) where d == d.rounded() && abs(d) < 9e15: n = Int(d)
        default: throw APIError.wrongType(key, "an integer")
        }
        guard range.contains(n) else {
            throw APIError.invalid("'\(key)' must be between \(range.lowerBound) and \(range.upperBound), not \(n)", param: key, code: "invalid_value")
        }
        return n
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = self[key] else { return nil }
        let d: Double
        switch v {
        case .int(let i): d = Double(i)
        case .double(let x): d = x
        default: throw APIError.wrongType(key, "a number")
        }
        guard range.contains(d) else {
            throw APIError.invalid("'\(key)' must be between \(range.lowerBound) and \(range.upperBound), not \(d)", param: key, code: "invalid_value")
        }
        return d
    }

    /// `stop`: a string or a list of up to 4 strings.
    func stop() throws -> [String] {
        guard let v = self["stop"] else { return [] }
        switch v {
        case .string(let s): return s.isEmpty ? [] : [s]
        case .array(let list):
            guard list.count <= 4 else { throw APIError.invalid("'stop' takes at most 4 strings", param: "stop", code: "invalid_value") }
            return try list.map {
                guard case .string(let s) = $0 else { throw APIError.wrongType("stop", "a string or a list of strings") }
                return s
            }.filter { !$0.isEmpty }
        default: throw APIError.wrongType("stop", "a string or a list of strings")
        }
    }
}

/// What the chat and completion endpoints share: sampling, limits, stop texts, streaming.
struct CommonOptions {
    var model: String?
    var parameters: GenerationParameters
    var stream: Bool
    var includeUsage: Bool

    /// `defaultMaxTokens`: nil means up to the context (chat); the legacy completions endpoint defaults to 16.
    init(_ f: RequestFields, defaultMaxTokens: Int?, maxTokensKeys: [String]) throws {
        model = try f.string("model")
        var sampling = SamplerSettings()
        // OpenAI's defaults: temperature 1, top_p 1, no top-k or min-p.
        sampling.temperature = Float(try f.number("temperature", in: 0 ... 2) ?? 1)
        sampling.topP = Float(try f.number("top_p", in: 0 ... 1) ?? 1)
        if sampling.topP <= 0 { sampling.temperature = 0 }  // top_p 0 keeps only the most likely token
        sampling.topK = try f.integer("top_k", in: 0 ... 1_000_000) ?? 0
        sampling.minP = Float(try f.number("min_p", in: 0 ... 1) ?? 0)
        if sampling.minP >= 1 { sampling.temperature = 0 }
        sampling.repetitionPenalty = Float(try f.number("repeat_penalty", in: 0.01 ... 10) ?? 1)
        // Accepted for compatibility and not applied (documented in /openapi.json).
        _ = try f.number("presence_penalty", in: -2 ... 2)
        _ = try f.number("frequency_penalty", in: -2 ... 2)
        let seed = try f.integer("seed", in: Int.min ... Int.max)
        sampling.seed = seed.map { UInt64(bitPattern: Int64($0)) } ?? UInt64.random(in: 0 ... UInt64.max)
        // Chat takes both OpenAI spellings (`max_tokens` is the older); when both are given they must agree, so that
        // neither limit is silently dropped (each is checked against the context).
        var maxTokens = defaultMaxTokens
        var given: String?
        for key in maxTokensKeys {
            guard let m = try f.integer(key, in: 1 ... Int(Int32.max)) else { continue }
            if let first = given, m != maxTokens {
                throw APIError.invalid("'\(first)' and '\(key)' differ; give one of them", param: key, code: "invalid_value")
            }
            maxTokens = m
            given = key
        }
        if let n = try f.integer("n", in: 1 ... 128), n != 1 {
            throw APIError.invalid("only n = 1 is supported", param: "n", code: "unsupported_value")
        }
        parameters = GenerationParameters(maxTokens: maxTokens, sampling: sampling)
        parameters.stop = try f.stop()
        parameters.ignoreEOS = try f.bool("ignore_eos") ?? false
        stream = try f.bool("stream") ?? false
        _ = try f.string("user")  // accepted, not used
        includeUsage = false
        if let so = f["stream_options"] {
            guard let o = so.object else { throw APIError.wrongType("stream_options", "an object") }
            if let u = o.last(where: { $0.key == "include_usage" })?.value, u != .null {
                guard case .bool(let b) = u else { throw APIError.wrongType("stream_options.include_usage", "a boolean") }
                includeUsage = b
            }
        }
    }
}

/// POST /v1/chat/completions.
struct ChatRequest {
    var options: CommonOptions
    var messages: [ChatMessage]

    init(_ f: RequestFields) throws {
        options = try CommonOptions(f, defaultMaxTokens: nil, maxTokensKeys: ["max_tokens", "max_completion_tokens"])
        guard let raw = f["messages"] else { throw APIError.invalid("'messages' is required", param: "messages", code: "missing_required_parameter") }
        guard let list = raw.array else { throw APIError.wrongType("messages", "an array of messages") }
        guard !list.isEmpty else { throw APIError.invalid("'messages' must not be empty", param: "messages", code: "invalid_value") }
        messages = try list.enumerated().map { i, m in
            let param = "messages[\(i)]"
            guard let fields = m.object else { throw APIError.wrongType(param, "an object") }
            let get = { (k: String) -> JSONValue? in
                guard let v = fields.last(where: { $0.key == k })?.value, v != .null else { return nil }
                return v
            }
            guard case .string(var role)? = get("role") else { throw APIError.wrongType("\(param).role", "a string") }
            if let name = get("name"), name.string == nil { throw APIError.wrongType("\(param).name", "a string") }
            if role == "developer" { role = "system" }
            guard ["system", "user", "assistant"].contains(role) else {
                throw APIError.invalid("\(param).role must be system, developer, user or assistant, not '\(role)'", param: "\(param).role", code: "invalid_value")
            }
            var content = ""
            switch get("content") {
            case nil: content = ""
            case .string(let s)?: content = s
            case .array(let parts)?:
                for (k, part) in parts.enumerated() {
                    guard let p = part.object, case .string(let type)? = p.last(where: { $0.key == "type" })?.value else {
                        throw APIError.wrongType("\(param).content[\(k)]", "an object with a 'type'")
                    }
                    guard type == "text", case .string(let text)? = p.last(where: { $0.key == "text" })?.value else {
                        throw APIError.invalid("\(param).content[\(k)]: only text parts are supported", param: "\(param).content", code: "unsupported_value")
                    }
                    content += text
                }
            default: throw APIError.wrongType("\(param).content", "a string or an array of text parts")
            }
            return ChatMessage(role: role, content: content)
        }
        let logprobs = try f.bool("logprobs") ?? false
        let top = try f.integer("top_logprobs", in: 0 ... 20)
        options.parameters.logprobs = logprobs ? (top ?? 0) : nil
        options.parameters.responseFormat = try Self.responseFormat(f)
    }

    static func responseFormat(_ f: RequestFields) throws -> ResponseFormat? {
        guard let rf = f["response_format"] else { return nil }
        guard let o = rf.object, case .string(let type)? = o.last(where: { $0.key == "type" })?.value else {
            throw APIError.wrongType("response_format", "an object with a 'type'")
        }
        // json_schema: {name (required), description, schema, strict}, checked whenever it is given.
        var schema: JSONValue?
        let jsParam = "response_format.json_schema"
        if let js = o.last(where: { $0.key == "json_schema" })?.value, js != .null {
            guard let fields = js.object else { throw APIError.wrongType(jsParam, "an object") }
            func field(_ k: String) -> JSONValue? {
                guard let v = fields.last(where: { $0.key == k })?.value, v != .null else { return nil }
                return v
            }
            guard field("name")?.string != nil else { throw APIError.wrongType("\(jsParam).name", "a string (required)") }
            if let d = field("description"), d.string == nil { throw APIError.wrongType("\(jsParam).description", "a string") }
            if let st = field("strict"), case .bool = st {} else if field("strict") != nil { throw APIError.wrongType("\(jsParam).strict", "a boolean") }
            if let sc = field("schema") {
                guard case .object = sc else { throw APIError.wrongType("\(jsParam).schema", "an object") }
                schema = sc
            }
        }
        switch type {
        case "text": return nil
        case "json_object": return .jsonObject
        case "json_schema":
            guard o.contains(where: { $0.key == "json_schema" && $0.value != .null }) else {
                throw APIError.invalid("response_format.json_schema is required for type json_schema", param: jsParam,
                                       code: "missing_required_parameter")
            }
            guard let schema else { return .jsonObject }
            do {
                return .jsonSchema(try JSONSchemaGrammar(schema: schema))
            } catch let e as JSONSchemaGrammar.UnsupportedSchema {
                throw APIError.invalid(e.description, param: "response_format.json_schema.schema", code: "unsupported_schema")
            }
        default:
            throw APIError.invalid("response_format.type must be text, json_object or json_schema, not '\(type)'", param: "response_format.type",
                                   code: "invalid_value")
        }
    }
}

/// POST /v1/completions.
struct CompletionRequest {
    var options: CommonOptions
    /// Text, or token ids.
    var prompt: Either
    enum Either { case text(String), tokens([Int]) }

    init(_ f: RequestFields) throws {
        options = try CommonOptions(f, defaultMaxTokens: 16, maxTokensKeys: ["max_tokens"])
        switch f["prompt"] {
        case nil: throw APIError.invalid("'prompt' is required", param: "prompt", code: "missing_required_parameter")
        case .string(let s)?: prompt = .text(s)
        case .array(let list)?:
            if list.count == 1, case .string(let s) = list[0] {
                prompt = .text(s)
            } else if !list.isEmpty, list.allSatisfy({ if case .int = $0 { return true } else { return false } }) {
                prompt = .tokens(list.map { if case .int(let i) = $0 { return Int(clamping: i) } else { return -1 } })
            } else {
                throw APIError.invalid("'prompt' must be a string, a list of one string or a list of token ids (one prompt per request)",
                                       param: "prompt", code: "invalid_value")
            }
        default: throw APIError.wrongType("prompt", "a string or a list of token ids")
        }
        if let n = try f.integer("logprobs", in: 0 ... 5) { options.parameters.logprobs = n }
        if try f.bool("echo") == true { throw APIError.invalid("'echo' is not supported", param: "echo", code: "unsupported_value") }
        if let s = try f.string("suffix"), !s.isEmpty { throw APIError.invalid("'suffix' is not supported", param: "suffix", code: "unsupported_value") }
        if let b = try f.integer("best_of", in: 1 ... 128), b != 1 {
            throw APIError.invalid("only best_of = 1 is supported", param: "best_of", code: "unsupported_value")
        }
        options.parameters.responseFormat = try ChatRequest.responseFormat(f)
    }
}

/// POST /v1/embeddings.
struct EmbeddingRequest {
    var model: String?
    var inputs: [String]
    var base64: Bool
    var dimensions: Int?

    init(_ f: RequestFields) throws {
        model = try f.string("model")
        _ = try f.string("user")
        switch f["input"] {
        case nil: throw APIError.invalid("'input' is required", param: "input", code: "missing_required_parameter")
        case .string(let s)?: inputs = [s]
        case .array(let list)?:
            guard !list.isEmpty, list.count <= 256 else {
                throw APIError.invalid("'input' must hold 1 to 256 strings", param: "input", code: "invalid_value")
            }
            inputs = try list.map {
                guard case .string(let s) = $0 else { throw APIError.wrongType("input", "a string or a list of strings") }
                return s
            }
        default: throw APIError.wrongType("input", "a string or a list of strings")
        }
        if inputs.contains(where: \.isEmpty) { throw APIError.invalid("'input' strings must not be empty", param: "input", code: "invalid_value") }
        switch try f.string("encoding_format") {
        case nil, "float": base64 = false
        case "base64": base64 = true
        case let other?: throw APIError.invalid("'encoding_format' must be float or base64, not '\(other)'", param: "encoding_format", code: "invalid_value")
        }
        dimensions = try f.integer("dimensions", in: 1 ... Int(Int32.max))
    }
}
