import Foundation
import SquishCore
import SquishFormats
import SquishKernels

/// A tensor as the model needs it: type, ggml-order shape and bytes (kept alive by the model's `storage`).
public struct TensorView {
    public let type: GGMLType
    public let shape: [Int]  // ggml order: shape[0] = row length
    public let data: UnsafeRawBufferPointer
    public init(type: GGMLType, shape: [Int], data: UnsafeRawBufferPointer) {
        self.type = type
        self.shape = shape
        self.data = data
    }
}

/// Where a model's tensors come from, by GGUF tensor name (`blk.3.attn_q.weight`, ...).
public protocol ModelTensorSource: AnyObject {
    var path: String { get }
    func tensor(_ name: String) -> TensorView?
}

extension GGUFFile: ModelTensorSource {
    public func tensor(_ name: String) -> TensorView? {
        guard let t = tensor(named: name) else { return nil }
        return TensorView(type: t.type, shape: t.shape, data: data(for: t))
    }
}

/// A Llama-family transformer whose weights stay in their stored block types (in the file's mapping).
public final class LlamaModel: @unchecked Sendable {
    public struct Layer {
        public let attentionNorm: [Float]  // [dim]
        public let wq: WeightMatrix  // [qDim rows × dim]
        public let wk: WeightMatrix  // [kvDim rows × dim]
        public let wv: WeightMatrix  // [kvDim rows × dim]
        public let wo: WeightMatrix  // [dim rows × qDim]
        public let bq: [Float]?, bk: [Float]?, bv: [Float]?  // Qwen2 biases, [qDim] / [kvDim]
        public let ffnNorm: [Float]  // [dim]
        public let gate: WeightMatrix  // [hiddenDim rows × dim]
        public let up: WeightMatrix  // [hiddenDim rows × dim]
        public let down: WeightMatrix  // [dim rows × hiddenDim]
    }

    public let config: LlamaConfig
    /// Keeps the memory behind every weight alive (e.g. the GGUF mapping).
    public let storage: AnyObject
    public let path: String
    public let embedding: WeightMatrix  // [vocab rows × dim]
    public let output: WeightMatrix  // [vocab rows × dim]; the embedding when tied
    public let outputNorm: [Float]  // [dim]
    public let layers: [Layer]
    /// Llama 3 style per-frequency divisors (`rope_freqs.weight`), [ropeDimensions / 2].
    public let ropeFrequencyFactors: [Float]?

    /// `base` with some weight matrices replaced (by GGUF tensor name; anything else shared with `base`), e.g. to
    /// score one candidate mix of quantization levels without reloading the model. The replacements must have the
    /// shapes of the matrices they replace.
    public init(base: LlamaModel, replacing replacements: [String: WeightMatrix]) throws {
        config = base.config
        storage = base.storage
        path = base.path
        outputNorm = base.outputNorm
        ropeFrequencyFactors = base.ropeFrequencyFactors
        func pick(_ m: WeightMatrix, _ name: String) throws -> WeightMatrix {
            guard let r = replacements[name] else { return m }
            guard r.rows == m.rows, r.columns == m.columns else {
                throw ModelError.shapeMismatch(path: base.path, tensor: name, expected: [m.columns, m.rows], found: [r.columns, r.rows])
            }
            return r
        }
        let tied = base.output.data == base.embedding.data && base.output.name == base.embedding.name
        embedding = try pick(base.embedding, "token_embd.weight")
        output = tied ? embedding : try pick(base.output, "output.weight")
        layers = try base.layers.enumerated().map { i, l in
            let p = "blk.\(i)."
            return Layer(attentionNorm: l.attentionNorm, wq: try pick(l.wq, p + "attn_q.weight"), wk: try pick(l.wk, p + "attn_k.weight"),
                         wv: try pick(l.wv, p + "attn_v.weight"), wo: try pick(l.wo, p + "attn_output.weight"),
                         bq: l.bq, bk: l.bk, bv: l.bv, ffnNorm: l.ffnNorm,
                         gate: try pick(l.gate, p + "ffn_gate.weight"), up: try pick(l.up, p + "ffn_up.weight"),
                         down: try pick(l.down, p + "ffn_down.weight"))
        }
    }

    public convenience init(gguf file: GGUFFile) throws {
        try self.init(config: try LlamaConfig(gguf: file), source: file)
    }

    public convenience init(path: String) throws {
        try self.init(gguf: try GGUFFile(path: path))
    }

