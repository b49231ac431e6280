import Foundation
import SquishFormats

/// Gemma 3 (text): embedding rows scaled by √width; RMSNorm computing x · (1 + w); norms before and after both the
/// attention and the FFN ("sandwich"); RMSNorm over each query and key head before RoPE; GeGLU with tanh-approximated
/// GELU; multi-query or grouped attention with queries scaled by query_pre_attn_scalar^(−1/2); sliding-window
/// (local) layers interleaved with global ones, each kind with its own RoPE base (linear scaling, where configured,
/// only on global layers); output tied to the embedding. transformers: models/gemma3/modeling_gemma3.py.
///
/// What each source stores:
/// - Hugging Face (`gemma3_text`): norm weights w (the model multiplies by 1 + w); layer kinds as `layer_types` or
///   `sliding_window_pattern` (every n-th layer global); the local base as `rope_local_base_freq`.
/// - GGUF (`gemma3`, llama.cpp's converter): every norm weight with the 1 already added; the window as
///   `attention.sliding_window`; llama.cpp fixes the pattern at 6 and the local base at 10000 (Squish reads
///   `attention.sliding_window_pattern` and `rope.freq_base_swa` when present and writes them when they differ), and
///   derives the query scale from the model size (1/√head_dim, except 1/√(width/heads) for the 62-layer 27B; Squish
///   reads and writes `attention.scale` when it differs).
public enum Gemma3: Architecture {
    public static let name = "gemma3"
    public static let ggufArchitectures = ["gemma3"]
    public static let hfModelTypes = ["gemma3_text"]
    public static let ggufRoPEStyle = RoPEStyle.halfSplit
    static let defaultPattern = 6
    static let defaultLocalBase = 10000.0

    /// llama.cpp's query scale for a Gemma 3 GGUF without `attention.scale`.
    static func llamaCppAttentionScale(layers: Int, dim: Int, heads: Int, headDim: Int) -> Float {
        layers == 62 ? 1 / Float(dim / max(heads, 1)).squareRoot() : 1 / Float(headDim).squareRoot()
    }

    public static func configuration(gguf file: GGUFFile) throws -> ModelConfig {
        let g = try GGUFConfig(file)
        let s = try g.baseSizes()
        guard try g.double("attn_logit_softcapping") == nil, try g.double("final_logit_softcapping") == nil else {
            throw ModelError.invalidConfiguration(path: file.path, reason: "logit soft-capping (Gemma 2) is not supported")
        }
        let window = try g.int("attention.sliding_window")
        let layers = max(0, min(s.layers, ModelConfig.limits.layers))
        let sliding: [Bool]
        switch file["\(g.arch).attention.sliding_window_pattern"] {
        case .array(let array)?:
            let values = Array(array)
            guard values.count == s.layers, values.allSatisfy({ $0.bool != nil }) else {
                throw ModelError.invalidConfiguration(path: file.path, reason: "metadata '\(g.arch).attention.sliding_window_pattern': expected \(s.layers) booleans")
            }
            sliding = values.map { $0.bool! }
        case let v?:
            guard let n = v.int, n > 0 else {
                throw ModelError.invalidConfiguration(path: file.path, reason: "metadata '\(g.arch).attention.sliding_window_pattern': expected a positive integer")
            }
            sliding = (0 ..< layers).map { ($0 + 1) % n != 0 }
        case nil:
            sliding = (0 ..< layers).map { ($0 + 1) % defaultPattern != 0 }
        }
        guard window != nil || !sliding.contains(true) else {
            throw ModelError.missingMetadata(path: file.path, key: "\(g.arch).attention.sliding_window")
        }
        let globalBase = try g.double("rope.freq_base") ?? 1_000_000, localBase = try g.double("rope.freq_base_swa") ?? defaultLocalBase
        let scale = try g.linearRoPEScale()
        let attentionScale = try g.double("attention.scale").map(Float.init)
            ?? llamaCppAttentionScale(layers: s.layers, dim: s.dim, heads: s.heads, headDim: s.headDim)
        return ModelConfig(
            architecture: name, dim: s.dim, hiddenDim: s.hiddenDim, layers: s.layers, heads: s.heads, kvHeads: s.kvHeads,
            headDim: s.headDim, vocabSize: try g.vocabularySize(), contextLength: s.context,
            normEpsilon: Float(try g.double("attention.layer_norm_rms_epsilon") ?? 1e-6), ropeBase: globalBase,
            ropeDimensions: try g.int("rope.dimension_count") ?? s.headDim, ropeStyle: ggufRoPEStyle,
            layerAttention: sliding.map { local in
                local ? LayerAttention(slidingWindow: window, ropeBase: localBase)
                    : LayerAttention(ropeBase: globalBase, ropeLinearScale: scale)
            },
            tiedEmbeddings: !g.has(.output), qkNorm: true, postNorms: true, activation: .geluTanh,
            embeddingScale: Float(s.dim).squareRoot(), attentionScale: attentionScale, layerWidths: s.layerWidths)
    }

