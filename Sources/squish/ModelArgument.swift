import Foundation
import SquishCore
import SquishData
import SquishQuantize

/// Resolves a model given on the command line: a path (GGUF file or Hugging Face directory) as is, a known model's
/// short name (e.g. `gemma3-270m`, when no such path exists) to its cached file, and none to the cached default model.
func resolveModelPath(_ argument: String?) throws -> String {
    do {
        return try KnownModel.resolve(argument)
    } catch DataError.modelNotCached(let name, let path, let fetch) where argument == nil {
        throw CLIError("no model given and the default model (\(name)) is not cached at \(path); run `\(fetch)` first")
    }
}

/// A user-facing error from the CLI layer itself.
struct CLIError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { TerminalText.escape(message) }
}

/// Writes a line to stderr (several for a text with line breaks), escaped for the terminal: progress notes quote
/// tensor names and paths from files.
func printError(_ text: String) {
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { TerminalText.escape(String($0)) }
    FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
}

/// `--calib FILE`, or by default the first 200,000 bytes of Austen's Emma from the cached corpora (no evaluation
/// text comes from Emma).
func calibrationText(_ calib: String?, into options: inout CalibrationOptions) {
    if let calib {
        options.textPath = calib
    } else {
        options.textPath = Corpora.austenPath("emma")
        options.textBytes = 200_000
    }
}

/// The closing KL check's text (quantize, prune): `path` or Pride and Prejudice, cut to `bytes` at a character
/// boundary; with its name for the report.
func klCheckText(_ path: String?, bytes count: Int) throws -> (String, [UInt8]) {
    let file = path ?? Corpora.austenPath("prideprejudice")
    guard let d = FileManager.default.contents(atPath: file) else {
        throw CLIError(path == nil ? "\(file): the corpora are not cached; run `squish fetch` first (or pass --no-kl)"
                                   : "\(file): cannot read the file")
    }
    var bytes = Array(d.prefix(count))
    // Drop a character cut in half: find its lead byte and compare its length with what is left.
    var lead = bytes.count - 1
    while lead > 0, lead >= bytes.count - 4, bytes[lead] & 0xC0 == 0x80 { lead -= 1 }
    if lead >= 0, bytes[lead] >= 0xC0 {
        let length = bytes[lead] >= 0xF0 ? 4 : bytes[lead] >= 0xE0 ? 3 : 2
        if lead + length > bytes.count { bytes.removeSubrange(lead...) }
    }
    return ("\((file as NSString).lastPathComponent)[0..<\(bytes.count)]", bytes)
}
