import ArgumentParser
import Foundation
import SquishCore
import SquishEval
import SquishFormats

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a Llama GGUF with random weights and a known model's shapes (for speed measurements only).",
        discussion: "The tokenizer comes from --tokenizer-from (default: the cached default model), so the vocabulary is that model's.")

    @Option(help: "Shape: \(SyntheticModelShape.known.map(\.name).joined(separator: ", ")).")
    var shape = "tinyllama-1.1b"

    @Option(help: "Block type of every matrix (e.g. Q4_0, Q8_0, Q4_K, TQ2_0, SQ4_G64).")
    var type = "Q4_0"

    @Option(help: "GGUF file or known model name whose tokenizer metadata is copied (default: the cached default model).")
    var tokenizerFrom: String?

    @Option(help: "Seed of the random weights.")
    var seed: UInt64 = 1

    @Option(help: "Output GGUF file (written atomically).")
    var out: String

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func run() throws {
        guard let s = SyntheticModelShape.known.first(where: { $0.name == shape.lowercased() }) else {
            throw ValidationError("--shape: unknown '\(shape)' (known: \(SyntheticModelShape.known.map(\.name).joined(separator: ", ")))")
        }
        guard let t = GGMLType(name: type), RandomWeights.supports(t) else { throw ValidationError("--type: cannot make '\(type)' weights") }
        let source = try GGUFFile(path: try resolveModelPath(tokenizerFrom))
        let progress = ProgressBar(total: SyntheticModel.matrixCount(s), label: "synth", quiet: json)
        let r = try SyntheticModel.write(shape: s, type: t, tokenizerFrom: source, to: out, seed: seed, progress: progress)
        progress.finish()
        if json {
            print(try jsonString(r))
        } else {
            print(String(format: "%@: %@ %@, %d tensors, %.3f B parameters, vocabulary %d, %.1f MB", r.path, s.name, r.type, r.tensors,
                         Double(r.parameters) / 1e9, r.vocabSize, Double(r.fileBytes) / 1e6))
        }
    }
}
