import ArgumentParser
import Foundation
import SquishCore

@main
struct Squish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squish",
        abstract: "Make large language models small and fast: read, compress, evaluate and run them.",
        subcommands: [Fetch.self, Inspect.self, Tokenize.self, Run.self, Chat.self, PerplexityCommand.self, EvalCommand.self, Bench.self, Synth.self, Quantize.self, Prune.self, Compress.self, Serve.self, Zip.self, Unzip.self, Pack.self, Unpack.self]
    )

    /// Parses and runs a command. Temporary files are removed if a signal interrupts it; an error ends it with one
    /// line on stderr (exit status 1), a usage error as ArgumentParser reports it (status 64); every message is
    /// escaped for the terminal, since it may quote a file's contents or an argument.
    static func main() async {
        TemporaryFiles.removeOnSignals()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()  // serve
            } else {
                try command.run()
            }
        } catch {
            reportAndExit(error)
        }
    }

    static func reportAndExit(_ error: Error) -> Never {
        let code = exitCode(for: error)
        if code == .success { exit(withError: error) }  // --help, --version: ArgumentParser prints them
        let fromArgumentParser = String(reflecting: type(of: error)).hasPrefix("ArgumentParser.")
        if fromArgumentParser {
            // Usage errors: the message, then the usage lines; each line escaped on its own.
            let text = fullMessage(for: error).split(separator: "\n", omittingEmptySubsequences: false)
                .map { TerminalText.escape(String($0)) }.joined(separator: "\n")
            FileHandle.standardError.write(Data((text + "\n").utf8))
            Foundation.exit(code.rawValue)
        }
        FileHandle.standardError.write(Data(("Error: " + TerminalText.escape(String(describing: error)) + "\n").utf8))
        Foundation.exit(1)
    }
}
