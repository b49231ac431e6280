import Foundation
import SquishFormats
import SquishTokenizer

/// A model ready to run: weights, tokenizer and chat template, from a GGUF file or a Hugging Face checkpoint
/// directory (config.json, safetensors, tokenizer.json, tokenizer_config.json), with the tokenizer checked against
/// the model's vocabulary.
public final class LanguageModel: Sendable {
    public let path: String
    public let model: TransformerModel
    public let tokenizer: Tokenizer
    public let template: ChatTemplate

    public init(path: String, layout: KernelLayout = KernelLayout()) throws {
        self.path = path
        if isDirectory(path) {
            model = try TransformerModel(hfDirectory: path, layout: layout)
            let hf = (model.storage as! HFCheckpoint).hfConfig
            let tokenizerPath = path + "/tokenizer.json"
            let base = try Tokenizer(tokenizerJSON: tokenizerPath)
            let bos = hf.bosTokenID?.all.first, eos = hf.eosTokenID?.all.first
            for id in [bos, eos].compactMap({ $0 }) where id >= base.vocabularySize {
                throw ModelError.vocabularyMismatch(path: path, reason: "config.json names token \(id), but \(tokenizerPath) has \(base.vocabularySize) tokens")
            }
            tokenizer = try Tokenizer(tokenizerJSON: tokenizerPath, bosToken: bos.map(base.piece), eosToken: eos.map(base.piece))
            // Checkpoints often pad the embedding beyond the tokenizer (Qwen2.5: 151,936 rows for 151,665 tokens).
            guard tokenizer.vocabularySize <= model.config.vocabSize else {
                throw ModelError.vocabularyMismatch(path: path, reason: "\(tokenizerPath) has \(tokenizer.vocabularySize) tokens, but the model's embedding has \(model.config.vocabSize) rows")
            }
            var jinja: String?
            let configPath = path + "/tokenizer_config.json"
            if FileManager.default.fileExists(atPath: configPath) {
                guard let data = FileManager.default.contents(atPath: configPath) else {
                    throw FormatError.missing(path: configPath, what: "a readable file")
                }
                do {
                    jinja = try JSONValue.parse([UInt8](data))["chat_template"]?.string
                } catch {
                    throw FormatError.invalid(path: configPath, offset: nil, reason: "not valid JSON (\(error))")
                }
            }
            template = ChatTemplate(jinja: jinja, architecture: hf.modelType, tokenizer: tokenizer)
        } else {
            let file = try GGUFFile(path: path)
            model = try TransformerModel(gguf: file, layout: layout)
            tokenizer = try Tokenizer(gguf: file)
            // llama.cpp requires one embedding row per token.
            guard tokenizer.vocabularySize == model.config.vocabSize else {
                throw ModelError.vocabularyMismatch(path: path, reason: "tokenizer.ggml.tokens has \(tokenizer.vocabularySize) tokens, but token_embd.weight has \(model.config.vocabSize) rows")
            }
            template = ChatTemplate(jinja: file["tokenizer.chat_template"]?.string, architecture: file.architecture, tokenizer: tokenizer)
        }
    }

    /// The prompt tokens of a conversation in the model's chat template (ending where the assistant's reply begins
    /// when `addGenerationPrompt`). Templates that spell out the BOS token themselves (Llama 3) get no second one.
    public func chatTokens(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) -> [Int] {
        let rendered = template.render(messages, addGenerationPrompt: addGenerationPrompt)
        let bosText = tokenizer.bosID.map { tokenizer.tokens[$0] } ?? ""
        let templateHasBOS = !bosText.isEmpty && rendered.hasPrefix(bosText)
        return tokenizer.encode(rendered, parseSpecial: true, addSpecial: !templateHasBOS)
    }

    /// Ids that end generation: EOS and the template's end-of-turn markers.
    public var stopTokens: Set<Int> {
        var s = Set<Int>()
        if let e = tokenizer.eosID { s.insert(e) }
        for t in template.endOfTurnTokens { if let id = tokenizer.id(of: t) { s.insert(id) } }
        return s
    }
}
