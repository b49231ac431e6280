import ArgumentParser
import Foundation
import SquishCore
import SquishData
import SquishKernels
import SquishQuantize

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a GGUF model into llama.cpp block types or Squish affine types (round-to-nearest, GPTQ or AWQ), written atomically.")

    @Option(help: "Model file (default: the cached default model). It is only read.")
    var model: String?

    @Option(help: "Quantization method: rtn (round to nearest), gptq (calibrated, error-compensating), awq (calibrated, activation-aware scales) or ternary (BitNet b1.58 absmean; --type TQ2_0 (default), TQ1_0, SQ2_G32 or SQ2_G64).")
    var method: QuantizationMethod = .rtn

    @Option(help: "Output block type: \(QuantizationTarget.supportedNames).")
    var type: String?

    @Option(help: "Bits per weight (with --group): a native type where one fits (4 -> Q4_1, 5 -> Q5_1, 8 -> Q8_0 in groups of 32), else the Squish affine type SQ<bits>_G<group>.")
    var bits: Int?

    @Option(help: "Group size for --bits (default 32).")
    var group: Int?

    @Flag(help: "With --bits: symmetric blocks without a minimum (4 -> Q4_0, 5 -> Q5_0).")
    var symmetric = false

    @Flag(help: "Re-encode tensors already in their output type instead of copying them unchanged.")
    var requantize = false

    @Option(help: "Calibration text for gptq/awq (default: the first 200,000 bytes of Austen's Emma from the cached corpora).")
    var calib: String?

    @Option(help: "Calibration tokens for gptq/awq (whole sequences of 512).")
    var calibTokens = 8192

    @Flag(inversion: .prefixedNo, help: "GPTQ: quantize columns in order of decreasing activation energy (static groups).")
    var actOrder = true

    @Option(help: "GPTQ: damping as a fraction of the mean diagonal of H.")
    var damp: Float = 0.01

    @Option(help: "AWQ: number of exponents α = i/N searched in s = mean|x|^α.")
    var awqGrid = 20

    @Option(help: "AWQ: calibration tokens whose outputs score each α (mean |x| uses all tokens).")
    var awqTokens = 512

    @Option(help: "Output GGUF file (replaced atomically; must differ from the input).")
    var out: String

    @Option(name: [.customShort("t"), .long], help: "Threads (default: all cores).")
    var threads: Int?

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func validate() throws {
        guard calibTokens > 0 else { throw ValidationError("--calib-tokens must be positive") }
        guard damp > 0, damp < 1 else { throw ValidationError("--damp must be in (0, 1)") }
        guard awqGrid >= 1, awqTokens >= 1 else { throw ValidationError("--awq-grid and --awq-tokens must be positive") }
        if method == .ternary, bits != nil || group != nil || symmetric {
            throw ValidationError("--method ternary takes --type (TQ2_0, TQ1_0, SQ2_G32, SQ2_G64), not --bits/--group/--symmetric")
        }
    }

    func run() throws {
        let input = try resolveModelPath(model)
        let target = method == .ternary
            ? try QuantizationTarget.ternary(type: type)
            : try QuantizationTarget.resolve(type: type, bits: bits, group: group, symmetric: symmetric)
        var options = QuantizeOptions(method: method, target: target)
        options.requantize = requantize
        options.gptq.actOrder = actOrder
        options.gptq.dampPercent = damp
        options.awq.gridSize = awqGrid
        options.awq.searchTokens = awqTokens
        options.calibration.tokens = calibTokens
        if let calib {
            options.calibration.textPath = calib
        } else {
            options.calibration.textPath = Corpora.austenPath("emma")
            options.calibration.textBytes = 200_000
        }
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
