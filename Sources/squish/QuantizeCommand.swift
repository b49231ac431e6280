import ArgumentParser
import Foundation
import SquishCore
import SquishData
import SquishEval
import SquishFormats
import SquishKernels
import SquishModel
import SquishQuantize
import SquishTokenizer

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a GGUF model into llama.cpp block types or Squish affine types (round-to-nearest, GPTQ or AWQ), written atomically.")

    @Option(help: "Model file, Hugging Face directory or known model name, e.g. gemma3-270m (default: the cached default model). It is only read.")
    var model: String?

    @Option(help: "Quantization method: rtn (round to nearest), gptq (calibrated, error-compensating), awq (calibrated, activation-aware scales) or ternary (BitNet b1.58 absmean; --type TQ2_0 (default), TQ1_0, SQ2_G32 or SQ2_G64).")
    var method: QuantizationMethod = .rtn

    @Option(help: "Output block type: \(QuantizationTarget.supportedNames).")
    var type: String?

    @Option(help: "Bits per weight, 2-8 (with --group): a native type where one fits (4 -> Q4_1, 5 -> Q5_1, 8 -> Q8_0 in groups of 32), else the Squish affine type SQ<bits>_G<group> (or symmetric SQ<bits>S_G<group> with --symmetric).")
    var bits: Int?

    @Option(help: "Group size for --bits: 16, 32, 64, 128 or 256 (default 32); it must divide every quantized row.")
    var group: Int?

    @Flag(help: "With --bits: symmetric blocks without a minimum (4 -> Q4_0, 5 -> Q5_0, 8 -> Q8_0 in groups of 32, else SQ<bits>S_G<group>).")
    var symmetric = false

    @Flag(help: "With a preset name (Q2_K, Q4_K_M, Q6_K, ...): its nominal type for every tensor instead of the per-tensor mix (as llama-quantize --pure); K-quant rows that are not multiples of 256 still get SQ<bits>_G64.")
    var pure = false

    @Option(help: "Block type of the token embedding and the output matrix (default: Q8_0, or the target when it has 8 bits; as llama-quantize's --token-embedding-type and --output-tensor-type).")
    var embeddingType: String?

    @Flag(help: "Re-encode tensors already in their output type instead of copying them unchanged.")
    var requantize = false

    @Option(help: "Calibration text for gptq/awq (default: the first 200,000 bytes of Austen's Emma from the cached corpora).")
    var calib: String?

    @Option(help: "Calibration tokens for gptq/awq (whole sequences of 512).")
    var calibTokens = 8192

    @Flag(help: "rtn: weight each block's rounding by the calibration inputs' Σx² per channel (an importance matrix, as llama-quantize --imatrix); calibrates block by block like gptq.")
    var importance = false

    @Flag(help: "gptq (or rtn --importance): quantize the blocks' matrices in the basis of a randomized Hadamard rotation of their input (QuaRot/QuIP#-style), which spreads outlier features so low-bit grids fit; the runtime rotates the activations. Only Squish reads such files.")
    var rotate = false

    @Flag(inversion: .prefixedNo, help: "GPTQ: quantize columns in order of decreasing activation energy (static groups).")
    var actOrder = true

    @Flag(inversion: .prefixedNo, help: "GPTQ: after choosing the codes, refit each block's scale and minimum by least squares against the layer's calibration outputs (K-quants and SQ4NX keep their integer sub-block scales and refit d and dmin).")
    var refit = true

    @Option(help: "GPTQ: damping as a fraction of the mean diagonal of H.")
    var damp: Float = 0.01

    @Option(help: "AWQ: number of exponents α = i/N searched in s = mean|x|^α.")
    var awqGrid = 20

    @Option(help: "AWQ: calibration tokens whose outputs score each α (mean |x| uses all tokens).")
    var awqTokens = 512

    @Flag(inversion: .prefixedNo, help: "AWQ: clip each block's range by output error on the calibration inputs after the scales (AWQ §3.3).")
    var awqClip = true

    @Option(help: "AWQ: number of clipping ratios searched, from 1 down towards 0.5 of max |w|.")
    var awqClipGrid = 20

    @OptionGroup var klCheck: KLCheckOptions

    @Option(help: "Output GGUF file (replaced atomically; must differ from the input).")
    var out: String

    @OptionGroup var threading: ThreadOptions

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func validate() throws {
        try check("--calib-tokens", calibTokens, 1 ... 1 << 24)
        guard damp > 0, damp < 1 else { throw ValidationError("--damp must be in (0, 1), found \(damp)") }
        try check("--awq-grid", awqGrid, 1 ... 1000)
        try check("--awq-tokens", awqTokens, 1 ... 1 << 20)
        try check("--awq-clip-grid", awqClipGrid, 1 ... 1000)
        if let bits { try check("--bits", bits, 2 ... 8) }
        if let group { try check("--group", group, 1 ... 256) }
        if rotate, !(method == .gptq || (method == .rtn && importance)) {
            throw ValidationError("--rotate needs a calibrated method: --method gptq, or --method rtn --importance")
        }
        if importance, method != .rtn { throw ValidationError("--importance applies to --method rtn (gptq and awq use the calibration statistics already)") }
        if method == .ternary, bits != nil || group != nil || symmetric {
            throw ValidationError("--method ternary takes --type (TQ2_0, TQ1_0, SQ2_G32, SQ2_G64), not --bits/--group/--symmetric")
        }
    }

    func run() throws {
        let input = try resolveModelPath(model)
        let target = method == .ternary
            ? try QuantizationTarget.ternary(type: type)
            : try QuantizationTarget.resolve(type: type, bits: bits, group: group, symmetric: symmetric, pure: pure)
        var options = QuantizeOptions(method: method, target: target)
        options.requantize = requantize
        if let embeddingType {
            guard let t = GGMLType(name: embeddingType) else { throw ValidationError("--embedding-type: unknown type '\(embeddingType)'") }
            options.embeddingType = t
        }
        options.importance = importance
        options.rotateInputs = rotate
        options.gptq.actOrder = actOrder
        options.gptq.refitParameters = refit
        options.gptq.dampPercent = damp
        options.awq.gridSize = awqGrid
        options.awq.searchTokens = awqTokens
        options.awq.clip = awqClip
        options.awq.clipSteps = awqClipGrid
        options.calibration.tokens = calibTokens
        calibrationText(calib, into: &options.calibration)
        let quiet = json
        let pool = threading.pool(quiet: quiet)
        try klCheck.checkContext(input: input)
        var report = try ModelQuantizer.quantize(input: input, output: out, options: options, pool: pool,
                                                 log: { if !quiet { printError($0) } })
        if let (text, agreements) = try klCheck.measure(input: input, candidates: [try TransformerModel(path: out, layout: kernelLayout)],
                                                        pool: pool, quiet: quiet) {
            report.klDivergence = agreements[0].klDivergence
            report.top1Agreement = agreements[0].top1Agreement
            report.klPositions = agreements[0].positions
            report.klText = text
        }
        if json {
            print(try jsonString(report))
        } else {
            print(String(format: "wrote %@: %.2f MB, %.3f bits per weight, %d tensors quantized to %@ (%@), %d copied, %.1f s",
                         report.output, Double(report.bytes) / 1e6, report.bitsPerWeight, report.tensorsQuantized, report.type,
                         report.method, report.tensorsCopied, report.seconds))
            if report.tensorTypes.count > 1 {
                print("quantized tensors by type: " + report.tensorTypes.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
                    .map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            }
            if let kl = report.klDivergence, let top1 = report.top1Agreement, let n = report.klPositions, let text = report.klText {
                print(String(format: "vs input on %@ (%d positions): mean KL %.5f nats, top-1 agreement %.2f%%", text, n, kl, 100 * top1))
            }
        }
    }
}

extension QuantizationMethod: ExpressibleByArgument {}
