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

    @Option(help: "Model file (default: the cached default model).")
    var model: String?

    @Option(name: [.customShort("p"), .long], help: "Prompt tokens processed in one batch.")
    var promptTokens = 512

    @Option(name: [.customShort("n"), .long], help: "Tokens generated one at a time.")
    var generatedTokens = 128

    @Option(name: [.customShort("t"), .long], help: "Threads (default: all cores).")
    var threads: Int?

    @Option(name: [.customShort("r"), .long], help: "Repetitions after the warm-up run.")
    var repetitions = 5

    @Flag(help: "Benchmark the tokenizer instead: encoding speed on one core in MB/s (median of the repetitions).")
    var tokenizer = false

    @Option(help: "Text for --tokenizer (default: all six Austen novels).")
    var text: String?

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard promptTokens >= 0, generatedTokens >= 0, promptTokens + generatedTokens > 0 else {
            throw ValidationError("-p and -n must be non-negative and not both 0")
        }
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        let path = try resolveModelPath(model)
        if tokenizer { return try runTokenizer(path: path) }
        let llama = try LlamaModel(path: path)
        let pool = WorkerPool(threads: threads)
        let context = max(promptTokens, generatedTokens, 1)
        let session = LlamaSession(model: llama, pool: pool, contextLength: context, maxBatch: max(1, min(promptTokens, 512)))
        let progress = ProgressBar(total: repetitions + 1, label: "bench", quiet: json)
        let r = try ModelBench.run(session: session, promptTokens: promptTokens, generatedTokens: generatedTokens,
                                   repetitions: repetitions, progress: progress)
        progress.finish()
        if json {
            print(try jsonString(r))
        } else {
            let name = URL(fileURLWithPath: path).lastPathComponent
            print("model: \(name)   threads: \(r.threads)   repetitions: \(r.repetitions)")
            if promptTokens > 0 {
                print(String(format: "pp%-5d %8.2f ± %.2f tokens/s", promptTokens, r.promptTokensPerSecond, r.promptTokensPerSecondSD))
            }
            if generatedTokens > 0 {
                print(String(format: "tg%-5d %8.2f ± %.2f tokens/s", generatedTokens, r.generationTokensPerSecond,
                             r.generationTokensPerSecondSD))
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
