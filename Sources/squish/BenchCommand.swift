import ArgumentParser
import Foundation
import SquishCore
import SquishEval
import SquishKernels
import SquishData
import SquishFormats
import SquishModel
import SquishTokenizer

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prompt-processing and generation speed like llama-bench (warm-up, repetitions, mean ± sd).")

    @Option(help: "Model file, Hugging Face directory or known model name, e.g. gemma3-270m (default: the cached default model).")
    var model: String?

    @Option(name: [.customShort("p"), .long], help: "Prompt tokens processed in one batch.")
    var promptTokens = 512

    @Option(name: [.customShort("n"), .long], help: "Tokens generated one at a time.")
    var generatedTokens = 128

    @Option(name: [.customShort("d"), .long], help: "Positions in the cache before each timed run (decoding at depth; prefilled once, untimed).")
    var depth = 0

    @OptionGroup var threading: ThreadOptions

    @OptionGroup var cache: KVCacheOptions

    @Option(name: [.customShort("r"), .long], help: "Repetitions after the warm-up run.")
    var repetitions = 5

    @Flag(help: "Benchmark the tokenizer instead: encoding speed on one core in MB/s (median of the repetitions).")
    var tokenizer = false

    @Option(help: "Text for --tokenizer (default: all six Austen novels).")
    var text: String?

    @Flag(help: "Measure the machine's DRAM read bandwidth instead: GB/s with 1 thread and with all threads (median of -r runs).")
    var memory = false

    @Option(name: .customLong("memory-mib"), help: "Buffer size for --memory, MiB (far beyond the caches).")
    var memoryMiB = 512

    @Flag(help: "After the model benchmark, also measure the memory read bandwidth and report the generation's weights GB/s as a fraction of it.")
    var vsMemory = false

    @Flag(help: "Benchmark the matmul kernels instead: GEMV and GEMM per block type on the shapes of the default model, TinyLlama-1.1B and Gemma-3-270M, each GEMM's GFLOP/s as a fraction of the machine's int8 multiply-add peak (measured first, same threads).")
    var kernels = false

    @Option(help: "Block types for --kernels, comma-separated (default: Q4_0,Q4_1,Q5_0,Q5_1,Q8_0,IQ4_NL,Q2_K..Q6_K,TQ1_0,TQ2_0,SQ2_G64,SQ3_G32,SQ3_G64,SQ4_G64; SQ2-SQ4 and TQ types also through the lookup-table kernel, path 'lut').")
    var types: String?

    @Option(help: "Shapes for --kernels: all, 135m, 1.1b, gemma3-270m, or ROWSxCOLUMNS[,ROWSxCOLUMNS...].")
    var shapes = "all"

    @Option(help: "Tokens of the GEMM case of --kernels (the GEMV case is 1 token).")
    var gemmTokens = 64

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        try check("-p/--prompt-tokens", promptTokens, 0 ... Limits.tokens)
        try check("-n/--generated-tokens", generatedTokens, 0 ... Limits.tokens)
        try check("-d/--depth", depth, 0 ... Limits.context)
        guard promptTokens + generatedTokens > 0 else { throw ValidationError("-p and -n must not both be 0") }
        try check("-r/--repetitions", repetitions, 1 ... 10_000)
        // The buffer is read by every thread: at most half the memory, so that the measurement does not swap.
        try check("--memory-mib", memoryMiB, 1 ... max(1, Int(ProcessInfo.processInfo.physicalMemory >> 21)))
        try check("--gemm-tokens", gemmTokens, 1 ... 4096)
        guard [memory, kernels, tokenizer].filter({ $0 }).count <= 1 else {
            throw ValidationError("--memory, --kernels and --tokenizer are separate benchmarks: give one")
        }
    }

    func run() throws {
        if memory { return runMemory() }
        if kernels { return try runKernels() }
        let path = try resolveModelPath(model)
        if tokenizer { return try runTokenizer(path: path) }
        let llama = try TransformerModel.load(path: path, layout: kernelLayout)
        let pool = threading.pool(quiet: json)
        let context = depth + max(promptTokens, generatedTokens, 1)
        try checkContext(context, for: llama, option: depth > 0 ? "-d + -p/-n" : "-p/-n", threads: pool.threadCount)
        let session = try ModelSession(model: llama, pool: pool, contextLength: context,
                                       maxBatch: max(1, min(max(promptTokens, depth), 512)), kv: cache.kv)
        let progress = ProgressBar(total: repetitions + 1, label: "bench", quiet: json)
        let r = try ModelBench.run(session: session, promptTokens: promptTokens, generatedTokens: generatedTokens,
                                   repetitions: repetitions, depth: depth, kvCache: cache.kv.description, progress: progress)
        progress.finish()
        // Measured right after the model, so that both see the same load on the machine.
        var bandwidth: MemoryBandwidthResult?
        if vsMemory && generatedTokens > 0 {
            let counts = pool.threadCount > 1 ? [1, pool.threadCount] : [1]
            let mp = ProgressBar(total: counts.count * (repetitions + 1), label: "memory", quiet: json)
            bandwidth = MemoryBench.run(bytes: memoryMiB << 20, threadCounts: counts, repetitions: repetitions, progress: mp)
            mp.finish()
        }
        if json {
            if let bandwidth {
                struct Combined: Encodable {
                    let bench: BenchResult, memory: MemoryBandwidthResult, weights_fraction_of_bandwidth: Double
                }
                print(try jsonString(Combined(bench: r, memory: bandwidth,
                                              weights_fraction_of_bandwidth: r.weightsGigabytesPerSecond / bandwidth.best)))
            } else {
                print(try jsonString(r))
            }
        } else {
            let name = URL(fileURLWithPath: path).lastPathComponent
            print("model: \(name)   threads: \(r.threads)   repetitions: \(r.repetitions)")
            print(String(format: "KV cache %@: %.0f bytes/token, %.2f MB at %d positions", r.kvCache, r.kvCacheBytesPerToken,
                         Double(r.kvCacheBytes) / 1e6, depth + max(promptTokens, generatedTokens)))
            let at = depth > 0 ? " @ d\(depth)" : ""
            if promptTokens > 0 {
                print(String(format: "pp%-5d%@ %8.2f ± %.2f tokens/s", promptTokens, at, r.promptTokensPerSecond, r.promptTokensPerSecondSD))
            }
            if generatedTokens > 0 {
                print(String(format: "tg%-5d%@ %8.2f ± %.2f tokens/s   weights %.1f MB/token, %.2f GB/s", generatedTokens, at,
                             r.generationTokensPerSecond, r.generationTokensPerSecondSD, Double(r.weightBytesPerToken) / 1e6,
                             r.weightsGigabytesPerSecond))
            }
            if let bandwidth {
                let per = bandwidth.results.map { String(format: "%.2f GB/s with %d", $0.gigabytesPerSecond, $0.threads) }
                print(String(format: "memory read bandwidth %@ threads: weights read at %.0f%% of the best", per.joined(separator: ", "),
                             100 * r.weightsGigabytesPerSecond / bandwidth.best))
            }
        }
    }
}

