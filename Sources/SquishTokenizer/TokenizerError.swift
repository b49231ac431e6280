import SquishCore
/// Errors from building a tokenizer or from its input.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    case missingField(source: String, field: String)
    case unsupportedModel(source: String, model: String)
    case unsupportedPreTokenizer(source: String, name: String)
    case invalidVocabulary(source: String, reason: String)
    case invalidInput(String)

    /// The message with non-printing characters escaped (names and values in it may come from a hostile file).
    public var description: String { TerminalText.escape(message) }

    /// The message as composed, before escaping.
    var message: String {
        switch self {
        case .missingField(let s, let f): return "\(s): tokenizer field '\(f)' is missing"
        case .unsupportedModel(let s, let m): return "\(s): unsupported tokenizer model '\(m)' (supported: gpt2 byte-level BPE, llama SentencePiece)"
        case .unsupportedPreTokenizer(let s, let n): return "\(s): unsupported pre-tokenizer '\(n)' (supported: gpt2, smollm, llama-bpe, qwen2)"
        case .invalidVocabulary(let s, let r): return "\(s): invalid vocabulary: \(r)"
        case .invalidInput(let r): return r
        }
    }
}
