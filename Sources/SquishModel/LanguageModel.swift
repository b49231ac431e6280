import Foundation
import SquishFormats
import SquishTokenizer

/// A model ready to run: weights, tokenizer and chat template, from a GGUF file or a Hugging Face checkpoint
/// directory (config.json, safetensors, tokenizer.json, tokenizer_config.json), with the tokenizer checked against
/// the model's vocabulary.
public final class LanguageModel {
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
            tokenizer = try Self.checkpointTokenizer(directory: path, config: hf)
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
            // llama.cpp requires one embedding row per token of its own vocabulary; a stored tokenizer.json (a
            // converted checkpoint) may have fewer tokens than rows, as checkpoints do.
            let embedded = file["tokenizer.ggml.model"] == nil && file["tokenizer.huggingface.json"] != nil
            guard tokenizer.vocabularySize == model.config.vocabSize || (embedded && tokenizer.vocabularySize < model.config.vocabSize) else {
                throw ModelError.vocabularyMismatch(path: path, reason: "tokenizer.ggml.tokens has \(tokenizer.vocabularySize) tokens, but token_embd.weight has \(model.config.vocabSize) rows")
            }
            template = ChatTemplate(jinja: file["tokenizer.chat_template"]?.string, architecture: file.architecture, tokenizer: tokenizer)
        }
    }

    /// Bytes on disk: the GGUF file, or the sum of the checkpoint directory's files.
    public var fileBytes: Int { Self.fileBytes(path) }

    public static func fileBytes(_ path: String) -> Int {
        func size(_ p: String) -> Int { ((try? FileManager.default.attributesOfItem(atPath: p))?[.size] as? NSNumber)?.intValue ?? 0 }
        guard isDirectory(path) else { return size(path) }
        return ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).reduce(0) { $0 + size(path + "/" + $1) }
    }

    /// The tokenizer of a GGUF file or checkpoint directory, without loading the weights.
    public static func tokenizer(path: String) throws -> Tokenizer {
        if isDirectory(path) { return try checkpointTokenizer(directory: path, config: try HFConfig.load(path: path + "/config.json")) }
        return try Tokenizer(gguf: try GGUFFile(path: path))
    }

    /// `tokenizer.json` with BOS/EOS as config.json names them.
    static func checkpointTokenizer(directory: String, config hf: HFConfig) throws -> Tokenizer {
        let tokenizerPath = directory + "/tokenizer.json"
        let base = try Tokenizer(tokenizerJSON: tokenizerPath)
        let bos = hf.bosTokenID?.all.first, eos = hf.eosTokenID?.all.first
        for id in [bos, eos].compactMap({ $0 }) where id >= base.vocabularySize {
            throw ModelError.vocabularyMismatch(path: directory, reason: "config.json names token \(id), but \(tokenizerPath) has \(base.vocabularySize) tokens")
        }
        return try Tokenizer(tokenizerJSON: tokenizerPath, bosToken: bos.map(base.piece), eosToken: eos.map(base.piece))
    }

    /// Ids that end generation: EOS and the template's end-of-turn markers.
    public var stopTokens: Set<Int> {
        var s = Set<Int>()
        if let e = tokenizer.eosID { s.insert(e) }
        for t in template.endOfTurnTokens { if let id = tokenizer.id(of: t) { s.insert(id) } }
        return s
    }
}
