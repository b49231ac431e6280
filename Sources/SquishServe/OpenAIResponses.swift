import Foundation
import SquishEngine
import SquishFormats
import SquishModel
import SquishTokenizer

/// JSON pieces of OpenAI's response shapes.
enum OpenAIJSON {
    static func id(_ prefix: String) -> String {
        prefix + "-" + String(UInt64.random(in: 0 ... UInt64.max), radix: 36)
    }

    static func now() -> Int { Int(Date().timeIntervalSince1970) }

    static func number(_ x: Float) -> JSONValue { x.isFinite ? .double(Double(x)) : .double(-9999) }

    static func usage(_ s: GenerationSummary) -> JSONValue {
        .object([
            ("prompt_tokens", .int(Int64(s.promptTokens))), ("completion_tokens", .int(Int64(s.completionTokens))),
            ("total_tokens", .int(Int64(s.promptTokens + s.completionTokens))),
            ("prompt_tokens_details", .object([("cached_tokens", .int(Int64(s.cachedPromptTokens)))])),
        ])
    }

    /// A token's text for logprobs (its bytes as UTF-8, invalid sequences replaced) and its bytes.
    static func tokenEntry(_ tokenizer: Tokenizer, _ id: Int, _ logprob: Float) -> [(key: String, value: JSONValue)] {
        let bytes = tokenizer.bytes(for: id)
        return [("token", .string(String(decoding: bytes, as: UTF8.self))), ("logprob", number(logprob)),
                ("bytes", .array(bytes.map { .int(Int64($0)) }))]
    }

    /// One entry of chat's `logprobs.content`.
    static func chatLogprob(_ tokenizer: Tokenizer, _ lp: TokenLogprobs) -> JSONValue {
        .object(tokenEntry(tokenizer, lp.token, lp.logprob)
            + [("top_logprobs", .array(lp.top.map { .object(tokenEntry(tokenizer, $0.token, $0.logprob)) }))])
    }

    /// The legacy completions `logprobs` object for a run of tokens starting at text offset `offset`.
    static func completionLogprobs(_ tokenizer: Tokenizer, _ lps: [TokenLogprobs], offset: Int) -> JSONValue {
        var offsets: [JSONValue] = []
        var o = offset
        for lp in lps {
            offsets.append(.int(Int64(o)))
            o += String(decoding: tokenizer.bytes(for: lp.token), as: UTF8.self).utf16.count
        }
        return .object([
            ("tokens", .array(lps.map { .string(String(decoding: tokenizer.bytes(for: $0.token), as: UTF8.self)) })),
            ("token_logprobs", .array(lps.map { number($0.logprob) })),
            ("top_logprobs", .array(lps.map { lp in
                .object(lp.top.reduce(into: [(key: String, value: JSONValue)]()) { acc, t in
                    let k = String(decoding: tokenizer.bytes(for: t.token), as: UTF8.self)
                    if !acc.contains(where: { $0.key == k }) { acc.append((k, number(t.logprob))) }
                })
            })),
            ("text_offset", .array(offsets)),
        ])
    }

    static func sse(_ value: JSONValue) -> String { "data: " + value.serialized + "\n\n" }
    static let done = "data: [DONE]\n\n"
}