    public static func configuration(hf c: HFConfig, path: String) throws -> ModelConfig {
        guard c.attnLogitSoftcapping == nil, c.finalLogitSoftcapping == nil else {
            throw ModelError.invalidConfiguration(path: path, reason: "field 'attn_logit_softcapping'/'final_logit_softcapping': soft-capping is not supported")
        }
        if c.attentionBias == true {
            throw ModelError.invalidConfiguration(path: path, reason: "field 'attention_bias': biases are not supported for Gemma 3")
        }
        let act = c.hiddenActivation ?? c.hiddenAct ?? "gelu_pytorch_tanh"
        guard act == "gelu_pytorch_tanh" else {
            throw ModelError.invalidConfiguration(path: path, reason: "field 'hidden_activation': '\(act)' is not supported (Gemma 3 uses gelu_pytorch_tanh)")
        }
        let headDim = c.headDim ?? 256
        let window = c.slidingWindow ?? 4096, pattern = c.slidingWindowPattern ?? defaultPattern
        let globalBase = c.ropeBase(layerType: "full_attention", fallback: c.ropeTheta ?? 1_000_000)
        let localBase = c.ropeBase(layerType: "sliding_attention", fallback: c.ropeLocalBaseFreq ?? defaultLocalBase)
        let globalScale = try c.linearRoPEScale(path: path, layerType: "full_attention")
        let localScale = c.ropeParametersByLayerType == nil ? 1 : try c.linearRoPEScale(path: path, layerType: "sliding_attention")
        let layers = max(0, min(c.numHiddenLayers, ModelConfig.limits.layers))
        return ModelConfig(
            architecture: name, dim: c.hiddenSize, hiddenDim: c.intermediateSize, layers: c.numHiddenLayers,
            heads: c.numAttentionHeads, kvHeads: c.kvHeads, headDim: headDim, vocabSize: c.vocabSize,
            contextLength: c.maxPositionEmbeddings ?? 131_072, normEpsilon: Float(c.rmsNormEps ?? 1e-6), ropeBase: globalBase,
            ropeStyle: .halfSplit,
            layerAttention: (0 ..< layers).map { i in
                c.isSlidingLayer(i, default: { ($0 + 1) % pattern != 0 })
                    ? LayerAttention(slidingWindow: window, ropeBase: localBase, ropeLinearScale: localScale)
                    : LayerAttention(ropeBase: globalBase, ropeLinearScale: globalScale)
            },
            tiedEmbeddings: c.tieWordEmbeddings ?? true, qkNorm: true, postNorms: true, activation: .geluTanh,
            embeddingScale: Float(c.hiddenSize).squareRoot(),
            attentionScale: Float(1 / (c.queryPreAttnScalar ?? 256).squareRoot()))
    }

