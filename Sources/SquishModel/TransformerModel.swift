import Foundation
import SquishCore
import SquishFormats
import SquishKernels
import Synchronization

/// A tensor as the model needs it: type, ggml-order shape and bytes (kept alive by the model's `storage`).
public struct TensorView {
    public let type: GGMLType
    public let shape: [Int]  // ggml order: shape[0] = row length
    public let data: UnsafeRawBufferPointer
    /// The rows are stored rotated on their input (see `RotatedInputs`).
    public let rotatedInput: Bool
    public init(type: GGMLType, shape: [Int], data: UnsafeRawBufferPointer, rotatedInput: Bool = false) {
        self.type = type
        self.shape = shape
        self.data = data
        self.rotatedInput = rotatedInput
    }
}

/// Matrices stored as W·Rᵀ with R the fixed rotation of their input (`HadamardRotation.weightInput`; QuaRot/QuIP#-style
/// incoherence, so that low-bit grids fit): the GGUF metadata key lists their names. Only Squish reads such files correctly; pipelines that read raw weights refuse them (`refuse`).
public enum RotatedInputs {
    public static let metadataKey = "squish.rotated_inputs"

    /// The names of `file`'s rotated matrices (empty for an ordinary file).
    public static func names(in file: GGUFFile) -> Set<String> {
        Set(file[metadataKey]?.stringArray ?? [])
    }

    /// The metadata value listing `names`.
    public static func value(_ names: [String]) -> GGUFValue {
        .array(elementType: .string, values: names.sorted().map { .string($0) })
    }

    /// Throws for a file with rotated matrices: `pipeline` reads raw weights and would see them rotated.
    public static func refuse(_ file: GGUFFile, pipeline: String) throws {
        if let first = names(in: file).sorted().first {
            throw ModelError.invalidConfiguration(path: file.path, reason: "\(pipeline) cannot take a model with rotated matrices ('\(first)', ...); give it the unrotated model")
        }
    }
}

/// Where a model's tensors come from. Tensors are asked for by their place in the model; a source that cannot read
/// one it has (a corrupt shard) throws, naming the cause.
public protocol ModelTensorSource: AnyObject {
    var path: String { get }
    func tensor(_ tensor: ModelTensor) throws -> TensorView?
}

extension GGUFFile: ModelTensorSource {
    public func tensor(_ tensor: ModelTensor) throws -> TensorView? {
        guard let t = self.tensor(named: tensor.ggufName) else { return nil }
        let rotated = self[RotatedInputs.metadataKey] != nil && RotatedInputs.names(in: self).contains(t.name)
        return TensorView(type: t.type, shape: t.shape, data: data(for: t), rotatedInput: rotated)
    }
}

/// How weight matrices are laid out for the kernels when a model is loaded (the file is never changed).
public struct KernelLayout: Sendable, Equatable {
    /// Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/IQ4_NL/Q3_K (and what the kernels add) repacked into 8-row interleaved blocks for the
    /// int8 kernels; the mapped originals are released (read back from the file for embedding look-ups).
    public var repack = true
    /// SQ2-SQ4 matrices also get the bit-plane layout of the lookup-table kernels (decoding).
    public var lookupTables = true
    public init(repack: Bool = true, lookupTables: Bool = true) {
        self.repack = repack
        self.lookupTables = lookupTables
    }

    /// The matrix `raw` (still in its stored type) prepared for the kernels.
    public func prepare(_ raw: WeightMatrix, releaseSource: Bool) -> WeightMatrix {
        // SQ2-SQ4 matrices also get the bit-plane layout of the lookup-table kernels (decoding; prefill stays on the
        // int8 kernels, see Matmul.lookupTableMaxTokens), made from the stored blocks before any conversion. Ternary
        // types could too, but their bit planes read more bytes than their blocks and measured no faster (README).
        let lut = lookupTables && raw.type.squishAffine != nil ? raw.withLookupTable() : raw
        let m = raw.convertedForKernels()
        // A converted matrix owns its memory: releasing those pages would lose the weights (and a TQ matrix keeps
        // its mapped blocks for prefill).
        let k = repack ? m.repacked(releaseSource: releaseSource && m.converted == nil) : m
        return k.adoptingLookupTable(from: lut)
    }
}

