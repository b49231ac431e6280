import Foundation
import SquishFormats

/// One model family: how its configuration is read (GGUF metadata and Hugging Face config.json), what each source
/// stores, and how it is written back. The forward pass, loaders, quantizers and writers know a family only through
/// this protocol and the `ModelConfig` it produces. A family is one file in this folder plus one line in
/// `Architectures.all`.
public protocol Architecture {
    /// The registry name, also the GGUF `general.architecture` Squish writes for the family.
    static var name: String { get }
    /// GGUF `general.architecture` values read as this family.
    static var ggufArchitectures: [String] { get }
    /// Hugging Face `model_type` values read as this family.
    static var hfModelTypes: [String] { get }
    /// How Q/K rows are laid out in this family's GGUF files (llama.cpp's converter permutes Llama's to adjacent pairs).
    static var ggufRoPEStyle: RoPEStyle { get }

    /// The configuration from GGUF metadata (keys under `<general.architecture>.`) and the tensor table.
    static func configuration(gguf: GGUFFile) throws -> ModelConfig
    /// The configuration from a checkpoint's config.json.
    static func configuration(hf: HFConfig, path: String) throws -> ModelConfig
    /// Metadata beyond the keys every family shares (`GGUFConfig.write`), for writing a GGUF of this family.
    static func ggufMetadata(_ c: ModelConfig) -> [(String, GGUFValue)]
    /// The GGUF `general.architecture` a configuration is written as: `name`, unless llama.cpp knows blocks of
    /// differing widths only under another name (Llama's are "deci").
    static func ggufArchitecture(_ c: ModelConfig) -> String

    /// The checkpoint's name for `tensor`, and how its values differ from the runtime's (= GGUF's) convention;
    /// nil when the family has no such tensor.
    static func hfTensor(_ tensor: ModelTensor) -> HFTensor?
    /// config.json fields for a configuration (export).
    static func hfConfig(_ c: ModelConfig, bos: Int?, eos: Int?, dtype: String) -> HFConfig
    /// RoPE frequency divisors a checkpoint's config asks for (Llama 3.1), nil for none.
    static func ropeFrequencyFactors(hf: HFConfig, config: ModelConfig) -> [Float]?
}

/// A tensor as a Hugging Face checkpoint stores it.
public struct HFTensor: Sendable, Equatable {
    public var name: String
    /// Gemma's RMSNorm multiplies by (1 + w) and checkpoints store w; GGUF (and the runtime) store 1 + w.
    public var addsOne: Bool
    public init(_ name: String, addsOne: Bool = false) {
        self.name = name
        self.addsOne = addsOne
    }
}

/// The registry: one line per family.
public enum Architectures {
    public static let all: [any Architecture.Type] = [
        Llama.self,
        Qwen2.self,
        Qwen3.self,
        Gemma3.self,
        Gemma.self,
    ]

    public static func family(named name: String) -> (any Architecture.Type)? { all.first { $0.name == name } }

    public static func family(gguf architecture: String) -> (any Architecture.Type)? {
        all.first { $0.ggufArchitectures.contains(architecture) }
    }

    public static func family(hfModelType type: String) -> (any Architecture.Type)? { all.first { $0.hfModelTypes.contains(type) } }

    public static var supportedGGUF: String { all.flatMap { $0.ggufArchitectures }.joined(separator: ", ") }
    public static var supportedHF: String { all.flatMap { $0.hfModelTypes }.joined(separator: ", ") }

    /// Every architecture-specific metadata key of a GGUF file for `c` (the shared keys and the family's own, under the
    /// architecture name the configuration is written as), `general.architecture` first.
    public static func ggufMetadata(_ c: ModelConfig) -> [(String, GGUFValue)] {
        guard let family = family(named: c.architecture) else { return [] }
        return GGUFConfig.metadata(c, arch: family.ggufArchitecture(c)) + family.ggufMetadata(c)
    }

