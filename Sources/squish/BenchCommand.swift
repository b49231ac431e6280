import ArgumentParser
import Foundation
import SquishCore
import SquishEval
import SquishKernels
import SquishModel

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