extension Bench {
    /// Encodes the whole text once as a warm-up, then `repetitions` times from a cold piece cache; reports the median.
    func runTokenizer(path: String) throws {
        let tok = try Tokenizer(gguf: try GGUFFile(path: path))
        let files = text.map { [$0] } ?? Corpora.austenNovels.map(Corpora.austenPath)
        var texts: [String] = []
        for f in files {
            guard let data = FileManager.default.contents(atPath: f) else { throw CLIError("\(f): cannot read (run `squish fetch`?)") }
            guard let s = String(data: data, encoding: .utf8) else { throw CLIError("\(f): not valid UTF-8") }
            texts.append(s)
        }
        let bytes = texts.reduce(0) { $0 + $1.utf8.count }
        var tokens = 0
        var speeds: [Double] = []
        let progress = ProgressBar(total: repetitions + 1, label: "tokenizer", quiet: json)
        for rep in 0 ... repetitions {
            tok.clearCache()
            let t0 = DispatchTime.now().uptimeNanoseconds
            tokens = 0
            for s in texts { tokens += tok.encode(s).count }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if rep > 0 { speeds.append(Double(bytes) / dt / 1e6) }
            progress.advance()
        }
        progress.finish()
        speeds.sort()
        let median = speeds[speeds.count / 2]
        struct Result: Encodable { let bytes: Int; let tokens: Int; let megabytes_per_second: Double; let samples: [Double] }
        let r = Result(bytes: bytes, tokens: tokens, megabytes_per_second: median, samples: speeds)
        if json {
            print(try jsonString(r))
        } else {
            print(String(format: "tokenizer: %d bytes -> %d tokens, %.2f MB/s on one core (median of %d)", bytes, tokens, median, speeds.count))
        }
    }
}

