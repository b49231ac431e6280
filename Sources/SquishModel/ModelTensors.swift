/// The tensors of a decoder-only transformer, named as llama.cpp's GGUF files name them (`blk.3.attn_q.weight`,
/// `token_embd.weight`, ...): the one place those names are written. Architectures say which of them a model has
/// (through its `ModelConfig`) and what their Hugging Face names are; everything else (loading, quantizers, presets,
/// level databases, export, inspect) goes through this enumeration.
public enum ModelTensor: Hashable, Sendable {
    case tokenEmbedding
    /// The output (unembedding) matrix; absent when tied to the embedding.
    case output
    case outputNorm
    /// Llama 3 RoPE frequency divisors, [ropeDimensions / 2].
    case ropeFrequencies
    case block(Int, BlockTensor)

    public var ggufName: String {
        switch self {
        case .tokenEmbedding: return "token_embd.weight"
        case .output: return "output.weight"
        case .outputNorm: return "output_norm.weight"
        case .ropeFrequencies: return "rope_freqs.weight"
        case .block(let i, let t): return "blk.\(i).\(t.rawValue)"
        }
    }

    public init?(ggufName name: String) {
        switch name {
        case "token_embd.weight": self = .tokenEmbedding
        case "output.weight": self = .output
        case "output_norm.weight": self = .outputNorm
        case "rope_freqs.weight": self = .ropeFrequencies
        default:
            guard name.hasPrefix("blk.") else { return nil }
            let rest = name.dropFirst(4)
            guard let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]), layer >= 0,
                  let t = BlockTensor(rawValue: String(rest[rest.index(after: dot)...])) else { return nil }
            self = .block(layer, t)
        }
    }
}

/// A tensor of one transformer block (GGUF suffix after `blk.N.`).
public enum BlockTensor: String, CaseIterable, Sendable, Codable {
    case attentionNorm = "attn_norm.weight"
    case attnQ = "attn_q.weight", attnK = "attn_k.weight", attnV = "attn_v.weight", attnOutput = "attn_output.weight"
    case attnQBias = "attn_q.bias", attnKBias = "attn_k.bias", attnVBias = "attn_v.bias"
    case attnQNorm = "attn_q_norm.weight", attnKNorm = "attn_k_norm.weight"
    case postAttentionNorm = "post_attention_norm.weight"
    case ffnNorm = "ffn_norm.weight"
    case ffnGate = "ffn_gate.weight", ffnUp = "ffn_up.weight", ffnDown = "ffn_down.weight"
    case postFFNNorm = "post_ffw_norm.weight"

    /// The linear layer this tensor is the weight matrix of.
    public var linear: LinearKind? { LinearKind.allCases.first { $0.tensor == self } }
}

/// A weight matrix of a transformer block, by llama.cpp's category name (what quantizers, presets and pruners
/// iterate). Every architecture Squish runs has these seven.
public enum LinearKind: String, CaseIterable, Sendable, Codable {
    case attnQ = "attn_q", attnK = "attn_k", attnV = "attn_v", attnOutput = "attn_output"
    case ffnGate = "ffn_gate", ffnUp = "ffn_up", ffnDown = "ffn_down"

    public var tensor: BlockTensor {
        switch self {
        case .attnQ: return .attnQ
        case .attnK: return .attnK
        case .attnV: return .attnV
        case .attnOutput: return .attnOutput
        case .ffnGate: return .ffnGate
        case .ffnUp: return .ffnUp
        case .ffnDown: return .ffnDown
        }
    }

    /// Where in the block this layer's input is seen.
    public var site: InputSite {
        switch self {
        case .attnQ, .attnK, .attnV: return .attentionInput
        case .attnOutput: return .attentionOutput
        case .ffnGate, .ffnUp: return .ffnInput
        case .ffnDown: return .ffnHidden
        }
    }
}

/// Where a linear layer's input is seen in a block: q/k/v read the normed attention input, o the attention output
/// (heads concatenated), gate/up the normed FFN input, down the gated hidden state.
public enum InputSite: String, CaseIterable, Sendable, Codable {
    case attentionInput, attentionOutput, ffnInput, ffnHidden

    public var consumers: [LinearKind] { LinearKind.allCases.filter { $0.site == self } }

