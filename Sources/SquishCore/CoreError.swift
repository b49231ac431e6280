/// Errors from SquishCore: file mapping, atomic writes and other I/O foundations.
public enum CoreError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case cannotMap(path: String, reason: String)
    case writeFailed(path: String, reason: String)
    case outputExists(path: String)
    case missingDirectory(path: String)

    /// The message with non-printing characters escaped (names and values in it may come from a hostile file).
    public var description: String { TerminalText.escape(message) }

    /// The message as composed, before escaping.
    var message: String {
        switch self {
        case .cannotOpen(let path, let reason): return "\(path): cannot open: \(reason)"
        case .cannotMap(let path, let reason): return "\(path): cannot memory-map: \(reason)"
        case .writeFailed(let path, let reason): return "\(path): write failed: \(reason)"
        case .outputExists(let path): return "\(path): output already exists"
        case .missingDirectory(let path): return "\(path): directory does not exist"
        }
    }
}