    public init(config: LlamaConfig, source: ModelTensorSource, ropeFrequencyFactors factors: [Float]? = nil) throws {
        self.config = config
        storage = source
        path = source.path
        let path = source.path
        // Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/IQ4_NL/Q3_K matrices are repacked into 8-row interleaved blocks for the int8 kernels; the mapped
        // originals are released (read back from the file for embedding look-ups). SQUISH_NO_REPACK=1 turns it off.
        let repack = ProcessInfo.processInfo.environment["SQUISH_NO_REPACK"] == nil
        let releaseSource = (source as? GGUFFile)?.file.isMemoryMapped == true
        // SQ2-SQ4 matrices get a bit-plane copy for the lookup-table kernels; SQUISH_NO_LUT=1 turns it off.
        let lookupTables = ProcessInfo.processInfo.environment["SQUISH_NO_LUT"] == nil
        func view(_ name: String) throws -> TensorView {
            guard let t = source.tensor(name) else { throw ModelError.missingTensor(path: path, tensor: name) }
            return t
        }
        func matrix(_ name: String, rows: Int, columns: Int) throws -> WeightMatrix {
            let t = try view(name)
            guard t.shape.count == 2, t.shape[0] == columns, t.shape[1] == rows else {
                throw ModelError.shapeMismatch(path: path, tensor: name, expected: [columns, rows], found: t.shape)
            }
            guard Matmul.supports(t.type) else {
                throw ModelError.invalidConfiguration(path: path, reason: "tensor '\(name)': block type \(t.type.name) has no kernel yet")
            }
            let raw = try WeightMatrix(name: name, type: t.type, data: t.data, rows: rows, columns: columns)
            // SQ2-SQ4 matrices also get the bit-plane layout of the lookup-table kernels (decoding; prefill stays on the
            // int8 kernels, see Matmul.lookupTableMaxTokens), made from the stored blocks before any conversion. Ternary
            // types could too, but their bit planes read more bytes than their blocks and measured no faster (README).
            let lut = lookupTables && t.type.squishAffine != nil ? raw.withLookupTable() : raw
            let m = raw.convertedForKernels()
            // A converted matrix owns its memory: releasing those pages would lose the weights (and a TQ matrix keeps
            // its mapped blocks for prefill).
            let k = repack ? m.repacked(releaseSource: releaseSource && m.converted == nil) : m
            return k.adoptingLookupTable(from: lut)
        }
        func vector(_ name: String, _ n: Int) throws -> [Float] {
            let t = try view(name)
            guard t.shape.reduce(1, *) == n, t.shape[0] == n else {
                throw ModelError.shapeMismatch(path: path, tensor: name, expected: [n], found: t.shape)
            }
            let m = try WeightMatrix(name: name, type: t.type, data: t.data, rows: 1, columns: n)
            var out = [Float](repeating: 0, count: n)
            try out.withUnsafeMutableBufferPointer { try m.dequantizeRow(0, into: $0.baseAddress!) }
            return out
        }
        let c = config
        embedding = try matrix("token_embd.weight", rows: c.vocabSize, columns: c.dim)
        output = source.tensor("output.weight") != nil ? try matrix("output.weight", rows: c.vocabSize, columns: c.dim) : embedding
        outputNorm = try vector("output_norm.weight", c.dim)
        var layers: [Layer] = []
        for i in 0 ..< c.layers {
            let p = "blk.\(i)."
            layers.append(Layer(
                attentionNorm: try vector(p + "attn_norm.weight", c.dim),
                wq: try matrix(p + "attn_q.weight", rows: c.qDim, columns: c.dim),
                wk: try matrix(p + "attn_k.weight", rows: c.kvDim, columns: c.dim),
                wv: try matrix(p + "attn_v.weight", rows: c.kvDim, columns: c.dim),
                wo: try matrix(p + "attn_output.weight", rows: c.dim, columns: c.qDim),
                bq: c.attentionBias ? try vector(p + "attn_q.bias", c.qDim) : nil,
                bk: c.attentionBias ? try vector(p + "attn_k.bias", c.kvDim) : nil,
                bv: c.attentionBias ? try vector(p + "attn_v.bias", c.kvDim) : nil,
                ffnNorm: try vector(p + "ffn_norm.weight", c.dim),
                gate: try matrix(p + "ffn_gate.weight", rows: c.hiddenDim, columns: c.dim),
                up: try matrix(p + "ffn_up.weight", rows: c.hiddenDim, columns: c.dim),
                down: try matrix(p + "ffn_down.weight", rows: c.dim, columns: c.hiddenDim)))
        }
        self.layers = layers
        ropeFrequencyFactors = try factors
            ?? (source.tensor("rope_freqs.weight") != nil ? try vector("rope_freqs.weight", c.ropeDimensions / 2) : nil)
    }
}
