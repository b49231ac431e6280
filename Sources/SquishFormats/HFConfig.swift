import Foundation
import SquishCore

/// A Hugging Face `config.json` of a decoder-only transformer: the fields that transformers' ModelConfig, Qwen2Config,
/// Qwen3Config and Gemma3TextConfig write. Absent optional fields keep nil here; the accessors below apply
/// transformers' defaults (`num_key_value_heads` = heads, `head_dim` = hidden / heads, untied embeddings).
/// `load(path:)` checks each field's type and range; every error names the file and the field. Which model types
/// Squish runs, and what each field means for them, is the business of the architecture registry (SquishModel).
public struct HFConfig: Codable, Sendable, Equatable {
    /// `rope_scaling`, e.g. Llama 3.1's `{"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, ...}`.
    public struct RopeScaling: Codable, Sendable, Equatable {
        /// The older key for the kind of scaling.
        public var type: String?
        public var ropeType: String?
        public var factor: Double?
        public var lowFreqFactor: Double?
        public var highFreqFactor: Double?
        public var originalMaxPositionEmbeddings: Int?
        /// The base, where transformers (5.x `rope_parameters`) keeps it beside the scaling.
        public var ropeTheta: Double?

        enum CodingKeys: String, CodingKey {
            case type, factor
            case ropeType = "rope_type", lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
            case originalMaxPositionEmbeddings = "original_max_position_embeddings", ropeTheta = "rope_theta"
        }

        public init(type: String? = nil, ropeType: String? = nil, factor: Double? = nil, lowFreqFactor: Double? = nil,
                    highFreqFactor: Double? = nil, originalMaxPositionEmbeddings: Int? = nil, ropeTheta: Double? = nil) {
            self.type = type
            self.ropeType = ropeType
            self.factor = factor
            self.lowFreqFactor = lowFreqFactor
            self.highFreqFactor = highFreqFactor
            self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
            self.ropeTheta = ropeTheta
        }

        /// "linear", "llama3", "dynamic", "yarn", ... ("default" when neither key is given).
        public var kind: String { ropeType ?? type ?? "default" }
    }

    /// An int or a list of ints (e.g. Llama 3 instruct's three `eos_token_id`s).
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

    /// e.g. ["LlamaForCausalLM"]
    public var architectures: [String]?
    /// e.g. "llama", "qwen2", "qwen3", "gemma3_text"
    public var modelType: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int?
    public var headDim: Int?
    public var rmsNormEps: Double?
    /// `rope_theta` (or, in newer transformers, `rope_parameters.rope_theta`).
    public var ropeTheta: Double?
    public var ropeScaling: RopeScaling?
    public var maxPositionEmbeddings: Int?
    public var vocabSize: Int
    public var tieWordEmbeddings: Bool?
    public var bosTokenID: TokenIDs?
    public var eosTokenID: TokenIDs?
    /// `torch_dtype` (or the newer key `dtype`): "bfloat16", "float16", "float32".
    public var torchDtype: String?
    public var attentionBias: Bool?
    public var mlpBias: Bool?
    /// e.g. "silu"
    public var hiddenAct: String?
    /// Gemma's name for the FFN activation, e.g. "gelu_pytorch_tanh".
    public var hiddenActivation: String?
    /// Gemma: queries are scaled by query_pre_attn_scalar^(-1/2) instead of head_dim^(-1/2).
    public var queryPreAttnScalar: Double?
    /// Gemma 3: the RoPE base of the sliding-window (local) layers.
    public var ropeLocalBaseFreq: Double?
    /// Positions a token attends to in a sliding-window layer, itself included.
    public var slidingWindow: Int?
    /// Gemma 3: every n-th layer attends globally (`sliding_window_pattern`, or `_sliding_window_pattern`).
    public var slidingWindowPattern: Int?
    /// Per layer "sliding_attention" or "full_attention" (newer transformers).
    public var layerTypes: [String]?
    /// Qwen2/Qwen3: whether `sliding_window` applies at all, and from which layer on (`max_window_layers`).
    public var useSlidingWindow: Bool?
    public var maxWindowLayers: Int?
    /// Gemma 2-style soft-capping (tanh); Gemma 3 leaves both null.
    public var attnLogitSoftcapping: Double?
    public var finalLogitSoftcapping: Double?
    /// RoPE parameters per layer type (transformers 5.x `rope_parameters` keyed by "full_attention" /
    /// "sliding_attention"); a flat `rope_parameters` object is read into `ropeTheta` and `ropeScaling` instead.
    public var ropeParametersByLayerType: [String: RopeScaling]?

    enum CodingKeys: String, CodingKey {
        case architectures
        case modelType = "model_type", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", ropeScaling = "rope_scaling", maxPositionEmbeddings = "max_position_embeddings"
        case vocabSize = "vocab_size", tieWordEmbeddings = "tie_word_embeddings", bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id", torchDtype = "torch_dtype", attentionBias = "attention_bias"
        case mlpBias = "mlp_bias", hiddenAct = "hidden_act", hiddenActivation = "hidden_activation"
        case queryPreAttnScalar = "query_pre_attn_scalar", ropeLocalBaseFreq = "rope_local_base_freq"
        case slidingWindow = "sliding_window", slidingWindowPattern = "sliding_window_pattern", layerTypes = "layer_types"
        case useSlidingWindow = "use_sliding_window", maxWindowLayers = "max_window_layers"
        case attnLogitSoftcapping = "attn_logit_softcapping", finalLogitSoftcapping = "final_logit_softcapping"
        case ropeParametersByLayerType = "rope_parameters"
    }