    /// The configuration of a GGUF file by its `general.architecture`, validated.
    public static func configuration(gguf file: GGUFFile) throws -> ModelConfig {
        guard let arch = file.architecture else { throw ModelError.missingMetadata(path: file.path, key: "general.architecture") }
        guard let family = family(gguf: arch) else {
            throw ModelError.unsupportedArchitecture(path: file.path, architecture: arch, supported: supportedGGUF)
        }
        let c = try family.configuration(gguf: file)
        try c.validate(path: file.path, keys: .gguf(arch))
        return c
    }

    /// The configuration of a checkpoint by its `model_type`, validated.
    public static func configuration(hf: HFConfig, path: String) throws -> ModelConfig {
        guard let family = family(hfModelType: hf.modelType) else {
            throw ModelError.unsupportedArchitecture(path: path, architecture: hf.modelType, supported: supportedHF)
        }
        let c = try family.configuration(hf: hf, path: path)
        try c.validate(path: path, keys: .huggingFace)
        return c
    }
}

extension Architecture {
    /// Llama's checkpoint names (`model.layers.N.self_attn.q_proj.weight`, ...), which Qwen2 and Qwen3 share.
    public static func llamaStyleHFTensor(_ tensor: ModelTensor) -> HFTensor? {
        switch tensor {
        case .tokenEmbedding: return HFTensor("model.embed_tokens.weight")
        case .output: return HFTensor("lm_head.weight")
        case .outputNorm: return HFTensor("model.norm.weight")
        case .ropeFrequencies: return nil
        case .block(let i, let t):
            let name: String
            switch t {
            case .attentionNorm: name = "input_layernorm.weight"
            case .attnQ: name = "self_attn.q_proj.weight"
            case .attnK: name = "self_attn.k_proj.weight"
            case .attnV: name = "self_attn.v_proj.weight"
            case .attnOutput: name = "self_attn.o_proj.weight"
            case .attnQBias: name = "self_attn.q_proj.bias"
            case .attnKBias: name = "self_attn.k_proj.bias"
            case .attnVBias: name = "self_attn.v_proj.bias"
            case .attnQNorm: name = "self_attn.q_norm.weight"
            case .attnKNorm: name = "self_attn.k_norm.weight"
            case .ffnNorm: name = "post_attention_layernorm.weight"
            case .ffnGate: name = "mlp.gate_proj.weight"
            case .ffnUp: name = "mlp.up_proj.weight"
            case .ffnDown: name = "mlp.down_proj.weight"
            case .postAttentionNorm, .postFFNNorm: return nil
            }
            return HFTensor("model.layers.\(i).\(name)")
        }
    }

    public static func ggufMetadata(_ c: ModelConfig) -> [(String, GGUFValue)] { [] }
    public static func ggufArchitecture(_ c: ModelConfig) -> String { name }
    public static func ropeFrequencyFactors(hf: HFConfig, config: ModelConfig) -> [Float]? { nil }
}

/// Reading and writing the GGUF metadata keys every family shares (llama.cpp's names under `<arch>.`). Values are
/// converted with their key named in errors; their ranges are checked by `ModelConfig.validate`.
public struct GGUFConfig {
    public let file: GGUFFile
    public let arch: String

    public init(_ file: GGUFFile) throws {
        guard let arch = file.architecture else { throw ModelError.missingMetadata(path: file.path, key: "general.architecture") }
        self.file = file
        self.arch = arch
    }

    public func has(_ key: String) -> Bool { file["\(arch).\(key)"] != nil }

    /// An integer value, nil when absent; an error when present but not an integer in range.
    public func int(_ key: String) throws -> Int? {
        guard let v = file["\(arch).\(key)"] else { return nil }
        guard let i = v.int else {
            throw ModelError.invalidConfiguration(path: file.path, reason: "metadata '\(arch).\(key)': expected an integer, found \(v.type)")
        }
        return i
    }

