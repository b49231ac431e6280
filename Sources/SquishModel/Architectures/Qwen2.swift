import SquishFormats

/// Qwen2 and Qwen2.5: Llama's block with biases on the q, k and v projections; RoPE rotates halves in both sources.
/// transformers: models/qwen2/modeling_qwen2.py. Sliding windows only with `use_sliding_window` (off in the released
/// models), on layers from `max_window_layers` on.
///
/// What each source stores: GGUF (`qwen2`) and Hugging Face store the same tensors under their own names (no
/// permutation; llama.cpp runs qwen2 with NEOX-style RoPE).
public enum Qwen2: Architecture {
    public static let name = "qwen2"
    public static let ggufArchitectures = ["qwen2"]
    public static let hfModelTypes = ["qwen2"]
    public static let ggufRoPEStyle = RoPEStyle.halfSplit

    public static func configuration(gguf file: GGUFFile) throws -> ModelConfig {
        let g = try GGUFConfig(file)
        let s = try g.baseSizes()
        return ModelConfig(
            architecture: name, dim: s.dim, hiddenDim: s.hiddenDim, layers: s.layers, heads: s.heads, kvHeads: s.kvHeads,
            headDim: s.headDim, vocabSize: try g.vocabularySize(), contextLength: s.context,
            normEpsilon: Float(try g.double("attention.layer_norm_rms_epsilon") ?? 1e-6),
            ropeBase: try g.double("rope.freq_base") ?? 10000, ropeDimensions: try g.int("rope.dimension_count") ?? s.headDim,
            ropeStyle: ggufRoPEStyle, ropeLinearScale: try g.linearRoPEScale(), tiedEmbeddings: !g.has(.output),
            attentionBias: true, layerWidths: s.layerWidths)
    }

    public static func configuration(hf c: HFConfig, path: String) throws -> ModelConfig {
        if let act = c.hiddenAct, act != "silu" {
            throw ModelError.invalidConfiguration(path: path, reason: "field 'hidden_act': '\(act)' is not supported (Qwen2 uses silu)")
        }
        let base = c.ropeTheta ?? 10000, scale = try c.linearRoPEScale(path: path)
        let layers = max(0, min(c.numHiddenLayers, ModelConfig.limits.layers))
        let windowed = c.useSlidingWindow == true ? c.slidingWindow : nil
        return ModelConfig(
            architecture: name, dim: c.hiddenSize, hiddenDim: c.intermediateSize, layers: c.numHiddenLayers,
            heads: c.numAttentionHeads, kvHeads: c.kvHeads, headDim: c.resolvedHeadDim, vocabSize: c.vocabSize,
            contextLength: c.maxPositionEmbeddings ?? 32768, normEpsilon: Float(c.rmsNormEps ?? 1e-6), ropeBase: base,
            ropeStyle: .halfSplit,
            layerAttention: (0 ..< layers).map { i in
                let sliding = c.isSlidingLayer(i) { windowed != nil && $0 >= (c.maxWindowLayers ?? 0) }
                return LayerAttention(slidingWindow: sliding ? windowed : nil, ropeBase: base, ropeLinearScale: scale)
            },
            tiedEmbeddings: c.tied, attentionBias: true)
    }

    public static func hfTensor(_ tensor: ModelTensor) -> HFTensor? { llamaStyleHFTensor(tensor) }

    public static func hfConfig(_ c: ModelConfig, bos: Int?, eos: Int?, dtype: String) -> HFConfig {
        HFConfig(architectures: ["Qwen2ForCausalLM"], modelType: "qwen2", hiddenSize: c.dim, intermediateSize: c.hiddenDim,
                 numHiddenLayers: c.layers, numAttentionHeads: c.heads, numKeyValueHeads: c.kvHeads, headDim: nil,
                 rmsNormEps: Double(c.normEpsilon), ropeTheta: c.layerAttention.first?.ropeBase, ropeScaling: nil,
                 maxPositionEmbeddings: c.contextLength, vocabSize: c.vocabSize, tieWordEmbeddings: c.tiedEmbeddings,
                 bosTokenID: bos.map { .one($0) }, eosTokenID: eos.map { .one($0) }, torchDtype: dtype, attentionBias: nil,
                 hiddenAct: "silu")
    }
}
