import SquishFormats

/// Qwen3 (dense): Llama's block without biases, with an RMSNorm over each query and key head (weights [head_dim],
/// applied before RoPE), and a head size independent of width / heads (0.6B: 16 heads of 128 on a width of 1024).
/// transformers: models/qwen3/modeling_qwen3.py.
///
/// What each source stores: GGUF (`qwen3`) and Hugging Face store the same tensors under their own names; the q/k
/// norms are plain RMSNorm weights (x · w) in both.
public enum Qwen3: Architecture {
    public static let name = "qwen3"
    public static let ggufArchitectures = ["qwen3"]
    public static let hfModelTypes = ["qwen3"]
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
            qkNorm: true, layerWidths: s.layerWidths)
    }

    public static func configuration(hf c: HFConfig, path: String) throws -> ModelConfig {
        if c.attentionBias == true {
            throw ModelError.invalidConfiguration(path: path, reason: "field 'attention_bias': biases are not supported for qwen3")
        }
        if let act = c.hiddenAct, act != "silu" {
            throw ModelError.invalidConfiguration(path: path, reason: "field 'hidden_act': '\(act)' is not supported (Qwen3 uses silu)")
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
            tiedEmbeddings: c.tied, qkNorm: true)
    }

    public static func hfTensor(_ tensor: ModelTensor) -> HFTensor? { llamaStyleHFTensor(tensor) }

    public static func hfConfig(_ c: ModelConfig, bos: Int?, eos: Int?, dtype: String) -> HFConfig {
        HFConfig(architectures: ["Qwen3ForCausalLM"], modelType: "qwen3", hiddenSize: c.dim, intermediateSize: c.hiddenDim,
                 numHiddenLayers: c.layers, numAttentionHeads: c.heads, numKeyValueHeads: c.kvHeads, headDim: c.headDim,
                 rmsNormEps: Double(c.normEpsilon), ropeTheta: c.layerAttention.first?.ropeBase, ropeScaling: nil,
                 maxPositionEmbeddings: c.contextLength, vocabSize: c.vocabSize, tieWordEmbeddings: c.tiedEmbeddings,
                 bosTokenID: bos.map { .one($0) }, eosTokenID: eos.map { .one($0) }, torchDtype: dtype, attentionBias: false,
                 hiddenAct: "silu")
    }
}