    public func requiredInt(_ key: String) throws -> Int {
        guard let i = try int(key) else { throw ModelError.missingMetadata(path: file.path, key: "\(arch).\(key)") }
        return i
    }

    /// A number, nil when absent.
    public func double(_ key: String) throws -> Double? {
        guard let v = file["\(arch).\(key)"] else { return nil }
        guard let d = v.double else {
            throw ModelError.invalidConfiguration(path: file.path, reason: "metadata '\(arch).\(key)': expected a number, found \(v.type)")
        }
        return d
    }

    public func string(_ key: String) -> String? { file["\(arch).\(key)"]?.string }

    /// The vocabulary size: the token embedding's rows (and `<arch>.vocab_size` must agree when present).
    public func vocabularySize() throws -> Int {
        guard let e = file.tensor(named: ModelTensor.tokenEmbedding.ggufName), e.shape.count == 2 else {
            throw ModelError.missingTensor(path: file.path, tensor: ModelTensor.tokenEmbedding.ggufName)
        }
        if let v = try int("vocab_size"), v != e.shape[1] {
            throw ModelError.invalidConfiguration(path: file.path, reason: "metadata '\(arch).vocab_size' is \(v) but token_embd.weight has \(e.shape[1]) rows")
        }
        return e.shape[1]
    }

    /// An integer per layer: a per-layer array (llama.cpp's `get_key_or_arr`, as pruned models store FFN widths and
    /// head counts) or one integer for every layer; nil when absent.
    public func intPerLayer(_ key: String, layers: Int) throws -> [Int]? {
        guard let v = file["\(arch).\(key)"] else { return nil }
        if case .array(let values) = v {
            guard values.count == layers else {
                throw ModelError.invalidConfiguration(path: file.path, reason: "metadata '\(arch).\(key)': \(values.count) values for \(layers) layers")
            }
            return try values.map { e in
                guard let i = e.int else {
                    throw ModelError.invalidConfiguration(path: file.path, reason: "metadata '\(arch).\(key)': expected integers, found \(e.type)")
                }
                return i
            }
        }
        guard let i = v.int else {
            throw ModelError.invalidConfiguration(path: file.path, reason: "metadata '\(arch).\(key)': expected an integer or an array of integers, found \(v.type)")
        }
        return [Int](repeating: i, count: max(0, min(layers, ModelConfig.limits.layers)))
    }

    /// The sizes every family stores the same way, with llama.cpp's defaults where a key is optional. FFN width and
    /// head counts may be per-layer arrays; the scalars are then the largest values and `layerWidths` has them all.
    public struct Sizes {
        public var dim: Int, hiddenDim: Int, layers: Int, heads: Int, kvHeads: Int, headDim: Int, context: Int
        public var layerWidths: [LayerWidths]?
    }

    public func baseSizes() throws -> Sizes {
        let dim = try requiredInt("embedding_length"), layers = try requiredInt("block_count")
        guard layers > 0, layers <= ModelConfig.limits.layers else {
            throw ModelError.invalidConfiguration(path: file.path, reason: "metadata '\(arch).block_count': \(layers) is outside 1 ... \(ModelConfig.limits.layers)")
        }
        guard let ffn = try intPerLayer("feed_forward_length", layers: layers) else {
            throw ModelError.missingMetadata(path: file.path, key: "\(arch).feed_forward_length")
        }
        guard let heads = try intPerLayer("attention.head_count", layers: layers) else {
            throw ModelError.missingMetadata(path: file.path, key: "\(arch).attention.head_count")
        }
        let kvHeads = try intPerLayer("attention.head_count_kv", layers: layers) ?? heads
        let headDim: Int
        if let k = try int("attention.key_length") {
            headDim = k
            if let v = try int("attention.value_length"), v != k {
                throw ModelError.invalidConfiguration(path: file.path, reason: "metadata '\(arch).attention.value_length' \(v) differs from '\(arch).attention.key_length' \(k); not supported")
            }
        } else {
            // llama.cpp: the first layer's heads.
            guard heads[0] > 0, dim % heads[0] == 0 else {
                throw ModelError.invalidConfiguration(path: file.path, reason: "metadata '\(arch).attention.head_count' \(heads[0]) does not divide embedding_length \(dim) (and key_length is absent)")
            }
            headDim = dim / heads[0]
        }
        let widths = (0 ..< layers).map { LayerWidths(ffn: ffn[$0], heads: heads[$0], kvHeads: kvHeads[$0]) }
        let uniform = widths.allSatisfy { $0 == widths[0] }
        return Sizes(dim: dim, hiddenDim: ffn.max()!, layers: layers, heads: heads.max()!, kvHeads: kvHeads.max()!, headDim: headDim,
                     context: try int("context_length") ?? 2048, layerWidths: uniform ? nil : widths)
    }

