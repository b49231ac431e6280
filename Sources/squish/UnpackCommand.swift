import ArgumentParser
import Foundation
import SquishCore
import SquishZip

struct Unpack: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unpack",
        abstract: "Restore the original GGUF file of a packed model byte for byte (its SHA-256 checked); written atomically.")

    @Argument(help: "File written by `squish pack`.")
    var input: String

    @Option(name: [.customShort("o"), .long], help: "Output file (must differ from the input).")
    var out: String

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func run() throws {
        let summary = try WeightPacking.unpack(input: input, output: out)
        if json {
            print(try jsonString(summary, snakeCaseKeys: true))
        } else {
            print(String(format: "%@ → %@: %d → %d bytes, sha256 %@ verified, %.2f s",
                         input, out, summary.packedBytes, summary.originalBytes, summary.sha256, summary.seconds))
        }
    }
}
