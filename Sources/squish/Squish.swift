import ArgumentParser

@main
struct Squish: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squish",
        abstract: "Make large language models small and fast: read, compress, evaluate and run them.",
        subcommands: [Fetch.self, Inspect.self, Tokenize.self, Run.self, Chat.self, PerplexityCommand.self, EvalCommand.self, Bench.self, Synth.self, Quantize.self, Prune.self, Compress.self]
    )
}
