import SquishCore
import SquishFormats

/// How RoPE pairs the dimensions of a head: GGUF llama files use adjacent pairs (x[2i], x[2i+1]) because the
/// converter permutes Q and K; Hugging Face checkpoints and GGUF qwen2/qwen3/gemma3 rotate x[i] with x[i + d/2]
/// (llama.cpp's "NEOX" style).
public enum RoPEStyle: String, Sendable, Codable {
    case adjacentPairs
    case halfSplit
}

/// The gate's nonlinearity of a gated FFN: down(act(gate(x)) · up(x)).
public enum Activation: String, Sendable, Codable {
    /// SwiGLU (Llama, Qwen): x · sigmoid(x).
    case silu
    /// GeGLU with the tanh approximation of GELU (Gemma; PyTorch's gelu(approximate="tanh")).
    case geluTanh
}

/// What one layer's attention sees and how its positions rotate.
public struct LayerAttention: Sendable, Codable, Equatable {
    /// Positions a token attends to, itself included (nil: every earlier position).
    public var slidingWindow: Int?
    /// RoPE base θ of this layer.
    public var ropeBase: Double
    /// Positions are divided by this before rotating (linear RoPE scaling), 1 when absent.
    public var ropeLinearScale: Double

    public init(slidingWindow: Int? = nil, ropeBase: Double, ropeLinearScale: Double = 1) {
        self.slidingWindow = slidingWindow
        self.ropeBase = ropeBase
        self.ropeLinearScale = ropeLinearScale
    }
}

/// Everything the one forward pass needs to know about a decoder-only transformer: sizes, and the structure choices
/// that differ between families (norm placement, QK-norm, biases, activation, sliding windows, RoPE per layer).
/// Made by an architecture (`Architectures/`) from GGUF metadata or a config.json, and checked once by `validate`.
public struct ModelConfig: Sendable, Codable, Equatable {
    /// The registered architecture (`Architectures.family(named:)`), e.g. "llama", "gemma3".
    public var architecture: String
    public var dim: Int  // model width (embedding length)
    public var hiddenDim: Int  // FFN inner width
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vocabSize: Int
    /// Positions the model was trained for.
    public var contextLength: Int
    public var normEpsilon: Float
    public var ropeDimensions: Int
    public var ropeStyle: RoPEStyle
    /// Per layer: sliding window and RoPE base/scaling, [layers].
    public var layerAttention: [LayerAttention]
    public var tiedEmbeddings: Bool
    /// Biases on the q, k and v projections (Qwen2).
    public var attentionBias: Bool
    /// RMSNorm of every query and key head (weights [headDim]) before RoPE (Qwen3, Gemma 3).
    public var qkNorm: Bool
    /// RMSNorm of the attention and FFN outputs before they join the residual stream (Gemma's "sandwich" norms).
    public var postNorms: Bool
    public var activation: Activation
    /// The embedding rows are multiplied by this (Gemma: √dim), else 1.
    public var embeddingScale: Float
    /// Scores are scale · q·k (default 1/√headDim; Gemma: query_pre_attn_scalar^(−1/2)).
    public var attentionScale: Float

    public var qDim: Int { heads * headDim }
    public var kvDim: Int { kvHeads * headDim }

    public init(architecture: String, dim: Int, hiddenDim: Int, layers: Int, heads: Int, kvHeads: Int, headDim: Int,
                vocabSize: Int, contextLength: Int, normEpsilon: Float, ropeBase: Double, ropeDimensions: Int? = nil,
                ropeStyle: RoPEStyle, ropeLinearScale: Double = 1, layerAttention: [LayerAttention]? = nil,
                tiedEmbeddings: Bool, attentionBias: Bool = false, qkNorm: Bool = false, postNorms: Bool = false,
                activation: Activation = .silu, embeddingScale: Float = 1, attentionScale: Float? = nil) {
        self.architecture = architecture
        self.dim = dim
        self.hiddenDim = hiddenDim
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.vocabSize = vocabSize
        self.contextLength = contextLength
        self.normEpsilon = normEpsilon
        self.ropeDimensions = ropeDimensions ?? headDim
        self.ropeStyle = ropeStyle
        self.layerAttention = layerAttention
            ?? Array(repeating: LayerAttention(ropeBase: ropeBase, ropeLinearScale: ropeLinearScale), count: max(0, min(layers, 4096)))
        self.tiedEmbeddings = tiedEmbeddings
        self.attentionBias = attentionBias
        self.qkNorm = qkNorm
        self.postNorms = postNorms
        self.activation = activation
        self.embeddingScale = embeddingScale
        self.attentionScale = attentionScale ?? 1 / Float(max(headDim, 1)).squareRoot()
    }

    /// Largest sizes accepted (far above any model Squish targets; they keep every product of sizes in range).
    public static let limits = (dim: 1 << 16, hiddenDim: 1 << 18, layers: 1024, heads: 1024, headDim: 1 << 12,
                                vocab: 1 << 22, context: 1 << 24)

