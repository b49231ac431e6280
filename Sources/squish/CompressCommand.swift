import ArgumentParser
import Foundation
import SquishCompress
import SquishCore
import SquishData
import SquishEval
import SquishFormats
import SquishKernels
import SquishModel
import SquishQuantize

struct Compress: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compress",
        abstract: "The best model under a size budget: per-tensor levels chosen by importance, then an evolutionary search on KL; written atomically.")

    @Option(help: "Model file, Hugging Face directory or known model name, e.g. gemma3-270m (default: the cached default model). It is only read.")
    var model: String?

    @Option(help: "Output file size: 60MB, 57.5MB, 55MiB, 60000000 (MB = 10^6 bytes).")
    var targetSize: String?

    @Option(help: "Average bits per weight instead (all tensor bytes × 8 / all parameters).")
    var targetBpw: Double?

    @Option(help: "Calibration text (default: the first 200,000 bytes of Austen's Emma from the cached corpora).")
    var calib: String?

    @Option(help: "Calibration tokens for the level database's GPTQ statistics (whole sequences of 512).")
    var calibTokens = 4096

    @Option(help: "Levels every matrix may take, smallest first (only those smaller than its stored type are used; the stored type is the top level).")
    var ladder = LevelDatabaseOptions().ladder.map(\.name).joined(separator: ",")

    @Option(help: "Extra levels of the large matrices (each with at least 1/50 of the parameters, e.g. the embedding), or 'none'.")
    var largeLevels = LevelDatabaseOptions().largeTensorLevels.map(\.name).joined(separator: ",")

    @Option(help: "Levels quantized rotated on the input (a randomized Hadamard rotation, the runtime rotates the activations; the file is then for Squish only), or 'none'.")
    var rotatedLevels = LevelDatabaseOptions().rotatedLevels.map(\.name).joined(separator: ",")

    @Option(help: "Wall-clock budget of the whole run in minutes (level database, search, writing, evaluation).")
    var budgetMinutes: Double = 15

    @Option(help: "Seed of the search (the same seed, inputs and budget give the same file).")
    var seed: UInt64 = 1

    @Option(help: "Stop the search after this many generations (with the seed, a run that is not cut short by --budget-minutes is reproducible exactly).")
    var generations: Int?

    @Option(help: "Candidates per generation.")
    var offspring = 12

    @Option(help: "Calibration sequences of 256 tokens the search scores on.")
    var searchSequences = 8

    @Option(help: "Tokens per search sequence, each scored at every position (default: 256; 512 with --prune, where a dropped block's cost grows with the context).")
    var searchLength: Int?

    @Option(help: "Held-out text the result is evaluated on (default: the first 60,000 bytes of Pride and Prejudice).")
    var evalText: String?

    @Option(help: "Use only the first N bytes of --eval-text.")
    var evalBytes: Int?

    @Flag(help: "Skip the held-out evaluation.")
    var noEval = false

    @Flag(help: "Allow dropping whole blocks where that costs less KL than the bits their bytes buy (searched with the levels; the output has fewer blocks).")
    var prune = false

    @Option(help: "With --prune: most blocks dropped (default: a quarter of them).")
    var maxDroppedLayers: Int?

    @Flag(help: "Print every tensor's importance signals and chosen type.")
    var explain = false

    @Option(help: "Other models (same vocabulary, e.g. llama-quantize outputs) to score on the search tokens for the report's size-KL chart.")
    var compare: [String] = []

    @Flag(help: "Build the level database again even if a cached one matches.")
    var rebuildDatabase = false

    @Option(help: "Write report.md, result.json and SVG (PNG) charts into this directory.")
    var report: String?

    @Option(help: "Output GGUF file (replaced atomically; must differ from the input).")
    var out: String

    @OptionGroup var threading: ThreadOptions

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard (targetSize == nil) != (targetBpw == nil) else { throw ValidationError("give exactly one of --target-size and --target-bpw") }
        if let s = targetSize {
            do { _ = try ByteSize.parse(s) } catch { throw ValidationError("--target-size \(error)") }
        }
        if let b = targetBpw { guard b > 0, b < 32 else { throw ValidationError("--target-bpw must be in (0, 32), found \(b)") } }
        if let g = generations { try check("--generations", g, 0 ... Limits.count) }
        try check("--calib-tokens", calibTokens, 1 ... 1 << 24)
        guard budgetMinutes > 0, budgetMinutes <= 100_000 else {
            throw ValidationError("--budget-minutes must be in (0, 100000], found \(budgetMinutes)")
        }
        try check("--offspring", offspring, 1 ... 1000)
        try check("--search-sequences", searchSequences, 1 ... 10_000)
        if let n = searchLength { try check("--search-length", n, 16 ... 1 << 16) }
        if let b = evalBytes { try check("--eval-bytes", b, 1 ... Int.max) }
        if let m = maxDroppedLayers {
            guard prune else { throw ValidationError("--max-dropped-layers needs --prune") }
            try check("--max-dropped-layers", m, 0 ... Limits.count)
        }
    }

    func run() throws {
        let input = try resolveModelPath(model)
        let target: CompressOptions.Target = try targetSize.map { .fileBytes(try ByteSize.parse($0)) } ?? .bitsPerWeight(targetBpw!)
        var options = CompressOptions(target: target)
        func types(_ list: String, _ option: String) throws -> [GGMLType] {
            try list.split(separator: ",").map { name in
                guard let t = GGMLType(name: String(name)), BlockGrid(t) != nil else {
                    throw ValidationError("\(option): '\(name)' is not a block type Squish quantizes to (\(QuantizationTarget.supportedNames))")
                }
                return t
            }
        }
        options.ladder = try types(ladder, "--ladder")
        options.largeTensorLevels = largeLevels == "none" ? [] : try types(largeLevels, "--large-levels")
        options.rotatedLevels = rotatedLevels == "none" ? [] : try types(rotatedLevels, "--rotated-levels")
        options.calibration.tokens = calibTokens
        calibrationText(calib, into: &options.calibration)
        options.budgetSeconds = budgetMinutes * 60
        var heldOut: EvalText?
        if !noEval {
            let path = evalText ?? Corpora.austenPath("prideprejudice")
            guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("\(path): cannot read the held-out text") }
            var bytes = [UInt8](data)
            let limit = evalBytes ?? (evalText == nil ? 60_000 : bytes.count)
            if limit < bytes.count {
                var cut = limit
                while cut > 0 && bytes[cut] & 0xC0 == 0x80 { cut -= 1 }
                bytes = Array(bytes.prefix(cut))
            }
            let name = (path as NSString).lastPathComponent + (limit < data.count ? " (first \(bytes.count) bytes)" : "")
            let text = try EvalText(name: name, bytes: bytes)
            heldOut = text
            // Both perplexity protocols run over the held-out text: about two passes of its tokens (4 bytes per token
            // is typical of English with these tokenizers; the estimate only sizes the time kept for it), and two
            // more when the input's reference logits for that text are not cached yet.
            let defaults = EvalOptions()
            let cached = FileManager.default.fileExists(atPath: defaults.cacheDirectory + "/" + ReferenceLogits.fileName(
                modelHash: try FNV1a64.file(input), textHash: text.hash, context: defaults.context, k: defaults.topK,
                tailSamples: defaults.tailSamples))
            options.evaluationTokens = (cached ? 2 : 4) * bytes.count / 4
        }
        options.search.seed = seed
        options.search.offspring = offspring
        if let generations { options.search.maxGenerations = generations }
        options.searchSequences = searchSequences
        options.searchLength = searchLength ?? (prune ? 512 : options.searchLength)
        options.rebuildDatabase = rebuildDatabase
        options.prune = prune
        options.maxDroppedLayers = maxDroppedLayers
        options.compare = compare
        let quiet = json
        let pool = threading.pool(quiet: quiet)
        var result = try Compressor.compress(input: input, output: out, options: options, pool: pool, quiet: quiet,
                                             log: { if !quiet { printError($0) } })
        if let heldOut {
            try Compressor.evaluate(&result, text: heldOut, pool: pool, quiet: quiet, log: { if !quiet { printError($0) } })
        }
        if let report { try CompressReport.write(result, to: report) }
        if json {
            print(try jsonString(result))
            return
        }
        if explain { printExplain(result) }
        print(String(format: "wrote %@: %.2f MB (budget %.2f MB), %.3f bits per weight, %.0f s (level database %.0f s%@)", result.output,
                     Double(result.bytes) / 1e6, Double(result.targetBytes) / 1e6, result.bitsPerWeight, result.seconds,
                     result.databaseSeconds, result.databaseCached ? ", cached" : ""))
        if !result.droppedLayers.isEmpty {
            print("dropped blocks: \(result.droppedLayers.map(String.init).joined(separator: ", ")) (of \(result.layers.count))")
        }
        print(String(format: "search: KL %.5f at the start, %.5f after %d generations (%d forward passes)",
                     result.startFitness, result.searchFitness, result.generations, result.candidatesScored))
        if let kl = result.klDivergence, let ppl = result.perplexity, let ref = result.referencePerplexity {
            print("")
            print("| model | MB | bits/weight | perplexity | KL mean | top-1 |")
            print("|---|---|---|---|---|---|")
            let inputBytes = LanguageModel.fileBytes(result.input)
            print(String(format: "| input | %.2f | | %.3f | 0 | 100%% |", Double(inputBytes) / 1e6, ref))
            print(String(format: "| compressed | %.2f | %.3f | %.3f | %.4f | %.1f%% |", Double(result.bytes) / 1e6, result.bitsPerWeight, ppl, kl,
                         (result.top1Agreement ?? 0) * 100))
            print("held out: \(result.heldOutText ?? "")")
        }
    }

    func printExplain(_ r: CompressResult) {
        print("layer  1-cos(in,out)")
        for l in r.layers { print(String(format: "%5d  %.5f", l.layer, l.cosineDistance)) }
        if !r.dropSensitivity.isEmpty {
            print("")
            print("layer  KL dropped alone")
            for (l, kl) in r.dropSensitivity.enumerated() {
                print(String(format: "%5d  %.5f%@", l, kl, r.droppedLayers.contains(l) ? "  (dropped)" : ""))
            }
        }
        print("")
        print("tensor                      params   outliers  probe     sensitivity  chosen")
        for c in r.choices {
            print(String(format: "%-26@ %8d  %7.3f%%  %-8@ %11.6f  %@ (%.2f bits)", c.name, c.parameters, c.outlierShare * 100,
                         c.sensitivityLevel, c.sensitivity, c.type, c.bitsPerWeight))
        }
        print("")
    }
}
