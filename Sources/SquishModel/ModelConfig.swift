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

/// The widths of one transformer block. They are the same in every block of a trained model; structured pruning
/// (narrower FFNs, fewer KV groups) makes them differ, which llama.cpp's GGUF metadata expresses as per-layer arrays of
/// `feed_forward_length`, `attention.head_count` and `attention.head_count_kv`.
public struct LayerWidths: Sendable, Codable, Equatable {
    /// FFN inner width.
    public var ffn: Int
    public var heads: Int
    public var kvHeads: Int
    public init(ffn: Int, heads: Int, kvHeads: Int) {
        self.ffn = ffn
        self.heads = heads
        self.kvHeads = kvHeads
    }
}

/// Everything the one forward pass needs to know about a decoder-only transformer: sizes, and the structure choices
/// that differ between families (norm placement, QK-norm, biases, activation, sliding windows, RoPE per layer).
/// Made by an architecture (`Architectures/`) from GGUF metadata or a config.json, and checked once by `validate`.
public struct ModelConfig: Sendable, Codable, Equatable {
    /// The registered architecture (`Architectures.family(named:)`), e.g. "llama", "gemma3".
    public var architecture: String
    public var dim: Int  // model width (embedding length)
    /// FFN inner width, query heads and KV heads: those of every block, or, where blocks differ (`layerWidths`), the
    /// largest of any block (what activation buffers are sized for).
    public var hiddenDim: Int
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
    /// Per layer, where blocks differ in width (pruned models): [layers]; nil when every block has `hiddenDim`,
    /// `heads` and `kvHeads`. Set it through `withLayerWidths`, which keeps the scalars the largest widths.
    public private(set) var layerWidths: [LayerWidths]?

    /// The largest query and KV widths of any block.
    public var qDim: Int { heads * headDim }
    public var kvDim: Int { kvHeads * headDim }

    /// The widths of block `layer`.
    public func widths(layer: Int) -> LayerWidths {
        layerWidths?[layer] ?? LayerWidths(ffn: hiddenDim, heads: heads, kvHeads: kvHeads)
    }
    public func hiddenDim(layer: Int) -> Int { layerWidths?[layer].ffn ?? hiddenDim }
    public func heads(layer: Int) -> Int { layerWidths?[layer].heads ?? heads }
    public func kvHeads(layer: Int) -> Int { layerWidths?[layer].kvHeads ?? kvHeads }
    public func qDim(layer: Int) -> Int { heads(layer: layer) * headDim }
    public func kvDim(layer: Int) -> Int { kvHeads(layer: layer) * headDim }

    /// This configuration with the scalar widths (`hiddenDim`, `heads`, `kvHeads`) those of block `layer`: what the
    /// computation of that one block reads.
    public func forLayer(_ layer: Int) -> ModelConfig {
        guard let w = layerWidths?[layer] else { return self }
        var c = self
        c.hiddenDim = w.ffn
        c.heads = w.heads
        c.kvHeads = w.kvHeads
        return c
    }

    /// True when blocks differ in FFN width or head counts.
    public var hasLayerWidths: Bool { layerWidths != nil }

    /// This configuration with per-block widths `widths` ([layers]); the scalars become the largest widths, and
    /// `layerWidths` stays nil when every block is alike.
    public func withLayerWidths(_ widths: [LayerWidths]) -> ModelConfig {
        var c = self
        guard let first = widths.first else { return c }
        c.hiddenDim = widths.map(\.ffn).max()!
        c.heads = widths.map(\.heads).max()!
        c.kvHeads = widths.map(\.kvHeads).max()!
        c.layerWidths = widths.allSatisfy { $0 == first } ? nil : widths
        return c
    }

    /// Block `layers` of this configuration in that order (a model with blocks removed): their attention
    /// descriptions (windows, RoPE) and widths travel with them.
    public func keepingLayers(_ kept: [Int]) -> ModelConfig {
        var c = self
        c.layers = kept.count
        c.layerAttention = kept.map { layerAttention[$0] }
        let widths = kept.map { self.widths(layer: $0) }
        c.layerWidths = nil
        return c.withLayerWidths(widths)
    }

    public init(architecture: String, dim: Int, hiddenDim: Int, layers: Int, heads: Int, kvHeads: Int, headDim: Int,
                vocabSize: Int, contextLength: Int, normEpsilon: Float, ropeBase: Double, ropeDimensions: Int? = nil,
                ropeStyle: RoPEStyle, ropeLinearScale: Double = 1, layerAttention: [LayerAttention]? = nil,
                tiedEmbeddings: Bool, attentionBias: Bool = false, qkNorm: Bool = false, postNorms: Bool = false,
                activation: Activation = .silu, embeddingScale: Float = 1, attentionScale: Float? = nil,
                layerWidths: [LayerWidths]? = nil) {
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
        if let layerWidths, let first = layerWidths.first {
            // Kept as given (validate checks them against the scalars) unless every block is alike.
            self.layerWidths = layerWidths.allSatisfy { $0 == first } ? nil : layerWidths
        }
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
        guard layerWidths != nil || heads % kvHeads == 0 else { throw bad(.kvHeads, "\(kvHeads) KV heads do not divide \(heads) attention heads") }
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
        if let widths = layerWidths {
            guard widths.count == layers else {
                throw ModelError.invalidConfiguration(path: path, reason: "\(widths.count) per-layer widths for \(layers) layers")
            }
            for (i, w) in widths.enumerated() {
                guard w.ffn > 0, w.ffn <= hiddenDim else { throw bad(.hiddenDim, "layer \(i): \(w.ffn) is outside 1 ... \(hiddenDim)") }
                guard w.heads > 0, w.heads <= heads else { throw bad(.heads, "layer \(i): \(w.heads) is outside 1 ... \(heads) (attention-free layers are not supported)") }
                guard w.kvHeads > 0, w.kvHeads <= kvHeads else { throw bad(.kvHeads, "layer \(i): \(w.kvHeads) is outside 1 ... \(kvHeads)") }
                guard w.heads % w.kvHeads == 0 else { throw bad(.kvHeads, "layer \(i): \(w.kvHeads) KV heads do not divide \(w.heads) attention heads") }
            }
            guard widths.map(\.ffn).max() == hiddenDim, widths.map(\.heads).max() == heads, widths.map(\.kvHeads).max() == kvHeads else {
                throw ModelError.invalidConfiguration(path: path, reason: "the FFN width and head counts are not the largest of the per-layer values")
            }
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
