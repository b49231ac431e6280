import Foundation
import SquishCore
import SquishData
import SquishQuantize

/// Resolves a model given on the command line: a path (GGUF file or Hugging Face directory) as is, a known model's
/// short name (e.g. `gemma3-270m`, when no such path exists) to its cached file, and none to the cached default model.
func resolveModelPath(_ argument: String?) throws -> String {
    guard let argument else { return try cachedPath(of: KnownModel.defaultModel, given: nil) }
    if FileManager.default.fileExists(atPath: argument) { return argument }
    if let known = KnownModel.named(argument) { return try cachedPath(of: known, given: argument) }
    let names = KnownModel.all.map(\.name).joined(separator: ", ")
    throw CLIError("\(argument): no such file or directory, and not a known model name (\(names))")
}

private func cachedPath(of model: KnownModel, given argument: String?) throws -> String {
    let path = model.path
    guard FileManager.default.fileExists(atPath: path) else {
        let fetch = model == KnownModel.defaultModel ? "squish fetch" : "squish fetch --model \(model.name)"
        let what = argument == nil ? "no model given and the default model (\(model.name))" : "model \(model.name)"
        throw CLIError("\(what) is not cached at \(path); run `\(fetch)` first")
    }
    return path
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