/// One transformer block's weights. Matrices are [rows × row length] with rows the output channels.
public struct TransformerLayer {
    public var attentionNorm: [Float]  // [dim]
    public var wq: WeightMatrix  // [qDim rows × dim]
    public var wk: WeightMatrix  // [kvDim rows × dim]
    public var wv: WeightMatrix  // [kvDim rows × dim]
    public var wo: WeightMatrix  // [dim rows × qDim]
    public var bq: [Float]?, bk: [Float]?, bv: [Float]?  // q/k/v biases, [qDim] / [kvDim]
    public var qNorm: [Float]?, kNorm: [Float]?  // per-head RMSNorm weights, [headDim]
    public var postAttentionNorm: [Float]?  // [dim]
    public var ffnNorm: [Float]  // [dim]
    public var gate: WeightMatrix  // [hiddenDim rows × dim]
    public var up: WeightMatrix  // [hiddenDim rows × dim]
    public var down: WeightMatrix  // [dim rows × hiddenDim]
    public var postFFNNorm: [Float]?  // [dim]

    public subscript(kind: LinearKind) -> WeightMatrix {
        get {
            switch kind {
            case .attnQ: return wq
            case .attnK: return wk
            case .attnV: return wv
            case .attnOutput: return wo
            case .ffnGate: return gate
            case .ffnUp: return up
            case .ffnDown: return down
            }
        }
        set {
            switch kind {
            case .attnQ: wq = newValue
            case .attnK: wk = newValue
            case .attnV: wv = newValue
            case .attnOutput: wo = newValue
            case .ffnGate: gate = newValue
            case .ffnUp: up = newValue
            case .ffnDown: down = newValue
            }
        }
    }

    /// The norm whose output is `site`'s input, where there is one (AWQ folds input scales into it).
    public func normBefore(_ site: InputSite) -> (tensor: BlockTensor, weights: [Float])? {
        switch site {
        case .attentionInput: return (.attentionNorm, attentionNorm)
        case .ffnInput: return (.ffnNorm, ffnNorm)
        case .attentionOutput, .ffnHidden: return nil
        }
    }

    public mutating func setNorm(_ tensor: BlockTensor, _ weights: [Float]) {
        switch tensor {
        case .attentionNorm: attentionNorm = weights
        case .ffnNorm: ffnNorm = weights
        case .postAttentionNorm: postAttentionNorm = weights
        case .postFFNNorm: postFFNNorm = weights
        case .attnQNorm: qNorm = weights
        case .attnKNorm: kNorm = weights
        default: preconditionFailure("\(tensor) is not a norm")
        }
    }
}

/// A decoder-only transformer of any registered architecture, weights in their stored block types (in the file's
/// mapping, or repacked for the kernels).
public final class TransformerModel: @unchecked Sendable {  // immutable after init but for a memo behind its lock; weights are read-only
    public let config: ModelConfig
    /// RetrievalHeads.scores of this model, measured once when a head-aware cache first asks.
    let headScoreMemo = Mutex<[[Double]]?>(nil)
    /// RetrievalHeads.queryEnergies, measured on first use.
    let queryEnergyMemo = Mutex<[[[Float]]]?>(nil)
    public let family: any Architecture.Type
    /// Keeps the memory behind every weight alive (e.g. the GGUF mapping).
    public let storage: AnyObject
    public let path: String
    public let embedding: WeightMatrix  // [vocab rows × dim]
    public let output: WeightMatrix  // [vocab rows × dim]; the embedding when tied
    public let outputNorm: [Float]  // [dim]
    public let layers: [TransformerLayer]
    /// Llama 3 style per-frequency divisors, [ropeDimensions / 2].
    public let ropeFrequencyFactors: [Float]?

    /// `base` with some weight matrices replaced (by GGUF tensor name; anything else shared with `base`), e.g. to
    /// score one candidate mix of quantization levels without reloading the model. The replacements must have the
    /// shapes of the matrices they replace.
    public init(base: TransformerModel, replacing replacements: [String: WeightMatrix]) throws {
        config = base.config
        family = base.family
        storage = base.storage
        path = base.path
        outputNorm = base.outputNorm
        ropeFrequencyFactors = base.ropeFrequencyFactors
        func pick(_ m: WeightMatrix, _ tensor: ModelTensor) throws -> WeightMatrix {
            guard let r = replacements[tensor.ggufName] else { return m }
            guard r.rows == m.rows, r.columns == m.columns else {
                throw ModelError.shapeMismatch(path: base.path, tensor: tensor.ggufName, expected: [m.columns, m.rows], found: [r.columns, r.rows])
            }
            return r
        }
        embedding = try pick(base.embedding, .tokenEmbedding)
        output = base.config.tiedEmbeddings ? embedding : try pick(base.output, .output)
        layers = try base.layers.enumerated().map { i, l in
            var layer = l
            for k in LinearKind.allCases { layer[k] = try pick(l[k], .block(i, k.tensor)) }
            return layer
        }
    }

