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
    let description: String
    init(_ description: String) { self.description = description }
}

/// Writes a line to stderr.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
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
