import SquishFormats

/// How RoPE pairs the dimensions of a head: GGUF llama files use adjacent pairs (x[2i], x[2i+1]) because the
/// converter permutes Q and K; Hugging Face checkpoints and GGUF qwen2 rotate x[i] with x[i + d/2].
public enum RoPEStyle: String, Sendable, Codable {
    case adjacentPairs
    case halfSplit
}

/// Hyper-parameters of a Llama-family transformer (Llama 2/3, SmolLM2, Qwen2, Mistral without sliding window).
public struct LlamaConfig: Sendable, Codable, Equatable {
    public var architecture: String
    public var dim: Int  // model width (embedding length)
    public var hiddenDim: Int  // SwiGLU inner width
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vocabSize: Int
    public var contextLength: Int
    public var normEpsilon: Float
    public var ropeBase: Float
    public var ropeDimensions: Int
    public var ropeStyle: RoPEStyle
    /// Linear position scaling factor (positions are divided by it), 1 when absent.
    public var ropeLinearScale: Float
    public var tiedEmbeddings: Bool
    public var attentionBias: Bool

    public var qDim: Int { heads * headDim }
    public var kvDim: Int { kvHeads * headDim }

    public init(architecture: String, dim: Int, hiddenDim: Int, layers: Int, heads: Int, kvHeads: Int, headDim: Int,
                vocabSize: Int, contextLength: Int, normEpsilon: Float, ropeBase: Float, ropeDimensions: Int,
                ropeStyle: RoPEStyle, ropeLinearScale: Float = 1, tiedEmbeddings: Bool, attentionBias: Bool) {
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
        self.ropeBase = ropeBase
        self.ropeDimensions = ropeDimensions
        self.ropeStyle = ropeStyle
        self.ropeLinearScale = ropeLinearScale
        self.tiedEmbeddings = tiedEmbeddings
        self.attentionBias = attentionBias
    }

    public static let supportedArchitectures = ["llama", "qwen2", "mistral"]

    /// Reads the configuration from GGUF metadata (`<arch>.embedding_length`, `<arch>.attention.head_count`, ...).
    public init(gguf file: GGUFFile) throws {
        let path = file.path
        guard let arch = file.architecture else { throw ModelError.missingMetadata(path: path, key: "general.architecture") }
        guard Self.supportedArchitectures.contains(arch) else { throw ModelError.unsupportedArchitecture(path: path, architecture: arch) }
        func int(_ key: String) throws -> Int {
            guard let v = file["\(arch).\(key)"]?.int else { throw ModelError.missingMetadata(path: path, key: "\(arch).\(key)") }
            return v
        }
        let dim = try int("embedding_length")
        let heads = try int("attention.head_count")
        let kvHeads = file["\(arch).attention.head_count_kv"]?.int ?? heads
        guard heads > 0, dim > 0 else { throw ModelError.invalidConfiguration(path: path, reason: "non-positive width or head count") }
        let headDim = file["\(arch).attention.key_length"]?.int ?? dim / heads
        guard let embedding = file.tensor(named: "token_embd.weight"), embedding.shape.count == 2 else {
            throw ModelError.missingTensor(path: path, tensor: "token_embd.weight")
        }
        self.init(
            architecture: arch, dim: dim, hiddenDim: try int("feed_forward_length"), layers: try int("block_count"),
            heads: heads, kvHeads: kvHeads, headDim: headDim, vocabSize: embedding.shape[1],
            contextLength: file["\(arch).context_length"]?.int ?? 2048,
            normEpsilon: Float(file["\(arch).attention.layer_norm_rms_epsilon"]?.double ?? 1e-5),
            ropeBase: Float(file["\(arch).rope.freq_base"]?.double ?? 10000),
            ropeDimensions: file["\(arch).rope.dimension_count"]?.int ?? headDim,
            ropeStyle: arch == "qwen2" ? .halfSplit : .adjacentPairs,
            ropeLinearScale: file["\(arch).rope.scaling.type"]?.string == "linear"
                ? Float(file["\(arch).rope.scaling.factor"]?.double ?? 1) : 1,
            tiedEmbeddings: file.tensor(named: "output.weight") == nil,
            attentionBias: file.tensor(named: "blk.0.attn_q.bias") != nil)
        try validate(path: path)
    }

    public func validate(path: String) throws {
        func bad(_ r: String) -> ModelError { .invalidConfiguration(path: path, reason: r) }
        guard dim > 0, hiddenDim > 0, layers > 0, heads > 0, kvHeads > 0, headDim > 0, vocabSize > 0, contextLength > 0 else {
            throw bad("sizes must be positive")
        }
        guard heads % kvHeads == 0 else { throw bad("\(heads) attention heads are not a multiple of \(kvHeads) KV heads") }
        guard headDim % 2 == 0, ropeDimensions > 0, ropeDimensions <= headDim, ropeDimensions % 2 == 0 else {
            throw bad("RoPE dimensions \(ropeDimensions) do not fit head size \(headDim)")
        }
        guard layers <= 1024, dim <= 1 << 16, heads <= 1024, hiddenDim <= 1 << 18 else { throw bad("implausible sizes") }
    }
}
