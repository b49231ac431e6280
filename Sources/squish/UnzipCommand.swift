import ArgumentParser
import Foundation
import SquishCore
import SquishKernels
import SquishModel
import SquishZip

struct Unzip: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unzip",
        abstract: "Restore a file compressed by `squish zip`, byte for byte (needs the same model and kernel path); written atomically.")

    @Option(help: "The model the file was compressed with (default: the cached default model); another model is refused.")
    var model: String?

    @Argument(help: "File written by `squish zip`.")
    var input: String

    @Option(name: [.customShort("o"), .long], help: "Output file (must differ from the input).")
    var out: String

    @OptionGroup var threading: ThreadOptions  // the output does not depend on the count

    @Flag(help: "Print the summary as JSON.")
    var json = false

    struct Summary: Codable {
        let input: String
        let output: String
        let inputBytes: Int
        let outputBytes: Int
        let tokens: Int
        let model: String
        let seconds: Double
        let bytesPerSecond: Double
        let threads: Int
    }

    func run() throws {
        try WeightPacking.checkOutput(out, input: input)
        guard let data = FileManager.default.contents(atPath: input) else { throw CLIError("\(input): cannot read the file") }
        let container = try ZipContainer(bytes: [UInt8](data), path: input)
        let began = Date()
        let coder = try TextCoder(modelPath: try resolveModelPath(model),
                                  layout: KernelLayout(repack: container.repacked, lookupTables: container.lookupTables),
                                  pool: threading.pool(quiet: json))
        try coder.check(container, path: input)
        let progress = ProgressBar(total: container.tokenCount, label: "unzip", quiet: json)
        let bytes = try coder.decompress(container, path: input) { done, _ in progress.update(done) }
        progress.finish()
        try AtomicFileWriter.write(bytes, to: out)
        let seconds = Date().timeIntervalSince(began)
        let summary = Summary(input: input, output: out, inputBytes: data.count, outputBytes: bytes.count, tokens: container.tokenCount,
                              model: container.modelName, seconds: seconds, bytesPerSecond: Double(bytes.count) / max(seconds, 1e-9),
                              threads: coder.pool.threadCount)
        if json {
            print(try jsonString(summary, snakeCaseKeys: true))
        } else {
            print(String(format: "%@ → %@: %d → %d bytes (%d tokens, model %@, sha256 verified), %.1f s, %.0f bytes/s",
                         input, out, data.count, bytes.count, container.tokenCount, container.modelName, seconds, summary.bytesPerSecond))
        }
    }
}
