import SquishCore
/// Errors from fetching, verifying and decoding the default model and the corpora.
public enum DataError: Error, CustomStringConvertible {
    /// An external command (pip, apt-get, dpkg-deb, tar) failed.
    case commandFailed(command: String, status: Int32, output: String, hint: String)
    case checksumMismatch(path: String, expected: String, found: String)
    case missingFile(path: String, hint: String)
    /// R serialized data that this reader cannot decode.
    case badRData(path: String, offset: Int, reason: String)
    case io(path: String, reason: String)

    /// The message with non-printing characters escaped (names and values in it may come from a hostile file).
    public var description: String { TerminalText.escape(message) }

    /// The message as composed, before escaping.
    var message: String {
        switch self {
        case .commandFailed(let command, let status, let output, let hint):
            // One line: the last lines of the command's output joined by " | ", then the hint.
            let tail = output.split(separator: "\n").suffix(6).joined(separator: " | ")
            return "`\(command)` failed (exit \(status))" + (tail.isEmpty ? "" : ": \(tail)") + ". \(hint)"
        case .checksumMismatch(let path, let expected, let found):
            return "\(path): sha256 \(found) does not match the expected \(expected); the download is corrupt or not the pinned release"
        case .missingFile(let path, let hint):
            return "\(path) is missing: \(hint)"
        case .badRData(let path, let offset, let reason):
            return "\(path): at byte \(offset) of the decompressed R data: \(reason)"
        case .io(let path, let reason):
            return "\(path): \(reason)"
        }
    }
}
