import SquishFormats
import SquishCore

/// Errors from `squish quantize` and the quantizers. Each names the file or tensor concerned.
public enum QuantizeError: Error, CustomStringConvertible, Equatable {
    /// The requested output type or bits/group combination cannot be produced.
    case unsupportedTarget(String)
    /// A tensor's rows cannot be cut into the target type's blocks.
    case rowLength(tensor: String, rowLength: Int, type: GGMLType)
    /// The output path is unusable (missing directory, equal to the input, ...).
    case badOutput(path: String, reason: String)
    /// The model file lacks something quantization needs.
    case badModel(path: String, reason: String)
    /// The calibration text cannot provide what was asked for.
    case calibration(path: String, reason: String)
    /// A linear-algebra step failed (e.g. the damped Hessian is not positive definite).
    case numerical(tensor: String, reason: String)
    /// The requested pruning cannot be done to this model (names the model and what is wrong).
    case unsupportedPruning(path: String, reason: String)

    /// The message with non-printing characters escaped (names and values in it may come from a hostile file).
    public var description: String { TerminalText.escape(message) }

    /// The message as composed, before escaping.
    var message: String {
        switch self {
        case .unsupportedTarget(let s): return "cannot quantize to \(s)"
        case .rowLength(let tensor, let n, let type):
            return "tensor '\(tensor)': row length \(n) is not a multiple of \(type.name)'s block of \(type.blockElements)"
        case .badOutput(let path, let reason): return "\(path): \(reason)"
        case .badModel(let path, let reason): return "\(path): \(reason)"
        case .calibration(let path, let reason): return "\(path): calibration text: \(reason)"
        case .numerical(let tensor, let reason): return "tensor '\(tensor)': \(reason)"
        case .unsupportedPruning(let path, let reason): return "\(path): cannot prune: \(reason)"
        }
    }
}
