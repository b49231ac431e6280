import ArgumentParser
import Foundation
import SquishCore
import SquishKernels
import SquishModel
import SquishTokenizer

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a prompt, streaming it as it is produced; a stats line goes to stderr.")

    @Option(help: "Model file, Hugging Face directory or known model name, e.g. gemma3-270m (default: the cached default model).")
    var model: String?

    @Option(help: "Prompt text (taken as is; use `squish chat` for the chat template).")
    var prompt: String

    @Option(name: [.customShort("n"), .long], help: "Most tokens to generate.")
    var maxTokens = 128

    @OptionGroup var sampling: SamplingOptions

    @OptionGroup var threading: ThreadOptions

    @OptionGroup var cache: KVCacheOptions

    @Option(help: "Context window in tokens (default: the model's, at most 4096; at most the model's trained context).")
    var context: Int?

    @Flag(help: "Recognize special tokens written in the prompt.")
    var special = false

    @Flag(help: "Print the text and statistics as one JSON object at the end instead of streaming.")
    var json = false

    func validate() throws {
        try check("-n/--max-tokens", maxTokens, 0 ... Limits.tokens)
        if let context { try check("--context", context, 1 ... Limits.context) }
    }

    func run() throws {
        let loaded = try loadModel(try resolveModelPath(model))
        let tokenizer = loaded.tokenizer
        let pool = threading.pool(quiet: json)
        let ctx = context ?? min(loaded.model.config.contextLength, 4096)
        try checkContext(ctx, for: loaded.model, threads: pool.threadCount)
        let ids = tokenizer.encode(prompt, parseSpecial: special, addSpecial: true)
        guard !ids.isEmpty else { throw CLIError("the prompt is empty") }
        guard ids.count < ctx else {
            throw CLIError("the prompt has \(ids.count) tokens; the context window is \(ctx) (raise --context)")
        }
        // Activation buffers sized for this prompt (prefill in one batch of at most 512 tokens).
        let session = try ModelSession(model: loaded.model, pool: pool, contextLength: ctx, maxBatch: min(ids.count, 512), kv: cache.kv)
        var generator = Generator(session: session, sampler: sampling.settings)
        var printer = StreamingPrinter()
        var generated: [Int] = []
        let stats = try generator.generate(prompt: ids, maxTokens: min(maxTokens, ctx - ids.count), stop: loaded.stopTokens) { token in
            generated.append(token)
            if !json { printer.write(tokenizer.bytes(for: token)) }
            return true
        }
        // What the cache holds for the positions this run filled.
        let cacheBytes = session.cache.bytes(positions: session.position)
        if json {
            struct Result: Encodable {
                let text: String
                let tokens: [Int]
                let stats: GenerationStats
                let prompt_tokens_per_second: Double
                let generation_tokens_per_second: Double
                let kv_cache: String
                let kv_cache_bytes: Int
                let kv_cache_positions: Int
            }
            print(try jsonString(Result(text: tokenizer.decode(generated), tokens: generated, stats: stats,
                                        prompt_tokens_per_second: stats.promptTokensPerSecond,
                                        generation_tokens_per_second: stats.generationTokensPerSecond,
                                        kv_cache: cache.kv.description, kv_cache_bytes: cacheBytes,
                                        kv_cache_positions: session.position)))
        } else {
            printer.write(Array("\n".utf8))
            printer.flush()
            printError(String(format: "prompt: %d tokens, %.1f tokens/s | generation: %d tokens, %.1f tokens/s | stopped by %@ | KV cache %@: %.2f MB for %d positions",
                              stats.promptTokens, stats.promptTokensPerSecond, stats.generatedTokens,
                              stats.generationTokensPerSecond, stats.stoppedBy, cache.kv.description,
                              Double(cacheBytes) / 1e6, session.position))
        }
    }
}

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat with a model interactively using its chat template; Ctrl-D exits.")

    @Option(help: "Model file, Hugging Face directory or known model name, e.g. gemma3-270m (default: the cached default model).")
    var model: String?

    @Option(help: "System prompt (default: the template's own, if any).")
    var system: String?

    @Option(name: [.customShort("n"), .long], help: "Most tokens per reply.")
    var maxTokens = 512

    @OptionGroup var sampling: SamplingOptions

    @OptionGroup var threading: ThreadOptions

    @OptionGroup var cache: KVCacheOptions

    @Option(help: "Context window in tokens (default: the model's, at most 4096; at most the model's trained context).")
    var context: Int?

    func validate() throws {
        try check("-n/--max-tokens", maxTokens, 0 ... Limits.tokens)
        if let context { try check("--context", context, 1 ... Limits.context) }
    }

    func run() throws {
        let loaded = try loadModel(try resolveModelPath(model))
        let tokenizer = loaded.tokenizer
        let pool = threading.pool()
        let ctx = context ?? min(loaded.model.config.contextLength, 4096)
        try checkContext(ctx, for: loaded.model, threads: pool.threadCount)
        let session = try ModelSession(model: loaded.model, pool: pool, contextLength: ctx, maxBatch: 256, kv: cache.kv)
        var generator = Generator(session: session, sampler: sampling.settings)
        var messages: [ChatMessage] = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
        let interactive = isatty(STDIN_FILENO) != 0
        printError("squish chat: \(URL(fileURLWithPath: loaded.path).lastPathComponent), context \(ctx) tokens. Ctrl-D to exit.")
        while true {
            if interactive { FileHandle.standardOutput.write(Data("> ".utf8)) }
            guard let line = readLine(strippingNewline: true) else { break }
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            messages.append(ChatMessage(role: "user", content: line))
            // Re-render the whole conversation; drop the oldest turns until it fits with room for a reply.
            var ids: [Int] = []
            while true {
                ids = loaded.chatTokens(messages)
                let keepSystem = messages.first?.role == "system" ? 1 : 0
                if ids.count + min(maxTokens, ctx / 4) <= ctx || messages.count <= keepSystem + 1 { break }
                messages.remove(at: keepSystem)
            }
            guard ids.count < ctx else {
                printError("message too long for the context window (\(ids.count) tokens); try a shorter one")
                messages.removeLast()
                continue
            }
            session.reset()
            var printer = StreamingPrinter()
            var reply: [Int] = []
            let stats = try generator.generate(prompt: ids, maxTokens: min(maxTokens, ctx - ids.count),
                                               stop: loaded.stopTokens) { token in
                reply.append(token)
                printer.write(tokenizer.bytes(for: token))
                return true
            }
            printer.write(Array("\n".utf8))
            printer.flush()
            messages.append(ChatMessage(role: "assistant", content: tokenizer.decode(reply)))
            printError(String(format: "[%d tokens, %.1f tokens/s]", stats.generatedTokens, stats.generationTokensPerSecond))
        }
        FileHandle.standardOutput.write(Data("\n".utf8))
    }
}
