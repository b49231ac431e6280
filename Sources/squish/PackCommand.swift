import ArgumentParser
import Foundation
import SquishCore
import SquishZip

struct Pack: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Entropy-code a GGUF model's tensors losslessly; every command loads the packed file directly, `squish unpack` restores the original byte for byte.")

    @Argument(help: "GGUF file or known model name, e.g. gemma3-270m (default: the cached default model).")
    var input: String?

    @Option(name: [.customShort("o"), .long], help: "Output file (must differ from the input).")
    var out: String

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func run() throws {
        let path = try resolveModelPath(input)
        let progress = ProgressBar(total: 1000, label: "pack", quiet: json)
        let summary = try WeightPacking.pack(input: path, output: out) { done, total in
            progress.update(Int(Double(done) / Double(max(total, 1)) * 1000))
        }
        progress.finish()
        if json {
            print(try jsonString(summary, snakeCaseKeys: true))
            return
        }
        print(String(format: "%@ → %@: %d → %d bytes (%.2f%%), decoded and verified in %.2f s; %.1f s in all",
                     path, out, summary.originalBytes, summary.packedBytes, summary.ratio * 100, summary.decodeSeconds, summary.seconds))
        print("type      tensors      original        packed   ratio")
        for t in summary.types {
            print(t.type.padding(toLength: 8, withPad: " ", startingAt: 0) + String(format: " %8d %13d %13d  %5.1f%%", t.tensors, t.originalBytes, t.packedBytes,
                         100 * Double(t.packedBytes) / Double(max(t.originalBytes, 1))))
        }
        print("rest    " + String(format: "          %13d %13d  %5.1f%%", summary.restBytes, summary.restPackedBytes,
                     100 * Double(summary.restPackedBytes) / Double(max(summary.restBytes, 1))))
    }
}
