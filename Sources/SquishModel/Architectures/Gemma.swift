import Foundation
import SquishFormats

/// Gemma (the first generation: Gemma 2B/7B, CodeGemma, Gemma 1.1): Llama's pre-norm block with the embedding rows
/// scaled by √width, RMSNorm computing x · (1 + w), GeGLU with tanh-approximated GELU, a head size of its own
/// (`head_dim`, 256 in the released models: the 7B's 16 heads make queries 4096 wide on a width of 3072),
/// multi-query (2B) or multi-head (7B) attention with the usual 1/√head_dim query scale, RoPE
/// rotating halves, output tied to the embedding. No QK-norm, no post-norms, no sliding window, no soft-capping
/// (those came with Gemma 2 and 3). transformers: models/gemma/modeling_gemma.py.
///
/// What each source stores:
/// - Hugging Face (`gemma`): norm weights w (the model multiplies by 1 + w, in float32); the activation as
///   `hidden_act`, where the released configs' "gelu" means the tanh approximation (transformers maps it to
///   gelu_pytorch_tanh; Gemma 1.1's configs also carry `hidden_activation`); `head_dim` defaults to 256 and
///   `tie_word_embeddings` to true. The embedding scale is √hidden_size rounded to the model's dtype (45.25 for the
///   2B in bfloat16); Squish, like llama.cpp, multiplies by the float32 √width.
/// - GGUF (`gemma`, llama.cpp's converter): every norm weight with the 1 already added; no `lm_head.weight` (the
///   converter drops it, llama.cpp always uses the embedding); no `rope.freq_base` (llama.cpp's default 10000 is
///   Gemma's θ); NEOX-style RoPE, Q and K not permuted.
public enum Gemma: Architecture {
    public static let name = "gemma"
    public static let ggufArchitectures = ["gemma"]
    public static let hfModelTypes = ["gemma"]
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
            activation: .geluTanh, embeddingScale: Float(s.dim).squareRoot())
    }

    public static func configuration(hf c: HFConfig, path: String) throws -> ModelConfig {
        if c.attentionBias == true {
            throw ModelError.invalidConfiguration(path: path, reason: "field 'attention_bias': biases (on q, k, v and o) are not supported for Gemma")
        }
        // transformers reads `hidden_act` ("gelu" is the released configs' name for the tanh approximation); older
        // versions read `hidden_activation` instead. Both must mean the tanh approximation.
        if let act = c.hiddenAct, act != "gelu", act != "gelu_pytorch_tanh" {
            throw ModelError.invalidConfiguration(path: path, reason: "field 'hidden_act': '\(act)' is not supported (Gemma uses gelu_pytorch_tanh)")
        }
        if let act = c.hiddenActivation, act != "gelu_pytorch_tanh" {
            throw ModelError.invalidConfiguration(path: path, reason: "field 'hidden_activation': '\(act)' is not supported (Gemma uses gelu_pytorch_tanh)")
        }
        let base = c.ropeTheta ?? 10000, scale = try c.linearRoPEScale(path: path)
        return ModelConfig(
            architecture: name, dim: c.hiddenSize, hiddenDim: c.intermediateSize, layers: c.numHiddenLayers,
            heads: c.numAttentionHeads, kvHeads: c.kvHeads, headDim: c.headDim ?? 256, vocabSize: c.vocabSize,
            contextLength: c.maxPositionEmbeddings ?? 8192, normEpsilon: Float(c.rmsNormEps ?? 1e-6), ropeBase: base,
            ropeStyle: .halfSplit, ropeLinearScale: scale, tiedEmbeddings: c.tieWordEmbeddings ?? true,
            activation: .geluTanh, embeddingScale: Float(c.hiddenSize).squareRoot())
    }

    /// Llama's checkpoint names; the three kinds of norm weight are stored as w for a (1 + w) scale.
    public static func hfTensor(_ tensor: ModelTensor) -> HFTensor? {
        switch tensor {
        case .block(_, .attnQBias), .block(_, .attnKBias), .block(_, .attnVBias), .block(_, .attnQNorm), .block(_, .attnKNorm):
            return nil
        case .outputNorm, .block(_, .attentionNorm), .block(_, .ffnNorm):
            return llamaStyleHFTensor(tensor).map { HFTensor($0.name, addsOne: true) }
        default:
            return llamaStyleHFTensor(tensor)
        }
    }

    public static func hfConfig(_ c: ModelConfig, bos: Int?, eos: Int?, dtype: String) -> HFConfig {
        let a = c.layerAttention.first
        return HFConfig(architectures: ["GemmaForCausalLM"], modelType: "gemma", hiddenSize: c.dim, intermediateSize: c.hiddenDim,
                        numHiddenLayers: c.layers, numAttentionHeads: c.heads, numKeyValueHeads: c.kvHeads, headDim: c.headDim,
                        rmsNormEps: Double(c.normEpsilon), ropeTheta: a?.ropeBase ?? 10000,
                        ropeScaling: (a?.ropeLinearScale ?? 1) != 1 ? .init(ropeType: "linear", factor: a!.ropeLinearScale) : nil,
                        maxPositionEmbeddings: c.contextLength, vocabSize: c.vocabSize, tieWordEmbeddings: c.tiedEmbeddings,
                        bosTokenID: bos.map { .one($0) }, eosTokenID: eos.map { .one($0) }, torchDtype: dtype, attentionBias: false,
                        hiddenAct: "gelu_pytorch_tanh")
    }
}