    public static func ggufMetadata(_ c: ModelConfig) -> [(String, GGUFValue)] {
        var m: [(String, GGUFValue)] = []
        let local = c.layerAttention.first { $0.slidingWindow != nil }
        if let w = local?.slidingWindow { m.append(("gemma3.attention.sliding_window", .uint32(UInt32(w)))) }
        let sliding = c.layerAttention.map { $0.slidingWindow != nil }
        if sliding != (0 ..< c.layers).map({ ($0 + 1) % defaultPattern != 0 }) {
            m.append(("gemma3.attention.sliding_window_pattern", .array(elementType: .bool, values: sliding.map { .bool($0) })))
        }
        if let base = local?.ropeBase, base != defaultLocalBase { m.append(("gemma3.rope.freq_base_swa", .float32(Float(base)))) }
        if c.attentionScale != llamaCppAttentionScale(layers: c.layers, dim: c.dim, heads: c.heads, headDim: c.headDim) {
            m.append(("gemma3.attention.scale", .float32(c.attentionScale)))
        }
        return m
    }

    public static func hfTensor(_ tensor: ModelTensor) -> HFTensor? {
        switch tensor {
        case .tokenEmbedding: return HFTensor("model.embed_tokens.weight")
        case .output: return HFTensor("lm_head.weight")
        case .outputNorm: return HFTensor("model.norm.weight", addsOne: true)
        case .ropeFrequencies: return nil
        case .block(let i, let t):
            let p = "model.layers.\(i)."
            switch t {
            case .attentionNorm: return HFTensor(p + "input_layernorm.weight", addsOne: true)
            case .attnQ: return HFTensor(p + "self_attn.q_proj.weight")
            case .attnK: return HFTensor(p + "self_attn.k_proj.weight")
            case .attnV: return HFTensor(p + "self_attn.v_proj.weight")
            case .attnOutput: return HFTensor(p + "self_attn.o_proj.weight")
            case .attnQNorm: return HFTensor(p + "self_attn.q_norm.weight", addsOne: true)
            case .attnKNorm: return HFTensor(p + "self_attn.k_norm.weight", addsOne: true)
            case .postAttentionNorm: return HFTensor(p + "post_attention_layernorm.weight", addsOne: true)
            case .ffnNorm: return HFTensor(p + "pre_feedforward_layernorm.weight", addsOne: true)
            case .ffnGate: return HFTensor(p + "mlp.gate_proj.weight")
            case .ffnUp: return HFTensor(p + "mlp.up_proj.weight")
            case .ffnDown: return HFTensor(p + "mlp.down_proj.weight")
            case .postFFNNorm: return HFTensor(p + "post_feedforward_layernorm.weight", addsOne: true)
            case .attnQBias, .attnKBias, .attnVBias: return nil
            }
        }
    }

    public static func hfConfig(_ c: ModelConfig, bos: Int?, eos: Int?, dtype: String) -> HFConfig {
        let local = c.layerAttention.first { $0.slidingWindow != nil }, global = c.layerAttention.first { $0.slidingWindow == nil }
        var h = HFConfig(architectures: ["Gemma3ForCausalLM"], modelType: "gemma3_text", hiddenSize: c.dim, intermediateSize: c.hiddenDim,
                         numHiddenLayers: c.layers, numAttentionHeads: c.heads, numKeyValueHeads: c.kvHeads, headDim: c.headDim,
                         rmsNormEps: Double(c.normEpsilon), ropeTheta: global?.ropeBase ?? 1_000_000,
                         ropeScaling: (global?.ropeLinearScale ?? 1) != 1 ? .init(ropeType: "linear", factor: global!.ropeLinearScale) : nil,
                         maxPositionEmbeddings: c.contextLength, vocabSize: c.vocabSize, tieWordEmbeddings: c.tiedEmbeddings,
                         bosTokenID: bos.map { .one($0) }, eosTokenID: eos.map { .one($0) }, torchDtype: dtype, attentionBias: false)
        h.hiddenActivation = "gelu_pytorch_tanh"
        h.queryPreAttnScalar = Double(1 / (c.attentionScale * c.attentionScale))
        h.ropeLocalBaseFreq = local?.ropeBase ?? defaultLocalBase
        h.slidingWindow = local?.slidingWindow
        h.layerTypes = c.layerAttention.map { $0.slidingWindow != nil ? "sliding_attention" : "full_attention" }
        return h
    }
}
