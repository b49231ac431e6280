import SquishCore
/// Errors from building or running a model.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case unsupportedArchitecture(path: String, architecture: String)
    case missingMetadata(path: String, key: String)
    case missingTensor(path: String, tensor: String)
    case shapeMismatch(path: String, tensor: String, expected: [Int], found: [Int])
    case invalidConfiguration(path: String, reason: String)
    case contextOverflow(tokens: Int, context: Int)
    case emptyInput(String)
    case invalidToken(Int, vocabulary: Int)
    /// The logits of a step contain NaN or +infinity (or are all −infinity): nothing can be sampled from them.
    case nonFiniteLogits(count: Int)

    /// The message with non-printing characters escaped (names and values in it may come from a hostile file).
    public var description: String { TerminalText.escape(message) }

    /// The message as composed, before escaping.
    var message: String {
        switch self {
        case .unsupportedArchitecture(let path, let a):
            return "\(path): unsupported architecture '\(a)' (supported: llama, qwen2, mistral)"
        case .missingMetadata(let path, let key): return "\(path): missing metadata '\(key)'"
        case .missingTensor(let path, let t): return "\(path): missing tensor '\(t)'"
        case .shapeMismatch(let path, let t, let e, let f): return "\(path): tensor '\(t)' has shape \(f), expected \(e)"
        case .invalidConfiguration(let path, let reason): return "\(path): \(reason)"
        case .contextOverflow(let n, let c): return "\(n) tokens do not fit in the context window of \(c)"
        case .emptyInput(let what): return "\(what) is empty"
        case .invalidToken(let t, let v): return "token id \(t) is outside the vocabulary (\(v))"
        case .nonFiniteLogits(let n):
            return "the model produced non-finite logits (NaN or infinity among \(n)): its weights or metadata are broken, nothing can be sampled"
        }
    }
}