    /// A Llama-style block as llama.cpp's metadata describes it (RMSNorm with `epsilon` when the file has none, GQA
    /// with RoPE of `ropeStyle`, SwiGLU, output tied when the file has no `output.weight`); the family adds its flags.
    public func llamaStyleConfiguration(architecture: String, ropeStyle: RoPEStyle, epsilon: Double, attentionBias: Bool = false,
                                        qkNorm: Bool = false) throws -> ModelConfig {
        let s = try baseSizes()
        return ModelConfig(
            architecture: architecture, dim: s.dim, hiddenDim: s.hiddenDim, layers: s.layers, heads: s.heads, kvHeads: s.kvHeads,
            headDim: s.headDim, vocabSize: try vocabularySize(), contextLength: s.context,
            normEpsilon: Float(try double("attention.layer_norm_rms_epsilon") ?? epsilon),
            ropeBase: try double("rope.freq_base") ?? 10000, ropeDimensions: try int("rope.dimension_count") ?? s.headDim,
            ropeStyle: ropeStyle, ropeLinearScale: try linearRoPEScale(), tiedEmbeddings: !has(.output),
            attentionBias: attentionBias, qkNorm: qkNorm, layerWidths: s.layerWidths)
    }

    /// `rope.scaling.type` "linear" (or the older `rope.scale_linear`): the factor positions are divided by; 1 otherwise.
    public func linearRoPEScale() throws -> Double {
        if string("rope.scaling.type") == "linear" { return try double("rope.scaling.factor") ?? 1 }
        return try double("rope.scale_linear") ?? 1
    }

    /// Whether the tensor table has `tensor`.
    public func has(_ tensor: ModelTensor) -> Bool { file.tensor(named: tensor.ggufName) != nil }

    /// The keys every family writes (llama.cpp's names), for a GGUF writer.
    /// Widths that differ between layers are written as per-layer arrays (llama.cpp's `get_key_or_arr`).
    public static func metadata(_ c: ModelConfig, arch: String) -> [(String, GGUFValue)] {
        func perLayer(_ value: (Int) -> Int) -> GGUFValue {
            let v = (0 ..< c.layers).map(value)
            guard let first = v.first, v.contains(where: { $0 != first }) else { return .uint32(UInt32(v.first ?? 0)) }
            return .array(elementType: .uint32, values: v.map { .uint32(UInt32($0)) })
        }
        var m: [(String, GGUFValue)] = [
            ("general.architecture", .string(arch)),
            ("\(arch).context_length", .uint32(UInt32(c.contextLength))),
            ("\(arch).embedding_length", .uint32(UInt32(c.dim))),
            ("\(arch).feed_forward_length", perLayer { c.hiddenDim(layer: $0) }),
            ("\(arch).block_count", .uint32(UInt32(c.layers))),
            ("\(arch).attention.head_count", perLayer { c.heads(layer: $0) }),
            ("\(arch).attention.head_count_kv", perLayer { c.kvHeads(layer: $0) }),
            ("\(arch).attention.key_length", .uint32(UInt32(c.headDim))),
            ("\(arch).attention.value_length", .uint32(UInt32(c.headDim))),
            ("\(arch).attention.layer_norm_rms_epsilon", .float32(c.normEpsilon)),
            ("\(arch).rope.dimension_count", .uint32(UInt32(c.ropeDimensions))),
            ("\(arch).vocab_size", .uint32(UInt32(c.vocabSize))),
        ]
        // The global layers' base and scaling (Gemma's local layers are described by the family's own keys).
        if let global = c.layerAttention.first(where: { $0.slidingWindow == nil }) ?? c.layerAttention.first {
            m.append(("\(arch).rope.freq_base", .float32(Float(global.ropeBase))))
            if global.ropeLinearScale != 1 {
                m.append(("\(arch).rope.scaling.type", .string("linear")))
                m.append(("\(arch).rope.scaling.factor", .float32(Float(global.ropeLinearScale))))
            }
        }
        return m
    }
}