    /// Keys read only as fallbacks (never written).
    private enum FallbackKeys: String, CodingKey {
        case dtype, ropeParameters = "rope_parameters", slidingWindowPattern = "_sliding_window_pattern"
    }

    public init(architectures: [String]?, modelType: String, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int,
                numAttentionHeads: Int, numKeyValueHeads: Int?, headDim: Int?, rmsNormEps: Double?, ropeTheta: Double?,
                ropeScaling: RopeScaling?, maxPositionEmbeddings: Int?, vocabSize: Int, tieWordEmbeddings: Bool?,
                bosTokenID: TokenIDs?, eosTokenID: TokenIDs?, torchDtype: String?, attentionBias: Bool?,
                mlpBias: Bool? = nil, hiddenAct: String? = nil) {
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
        self.mlpBias = mlpBias
        self.hiddenAct = hiddenAct
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
        func required<T: Decodable>(_ type: T.Type, _ key: CodingKeys) throws -> T {
            guard let v = try field(T.self, key) else {
                throw DecodingError.keyNotFound(key, .init(codingPath: c.codingPath, debugDescription: "required"))
            }
            return v
        }
        let fallback = try decoder.container(keyedBy: FallbackKeys.self)
        architectures = try field([String].self, .architectures)
        modelType = try required(String.self, .modelType)
        hiddenSize = try required(Int.self, .hiddenSize)
        intermediateSize = try required(Int.self, .intermediateSize)
        numHiddenLayers = try required(Int.self, .numHiddenLayers)
        numAttentionHeads = try required(Int.self, .numAttentionHeads)
        numKeyValueHeads = try field(Int.self, .numKeyValueHeads)
        headDim = try field(Int.self, .headDim)
        rmsNormEps = try field(Double.self, .rmsNormEps)
        ropeTheta = try field(Double.self, .ropeTheta)
        ropeScaling = try field(RopeScaling.self, .ropeScaling)
        maxPositionEmbeddings = try field(Int.self, .maxPositionEmbeddings)
        vocabSize = try required(Int.self, .vocabSize)
        tieWordEmbeddings = try field(Bool.self, .tieWordEmbeddings)
        bosTokenID = try field(TokenIDs.self, .bosTokenID)
        eosTokenID = try field(TokenIDs.self, .eosTokenID)
        torchDtype = try field(String.self, .torchDtype) ?? fallback.decodeIfPresent(String.self, forKey: .dtype)
        attentionBias = try field(Bool.self, .attentionBias)
        mlpBias = try field(Bool.self, .mlpBias)
        hiddenAct = try field(String.self, .hiddenAct)
        hiddenActivation = try field(String.self, .hiddenActivation)
        queryPreAttnScalar = try field(Double.self, .queryPreAttnScalar)
        ropeLocalBaseFreq = try field(Double.self, .ropeLocalBaseFreq)
        slidingWindow = try field(Int.self, .slidingWindow)
        slidingWindowPattern = try field(Int.self, .slidingWindowPattern)
            ?? fallback.decodeIfPresent(Int.self, forKey: .slidingWindowPattern)
        layerTypes = try field([String].self, .layerTypes)
        useSlidingWindow = try field(Bool.self, .useSlidingWindow)
        maxWindowLayers = try field(Int.self, .maxWindowLayers)
        attnLogitSoftcapping = try field(Double.self, .attnLogitSoftcapping)
        finalLogitSoftcapping = try field(Double.self, .finalLogitSoftcapping)
        // transformers 5.x: `rope_parameters` is either one object (base and scaling of every layer) or one per layer
        // type. The flat form fills the older fields where they are absent.
        if let flat = try? fallback.decodeIfPresent(RopeScaling.self, forKey: .ropeParameters), flat.ropeTheta != nil || flat.ropeType != nil {
            ropeTheta = ropeTheta ?? flat.ropeTheta
            if ropeScaling == nil, flat.kind != "default" { ropeScaling = flat }
            ropeParametersByLayerType = nil
        } else {
            ropeParametersByLayerType = try field([String: RopeScaling].self, .ropeParametersByLayerType)
            if ropeTheta == nil { ropeTheta = ropeParametersByLayerType?["full_attention"]?.ropeTheta }
        }
    }

    /// Largest config.json accepted (real ones are a few KB).
    public static let maxFileBytes = 16 << 20

    /// Reads and validates `config.json`; errors name the file and the field.
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