extension Bench {
    /// DRAM read bandwidth with 1 thread and with the pool's threads.
    func runMemory() {
        let all = threading.count
        let counts = all > 1 ? [1, all] : [1]
        let progress = ProgressBar(total: counts.count * (repetitions + 1), label: "memory", quiet: json)
        let r = MemoryBench.run(bytes: memoryMiB << 20, threadCounts: counts, repetitions: repetitions, progress: progress)
        progress.finish()
        if json {
            print((try? jsonString(r)) ?? "{}")
        } else {
            print(String(format: "memory read bandwidth, %d MiB buffer, median of %d (%@):", r.bufferBytes >> 20, r.repetitions,
                         r.usesAVX2 ? "AVX2" : "portable"))
            for e in r.results { print(String(format: "  %2d thread%@ %8.2f GB/s", e.threads, e.threads == 1 ? " " : "s", e.gigabytesPerSecond)) }
        }
    }

    func kernelShapes() throws -> [KernelShape] {
        switch shapes.lowercased() {
        case "all": return KernelShape.smollm2 + KernelShape.tinyllama + KernelShape.gemma3
        case "135m": return KernelShape.smollm2
        case "1.1b": return KernelShape.tinyllama
        case "gemma3-270m": return KernelShape.gemma3
        default:
            return try shapes.split(separator: ",").map { item in
                let parts = item.lowercased().split(separator: "x")
                guard parts.count == 2, let r = Int(parts[0]), let c = Int(parts[1]), r > 0, c > 0, r <= 1 << 20, c <= 1 << 20,
                      r * c <= 1 << 30 else {
                    throw ValidationError("--shapes: '\(item)' is not ROWSxCOLUMNS with 1 to 2^20 rows and columns and at most 2^30 weights")
                }
                return KernelShape(name: "\(r)x\(c)", rows: r, columns: c)
            }
        }
    }

    /// GEMV and GEMM throughput per block type through the model's Matmul.
    func runKernels() throws {
        let list = try types.map { s in
            try s.split(separator: ",").map { name -> GGMLType in
                guard let t = GGMLType(name: String(name).trimmingCharacters(in: .whitespaces)), RandomWeights.supports(t),
                      Matmul.supports(t) else { throw ValidationError("--types: no benchmark for '\(name)'") }
                return t
            }
        } ?? KernelBench.defaultTypes
        let shapeList = try kernelShapes()
        let pool = threading.pool(quiet: json)
        let progress = ProgressBar(total: list.count * shapeList.count, label: "kernels", quiet: json)
        let r = try KernelBench.run(types: list, shapes: shapeList, tokens: [1, gemmTokens], pool: pool, repetitions: repetitions, repack: kernelLayout.repack) { _ in
            progress.advance()
        }
        progress.finish()
        if json {
            print(try jsonString(r))
            return
        }
        print("matmul through Matmul, \(r.threads) threads, \(r.usesVNNI ? "AVX512-VNNI" : r.usesAVX2 ? "AVX2" : "portable"), median of \(r.repetitions); GEMV = 1 token, GEMM = \(gemmTokens) tokens")
        print(String(format: "int8 peak (%@ multiply-add chains, %d threads): %.1f GOP/s; %% peak = GFLOP/s of the GEMM over it",
                     r.int8Peak.path, r.int8Peak.threads, r.int8Peak.gigaOpsPerSecond))
        print("type     shape              rows x cols   path        MB  copies | GEMV GFLOP/s   GB/s | GEMM GFLOP/s   GB/s % peak")
        var i = 0
        while i < r.rows.count {
            let a = r.rows[i]
            let b = i + 1 < r.rows.count && r.rows[i + 1].type == a.type && r.rows[i + 1].shape == a.shape
                && r.rows[i + 1].path == a.path ? r.rows[i + 1] : nil
            func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
            print(pad(a.type, 8) + " " + pad(a.shape, 16) + String(format: " %6d x %-5d ", a.rows, a.columns) + pad(a.path, 10)
                  + String(format: " %6.2f %6d | %12.2f %6.2f | %12.2f %6.2f %6.1f", Double(a.weightBytes) / 1e6, a.copies,
                         a.gflops, a.weightGigabytesPerSecond, b?.gflops ?? .nan, b?.weightGigabytesPerSecond ?? .nan,
                         100 * (b?.fractionOfInt8Peak ?? .nan)))
            i += b == nil ? 1 : 2
        }
        if !r.skipped.isEmpty { print("skipped (rows not whole blocks): " + r.skipped.joined(separator: ", ")) }
    }
}