    /// A model with the structure `config` made from `base`'s weights: `layers` are the blocks (e.g. some of `base`'s
    /// dropped, others narrowed), checked against `config`'s shapes; embedding, output and final norm are `base`'s
    /// (with `output`/`embedding` replacing them when given).
    public init(base: TransformerModel, config: ModelConfig, layers: [TransformerLayer], embedding: WeightMatrix? = nil,
                output: WeightMatrix? = nil) throws {
        try config.validate(path: base.path, keys: .gguf(config.architecture))
        guard config.layers == layers.count, config.dim == base.config.dim, config.vocabSize == base.config.vocabSize,
              config.tiedEmbeddings == base.config.tiedEmbeddings else {
            throw ModelError.invalidConfiguration(path: base.path, reason: "a pruned structure must keep the width, vocabulary and embedding tying, and give one block per layer")
        }
        self.config = config
        family = base.family
        storage = base.storage
        path = base.path
        outputNorm = base.outputNorm
        ropeFrequencyFactors = base.ropeFrequencyFactors
        self.embedding = embedding ?? base.embedding
        self.output = config.tiedEmbeddings ? self.embedding : (output ?? base.output)
        for (i, l) in layers.enumerated() {
            for k in LinearKind.allCases {
                let s = config.shape(of: .block(i, k.tensor)), m = l[k]
                guard m.rows == s[1], m.columns == s[0] else {
                    throw ModelError.shapeMismatch(path: base.path, tensor: ModelTensor.block(i, k.tensor).ggufName, expected: s, found: [m.columns, m.rows])
                }
            }
            for (t, v) in [(BlockTensor.attnQBias, l.bq), (.attnKBias, l.bk), (.attnVBias, l.bv)] {
                if let v, v.count != config.shape(of: .block(i, t))[0] {
                    throw ModelError.shapeMismatch(path: base.path, tensor: ModelTensor.block(i, t).ggufName, expected: config.shape(of: .block(i, t)), found: [v.count])
                }
            }
        }
        self.layers = layers
    }

    /// A GGUF file of any registered architecture.
    public convenience init(gguf file: GGUFFile, layout: KernelLayout = KernelLayout()) throws {
        let config = try Architectures.configuration(gguf: file)
        try self.init(config: config, source: file, layout: layout)
    }

    public convenience init(path: String, layout: KernelLayout = KernelLayout()) throws {
        try self.init(gguf: try GGUFFile(path: path), layout: layout)
    }

