import Foundation
import SquishCore

/// A Llama-family Hugging Face `config.json` (LlamaConfig / Qwen2Config / MistralConfig fields in transformers).
/// Absent optional fields take transformers' defaults: `num_key_value_heads` = `num_attention_heads`,
/// `rope_theta` 10000, `rms_norm_eps` 1e-6, `max_position_embeddings` 2048, `tie_word_embeddings` false.
/// `load(path:)` validates the sizes; errors name the file and the field.
public struct HFConfig: Codable, Equatable, Sendable {
    /// `rope_scaling` (e.g. Llama 3.1's `{"rope_type": "llama3", "factor": 8, ...}`); other keys are ignored.
    public struct RopeScaling: Codable, Equatable, Sendable {
        /// `rope_type`, or the older key `type`: "llama3", "linear", "dynamic", "yarn", ...
        public var type: String?
        public var factor: Double?
        public var lowFreqFactor: Double?
        public var highFreqFactor: Double?
        public var originalMaxPositionEmbeddings: Int?

        public init(type: String? = nil, factor: Double? = nil, lowFreqFactor: Double? = nil, highFreqFactor: Double? = nil,
                    originalMaxPositionEmbeddings: Int? = nil) {
            self.type = type
            self.factor = factor
            self.lowFreqFactor = lowFreqFactor
            self.highFreqFactor = highFreqFactor
            self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
        }

        enum CodingKeys: String, CodingKey {
            case type, ropeType = "rope_type", factor, lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
            case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            type = try c.decodeIfPresent(String.self, forKey: .ropeType) ?? c.decodeIfPresent(String.self, forKey: .type)
            factor = try c.decodeIfPresent(Double.self, forKey: .factor)
            lowFreqFactor = try c.decodeIfPresent(Double.self, forKey: .lowFreqFactor)
            highFreqFactor = try c.decodeIfPresent(Double.self, forKey: .highFreqFactor)
            originalMaxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings)
        }

