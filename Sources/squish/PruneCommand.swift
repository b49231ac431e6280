import ArgumentParser
import Foundation
import SquishCore
import SquishEval
import SquishFormats
import SquishKernels
import SquishModel
import SquishQuantize

struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove weights: whole blocks (shortgpt), FFN channels and KV groups (width), or single weights into sparse block types (magnitude, wanda, sparsegpt); written atomically.",
        discussion: """
        Structured pruning writes a smaller dense model that llama.cpp loads where its block types allow (per-layer \
        widths as llama.cpp's per-layer metadata arrays; Llama with differing widths as its "deci" architecture), \
        and with --recover re-fits the remaining layers to the original model's outputs by least squares. \
        Sparsity writes every block matrix as SP<bits>_K<k>: k of every 64 weights kept (a mask and b-bit codes), which \
        only Squish runs.
        """)

    @Option(help: "Model file, Hugging Face directory or known model name (default: the cached default model). It is only read.")
    var model: String?

    @Option(help: "shortgpt (drop blocks by Block Influence), width (narrower FFNs / fewer KV groups), magnitude, wanda or sparsegpt (sparsity).")
    var method: PruningMethod

    @Option(help: "shortgpt (and width): blocks to drop.")
    var dropLayers = 0

    @Option(help: "width: share of each block's FFN channels kept, e.g. 0.75 (rounded to a multiple of 64).")
    var ffnKeep = 1.0

    @Option(help: "width: share of each block's KV groups (a KV head with its query heads) kept, e.g. 0.67.")
    var headsKeep = 1.0

    @Flag(inversion: .prefixedNo, help: "Structured pruning: re-fit the remaining layers by least squares to the original model's outputs (experimental, off by default: it does not improve the default model yet).")
    var recover = false

    @Option(help: "Sparsity: share of weights removed, 0.25, 0.5 or 0.75 (unstructured within each 64 weights of a row).")
    var sparsity: Double?

    @Option(help: "Sparsity: N:M pattern instead, e.g. 2:4 or 4:8 (N of every M consecutive weights kept).")
    var pattern: String?

    @Option(help: "Sparsity: bits of the kept values' codes (2, 3, 4, 5, 6, 8).")
    var bits = 8

    @Option(help: "Calibration text (default: the first 200,000 bytes of Austen's Emma from the cached corpora).")
    var calib: String?

    @Option(help: "Calibration tokens (whole sequences of 512).")
    var calibTokens = 4096

    @OptionGroup var klCheck: KLCheckOptions  // with --recover, the model before recovery is checked too

    @Option(help: "Output GGUF file (replaced atomically; must differ from the input).")
    var out: String

    @OptionGroup var threading: ThreadOptions

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func validate() throws {
        try check("--calib-tokens", calibTokens, 1 ... 1 << 24)
        switch method {
        case .shortgpt:
            guard dropLayers > 0 else { throw ValidationError("--method shortgpt needs --drop-layers N") }
        case .width:
            guard ffnKeep < 1 || headsKeep < 1 else { throw ValidationError("--method width needs --ffn-keep or --heads-keep below 1") }
        case .magnitude, .wanda, .sparsegpt:
            guard (sparsity == nil) != (pattern == nil) else { throw ValidationError("give exactly one of --sparsity and --pattern") }
            if let s = sparsity, SparsityPattern.unstructured(sparsity: s) == nil {
                throw ValidationError("--sparsity: 0.25, 0.5 or 0.75 (the sparse block types keep 48, 32 or 16 of 64 weights)")
            }
            if let p = pattern, SparsityPattern.parse(p) == nil {
                throw ValidationError("--pattern '\(p)': expected N:M with M dividing 64 keeping 1/4, 1/2 or 3/4 (2:4, 4:8, 1:4, 3:4, ...)")
            }
            guard GGMLType.sparseBits.contains(bits) else { throw ValidationError("--bits: one of \(GGMLType.sparseBits.map(String.init).joined(separator: ", "))") }
        }
        if !method.isStructured, dropLayers != 0 || ffnKeep != 1 || headsKeep != 1 {
            throw ValidationError("--drop-layers, --ffn-keep and --heads-keep are for --method shortgpt or width")
        }
    }

    func run() throws {
        let input = try resolveModelPath(model)
        var options = PruneOptions(method: method)
        options.dropLayers = dropLayers
        options.ffnKeep = ffnKeep
        options.headsKeep = headsKeep
        options.recover = recover
        options.bits = bits
        if let s = sparsity { options.pattern = SparsityPattern.unstructured(sparsity: s)! }
        if let p = pattern { options.pattern = SparsityPattern.parse(p)! }
        options.calibration.tokens = calibTokens
        calibrationText(calib, into: &options.calibration)
        let quiet = json
        let pool = threading.pool(quiet: quiet)
        try klCheck.checkContext(input: input)
        var bar: ProgressBar?
        let outcome = try ModelPruner.prune(input: input, output: out, options: options, pool: pool, progress: { stage, done, total in
            if bar?.label != stage { bar?.finish(); bar = ProgressBar(total: total, label: stage, quiet: quiet) }
            bar?.update(done)
        }, log: { _ in })
        bar?.finish()
        var report = outcome.report
        let candidates = { [try TransformerModel(path: out, layout: kernelLayout)] + (outcome.beforeRecovery.map { [$0] } ?? []) }
        if let (text, agreements) = try klCheck.measure(input: input, candidates: try candidates(),
                                                        pool: pool, quiet: quiet) {
            report.klDivergence = agreements[0].klDivergence
            report.top1Agreement = agreements[0].top1Agreement
            if agreements.count > 1 {
                report.klBeforeRecovery = agreements[1].klDivergence
                report.top1BeforeRecovery = agreements[1].top1Agreement
            }
            report.klText = text
        }
        if json {
            print(try jsonString(report))
            return
        }
        print(String(format: "wrote %@: %.2f MB (input %.2f MB), block parameters %d → %d (%.1f%%), %@, %.1f s", report.output,
                     Double(report.bytes) / 1e6, Double(report.inputBytes) / 1e6, report.blockParameters, report.keptBlockParameters,
                     100 * Double(report.keptBlockParameters) / Double(max(1, report.blockParameters)),
                     report.llamaCppBlockTypes ? "architecture \(report.architecture) (llama.cpp's block types)" : "Squish block types",
                     report.seconds))
        if let dropped = report.droppedLayers, !dropped.isEmpty { print("dropped blocks: " + dropped.map(String.init).joined(separator: ", ")) }
        if let w = report.layerWidths, let f = w.first {
            let uniform = w.allSatisfy { $0 == f }
            print(uniform ? "every block: FFN \(f.ffn), \(f.heads) heads, \(f.kvHeads) KV heads"
                          : "per block (FFN/heads/KV heads): " + w.map { "\($0.ffn)/\($0.heads)/\($0.kvHeads)" }.joined(separator: " "))
        }
        if let p = report.pattern, let t = report.sparseType { print("sparsity: \(p), block matrices as \(t)") }
        if let kl = report.klDivergence, let top1 = report.top1Agreement, let text = report.klText {
            var line = String(format: "vs input on %@: mean KL %.5f nats, top-1 agreement %.2f%%", text, kl, 100 * top1)
            if let b = report.klBeforeRecovery, let t = report.top1BeforeRecovery {
                line += String(format: " (before recovery: %.5f, %.2f%%; recovery %.0f s)", b, 100 * t, report.recoverySeconds ?? 0)
            }
            print(line)
        }
    }
}

extension PruningMethod: ExpressibleByArgument {}
