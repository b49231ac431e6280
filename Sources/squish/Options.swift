import ArgumentParser
import Foundation
import SquishCore
import SquishEval
import SquishFormats
import SquishKernels
import SquishModel

/// Limits on arguments, checked before any work is done. They are far beyond real use; what they exclude would
/// only fail later, after minutes, or by exhausting memory.
enum Limits {
    /// Longest context window any command accepts (tokens); a model's trained context is the other bound.
    static let context = 1 << 20
    /// Most tokens `run`/`chat` generate at once and `bench` processes.
    static let tokens = 1 << 20
    /// Most threads accepted (the pool uses at most the cores available anyway).
    static let threads = 4096
    /// Repetitions, items, generations and similar counts.
    static let count = 1_000_000
}

/// Throws a usage error "--name must be between lo and hi, found v" unless `range` holds `value` (NaN never does).
func check<T: Comparable>(_ name: String, _ value: T, _ range: ClosedRange<T>) throws {
    guard range.contains(value) else {
        throw ValidationError("\(name) must be between \(range.lowerBound) and \(range.upperBound), found \(value)")
    }
}

/// `-t/--threads`, shared by every command that computes.
struct ThreadOptions: ParsableArguments {
    @Option(name: [.customShort("t"), .long],
            help: "Threads (default: all cores; at most the cores available to this process, \(WorkerPool.availableCores) here: more would only wait for each other).")
    var threads: Int?

    func validate() throws {
        if let threads { try check("--threads", threads, 1 ... Limits.threads) }
    }

    /// Threads a pool gets: the request capped to the cores available.
    var count: Int { max(1, min(threads ?? WorkerPool.availableCores, WorkerPool.availableCores)) }

    /// The worker pool; says on stderr when the request was capped to the cores available.
    func pool(quiet: Bool = false) -> WorkerPool {
        let pool = WorkerPool(threads: threads)
        if let threads, threads > pool.threadCount, !quiet {
            printError("squish: --threads \(threads): using \(pool.threadCount), the cores available to this process")
        }
        return pool
    }
}

/// Checks a context window against the model before anything is allocated: not beyond the model's trained context
/// (positions past it were never trained, and RoPE tables would be extrapolated), and small enough that the session's
/// buffers fit in memory.
func checkContext(_ context: Int, for model: TransformerModel, option: String = "--context", threads: Int) throws {
    let trained = model.config.contextLength
    guard context <= trained else {
        throw CLIError("\(option) \(context) exceeds the model's trained context of \(trained) tokens (allowed: 1 to \(trained))")
    }
    let bytes = sessionBytes(model.config, context: context, threads: threads)
    let memory = Double(ProcessInfo.processInfo.physicalMemory)
    guard bytes < memory else {
        throw CLIError(String(format: "%@ %d needs about %.1f GB for the KV cache and position tables; this machine has %.1f GB",
                              option, context, bytes / 1e9, memory / 1e9))
    }
}

/// Bytes a session of `context` positions allocates that grow with the context: the f32 KV cache
/// (2 × layers × context × kvDim), RoPE tables (context × ropeDimensions) and attention scores (threads × context).
func sessionBytes(_ c: ModelConfig, context: Int, threads: Int) -> Double {
    let perPosition = 2.0 * Double(c.layers) * Double(c.kvDim) + Double(c.ropeDimensions) + Double(threads)
    return 4 * perPosition * Double(context)
}

/// `--kv SPEC`, the KV cache of every command that runs a model (parsed by SquishModel's KVCacheSpec).
struct KVCacheOptions: ParsableArguments {
    @Option(name: .customLong("kv"),
            help: "KV cache: f32, f16, q8 (8-bit), kivi4, kivi2 (KIVI 4/2-bit with an f32 window of recent positions; parameters as in kivi2:g32,r128,s4,k4,h: group, f32 window, f32 sinks, key bits, Hadamard-rotated keys; p: keys quantized before RoPE, a: key bits allocated among channels, v: Hadamard-rotated values; the best 2-bit cache is kivi2:s4,p,a,v), streaming (4 attention sinks + the 1,020 most recent positions; streaming:sink4,window1020 or streaming:25% of the context); by attention, 1,024 positions kept per KV head unless budget<n> or <p>% says otherwise: h2o (heavy hitters + recent), tova (the latest query's choice), snapkv (a prompt compressed by its last window32 queries once read), chunkkv (the same by chunks of chunk10 positions); sink<n> keeps the first n; duo (the KV heads that copy most in a probe keep every position, the rest 4 sinks and a recent window, 1,024 positions per head on average; duo:25%,full11 sets how many heads stay whole). A selection takes f16 or q8 rows: snapkv:25%+q8.")
    var spec = "f32"

