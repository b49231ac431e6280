import ArgumentParser
import Foundation
import SquishCore
import SquishFormats
import SquishModel
import SquishTokenizer

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids (and pieces) of a text with a model's tokenizer.",
        discussion: "The text is taken byte for byte: no newline conversion, and special tokens are plain text unless --special.")

    @Option(help: "Model file, Hugging Face directory or known model name whose tokenizer to use (default: the cached default model).")
    var model: String?

    @Flag(help: "Recognize special tokens written in the text (e.g. <|im_start|>).")
    var special = false

    @Flag(help: "Add BOS/EOS as the model's metadata asks.")
    var addSpecial = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    @Argument(help: "Text to tokenize; '-' or nothing reads standard input.")
    var text: String?

    func run() throws {
        let path = try resolveModelPath(model)
        let tokenizer = try LanguageModel.tokenizer(path: path)
        let input: String
        if let text, text != "-" {
            input = text
        } else {
            let data = FileHandle.standardInput.readDataToEndOfFile()
            guard let s = String(data: data, encoding: .utf8) else { throw CLIError("standard input is not valid UTF-8") }
            input = s
        }
        let ids = tokenizer.encode(input, parseSpecial: special, addSpecial: addSpecial)
        if json {
            struct Result: Encodable { let ids: [Int]; let pieces: [String]; let count: Int }
            print(try jsonString(Result(ids: ids, pieces: ids.map(tokenizer.piece), count: ids.count)))
        } else {
            print(ids.map(String.init).joined(separator: " "))
            print(ids.map { "\(tokenizer.piece($0).debugDescription)" }.joined(separator: " "))
            print("\(ids.count) tokens")
        }
    }
}
