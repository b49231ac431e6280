import SquishFormats
import SquishModel

/// Tiny random-weight models written through Squish's own writers, for tests of loading and validation.
public enum TinyModel {
    /// A small configuration of `architecture` (all sizes small, every structure flag of the family set).
    public static func config(_ architecture: String = "llama", vocab: Int = 64) throws -> ModelConfig {
        switch architecture {
        case "gemma3":
            return ModelConfig(architecture: "gemma3", dim: 32, hiddenDim: 48, layers: 2, heads: 4, kvHeads: 1, headDim: 16,
                               vocabSize: vocab, contextLength: 128, normEpsilon: 1e-6, ropeBase: 1_000_000, ropeStyle: .halfSplit,
                               layerAttention: [LayerAttention(slidingWindow: 4, ropeBase: 10000), LayerAttention(ropeBase: 1_000_000)],
                               tiedEmbeddings: true, qkNorm: true, postNorms: true, activation: .geluTanh,
                               embeddingScale: Float(32).squareRoot(), attentionScale: 0.125)
        case "gemma":
            // q is 2 × 24 = 48 wide on a width of 32 (head_dim is its own setting), one KV head.
            return ModelConfig(architecture: "gemma", dim: 32, hiddenDim: 48, layers: 2, heads: 2, kvHeads: 1, headDim: 24,
                               vocabSize: vocab, contextLength: 128, normEpsilon: 1e-6, ropeBase: 10000, ropeStyle: .halfSplit,
                               tiedEmbeddings: true, activation: .geluTanh, embeddingScale: Float(32).squareRoot())
        case "qwen2":
            return ModelConfig(architecture: "qwen2", dim: 32, hiddenDim: 48, layers: 2, heads: 4, kvHeads: 2, headDim: 8,
                               vocabSize: vocab, contextLength: 128, normEpsilon: 1e-6, ropeBase: 10000, ropeStyle: .halfSplit,
                               tiedEmbeddings: true, attentionBias: true)
        default:
            return ModelConfig(architecture: "llama", dim: 32, hiddenDim: 48, layers: 2, heads: 4, kvHeads: 2, headDim: 8,
                               vocabSize: vocab, contextLength: 128, normEpsilon: 1e-5, ropeBase: 10000, ropeStyle: .adjacentPairs,
                               tiedEmbeddings: false)
        }
    }

    /// Writes `config` as a GGUF of its family with random F32 weights (norms near 1), then lets `edit` change the
    /// writer (metadata or tensors) before the file is written.
    public static func writeGGUF(_ config: ModelConfig, to path: String, seed: UInt64 = 7, edit: (inout GGUFWriter) -> Void = { _ in }) throws {
        guard let family = Architectures.family(named: config.architecture) else {
            throw TestSetupError("no family '\(config.architecture)'")
        }
        var w = GGUFWriter()
        for (k, v) in GGUFConfig.metadata(config, arch: family.name) + family.ggufMetadata(config) { w.set(k, v) }
        var rng = SplitMix64(seed: seed)
        for tensor in config.tensors() {
            let shape = config.shape(of: tensor)
            let n = shape.reduce(1, *)
            let isNorm = shape.count == 1 && !tensor.ggufName.hasSuffix(".bias")
            let scale: Float = shape.count == 2 ? 1 / Float(shape[0]).squareRoot() : 0.1
            let values = (0 ..< n).map { _ in (isNorm ? 1 : 0) + scale * Float(Double(rng.next() % 20001) / 10000 - 1) }
            w.addTensor(name: tensor.ggufName, shape: shape, type: .f32, source: .bytes(values.withUnsafeBytes { Array($0) }))
        }
        edit(&w)
        try w.write(to: path)
    }
}
