import ArgumentParser
import Foundation
import SquishCore
import SquishKernels
import SquishQuantize

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a GGUF model into llama.cpp block types (round-to-nearest), written atomically.")

    @Option(help: "Model file (default: the cached default model). It is only read.")
    var model: String?

    @Option(help: "Quantization method: rtn.")
    var method: QuantizationMethod = .rtn

    @Option(help: "Output block type: \(QuantizationTarget.supportedNames).")
    var type: String?

    @Option(help: "Bits per weight (with --group), mapped onto a native type: 4 -> Q4_1, 5 -> Q5_1, 8 -> Q8_0.")
    var bits: Int?

    @Option(help: "Group size for --bits (default 32).")
    var group: Int?

    @Flag(help: "With --bits: symmetric blocks without a minimum (4 -> Q4_0, 5 -> Q5_0).")
    var symmetric = false

    @Flag(help: "Re-encode tensors already in their output type instead of copying them unchanged.")
    var requantize = false

    @Option(help: "Output GGUF file (replaced atomically; must differ from the input).")
    var out: String

    @Option(name: [.customShort("t"), .long], help: "Threads (default: all cores).")
    var threads: Int?

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func run() throws {
        let input = try resolveModelPath(model)
        let target = try QuantizationTarget.resolve(type: type, bits: bits, group: group, symmetric: symmetric)
        var options = QuantizeOptions(method: method, target: target)
        options.requantize = requantize
        let quiet = json
        let report = try ModelQuantizer.quantize(input: input, output: out, options: options, pool: WorkerPool(threads: threads),
                                                 log: { if !quiet { printError($0) } })
        if json {
            print(try jsonString(report))
        } else {
            print(String(format: "wrote %@: %.2f MB, %.3f bits per weight, %d tensors quantized to %@ (%@), %d copied, %.1f s",
                         report.output, Double(report.bytes) / 1e6, report.bitsPerWeight, report.tensorsQuantized, report.type,
                         report.method, report.tensorsCopied, report.seconds))
        }
    }
}

extension QuantizationMethod: ExpressibleByArgument {}