    /// Binds the tensors of `config`'s structure from `source`, checking each one's shape, type and (for vectors)
    /// finiteness. `ropeFrequencyFactors` overrides the source's `rope_freqs.weight`.
    public init(config: ModelConfig, source: ModelTensorSource, ropeFrequencyFactors factors: [Float]? = nil,
                layout: KernelLayout = KernelLayout()) throws {
        guard let family = Architectures.family(named: config.architecture) else {
            throw ModelError.unsupportedArchitecture(path: source.path, architecture: config.architecture, supported: Architectures.supportedGGUF)
        }
        self.config = config
        self.family = family
        storage = source
        path = source.path
        let path = source.path
        let releaseSource = (source as? GGUFFile)?.file.isMemoryMapped == true
        func view(_ t: ModelTensor) throws -> TensorView {
            guard let v = try source.tensor(t) else { throw ModelError.missingTensor(path: path, tensor: t.ggufName) }
            let expected = config.shape(of: t)
            // Trailing dimensions of 1 are the same shape (some writers store vectors as [n, 1]).
            guard v.shape.count >= expected.count, Array(v.shape.prefix(expected.count)) == expected,
                  v.shape.dropFirst(expected.count).allSatisfy({ $0 == 1 }) else {
                throw ModelError.shapeMismatch(path: path, tensor: t.ggufName, expected: expected, found: v.shape)
            }
            return v
        }
        func matrix(_ t: ModelTensor) throws -> WeightMatrix {
            let v = try view(t)
            guard Matmul.supports(v.type) else {
                throw ModelError.invalidConfiguration(path: path, reason: "tensor '\(t.ggufName)': block type \(v.type.name) has no kernel yet")
            }
            let s = config.shape(of: t)
            let raw = try WeightMatrix(name: t.ggufName, type: v.type, data: v.data, rows: s[1], columns: s[0])
            return layout.prepare(v.rotatedInput ? raw.rotatingInput() : raw, releaseSource: releaseSource)
        }
        func vector(_ t: ModelTensor) throws -> [Float] {
            let v = try view(t)
            let n = config.shape(of: t)[0]
            let m = try WeightMatrix(name: t.ggufName, type: v.type, data: v.data, rows: 1, columns: n)
            var out = [Float](repeating: 0, count: n)
            try out.withUnsafeMutableBufferPointer { try m.dequantizeRow(0, into: $0.baseAddress!) }
            if let i = out.firstIndex(where: { !$0.isFinite }) {
                throw ModelError.nonFiniteWeights(path: path, tensor: t.ggufName, index: i, value: out[i])
            }
            return out
        }
        embedding = try matrix(.tokenEmbedding)
        if config.tiedEmbeddings {
            output = embedding
        } else {
            guard try source.tensor(.output) != nil else {
                throw ModelError.invalidConfiguration(path: path, reason: "the configuration has an untied output matrix but the file has no tensor '\(ModelTensor.output.ggufName)'")
            }
            output = try matrix(.output)
        }
        outputNorm = try vector(.outputNorm)
        var layers: [TransformerLayer] = []
        for i in 0 ..< config.layers {
            let has = Set(config.blockTensors(i))
            func optional(_ t: BlockTensor) throws -> [Float]? { has.contains(t) ? try vector(.block(i, t)) : nil }
            layers.append(TransformerLayer(
                attentionNorm: try vector(.block(i, .attentionNorm)),
                wq: try matrix(.block(i, .attnQ)), wk: try matrix(.block(i, .attnK)), wv: try matrix(.block(i, .attnV)),
                wo: try matrix(.block(i, .attnOutput)),
                bq: try optional(.attnQBias), bk: try optional(.attnKBias), bv: try optional(.attnVBias),
                qNorm: try optional(.attnQNorm), kNorm: try optional(.attnKNorm),
                postAttentionNorm: try optional(.postAttentionNorm),
                ffnNorm: try vector(.block(i, .ffnNorm)),
                gate: try matrix(.block(i, .ffnGate)), up: try matrix(.block(i, .ffnUp)), down: try matrix(.block(i, .ffnDown)),
                postFFNNorm: try optional(.postFFNNorm)))
        }
        self.layers = layers
        if let factors {
            ropeFrequencyFactors = factors
        } else if try source.tensor(.ropeFrequencies) != nil {
            ropeFrequencyFactors = try vector(.ropeFrequencies)
        } else {
            ropeFrequencyFactors = nil
        }
        if let f = ropeFrequencyFactors, let bad = f.first(where: { !($0 > 0) }) {
            throw ModelError.invalidConfiguration(path: path, reason: "tensor '\(ModelTensor.ropeFrequencies.ggufName)': RoPE frequency divisors must be positive, found \(bad)")
        }
    }

    /// The matrix of a linear layer (the source level for compression).
    public func matrix(_ layer: LinearLayer) -> WeightMatrix {
        switch layer.role {
        case .block(let l, let k): return layers[l][k]
        case .tokenEmbedding: return embedding
        case .output: return output
        }
    }

    /// The matrices compression works on (`ModelConfig.linearLayers`).
    public var linearLayers: [LinearLayer] { config.linearLayers }

    /// Bytes of the matrices one decoded token multiplies, as the decode kernels read them: every layer's linear
    /// layers and the output matrix (the embedding contributes one row, left out); the bit-plane layout where the
    /// lookup tables run, the (possibly converted) blocks otherwise.
    public var matrixBytesPerToken: Int {
        func b(_ m: WeightMatrix) -> Int { m.lut?.bytes ?? m.rows * m.rowBytes }
        return layers.reduce(b(output)) { sum, l in LinearKind.allCases.reduce(sum) { $0 + b(l[$1]) } }
    }
}