    public var kvHeads: Int { numKeyValueHeads ?? numAttentionHeads }
    public var resolvedHeadDim: Int { headDim ?? hiddenSize / max(numAttentionHeads, 1) }
    public var tied: Bool { tieWordEmbeddings ?? false }
    /// Whether q/k/v projections carry biases: Qwen2 always; Llama when `attention_bias` is true.
    public var hasAttentionBias: Bool { attentionBias ?? (modelType == "qwen2") }
    /// Whether the output projection carries a bias: Llama's `attention_bias` covers o_proj too; Qwen2's o_proj has none.
    public var hasOutputProjectionBias: Bool { modelType == "qwen2" ? false : (attentionBias ?? false) }

    /// Checks that sizes are positive and the attention heads fit together; errors name `path` and the field.
    public func validate(path: String) throws {
        func bad(_ field: String, _ r: String) -> FormatError { .invalid(path: path, offset: nil, reason: "field '\(field)': \(r)") }
        guard !modelType.isEmpty else { throw bad("model_type", "is empty") }
        for (f, v) in [("hidden_size", hiddenSize), ("intermediate_size", intermediateSize), ("num_hidden_layers", numHiddenLayers),
                       ("num_attention_heads", numAttentionHeads), ("vocab_size", vocabSize), ("num_key_value_heads", kvHeads),
                       ("max_position_embeddings", maxPositionEmbeddings ?? 1)] where v <= 0 {
            throw bad(f, "must be positive, found \(v)")
        }
        if let h = headDim {
            guard h > 0, h % 2 == 0, Checked.mul(h, numAttentionHeads) != nil else { throw bad("head_dim", "must be positive and even, found \(h)") }
        } else if hiddenSize % numAttentionHeads != 0 {
            throw bad("num_attention_heads", "\(numAttentionHeads) does not divide hidden_size \(hiddenSize) (and head_dim is absent)")
        }
        guard numAttentionHeads % kvHeads == 0 else {
            throw bad("num_key_value_heads", "\(kvHeads) does not divide num_attention_heads \(numAttentionHeads)")
        }
        if let e = rmsNormEps, !(e > 0 && e < 1) { throw bad("rms_norm_eps", "must be in (0, 1), found \(e)") }
        if let t = ropeTheta, !(t > 0 && t.isFinite) { throw bad("rope_theta", "must be positive, found \(t)") }
        if let s = ropeScaling {
            if let f = s.factor, !(f > 0 && f.isFinite) { throw bad("rope_scaling.factor", "must be positive, found \(f)") }
            if let n = s.originalMaxPositionEmbeddings, n <= 0 {
                throw bad("rope_scaling.original_max_position_embeddings", "must be positive, found \(n)")
            }
            if s.kind == "llama3" {
                // Llama 3.1 frequency scaling needs all four parameters (transformers' _compute_llama3_parameters).
                guard s.factor != nil, let low = s.lowFreqFactor, let high = s.highFreqFactor, s.originalMaxPositionEmbeddings != nil else {
                    throw bad("rope_scaling", "type llama3 needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings")
                }
                guard low > 0, high > low else { throw bad("rope_scaling", "needs 0 < low_freq_factor < high_freq_factor, found \(low), \(high)") }
            }
        }
        for (f, v) in [("query_pre_attn_scalar", queryPreAttnScalar), ("rope_local_base_freq", ropeLocalBaseFreq)] {
            if let v, !(v > 0 && v.isFinite) { throw bad(f, "must be positive, found \(v)") }
        }
        for (f, v) in [("attn_logit_softcapping", attnLogitSoftcapping), ("final_logit_softcapping", finalLogitSoftcapping)] {
            if let v, !(v > 0 && v.isFinite) { throw bad(f, "must be positive or null, found \(v)") }
        }
        if let w = slidingWindow, w <= 0 { throw bad("sliding_window", "must be positive, found \(w)") }
        if let p = slidingWindowPattern, p <= 0 { throw bad("sliding_window_pattern", "must be positive, found \(p)") }
        if let n = maxWindowLayers, n < 0 { throw bad("max_window_layers", "must not be negative, found \(n)") }
        if let types = layerTypes {
            guard types.count == numHiddenLayers else {
                throw bad("layer_types", "has \(types.count) entries for \(numHiddenLayers) layers")
            }
            if let t = types.first(where: { $0 != "sliding_attention" && $0 != "full_attention" }) {
                throw bad("layer_types", "unknown layer type '\(t)' (expected sliding_attention or full_attention)")
            }
        }
        for (kind, p) in ropeParametersByLayerType ?? [:] {
            if let t = p.ropeTheta, !(t > 0 && t.isFinite) { throw bad("rope_parameters.\(kind).rope_theta", "must be positive, found \(t)") }
            if let f = p.factor, !(f > 0 && f.isFinite) { throw bad("rope_parameters.\(kind).factor", "must be positive, found \(f)") }
        }
        for (f, ids) in [("bos_token_id", bosTokenID?.all ?? []), ("eos_token_id", eosTokenID?.all ?? [])] {
            if let id = ids.first(where: { $0 < 0 || $0 >= vocabSize }) { throw bad(f, "token id \(id) outside the vocabulary (\(vocabSize))") }
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

    /// Validates, then writes the configuration as `config.json` atomically.
    public func write(to path: String) throws {
        try validate(path: path)
        try AtomicFileWriter.write([UInt8](try jsonData()), to: path)
    }
}