    func validate() throws {
        do { _ = try KVCacheSpec.parse(spec) } catch { throw ValidationError("--kv: \(error)") }
    }

    /// The parsed specification (validate() has checked it).
    var kv: KVCacheSpec { (try? KVCacheSpec.parse(spec)) ?? .f32 }
}

/// Sampling options shared by `run` and `chat`.
struct SamplingOptions: ParsableArguments {
    @Option(name: .long, help: "Temperature (0 = greedy).")
    var temp: Float = 0.8
    @Option(name: .long, help: "Top-k (0 = off).")
    var topK: Int = 40
    @Option(name: .long, help: "Top-p (1 = off).")
    var topP: Float = 0.95
    @Option(name: .long, help: "Min-p (0 = off).")
    var minP: Float = 0.05
    @Option(name: .long, help: "Repetition penalty (1 = off).")
    var repeatPenalty: Float = 1.0
    @Option(name: .long, help: "Random seed (default: random).")
    var seed: UInt64?

    func validate() throws {
        try check("--temp", temp, 0 ... 100)
        try check("--top-k", topK, 0 ... Limits.tokens)
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1], found \(topP)") }
        guard minP >= 0, minP < 1 else { throw ValidationError("--min-p must be in [0, 1), found \(minP)") }
        guard repeatPenalty > 0, repeatPenalty <= 100 else { throw ValidationError("--repeat-penalty must be in (0, 100], found \(repeatPenalty)") }
    }

    var settings: SamplerSettings {
        var s = SamplerSettings()
        s.temperature = temp
        s.topK = topK
        s.topP = topP
        s.minP = minP
        s.repetitionPenalty = repeatPenalty
        s.seed = seed ?? UInt64.random(in: 0 ... UInt64.max)
        return s
    }
}

/// The closing check of commands that write a model (quantize, prune): KL(input ‖ output) and top-1 agreement, both
/// models run on the same short text in windows of `--kl-context`.
struct KLCheckOptions: ParsableArguments {
    @Flag(inversion: .prefixedNo, help: "Close with KL(input ‖ output) and top-1 agreement on a short text (both models run on it).")
    var kl = true

    @Option(help: "Text for the closing KL check (default: Pride and Prejudice from the cached corpora).")
    var klText: String?

    @Option(help: "Use the first N bytes of the KL text.")
    var klBytes = 8000

    @Option(help: "Window length in tokens for the KL check.")
    var klContext = 512

    func validate() throws {
        try check("--kl-bytes", klBytes, 1 ... 1 << 30)
        try check("--kl-context", klContext, 2 ... Limits.context)
    }

    /// Refuses a window the input model was not trained for before the work, not after it (a checkpoint directory is
    /// checked by its session at the end).
    func checkContext(input: String) throws {
        guard kl, !FileManager.default.isDirectory(input) else { return }
        let config = try Architectures.configuration(gguf: GGUFFile(path: input))
        guard klContext <= config.contextLength else {
            throw CLIError("--kl-context \(klContext) exceeds the model's trained context of \(config.contextLength) tokens (allowed: 2 to \(config.contextLength))")
        }
    }

    /// The text's name and each candidate's agreement with the input model, or nil with `--no-kl`.
    func measure(input: String, candidates: @autoclosure () throws -> [TransformerModel], pool: WorkerPool,
                 quiet: Bool) throws -> (text: String, [ModelAgreement])? {
        guard kl else { return nil }
        let (name, bytes) = try klCheckText(klText, bytes: klBytes)
        let reference = try LanguageModel(path: input, layout: kernelLayout)
        let tokens = reference.tokenizer.encode(String(decoding: bytes, as: UTF8.self))
        let bos = reference.tokenizer.addBOS ? reference.tokenizer.bosID : nil
        let step = klContext - (bos == nil ? 0 : 1)
        return (name, try candidates().map { candidate in
            let progress = ProgressBar(total: (tokens.count + step - 1) / max(1, step), label: "kl", quiet: quiet)
            defer { progress.finish() }
            return try ModelAgreement.measure(reference: reference.model, candidate: candidate, tokens: tokens, bos: bos,
                                              context: klContext, pool: pool, progress: progress)
        })
    }
}
