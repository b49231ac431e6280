/// Errors from compressing text with a model and from packing weights. Each names the file and the problem.
public enum ZipError: Error, CustomStringConvertible, Equatable {
    /// Not a file this module wrote (wrong magic), or a version this build does not read.
    case notAContainer(path: String, reason: String)
    /// The container is damaged: a checksum, a length or a field is wrong.
    case corrupt(path: String, reason: String)
    /// The container was made with another model (or tokenizer) than the one given.
    case modelMismatch(path: String, reason: String)
    /// The container was made on another kernel path; this machine would compute other probabilities.
    case environmentMismatch(path: String, reason: String)
    /// Decoding finished but did not reproduce the original (its SHA-256 differs).
    case decodedMismatch(path: String, reason: String)
    /// The model cannot be used for compression (e.g. its tokenizer lacks a byte token).
    case unsupportedModel(path: String, reason: String)
    case badOutput(path: String, reason: String)
    case badInput(path: String, reason: String)

    public var description: String {
        switch self {
        case .notAContainer(let path, let reason): return "\(path): \(reason)"
        case .corrupt(let path, let reason): return "\(path): corrupt: \(reason)"
        case .modelMismatch(let path, let reason): return "\(path): wrong model: \(reason)"
        case .environmentMismatch(let path, let reason): return "\(path): cannot be decoded here: \(reason)"
        case .decodedMismatch(let path, let reason): return "\(path): decoding failed: \(reason)"
        case .unsupportedModel(let path, let reason): return "\(path): cannot compress with this model: \(reason)"
        case .badOutput(let path, let reason): return "\(path): \(reason)"
        case .badInput(let path, let reason): return "\(path): \(reason)"
        }
    }
}
