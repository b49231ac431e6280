import Foundation
import Testing
import SquishFormats
import SquishTokenizer

/// The tokenizers of the tiny reference models (Tests/Fixtures/tiny-models, made with Hugging Face `tokenizers` by
/// Tests/Python/make_tiny_models.py): each `tokenizer.json` reads as Squish's tokenizer and encodes the reference
/// text (in `reference.safetensors`' metadata) to the tokens transformers' logits were computed on, BOS included
/// where the family adds one.
@Suite struct TinyModelTokenizerTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny-models").path

    struct Family {
        let tokenizer: Tokenizer
        let text: String
        let tokens: [Int]
        let config: JSONValue
    }

    static func load(_ family: String) throws -> Family {
        let dir = directory + "/" + family
        let reference = try SafetensorsFile(path: dir + "/reference.safetensors")
        let text = try #require(reference.metadata["text"])
        let tensor = try #require(reference.tensor(named: "tokens"))
        #expect(tensor.dtype == .I32)
        let tokens = reference.data(for: tensor).bindMemory(to: Int32.self).map(Int.init)
        let config = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/tokenizer_config.json"))))
        let tokenizer = try Tokenizer(huggingFacePath: dir + "/tokenizer.json", bosToken: config["bos_token"]?.string,
                                      eosToken: config["eos_token"]?.string)
        return Family(tokenizer: tokenizer, text: text, tokens: tokens, config: config)
    }

    @Test(arguments: ["llama", "qwen2", "qwen3", "gemma3"])
    func encodesReferenceText(family: String) throws {
        let f = try Self.load(family)
        #expect(f.tokens.count == 40)
        #expect(f.tokenizer.encode(f.text, addSpecial: true) == f.tokens)
        #expect(f.tokenizer.decode(f.tokens, skipSpecial: true) == f.text)
        switch family {
        case "gemma3":
            #expect(f.tokenizer.model == .sentencePieceBPE(addSpacePrefix: false))
            #expect(f.tokens.first == f.tokenizer.id(of: "<bos>"))
        case "llama":
            #expect(f.tokenizer.model == .byteLevelBPE(.llama3))
            #expect(f.tokens.first == f.tokenizer.id(of: "<|begin_of_text|>"))
        default:
            #expect(f.tokenizer.model == .byteLevelBPE(.qwen2))
            #expect(!f.tokenizer.addBOS)
        }
    }
}
