import Foundation
import SquishFormats

/// Llama 2/3 (and SmolLM2, TinyLlama, Mistral): pre-norm blocks of RMSNorm → GQA attention with RoPE → RMSNorm →
/// SwiGLU, untied or tied output. transformers: models/llama/modeling_llama.py, models/mistral/modeling_mistral.py.
///
/// What each source stores:
/// - GGUF (`llama`): Q and K rows permuted by llama.cpp's converter so that RoPE rotates adjacent pairs; Llama 3.1's
///   frequency divisors as the tensor `rope_freqs.weight`; Mistral's sliding window is not recorded (llama.cpp runs
///   full attention, and so does Squish on GGUF).
/// - Hugging Face: Q and K as trained (RoPE rotates halves); `rope_scaling` of type "llama3" gives the divisors,
///   "linear" a position scale; `sliding_window` (Mistral 7B v0.1) applies to every layer.
public enum Llama: Architecture {
    public static let name = "llama"
    /// "deci" (llama.cpp's name for Llama blocks whose FFN widths and head counts differ by layer, as in
    /// Llama-3.1-Nemotron-51B) is what Squish writes for pruned Llama models with per-layer widths.
    public static let ggufArchitectures = ["llama", "mistral", "deci"]
    public static let hfModelTypes = ["llama", "mistral"]
    public static let ggufRoPEStyle = RoPEStyle.adjacentPairs

    public static func configuration(gguf file: GGUFFile) throws -> ModelConfig {
        let g = try GGUFConfig(file)
        return try g.llamaStyleConfiguration(architecture: name, ropeStyle: ggufRoPEStyle, epsilon: 1e-5, attentionBias: g.has(.block(0, .attnQBias)))
    }

    public static func configuration(hf c: HFConfig, path: String) throws -> ModelConfig {
        if c.attentionBias == true || c.mlpBias == true {
            throw ModelError.invalidConfiguration(path: path, reason: "field 'attention_bias'/'mlp_bias': biases on Llama's output and FFN projections are not supported")
        }
        try c.require(activation: "silu", family: "Llama", path: path)
        let headDim = c.resolvedHeadDim
        // llama3 scaling is applied through frequency divisors (`ropeFrequencyFactors`), not a position scale.
        let scale = c.ropeScaling?.kind == "llama3" ? 1 : try c.linearRoPEScale(path: path)
        let base = c.ropeTheta ?? 10000
        let window = c.modelType == "mistral" ? c.slidingWindow : nil
        return ModelConfig(
            architecture: name, dim: c.hiddenSize, hiddenDim: c.intermediateSize, layers: c.numHiddenLayers,
            heads: c.numAttentionHeads, kvHeads: c.kvHeads, headDim: headDim, vocabSize: c.vocabSize,
            contextLength: c.maxPositionEmbeddings ?? 2048, normEpsilon: Float(c.rmsNormEps ?? 1e-6), ropeBase: base,
            ropeStyle: .halfSplit,
            layerAttention: (0 ..< max(0, min(c.numHiddenLayers, ModelConfig.limits.layers))).map { _ in
                LayerAttention(slidingWindow: window, ropeBase: base, ropeLinearScale: scale)
            },
            tiedEmbeddings: c.tied)
    }

    public static func hfTensor(_ tensor: ModelTensor) -> HFTensor? { llamaStyleHFTensor(tensor) }

    /// llama.cpp's "llama" architecture takes one FFN width and head count for all layers; "deci" takes per-layer
    /// arrays of both (its attention-free and linear-attention layers are not used).
    public static func ggufArchitecture(_ c: ModelConfig) -> String { c.hasLayerWidths ? "deci" : name }

    public static func hfConfig(_ c: ModelConfig, bos: Int?, eos: Int?, dtype: String) -> HFConfig {
        HFConfig(architectures: ["LlamaForCausalLM"], modelType: "llama", hiddenSize: c.dim, intermediateSize: c.hiddenDim,
                 numHiddenLayers: c.layers, numAttentionHeads: c.heads, numKeyValueHeads: c.kvHeads, headDim: c.headDim,
                 rmsNormEps: Double(c.normEpsilon), ropeTheta: c.layerAttention.first?.ropeBase,
                 ropeScaling: (c.layerAttention.first?.ropeLinearScale ?? 1) != 1
                     ? .init(ropeType: "linear", factor: c.layerAttention.first!.ropeLinearScale) : nil,
                 maxPositionEmbeddings: c.contextLength, vocabSize: c.vocabSize, tieWordEmbeddings: c.tiedEmbeddings,
                 bosTokenID: bos.map { .one($0) }, eosTokenID: eos.map { .one($0) }, torchDtype: dtype, attentionBias: false,
                 hiddenAct: "silu")
    }

    /// Llama 3.1 frequency divisors from `rope_scaling` of type "llama3" (per rotary pair), nil otherwise
    /// (transformers' `_compute_llama3_parameters`).
    public static func ropeFrequencyFactors(hf c: HFConfig, config: ModelConfig) -> [Float]? {
        guard let s = c.ropeScaling, s.kind == "llama3", let factor = s.factor else { return nil }
        let low = s.lowFreqFactor ?? 1, high = s.highFreqFactor ?? 4
        let old = Double(s.originalMaxPositionEmbeddings ?? 8192)
        let base = c.ropeTheta ?? 10000
        let d = config.ropeDimensions
        return (0 ..< d / 2).map { i in
            let freq = pow(base, -2.0 * Double(i) / Double(d))
            let wavelen = 2 * Double.pi / freq
            if wavelen < old / high { return 1 }
            if wavelen > old / low { return Float(factor) }
            let smooth = (old / wavelen - low) / (high - low)
            let scaled = (1 - smooth) * freq / factor + smooth * freq
            return Float(freq / scaled)
        }
    }
}
