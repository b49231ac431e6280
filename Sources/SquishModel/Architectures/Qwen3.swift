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
        try GGUFConfig(file).llamaStyleConfiguration(architecture: name, ropeStyle: ggufRoPEStyle, epsilon: 1e-6, qkNorm: true)
    }

    public static func configuration(hf c: HFConfig, path: String) throws -> ModelConfig {
        if c.attentionBias == true {
            throw ModelError.invalidConfiguration(path: path, reason: "field 'attention_bias': biases are not supported for qwen3")
        }
        try c.require(activation: "silu", family: "Qwen3", path: path)
        return try c.qwenStyleConfiguration(architecture: name, path: path, attentionBias: false, qkNorm: true)
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
