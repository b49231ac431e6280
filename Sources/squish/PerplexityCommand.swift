import ArgumentParser
import Foundation
import SquishCore
import SquishEval
import SquishKernels
import SquishModel

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity of a model on a text file (llama.cpp's protocol or non-overlapping windows).")

    @Option(help: "Model file, Hugging Face directory or known model name, e.g. gemma3-270m (default: the cached default model).")
    var model: String?

    @Option(help: "UTF-8 text file to score.")
    var text: String

    @Option(help: "Score only the first N bytes of the file (must end on a UTF-8 character boundary).")
    var bytes: Int?

    @Option(help: "Tokens per chunk/window.")
    var context = 512

    @Option(help: "llamacpp: chunks, second half scored (as llama-perplexity); windows: every token scored.")
    var `protocol`: PerplexityProtocol = .llamacpp

    @OptionGroup var threading: ThreadOptions

    @OptionGroup var cache: KVCacheOptions

    @Flag(help: "Use f32 activations in the matmuls (slow reference mode).")
    var exact = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        try check("--context", context, 4 ... Limits.context)
        if let bytes { try check("--bytes", bytes, 1 ... Int.max) }
    }

    func run() throws {
        let loaded = try loadModel(try resolveModelPath(model))
        let pool = threading.pool(quiet: json)
        try checkContext(context, for: loaded.model, threads: pool.threadCount)
        guard var data = FileManager.default.contents(atPath: text) else { throw CLIError("\(text): cannot read the file") }
        if let bytes, bytes < data.count { data = data.prefix(bytes) }
        guard !data.isEmpty else { throw CLIError("\(text): the file is empty") }
        guard let string = String(data: data, encoding: .utf8) else { throw CLIError("\(text): not valid UTF-8") }
        let tokens = loaded.tokenizer.encode(string)
        let bos = loaded.tokenizer.addBOS ? loaded.tokenizer.bosID : nil
        let session = try ModelSession(model: loaded.model, pool: pool, contextLength: context, kv: cache.kv, exactActivations: exact)
        let chunks = Perplexity.chunkCount(tokens: tokens.count, context: context, protocol: `protocol`, hasBOS: bos != nil)
        let progress = ProgressBar(total: chunks, label: "perplexity", quiet: json)
        let start = Date()
        let result = try Perplexity.evaluate(session: session, tokens: tokens, context: context, protocol: `protocol`,
                                             bos: bos, progress: progress)
        progress.finish()
        if json {
            print(try jsonString(result))
        } else {
            let line = result.runningPerplexity.enumerated().map { String(format: "[%d]%.4f", $0.offset + 1, $0.element) }
            print(line.joined(separator: ","))
            print(String(format: "Final estimate: PPL = %.4f +/- %.5f  (%d tokens scored in %d chunks of %d, protocol %@, %.1f s)",
                         result.perplexity, result.stderr, result.tokens, result.chunks, context, `protocol`.rawValue,
                         Date().timeIntervalSince(start)))
        }
    }
}

extension PerplexityProtocol: ExpressibleByArgument {}