        /// Writes both `rope_type` and `type`, as transformers does for compatibility with older readers.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encodeIfPresent(type, forKey: .ropeType)
            try c.encodeIfPresent(type, forKey: .type)
            try c.encodeIfPresent(factor, forKey: .factor)
            try c.encodeIfPresent(lowFreqFactor, forKey: .lowFreqFactor)
            try c.encodeIfPresent(highFreqFactor, forKey: .highFreqFactor)
            try c.encodeIfPresent(originalMaxPositionEmbeddings, forKey: .originalMaxPositionEmbeddings)
        }
    }

    /// e.g. ["LlamaForCausalLM"]
    public var architectures: [String]
    /// e.g. "llama", "qwen2", "mistral"
    public var modelType: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    /// Explicit `head_dim`; nil means `hiddenSize / numAttentionHeads` (see `headDimension`).
    public var headDim: Int?
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling?
    public var maxPositionEmbeddings: Int
    public var vocabSize: Int
    public var tieWordEmbeddings: Bool
    /// `bos_token_id`: one id, several, or none (null/absent).
    public var bosTokenIDs: [Int]
    /// `eos_token_id`: one id or several (Llama 3 instruct lists three), or none.
    public var eosTokenIDs: [Int]
    /// `torch_dtype` (or the newer `dtype`): "bfloat16", "float16", "float32".
    public var torchDtype: String?
    /// `attention_bias` as written; nil when absent (see `hasQKVBias`).
    public var attentionBias: Bool?
    /// `mlp_bias` as written; nil when absent.
    public var mlpBias: Bool?
    /// `hidden_act`, e.g. "silu".
    public var hiddenAct: String?

    public init(architectures: [String], modelType: String, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int,
                numAttentionHeads: Int, numKeyValueHeads: Int? = nil, headDim: Int? = nil, rmsNormEps: Double = 1e-6,
                ropeTheta: Double = 10000, ropeScaling: RopeScaling? = nil, maxPositionEmbeddings: Int = 2048, vocabSize: Int,
                tieWordEmbeddings: Bool = false, bosTokenIDs: [Int] = [], eosTokenIDs: [Int] = [], torchDtype: String? = nil,
                attentionBias: Bool? = nil, mlpBias: Bool? = nil, hiddenAct: String? = "silu") {
        self.architectures = architectures
        self.modelType = modelType
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads ?? numAttentionHeads
        self.headDim = headDim
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.vocabSize = vocabSize
        self.tieWordEmbeddings = tieWordEmbeddings
        self.bosTokenIDs = bosTokenIDs
        self.eosTokenIDs = eosTokenIDs
        self.torchDtype = torchDtype
        self.attentionBias = attentionBias
        self.mlpBias = mlpBias
        self.hiddenAct = hiddenAct
    }

    /// Per-head dimension: `head_dim` if given, else hidden_size / num_attention_heads.
    public var headDimension: Int { headDim ?? hiddenSize / numAttentionHeads }
    /// Whether q/k/v projections carry biases: `attention_bias` if present; Qwen2 always has them.
    public var hasQKVBias: Bool { modelType == "qwen2" || (attentionBias ?? false) }
    /// Whether the output projection carries a bias (Llama's `attention_bias`; never in Qwen2).
    public var hasOutputProjectionBias: Bool { modelType == "qwen2" ? false : (attentionBias ?? false) }

    enum CodingKeys: String, CodingKey {
        case architectures, modelType = "model_type", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", ropeScaling = "rope_scaling", ropeParameters = "rope_parameters"
        case maxPositionEmbeddings = "max_position_embeddings", vocabSize = "vocab_size"
        case tieWordEmbeddings = "tie_word_embeddings", bosTokenID = "bos_token_id", eosTokenID = "eos_token_id"
        case torchDtype = "torch_dtype", dtype, attentionBias = "attention_bias", mlpBias = "mlp_bias", hiddenAct = "hidden_act"
    }

    /// Newer transformers nest `rope_theta` inside `rope_parameters`.
    private struct RopeParameters: Decodable {
        let ropeTheta: Double?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta" }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Foundation reports a number that does not fit the type (2.5 or 1e300 for an Int) with an internal error
        // that reaches the caller as "not valid JSON" without the field's name: name the field.
        func field<T: Decodable>(_ type: T.Type, _ key: CodingKeys) throws -> T? {
            do {
                return try c.decodeIfPresent(T.self, forKey: key)
            } catch let error as DecodingError {
                throw error
            } catch {
                throw DecodingError.typeMismatch(T.self, .init(codingPath: c.codingPath + [key], debugDescription: "\(error)"))
            }
        }
        func int(_ key: CodingKeys) throws -> Int? { try field(Int.self, key) }
        func required(_ key: CodingKeys) throws -> Int {
            guard let v = try int(key) else {
                throw DecodingError.keyNotFound(key, .init(codingPath: c.codingPath, debugDescription: "required"))
            }
            return v
        }
        architectures = try c.decodeIfPresent([String].self, forKey: .architectures) ?? []
        modelType = try c.decode(String.self, forKey: .modelType)
        hiddenSize = try required(.hiddenSize)
        intermediateSize = try required(.intermediateSize)
        numHiddenLayers = try required(.numHiddenLayers)
        numAttentionHeads = try required(.numAttentionHeads)
        numKeyValueHeads = try int(.numKeyValueHeads) ?? numAttentionHeads
        headDim = try int(.headDim)
        rmsNormEps = try field(Double.self, .rmsNormEps) ?? 1e-6
        let nestedTheta = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters)?.ropeTheta
        ropeTheta = try field(Double.self, .ropeTheta) ?? nestedTheta ?? 10000
        ropeScaling = try c.decodeIfPresent(RopeScaling.self, forKey: .ropeScaling)
        maxPositionEmbeddings = try int(.maxPositionEmbeddings) ?? 2048
        vocabSize = try required(.vocabSize)
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        bosTokenIDs = try Self.tokenIDs(c, .bosTokenID)
        eosTokenIDs = try Self.tokenIDs(c, .eosTokenID)
        torchDtype = try c.decodeIfPresent(String.self, forKey: .torchDtype) ?? c.decodeIfPresent(String.self, forKey: .dtype)
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias)
        mlpBias = try c.decodeIfPresent(Bool.self, forKey: .mlpBias)
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct)
    }

    /// A token id field that may be an integer, an array of integers, or null.
    private static func tokenIDs(_ c: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> [Int] {
        guard c.contains(key), try !c.decodeNil(forKey: key) else { return [] }
        if let one = try? c.decode(Int.self, forKey: key) { return [one] }
        do {
            return try c.decode([Int].self, forKey: key)
        } catch let error as DecodingError {
            throw error
        } catch {
            throw DecodingError.typeMismatch([Int].self, .init(codingPath: c.codingPath + [key], debugDescription: "\(error)"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(architectures, forKey: .architectures)
        try c.encode(modelType, forKey: .modelType)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encodeIfPresent(headDim, forKey: .headDim)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encodeIfPresent(ropeScaling, forKey: .ropeScaling)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        for (ids, key) in [(bosTokenIDs, CodingKeys.bosTokenID), (eosTokenIDs, .eosTokenID)] {
            if ids.count == 1 { try c.encode(ids[0], forKey: key) } else if ids.count > 1 { try c.encode(ids, forKey: key) }
        }
        try c.encodeIfPresent(torchDtype, forKey: .torchDtype)
        try c.encodeIfPresent(attentionBias, forKey: .attentionBias)
        try c.encodeIfPresent(mlpBias, forKey: .mlpBias)
        try c.encodeIfPresent(hiddenAct, forKey: .hiddenAct)
    }

    /// Largest config.json accepted (real ones are a few KB).
    public static let maxFileBytes = 16 << 20

    /// Reads and validates `path`.
    public static func load(path: String) throws -> HFConfig {
        let mapped: MappedFile
        do {
            mapped = try MappedFile(path: path)
        } catch {
            throw FormatError.missing(path: path, what: "a readable config.json (\(error))")
        }
        guard mapped.count <= maxFileBytes else {
            throw FormatError.implausible(path: path, offset: 0, what: "config.json size", value: String(mapped.count))
        }
        return try decode(Data(mapped.bytes), path: path)
    }

    /// Decodes and validates config JSON; `path` names it in errors.
    public static func decode(_ data: Data, path: String = "config.json") throws -> HFConfig {
        let config: HFConfig
        do {
            config = try JSONDecoder().decode(HFConfig.self, from: data)
        } catch let error as DecodingError {
            throw formatError(error, path: path)
        }
        try config.validate(path: path)
        return config
    }

    private static func formatError(_ error: DecodingError, path: String) -> FormatError {
        func field(_ codingPath: [CodingKey]) -> String {
            codingPath.isEmpty ? "(top level)" : codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let ctx):
            return .missing(path: path, what: "field '\(field(ctx.codingPath + [key]))'")
        case .typeMismatch(let type, let ctx):
            return .invalid(path: path, offset: nil, reason: "field '\(field(ctx.codingPath))' is not of type \(type)")
        case .valueNotFound(let type, let ctx):
            return .invalid(path: path, offset: nil, reason: "field '\(field(ctx.codingPath))' is null, expected \(type)")
        case .dataCorrupted(let ctx):
            let at = ctx.codingPath.isEmpty ? "" : "field '\(field(ctx.codingPath))': "
            return .invalid(path: path, offset: nil, reason: "\(at)not valid JSON for a config (\(ctx.debugDescription))")
        @unknown default:
            return .invalid(path: path, offset: nil, reason: "\(error)")
        }
    }

    /// Checks that sizes are positive and the attention heads fit together; errors name `path` and the field.
    public func validate(path: String) throws {
        func fail(_ reason: String) -> FormatError { .invalid(path: path, offset: nil, reason: reason) }
        for (name, value) in [("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                              ("num_hidden_layers", numHiddenLayers), ("num_attention_heads", numAttentionHeads),
                              ("num_key_value_heads", numKeyValueHeads), ("max_position_embeddings", maxPositionEmbeddings),
                              ("vocab_size", vocabSize)] where value <= 0 {
            throw fail("field '\(name)' must be positive, found \(value)")
        }
        if let headDim {
            guard headDim > 0 else { throw fail("field 'head_dim' must be positive, found \(headDim)") }
            guard Checked.mul(headDim, numAttentionHeads) != nil else { throw fail("field 'head_dim' \(headDim) is implausible") }
        } else {
            guard hiddenSize % numAttentionHeads == 0 else {
                throw fail("field 'num_attention_heads' (\(numAttentionHeads)) must divide hidden_size (\(hiddenSize)) when head_dim is absent")
            }
        }
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw fail("field 'num_key_value_heads' (\(numKeyValueHeads)) must divide num_attention_heads (\(numAttentionHeads))")
        }
        guard rmsNormEps > 0, rmsNormEps.isFinite else { throw fail("field 'rms_norm_eps' must be positive, found \(rmsNormEps)") }
        guard ropeTheta > 0, ropeTheta.isFinite else { throw fail("field 'rope_theta' must be positive, found \(ropeTheta)") }
        if let s = ropeScaling {
            if let f = s.factor, !(f > 0 && f.isFinite) { throw fail("field 'rope_scaling.factor' must be positive, found \(f)") }
            if let n = s.originalMaxPositionEmbeddings, n <= 0 {
                throw fail("field 'rope_scaling.original_max_position_embeddings' must be positive, found \(n)")
            }
            if s.type == "llama3" {
                guard s.factor != nil, let low = s.lowFreqFactor, let high = s.highFreqFactor, s.originalMaxPositionEmbeddings != nil else {
                    throw fail("field 'rope_scaling' of type llama3 needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings")
                }
                guard low > 0, high > low else {
                    throw fail("field 'rope_scaling': need 0 < low_freq_factor < high_freq_factor, found \(low), \(high)")
                }
            }
        }
        for id in bosTokenIDs + eosTokenIDs where id < 0 || id >= vocabSize {
            throw fail("field 'bos_token_id'/'eos_token_id': token id \(id) outside the vocabulary (\(vocabSize))")
        }
    }

    /// Pretty-printed JSON with sorted keys and a final newline, as config.json files are usually written.
    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(self)
        data.append(UInt8(ascii: "\n"))
        return data
    }

    /// Writes config.json atomically.
    public func write(to path: String) throws {
        try validate(path: path)
        try AtomicFileWriter.write([UInt8](try jsonData()), to: path)
    }
}

extension HFConfig {
    /// The config of a Llama-family GGUF model (llama.cpp's metadata keys, `<arch>.embedding_length` etc.), for
    /// exporting it as a Hugging Face checkpoint. `tie_word_embeddings` is true when the file has no `output.weight`.
    public init(gguf: GGUFFile, torchDtype: String? = "bfloat16") throws {
        guard let arch = gguf.architecture else { throw FormatError.missing(path: gguf.path, what: "key 'general.architecture'") }
        func int(_ suffix: String) throws -> Int {
            guard let v = gguf.arch(suffix)?.int else { throw FormatError.missing(path: gguf.path, what: "integer key '\(arch).\(suffix)'") }
            return v
        }
        let heads = try int("attention.head_count")
        guard let vocab = gguf.arch("vocab_size")?.int ?? gguf["tokenizer.ggml.tokens"]?.array?.count else {
            throw FormatError.missing(path: gguf.path, what: "key '\(arch).vocab_size' or 'tokenizer.ggml.tokens'")
        }
        // GGUF stores epsilon and theta as f32: print them at f32 precision (1e-05, not 9.99999974737875e-06).
        func shortest(_ v: Double?) -> Double? { v.map { Double("\(Float($0))") ?? $0 } }
        let dim = try int("embedding_length")
        let keyLength = gguf.arch("attention.key_length")?.int
        var scaling: RopeScaling?
        if let type = gguf.arch("rope.scaling.type")?.string, type != "none" {
            scaling = RopeScaling(type: type, factor: shortest(gguf.arch("rope.scaling.factor")?.double),
                                  originalMaxPositionEmbeddings: gguf.arch("rope.scaling.original_context_length")?.int)
        }
        let architectureNames = ["llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"]
        self.init(architectures: [architectureNames[arch] ?? "LlamaForCausalLM"], modelType: arch, hiddenSize: dim,
                  intermediateSize: try int("feed_forward_length"), numHiddenLayers: try int("block_count"),
                  numAttentionHeads: heads, numKeyValueHeads: gguf.arch("attention.head_count_kv")?.int ?? heads,
                  headDim: keyLength.flatMap { $0 == dim / heads ? nil : $0 },
                  rmsNormEps: shortest(gguf.arch("attention.layer_norm_rms_epsilon")?.double) ?? 1e-5,
                  ropeTheta: shortest(gguf.arch("rope.freq_base")?.double) ?? 10000, ropeScaling: scaling,
                  maxPositionEmbeddings: try int("context_length"), vocabSize: vocab,
                  tieWordEmbeddings: gguf.tensor(named: "output.weight") == nil,
                  bosTokenIDs: gguf["tokenizer.ggml.bos_token_id"]?.int.map { [$0] } ?? [],
                  eosTokenIDs: gguf["tokenizer.ggml.eos_token_id"]?.int.map { [$0] } ?? [],
                  torchDtype: torchDtype, attentionBias: nil, mlpBias: nil, hiddenAct: "silu")
        try validate(path: gguf.path)
    }
}
