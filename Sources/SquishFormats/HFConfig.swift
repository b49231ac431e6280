import Foundation

/// A Hugging Face `config.json` for Llama-family checkpoints (Llama 2/3, SmolLM2, Qwen2, Mistral).
public struct HFConfig: Codable, Sendable, Equatable {
    public struct RopeScaling: Codable, Sendable, Equatable {
        public var type: String?
        public var ropeType: String?
        public var factor: Double?
        public var lowFreqFactor: Double?
        public var highFreqFactor: Double?
        public var originalMaxPositionEmbeddings: Int?

        enum CodingKeys: String, CodingKey {
            case type, factor
            case ropeType = "rope_type", lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
            case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        }

        public init(type: String? = nil, ropeType: String? = nil, factor: Double? = nil, lowFreqFactor: Double? = nil,
                    highFreqFactor: Double? = nil, originalMaxPositionEmbeddings: Int? = nil) {
            self.type = type
            self.ropeType = ropeType
            self.factor = factor
            self.lowFreqFactor = lowFreqFactor
            self.highFreqFactor = highFreqFactor
            self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
        }

        /// "linear", "llama3", "dynamic", ...
        public var kind: String { ropeType ?? type ?? "default" }
    }

    /// An int or a list of ints (e.g. `eos_token_id`).
    public enum TokenIDs: Codable, Sendable, Equatable {
        case one(Int)
        case many([Int])
        public init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let i = try? c.decode(Int.self) { self = .one(i) } else { self = .many(try c.decode([Int].self)) }
        }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .one(let i): try c.encode(i)
            case .many(let a): try c.encode(a)
            }
        }
        public var all: [Int] {
            switch self {
            case .one(let i): return [i]
            case .many(let a): return a
            }
        }
    }

    public var architectures: [String]?
    public var modelType: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int?
    public var headDim: Int?
    public var rmsNormEps: Double?
    public var ropeTheta: Double?
    public var ropeScaling: RopeScaling?
    public var maxPositionEmbeddings: Int?
    public var vocabSize: Int
    public var tieWordEmbeddings: Bool?
    public var bosTokenID: TokenIDs?
    public var eosTokenID: TokenIDs?
    public var torchDtype: String?
    public var attentionBias: Bool?

    enum CodingKeys: String, CodingKey {
        case architectures
        case modelType = "model_type", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", ropeScaling = "rope_scaling", maxPositionEmbeddings = "max_position_embeddings"
        case vocabSize = "vocab_size", tieWordEmbeddings = "tie_word_embeddings", bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id", torchDtype = "torch_dtype", attentionBias = "attention_bias"
    }

    public init(architectures: [String]?, modelType: String, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int,
                numAttentionHeads: Int, numKeyValueHeads: Int?, headDim: Int?, rmsNormEps: Double?, ropeTheta: Double?,
                ropeScaling: RopeScaling?, maxPositionEmbeddings: Int?, vocabSize: Int, tieWordEmbeddings: Bool?,
                bosTokenID: TokenIDs?, eosTokenID: TokenIDs?, torchDtype: String?, attentionBias: Bool?) {
        self.architectures = architectures
        self.modelType = modelType
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads
        self.headDim = headDim
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.vocabSize = vocabSize
        self.tieWordEmbeddings = tieWordEmbeddings
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
        self.torchDtype = torchDtype
        self.attentionBias = attentionBias
    }

    public static let supportedModelTypes = ["llama", "qwen2", "mistral"]

    /// Reads and validates `config.json`; errors name the file and the field.
    public static func load(path: String) throws -> HFConfig {
        guard let data = FileManager.default.contents(atPath: path) else { throw FormatError.missing(path: path, what: "a readable config.json") }
        let config: HFConfig
        do {
            config = try JSONDecoder().decode(HFConfig.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw FormatError.missing(path: path, what: "field '\(key.stringValue)'")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw FormatError.invalid(path: path, offset: nil, reason: "field '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
        } catch {
            throw FormatError.invalid(path: path, offset: nil, reason: "not a valid config.json (\(error))")
        }
        try config.validate(path: path)
        return config
    }

    public var kvHeads: Int { numKeyValueHeads ?? numAttentionHeads }
    public var resolvedHeadDim: Int { headDim ?? hiddenSize / max(numAttentionHeads, 1) }
    public var tied: Bool { tieWordEmbeddings ?? false }
    /// Qwen2 always has q/k/v biases; Llama has them when `attention_bias` is true.
    public var hasAttentionBias: Bool { attentionBias ?? (modelType == "qwen2") }

    public func validate(path: String) throws {
        func bad(_ field: String, _ r: String) -> FormatError { .invalid(path: path, offset: nil, reason: "field '\(field)': \(r)") }
        guard Self.supportedModelTypes.contains(modelType) else {
            throw bad("model_type", "'\(modelType)' is not a supported Llama-family type (\(Self.supportedModelTypes.joined(separator: ", ")))")
        }
        for (f, v) in [("hidden_size", hiddenSize), ("intermediate_size", intermediateSize), ("num_hidden_layers", numHiddenLayers),
                       ("num_attention_heads", numAttentionHeads), ("vocab_size", vocabSize), ("num_key_value_heads", kvHeads)] where v <= 0 {
            throw bad(f, "must be positive, found \(v)")
        }
        if headDim == nil, hiddenSize % numAttentionHeads != 0 {
            throw bad("num_attention_heads", "\(numAttentionHeads) does not divide hidden_size \(hiddenSize)")
        }
        if let h = headDim, h <= 0 || h % 2 != 0 { throw bad("head_dim", "must be positive and even, found \(h)") }
        guard numAttentionHeads % kvHeads == 0 else {
            throw bad("num_key_value_heads", "\(kvHeads) does not divide num_attention_heads \(numAttentionHeads)")
        }
        if let e = rmsNormEps, !(e > 0 && e < 1) { throw bad("rms_norm_eps", "must be in (0, 1), found \(e)") }
        if let t = ropeTheta, !(t > 0) { throw bad("rope_theta", "must be positive") }
    }

    /// Writes the configuration as `config.json` (pretty-printed, sorted keys).
    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFileWriter.write(Array(try encoder.encode(self)), to: path)
    }
}

import SquishCore