    /// The one semantic check of a configuration, whatever file it came from: sizes positive and plausible, every
    /// product of sizes the runtime forms representable, heads that group, finite positive epsilon and RoPE
    /// parameters, one attention description per layer. `keys` names the fields as the source file does.
    public func validate(path: String, keys: ConfigKeys) throws {
        func bad(_ field: ConfigKeys.Field, _ reason: String) -> ModelError {
            .invalidConfiguration(path: path, reason: "\(keys.name(field)): \(reason)")
        }
        let L = Self.limits
        for (field, value, limit) in [(ConfigKeys.Field.dim, dim, L.dim), (.hiddenDim, hiddenDim, L.hiddenDim),
                                      (.layers, layers, L.layers), (.heads, heads, L.heads), (.kvHeads, kvHeads, L.heads),
                                      (.headDim, headDim, L.headDim), (.vocabSize, vocabSize, L.vocab),
                                      (.contextLength, contextLength, L.context)] {
            guard value > 0 else { throw bad(field, "must be positive, found \(value)") }
            guard value <= limit else { throw bad(field, "\(value) is implausibly large (at most \(limit))") }
        }
        guard heads % kvHeads == 0 else { throw bad(.kvHeads, "\(kvHeads) KV heads do not divide \(heads) attention heads") }
        guard headDim % 2 == 0 else { throw bad(.headDim, "must be even for RoPE, found \(headDim)") }
        guard ropeDimensions > 0, ropeDimensions <= headDim, ropeDimensions % 2 == 0 else {
            throw bad(.ropeDimensions, "\(ropeDimensions) rotated dimensions do not fit heads of \(headDim)")
        }
        // Products the runtime forms (widths, whole matrices, one layer of cache per position); all stay far from
        // overflow under the limits above, but say so explicitly rather than rely on it.
        for (what, factors) in [("heads × head size", [heads, headDim]), ("KV heads × head size", [kvHeads, headDim]),
                                ("vocabulary × width", [vocabSize, dim]), ("FFN width × width", [hiddenDim, dim]),
                                ("layers × context × KV width", [layers, contextLength, kvHeads, headDim, 2])] {
            guard Checked.product(factors) != nil else {
                throw ModelError.invalidConfiguration(path: path, reason: "\(what) overflows (\(factors.map(String.init).joined(separator: " × ")))")
            }
        }
        guard normEpsilon.isFinite, normEpsilon > 0, normEpsilon < 1 else {
            throw bad(.normEpsilon, "must be finite and in (0, 1), found \(normEpsilon)")
        }
        guard attentionScale.isFinite, attentionScale > 0 else { throw bad(.attentionScale, "must be finite and positive, found \(attentionScale)") }
        guard embeddingScale.isFinite, embeddingScale > 0 else {
            throw ModelError.invalidConfiguration(path: path, reason: "embedding scale must be finite and positive, found \(embeddingScale)")
        }
        guard layerAttention.count == layers else {
            throw ModelError.invalidConfiguration(path: path, reason: "\(layerAttention.count) layer descriptions for \(layers) layers")
        }
        for (i, a) in layerAttention.enumerated() {
            guard a.ropeBase.isFinite, a.ropeBase > 0 else { throw bad(.ropeBase, "layer \(i): must be finite and positive, found \(a.ropeBase)") }
            guard a.ropeLinearScale.isFinite, a.ropeLinearScale > 0 else {
                throw bad(.ropeScale, "layer \(i): must be finite and positive, found \(a.ropeLinearScale)")
            }
            if let w = a.slidingWindow, w <= 0 { throw bad(.slidingWindow, "layer \(i): must be positive, found \(w)") }
        }
    }
}

/// How a source file names the configuration's fields, so that errors point at the key the user can see.
public struct ConfigKeys: Sendable {
    public enum Field: Sendable {
        case dim, hiddenDim, layers, heads, kvHeads, headDim, vocabSize, contextLength, normEpsilon, ropeDimensions
        case ropeBase, ropeScale, slidingWindow, attentionScale
    }
    private let names: @Sendable (Field) -> String

    public init(_ names: @escaping @Sendable (Field) -> String) { self.names = names }

    public func name(_ f: Field) -> String { names(f) }

    /// GGUF metadata keys under `<architecture>.` (llama.cpp's names).
    public static func gguf(_ arch: String) -> ConfigKeys {
        ConfigKeys { f in
            let key: String
            switch f {
            case .dim: key = "embedding_length"
            case .hiddenDim: key = "feed_forward_length"
            case .layers: key = "block_count"
            case .heads: key = "attention.head_count"
            case .kvHeads: key = "attention.head_count_kv"
            case .headDim: key = "attention.key_length"
            case .vocabSize: return "vocabulary (token_embd.weight rows)"
            case .contextLength: key = "context_length"
            case .normEpsilon: key = "attention.layer_norm_rms_epsilon"
            case .ropeDimensions: key = "rope.dimension_count"
            case .ropeBase: key = "rope.freq_base"
            case .ropeScale: key = "rope.scaling.factor"
            case .slidingWindow: key = "attention.sliding_window"
            case .attentionScale: return "attention scale"
            }
            return "metadata '\(arch).\(key)'"
        }
    }

    /// config.json field names (transformers').
    public static let huggingFace = ConfigKeys { f in
        let key: String
        switch f {
        case .dim: key = "hidden_size"
        case .hiddenDim: key = "intermediate_size"
        case .layers: key = "num_hidden_layers"
        case .heads: key = "num_attention_heads"
        case .kvHeads: key = "num_key_value_heads"
        case .headDim: key = "head_dim"
        case .vocabSize: key = "vocab_size"
        case .contextLength: key = "max_position_embeddings"
        case .normEpsilon: key = "rms_norm_eps"
        case .ropeDimensions: key = "head_dim"
        case .ropeBase: key = "rope_theta"
        case .ropeScale: key = "rope_scaling.factor"
        case .slidingWindow: key = "sliding_window"
        case .attentionScale: key = "query_pre_attn_scalar"
        }
        return "field '\(key)'"
    }
}
