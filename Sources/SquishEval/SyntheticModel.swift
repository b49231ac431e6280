import Foundation
import SquishCore
import SquishFormats
import SquishModel

/// A Llama-architecture GGUF with random weights and a real model's shapes, for speed measurements on models that
/// are not downloaded (e.g. how decode of a 1B model uses the memory bandwidth). The tokenizer (all `tokenizer.*`
/// metadata) is copied from another GGUF, so the vocabulary — and the embedding and output rows — are that
/// tokenizer's. The output of such a model is noise; only its speed means anything.
public struct SyntheticModelShape: Codable, Sendable, Equatable {
    public let name: String
    public let dim: Int
    public let hiddenDim: Int
    public let layers: Int
    public let heads: Int
    public let kvHeads: Int
    public let contextLength: Int
    enum CodingKeys: String, CodingKey {
        case name, dim, layers, heads
        case hiddenDim = "hidden_dim", kvHeads = "kv_heads", contextLength = "context_length"
    }
    public init(name: String, dim: Int, hiddenDim: Int, layers: Int, heads: Int, kvHeads: Int, contextLength: Int = 2048) {
        self.name = name
        self.dim = dim
        self.hiddenDim = hiddenDim
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.contextLength = contextLength
    }

    /// TinyLlama-1.1B (config.json of TinyLlama/TinyLlama-1.1B-Chat-v1.0): 22 layers, width 2048, FFN 5632,
    /// 32 query heads and 4 KV heads of 64.
    public static let tinyllama = SyntheticModelShape(name: "tinyllama-1.1b", dim: 2048, hiddenDim: 5632, layers: 22,
                                                      heads: 32, kvHeads: 4)
    /// SmolLM2-135M (the default model): 30 layers, width 576, FFN 1536, 9 query heads and 3 KV heads of 64.
    public static let smollm2 = SyntheticModelShape(name: "smollm2-135m", dim: 576, hiddenDim: 1536, layers: 30,
                                                    heads: 9, kvHeads: 3)
    public static let known = [tinyllama, smollm2]
}

public struct SyntheticModelSummary: Codable, Sendable {
    public let path: String
    public let shape: SyntheticModelShape
    public let type: String
    public let vocabSize: Int
    public let tensors: Int
    public let parameters: Int
    public let fileBytes: Int
    enum CodingKeys: String, CodingKey {
        case path, shape, type, tensors, parameters
        case vocabSize = "vocab_size", fileBytes = "file_bytes"
    }
}

public enum SyntheticModel {
    /// Writes the model atomically to `path`: every matrix (embedding and output included) in `type`, norms f32 ones.
    /// Tensor names, shapes and metadata keys as llama.cpp's converter writes a Llama model.
    public static func write(shape s: SyntheticModelShape, type: GGMLType, tokenizerFrom tokenizerFile: GGUFFile,
                             to path: String, seed: UInt64 = 1, progress: ProgressBar? = nil) throws -> SyntheticModelSummary {
        guard RandomWeights.supports(type) else { throw FormatError.unsupportedType(type, operation: "synthetic weights") }
        guard s.heads > 0, s.dim % s.heads == 0, s.heads % max(s.kvHeads, 1) == 0 else {
            throw FormatError.shapeMismatch(path: path, tensor: "<config>", expected: "width a multiple of the heads, heads of the KV heads",
                                            found: "width \(s.dim), \(s.heads) heads, \(s.kvHeads) KV heads")
        }
        guard let tokens = tokenizerFile["tokenizer.ggml.tokens"]?.arrayValue, tokens.count > 0 else {
            throw FormatError.shapeMismatch(path: tokenizerFile.path, tensor: "tokenizer.ggml.tokens", expected: "a token list",
                                            found: "none")
        }
        let vocab = tokens.count
        let config = ModelConfig(architecture: Llama.name, dim: s.dim, hiddenDim: s.hiddenDim, layers: s.layers, heads: s.heads,
                                 kvHeads: s.kvHeads, headDim: s.dim / s.heads, vocabSize: vocab, contextLength: s.contextLength,
                                 normEpsilon: 1e-5, ropeBase: 10000, ropeStyle: Llama.ggufRoPEStyle, tiedEmbeddings: false)
        try config.validate(path: path, keys: .gguf(Llama.name))
        var w = GGUFWriter()
        for (key, value) in GGUFConfig.metadata(config, arch: Llama.name) { w.set(key, value) }
        w.set("general.name", .string("synthetic \(s.name) \(type.name) (random weights)"))
        for (key, value) in tokenizerFile.metadata where key.hasPrefix("tokenizer.") { w.set(key, value) }

        var counter: UInt64 = 0
        var parameters = 0
        for tensor in config.tensors() {
            let shape = config.shape(of: tensor)
            parameters += shape.reduce(1, *)
            if shape.count == 1 {
                // Norms: f32 ones.
                let n = shape[0]
                var b = [UInt8](repeating: 0, count: 4 * n)
                b.withUnsafeMutableBytes { p in for i in 0 ..< n { p.storeBytes(of: Float(1).bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) } }
                w.addTensor(name: tensor.ggufName, shape: shape, type: .f32, source: .bytes(b))
                continue
            }
            counter += 1
            let tensorSeed = seed &* 0x9E37_79B9 &+ counter
            w.addTensor(name: tensor.ggufName, shape: shape, type: type, source: .producer {
                defer { progress?.advance() }
                return try RandomWeights.bytes(type: type, rows: shape[1], columns: shape[0], seed: tensorSeed)
            })
        }
        try w.write(to: path)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        return SyntheticModelSummary(path: path, shape: s, type: type.name, vocabSize: vocab, tensors: w.tensors.count,
                                     parameters: parameters, fileBytes: size)
    }

    /// Matrices written by `write` (for a progress bar's total).
    public static func matrixCount(_ s: SyntheticModelShape) -> Int { 2 + 7 * s.layers }
}