extension HFConfig {
    /// `rope_scaling` (or the full-attention entry of `rope_parameters`) when it is linear: its factor; 1 when absent.
    /// Other kinds are handled by the families that know them (Llama 3) or refused.
    func linearRoPEScale(path: String, layerType: String = "full_attention") throws -> Double {
        let s = ropeParametersByLayerType?[layerType] ?? ropeScaling
        guard let s else { return 1 }
        switch s.kind {
        case "default": return 1
        case "linear": return s.factor ?? 1
        default:
            throw ModelError.invalidConfiguration(path: path, reason: "field 'rope_scaling': type '\(s.kind)' is not supported for \(modelType)")
        }
    }

    /// The RoPE base of layers of `layerType`: `rope_parameters[layerType].rope_theta` when present, else `fallback`.
    func ropeBase(layerType: String, fallback: Double) -> Double {
        ropeParametersByLayerType?[layerType]?.ropeTheta ?? fallback
    }

    /// Refuses an activation other than `expected` (`hidden_act`).
    func require(activation expected: String, family: String, path: String) throws {
        if let act = hiddenAct, act != expected {
            throw ModelError.invalidConfiguration(path: path, reason: "field 'hidden_act': '\(act)' is not supported (\(family) uses \(expected))")
        }
    }

    /// Qwen2's and Qwen3's configuration (transformers' Qwen2Config, Qwen3Config): Llama's sizes, RoPE rotating halves,
    /// sliding windows only with `use_sliding_window`, on the layers `layer_types` names or from `max_window_layers` on.
    func qwenStyleConfiguration(architecture: String, path: String, attentionBias: Bool, qkNorm: Bool) throws -> ModelConfig {
        let base = ropeTheta ?? 10000, scale = try linearRoPEScale(path: path)
        let layers = max(0, min(numHiddenLayers, ModelConfig.limits.layers))
        let windowed = useSlidingWindow == true ? slidingWindow : nil
        return ModelConfig(
            architecture: architecture, dim: hiddenSize, hiddenDim: intermediateSize, layers: numHiddenLayers,
            heads: numAttentionHeads, kvHeads: kvHeads, headDim: resolvedHeadDim, vocabSize: vocabSize,
            contextLength: maxPositionEmbeddings ?? 32768, normEpsilon: Float(rmsNormEps ?? 1e-6), ropeBase: base,
            ropeStyle: .halfSplit,
            layerAttention: (0 ..< layers).map { i in
                let sliding = isSlidingLayer(i) { windowed != nil && $0 >= (maxWindowLayers ?? 0) }
                return LayerAttention(slidingWindow: sliding ? windowed : nil, ropeBase: base, ropeLinearScale: scale)
            },
            tiedEmbeddings: tied, attentionBias: attentionBias, qkNorm: qkNorm)
    }

    /// Whether layer `i` is a sliding-window layer: `layer_types` when present, else `default(i)`.
    func isSlidingLayer(_ i: Int, default d: (Int) -> Bool) -> Bool {
        if let t = layerTypes, i < t.count { return t[i] == "sliding_attention" }
        return d(i)
    }
}
