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
        try GGUFConfig(file).llamaStyleConfiguration(architecture: name, ropeStyle: ggufRoPEStyle, epsilon: 1e-6, attentionBias: true)
    }

    public static func configuration(hf c: HFConfig, path: String) throws -> ModelConfig {
        try c.require(activation: "silu", family: "Qwen2", path: path)
        return try c.qwenStyleConfiguration(architecture: name, path: path, attentionBias: true, qkNorm: false)
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
