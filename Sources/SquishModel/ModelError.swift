import SquishCore
/// Errors from building or running a model.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case unsupportedArchitecture(path: String, architecture: String, supported: String)
    case missingMetadata(path: String, key: String)
    case missingTensor(path: String, tensor: String)
    case shapeMismatch(path: String, tensor: String, expected: [Int], found: [Int])
    case invalidConfiguration(path: String, reason: String)
    /// A norm or other vector of the file holds NaN or infinity.
    case nonFiniteWeights(path: String, tensor: String, index: Int, value: Float)
    /// The forward pass produced NaN or infinity; `stage` names the first place (e.g. "block 3 (attention)").
    case nonFiniteActivations(path: String, stage: String)
    /// The tokenizer and the model disagree about the vocabulary.
    case vocabularyMismatch(path: String, reason: String)
    case contextOverflow(tokens: Int, context: Int)
    case emptyInput(String)
    case invalidToken(Int, vocabulary: Int)
    /// The logits of a step contain NaN or +infinity (or are all −infinity): nothing can be sampled from them.
    case nonFiniteLogits(count: Int)
    case invalidArgument(String)
    /// A `--kv` cache specification that does not parse, or that the model cannot use.
    case invalidKVCacheSpec(spec: String, reason: String)

    /// The message with non-printing characters escaped (names and values in it may come from a hostile file).
    public var description: String { TerminalText.escape(message) }

    /// The message as composed, before escaping.
    var message: String {
        switch self {
        case .unsupportedArchitecture(let path, let a, let supported):
            return "\(path): unsupported architecture '\(a)' (supported: \(supported))"
        case .missingMetadata(let path, let key): return "\(path): missing metadata '\(key)'"
        case .missingTensor(let path, let t): return "\(path): missing tensor '\(t)'"
        case .shapeMismatch(let path, let t, let e, let f): return "\(path): tensor '\(t)' has shape \(f), expected \(e)"
        case .invalidConfiguration(let path, let reason): return "\(path): \(reason)"
        case .nonFiniteWeights(let path, let t, let i, let v): return "\(path): tensor '\(t)' holds \(v) at index \(i)"
        case .nonFiniteActivations(let path, let stage):
            return "\(path): the model computed non-finite values (NaN or infinity), first in \(stage); the weights or the configuration are broken"
        case .vocabularyMismatch(let path, let reason): return "\(path): vocabulary mismatch: \(reason)"
        case .contextOverflow(let n, let c): return "\(n) tokens do not fit in the context window of \(c)"
        case .emptyInput(let what): return "\(what) is empty"
        case .invalidToken(let t, let v): return "token id \(t) is outside the vocabulary (\(v))"
        case .nonFiniteLogits(let n):
            return "the model produced non-finite logits (NaN or infinity among \(n)): its weights or metadata are broken, nothing can be sampled"
        case .invalidArgument(let s): return s
        case .invalidKVCacheSpec(let spec, let reason): return "KV cache '\(spec)': \(reason)"
        }
    }
}