    /// Features of the input in block `layer`.
    public func width(_ c: ModelConfig, layer: Int) -> Int {
        switch self {
        case .attentionInput, .ffnInput: return c.dim
        case .attentionOutput: return c.qDim(layer: layer)
        case .ffnHidden: return c.hiddenDim(layer: layer)
        }
    }
}

/// One matrix of the model as compression sees it: a block's linear layer, the token embedding or the output matrix.
public struct LinearLayer: Sendable, Equatable {
    public enum Role: Sendable, Equatable {
        case block(layer: Int, kind: LinearKind)
        case tokenEmbedding
        case output
    }
    public let role: Role
    public let rows: Int  // output channels
    public let columns: Int  // input features (the row length)

    public var tensor: ModelTensor {
        switch role {
        case .block(let l, let k): return .block(l, k.tensor)
        case .tokenEmbedding: return .tokenEmbedding
        case .output: return .output
        }
    }
    public var name: String { tensor.ggufName }
    /// llama.cpp's category: `attn_q` ... `ffn_down`, `token_embd`, `output`.
    public var kind: String {
        switch role {
        case .block(_, let k): return k.rawValue
        case .tokenEmbedding: return Self.embeddingKind
        case .output: return Self.outputKind
        }
    }
    public static let embeddingKind = "token_embd", outputKind = "output"
    public var layer: Int? { if case .block(let l, _) = role { return l } else { return nil } }
    public var linearKind: LinearKind? { if case .block(_, let k) = role { return k } else { return nil } }
}

extension ModelConfig {
    /// The tensors of block `layer` this configuration has, in llama.cpp's file order.
    public func blockTensors(_ layer: Int) -> [BlockTensor] {
        var t: [BlockTensor] = [.attentionNorm, .attnQ, .attnK, .attnV]
        if attentionBias { t += [.attnQBias, .attnKBias, .attnVBias] }
        if qkNorm { t += [.attnQNorm, .attnKNorm] }
        t.append(.attnOutput)
        if postNorms { t.append(.postAttentionNorm) }
        t += [.ffnNorm, .ffnGate, .ffnUp, .ffnDown]
        if postNorms { t.append(.postFFNNorm) }
        return t
    }

    /// The ggml shape ([row length, rows] for matrices) of a tensor of this configuration.
    public func shape(of tensor: ModelTensor) -> [Int] {
        switch tensor {
        case .tokenEmbedding, .output: return [dim, vocabSize]
        case .outputNorm: return [dim]
        case .ropeFrequencies: return [ropeDimensions / 2]
        case .block(let l, let t):
            let qDim = qDim(layer: l), kvDim = kvDim(layer: l), hiddenDim = hiddenDim(layer: l)
            switch t {
            case .attentionNorm, .ffnNorm, .postAttentionNorm, .postFFNNorm: return [dim]
            case .attnQ: return [dim, qDim]
            case .attnK, .attnV: return [dim, kvDim]
            case .attnOutput: return [qDim, dim]
            case .attnQBias: return [qDim]
            case .attnKBias, .attnVBias: return [kvDim]
            case .attnQNorm, .attnKNorm: return [headDim]
            case .ffnGate, .ffnUp: return [dim, hiddenDim]
            case .ffnDown: return [hiddenDim, dim]
            }
        }
    }

    /// Every tensor of the model (the RoPE frequency table only when `ropeFrequencies`), in llama.cpp's file order.
    public func tensors(ropeFrequencies: Bool = false) -> [ModelTensor] {
        var t: [ModelTensor] = [.tokenEmbedding]
        if ropeFrequencies { t.append(.ropeFrequencies) }
        for l in 0 ..< layers { t += blockTensors(l).map { .block(l, $0) } }
        t.append(.outputNorm)
        if !tiedEmbeddings { t.append(.output) }
        return t
    }

    /// The matrices compression works on: every block's linear layers in order, then the token embedding and (when
    /// not tied) the output matrix.
    public var linearLayers: [LinearLayer] {
        var out: [LinearLayer] = []
        for l in 0 ..< layers {
            for k in LinearKind.allCases {
                let s = shape(of: .block(l, k.tensor))
                out.append(LinearLayer(role: .block(layer: l, kind: k), rows: s[1], columns: s[0]))
            }
        }
        out.append(LinearLayer(role: .tokenEmbedding, rows: vocabSize, columns: dim))
        if !tiedEmbeddings { out.append(LinearLayer(role: .output, rows: vocabSize, columns: dim)) }
        return out
    }
}
