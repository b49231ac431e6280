import ArgumentParser
import Foundation
import SquishCore
import SquishKernels
import SquishZip

struct Zip: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zip",
        abstract: "Compress any file losslessly with a language model (rANS driven by its next-token distribution); written atomically.")

    @Option(help: "Model file, Hugging Face directory or known model name, e.g. gemma3-270m (default: the cached default model); unzip needs the same model.")
    var model: String?

    @Argument(help: "File to compress (any bytes).")
    var input: String

    @Option(name: [.customShort("o"), .long], help: "Output file (must differ from the input).")
    var out: String

    @Option(help: "Chunks coded together in lockstep (the batch of each model step).")
    var lanes = ZipSettings().lanes

    @Option(help: "Longest chunk in tokens (each chunk starts without context).")
    var chunkTokens = ZipSettings().maxChunkTokens

    @OptionGroup var threading: ThreadOptions  // the output does not depend on the count

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func validate() throws {
        guard lanes >= 1, lanes <= 256 else { throw ValidationError("--lanes must be in 1 ... 256") }
        guard chunkTokens >= 16 else { throw ValidationError("--chunk-tokens must be at least 16") }
    }

    func run() throws {
        try WeightPacking.checkOutput(out, input: input)
        guard let data = FileManager.default.contents(atPath: input) else { throw CLIError("\(input): cannot read the file") }
        let coder = try TextCoder(modelPath: try resolveModelPath(model), pool: threading.pool(quiet: json))
        var settings = ZipSettings(lanes: lanes, maxChunkTokens: chunkTokens)
        settings.minChunkTokens = min(settings.minChunkTokens, chunkTokens)
        var progress: ProgressBar?  // tokens, known once the input is tokenized
        let (container, summary) = try coder.compress([UInt8](data), settings: settings) { done, total in
            if progress == nil { progress = ProgressBar(total: total, label: "zip", quiet: json) }
            progress?.update(done)
        }
        progress?.finish()
        try AtomicFileWriter.write(container.serialized(), to: out)
        if json {
            print(try jsonString(summary, snakeCaseKeys: true))
        } else {
            print(String(format: "%@ → %@: %d → %d bytes, %.4f bits/byte (model cross-entropy %.4f, coder %+.3f%%; %.4f counting the %@ model's %d bytes)",
                         input, out, summary.inputBytes, summary.outputBytes, summary.bitsPerByte, summary.modelBitsPerByte,
                         summary.coderOverhead * 100, summary.bitsPerByteWithModel, summary.model, coder.modelBytes))
            print(String(format: "%d tokens (%d bytes by byte fallback) in %d chunks of ≤ %d, %d lanes, %d threads, %@ kernels: %.1f s, %.0f bytes/s",
                         summary.tokens, summary.fallbackBytes, summary.chunks, summary.chunkTokens, summary.lanes, summary.threads,
                         summary.kernels, summary.seconds, summary.bytesPerSecond))
        }
    }
}
