import Foundation
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel

/// What a level database holds for each matrix, and how it was made.
public struct LevelDatabaseOptions: Sendable {
    public var calibration = CalibrationOptions()
    public var gptq = GPTQOptions()
    /// Block types tried for every matrix, smallest first. Only those smaller than the matrix's stored type are
    /// kept; the stored type itself is always the top level (a lossless copy) when it has at most 8.5 bits.
    /// Around 4 bits, where most budgets land, there are three steps: SQ4N_G64 (4.25 bits), SQ4NX_G128 (4.3125, rows
    /// of a multiple of 128) and IQ4_NL (4.5), whose non-linear levels fit bell-shaped weights better than evenly
    /// spaced ones of the same sizes; SQ4NX's per-32 multipliers bring it close to IQ4_NL's error. Between 2 and 3
    /// bits, symmetric SQ3S_G64 (3.25 bits): rotated weights are near-symmetric, so it loses little to SQ3_G64.
    public var ladder: [GGMLType] = [.sq2_G64, .sq3s_G64, .sq3_G64, .sq4n_G64, .sq4nx_G128, .iq4_NL, .sq5_G64, .q8_0]
    /// Levels tried besides the ladder for large matrices (`LevelDatabase.isLarge`: in small models the embedding,
    /// often tied to the output). One such matrix holds so much of the budget that even the other steps are coarse
    /// (Gemma-3-270M: the embedding is 62% of the parameters); the group-128 variants fall below a level.
    public var largeTensorLevels: [GGMLType] = [.sq3_G128, .sq4n_G128, .sq5_G128]
    /// Levels quantized in the basis of a Hadamard rotation of the matrix's input (`RotatedInputs`; with GPTQ only):
    /// the rotation spreads outlier features, so that coarse grids fit. Every lossy level but Q8_0, where it measured
    /// better at each size tried (README, "Rotations").
    public var rotatedLevels: [GGMLType] = [.sq2_G64, .sq3s_G64, .sq3_G64, .sq4n_G64, .sq4nx_G128, .iq4_NL, .sq5_G64, .sq3_G128, .sq4n_G128, .sq5_G128]
    /// GPTQ for the transformer blocks' linear layers (else round to nearest everywhere).
    public var gptqBlocks = true
    public init() {}
}

/// One matrix of the model and the levels it can take, smallest first.
public struct LevelTensor: Codable, Sendable, Equatable {
    public struct Level: Codable, Sendable, Equatable {
        /// Block type name (`SQ3_G64`, `Q4_1`, ...).
        public var type: String
        /// Bytes of the tensor's data in this type.
        public var bytes: Int
        /// The input's own bytes, unchanged (no quantization error).
        public var isSource: Bool
        /// Quantized rotated on the input (the data is W·Rᵀ, see `RotatedInputs`).
        public var rotated: Bool
        /// Relative output error estimate: Σ_j H_jj Σ_r (W − Q)²_rj / Σ_j H_jj Σ_r W²_rj, with H_jj the mean squared
        /// input of column j on the calibration text (the diagonal of GPTQ's H; unweighted for the embedding).
        public var error: Double

        public init(type: String, bytes: Int, isSource: Bool, rotated: Bool = false, error: Double) {
            self.type = type
            self.bytes = bytes
            self.isSource = isSource
            self.rotated = rotated
            self.error = error
        }

        /// The type as reports show it: `SQ3_G64`, or `SQ3_G64+H` when rotated.
        public var label: String { rotated ? type + "+H" : type }
    }

    public var name: String
    /// `attn_q`, `attn_k`, `attn_v`, `attn_output`, `ffn_gate`, `ffn_up`, `ffn_down`, `token_embd`, `output`.
    public var kind: String
    /// Transformer block, nil for the embedding and output matrices.
    public var layer: Int?
    public var rowLength: Int
    public var rows: Int
    public var sourceType: String
    /// Share of weights more than 3 standard deviations from the tensor's mean (0.27% for a Gaussian).
    public var outlierShare: Double
    public var levels: [Level]

    public var parameters: Int { rowLength * rows }

    public init(name: String, kind: String, layer: Int?, rowLength: Int, rows: Int, sourceType: String, outlierShare: Double,
                levels: [Level]) {
        self.name = name
        self.kind = kind
        self.layer = layer
        self.rowLength = rowLength
        self.rows = rows
        self.sourceType = sourceType
        self.outlierShare = outlierShare
        self.levels = levels
    }
}

/// Per-block signal: how much block i changes its input, 1 − cos(x_in, x_out) of the residual stream averaged over
/// the calibration tokens (layer importance as in "ShortGPT"/layer-wise quantization by input-output similarity).
public struct LayerSignal: Codable, Sendable, Equatable {
    public var layer: Int
    public var cosineDistance: Double
}

/// Every quantizable matrix of a model quantized once at several levels (block types), so that a search over
/// per-tensor levels never quantizes again. The level data lives in a GGUF file (tensor `<type>/<name>` per lossy
/// level; the lossless top level is the model's own tensor), the description in its metadata.
public struct LevelDatabase: Sendable {
    public static let version = 3
    public var tensors: [LevelTensor]
    public var layers: [LayerSignal]
    public var calibrationTokens: Int
    /// Identifies the inputs the database was computed from (model, calibration, ladder, method).
    public var key: String

    public static func dataName(tensor: String, level: LevelTensor.Level) -> String { level.label + "/" + tensor }

    /// Reads the description back from a database file written by `build`.
    public static func describe(_ file: GGUFFile) throws -> LevelDatabase {
        guard case .string(let json)? = file["squish.level_database"],
              case .uint32(let v)? = file["squish.level_database.version"], Int(v) == version else {
            throw QuantizeError.badModel(path: file.path, reason: "not a Squish level database of version \(version)")
        }
        struct Stored: Codable { var tensors: [LevelTensor]; var layers: [LayerSignal]; var calibrationTokens: Int; var key: String }
        let s: Stored
        do { s = try JSONDecoder().decode(Stored.self, from: Data(json.utf8)) } catch {
            throw QuantizeError.badModel(path: file.path, reason: "level database description: \(error)")
        }
        for t in s.tensors {
            for l in t.levels where !l.isSource {
                guard let info = file.tensor(named: dataName(tensor: t.name, level: l)), info.type.name == l.type,
                      info.shape == [t.rowLength, t.rows] else {
                    throw QuantizeError.badModel(path: file.path, reason: "level \(l.type) of '\(t.name)' is missing or malformed")
                }
            }
        }
        return LevelDatabase(tensors: s.tensors, layers: s.layers, calibrationTokens: s.calibrationTokens, key: s.key)
    }

    /// A matrix with at least 1/50 of all matrices' parameters: it gets the extra levels, and compress measures its
    /// cost at every level instead of predicting it.
    public static func isLarge(parameters: Int, of total: Int) -> Bool { parameters * 50 >= total }

    /// The levels of a matrix of rows of `rowLength` stored as `source`: the ladder's types (and for a large matrix
    /// the extra levels) that fit its rows and are smaller than the source, smallest first.
    public static func levelTypes(rowLength: Int, source: GGMLType, large: Bool, options: LevelDatabaseOptions) -> [GGMLType] {
        let limit = source.rowBytes(elements: rowLength) ?? .max
        var seen = Set<GGMLType>()
        return (options.ladder + (large ? options.largeTensorLevels : []))
            .compactMap { t in t.rowBytes(elements: rowLength).flatMap { $0 < limit && seen.insert(t).inserted ? (t, $0) : nil } }
            .enumerated().sorted { ($0.element.1, $0.offset) < ($1.element.1, $1.offset) }  // equal sizes: the ladder's order
            .map(\.element.0)
    }

    /// Quantizes every matrix of `file` at every level of `options.ladder` and writes the database to `output`
    /// (atomically). Calibration runs the original model block by block (every block sees the original model's
    /// activations, so the levels of different tensors are independent of each other); GPTQ's statistics are
    /// prepared once per input and shared by all levels and by the matrices reading the same input.
    public static func build(file: GGUFFile, key: String, options: LevelDatabaseOptions, output: String, pool: WorkerPool,
                             progress: ((Int, Int) -> Void)? = nil, log: (String) -> Void = { _ in }) throws -> LevelDatabase {
        let start = Date()
        let model = try TransformerModel(gguf: file)
        let c = model.config
        let linear = Dictionary(uniqueKeysWithValues: c.linearLayers.map { ($0.name, $0) })
        let rotatedTypes = options.gptqBlocks ? Set(options.rotatedLevels) : []
        var tensors: [LevelTensor] = []
        var blobs: [String: [UInt8]] = [:]

        let matrixParameters = c.linearLayers.reduce(0) { $0 + (file.tensor(named: $1.name)?.elementCount ?? 0) }
        func levels(for info: GGUFTensorInfo) -> [GGMLType] {
            levelTypes(rowLength: info.shape[0], source: info.type, large: isLarge(parameters: info.elementCount, of: matrixParameters),
                       options: options)
        }
        func describe(_ info: GGUFTensorInfo, _ w: UnsafePointer<Float>, levelTypes: [GGMLType]) -> LevelTensor {
            let (kind, layer) = (linear[info.name]!.kind, linear[info.name]!.layer)
            let n = info.elementCount
            var mean = 0.0, sq = 0.0
            for i in 0 ..< n { mean += Double(w[i]) }
            mean /= Double(n)
            for i in 0 ..< n { let d = Double(w[i]) - mean; sq += d * d }
            let limit = 3 * (sq / Double(n)).squareRoot()
            var outliers = 0
            for i in 0 ..< n where abs(Double(w[i]) - mean) > limit { outliers += 1 }
            var lv = levelTypes.map { LevelTensor.Level(type: $0.name, bytes: $0.rowBytes(elements: info.shape[0])! * info.rowCount,
                                                         isSource: false, rotated: rotatedTypes.contains($0), error: 0) }
            let sourceBits = info.type.bitsPerWeight
            if sourceBits <= 8.5 + 1e-9 && Matmul.supports(info.type) {
                lv.append(LevelTensor.Level(type: info.type.name, bytes: info.byteCount, isSource: true, error: 0))
            }
            return LevelTensor(name: info.name, kind: kind, layer: layer, rowLength: info.shape[0], rows: info.rowCount,
                               sourceType: info.type.name, outlierShare: Double(outliers) / Double(n), levels: lv)
        }
        /// Σ_j d_j Σ_r (a − b)²_rj / Σ_j d_j Σ_r a²_rj over [rows × n].
        func relativeError(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, rows: Int, n: Int, weights d: [Double]) -> Double {
            var num = 0.0, den = 0.0
            for r in 0 ..< rows {
                let ar = a + r * n, br = b + r * n
                for j in 0 ..< n {
                    let e = Double(ar[j] - br[j]), x = Double(ar[j])
                    num += d[j] * e * e
                    den += d[j] * x * x
                }
            }
            return den > 0 ? num / den : 0
        }
        func dequantized(_ info: GGUFTensorInfo) throws -> [Float] {
            try Codecs.dequantize(info.type, file.data(for: info), count: info.elementCount)
        }

        /// Every level of one matrix ([rows × n] f32 `w`): GPTQ with `prepared` statistics (`rotated.prepared` for the
        /// rotated levels: statistics of the rotated input), else round to nearest; the error of each level, in the
        /// original basis, weighted by `diag`. Stores the blocks and appends the description.
        func quantizeLevels(_ info: GGUFTensorInfo, _ w: [Float], prepared: GPTQQuantizer.Prepared?,
                            rotated: (rotation: HadamardRotation, prepared: GPTQQuantizer.Prepared)?, diag: [Double]) throws {
            let name = info.name, n = info.shape[0]
            let types = levels(for: info)
            var entry = w.withUnsafeBufferPointer { describe(info, $0.baseAddress!, levelTypes: types) }
            let wRotated: [Float]? = rotated.map { r in var v = w; r.rotation.applyToRows(&v); return v }
            for (k, type) in types.enumerated() {
                guard let grid = BlockGrid(type), n % grid.groupSize == 0 else { throw QuantizeError.rowLength(tensor: name, rowLength: n, type: type) }
                var q = w
                let bytes: [UInt8]
                if entry.levels[k].rotated, let rotated, let wRotated {
                    q = wRotated
                    bytes = try q.withUnsafeMutableBufferPointer {
                        try GPTQQuantizer.quantize(weights: $0.baseAddress!, rows: info.rowCount, prepared: rotated.prepared, grid: grid,
                                                   options: options.gptq, pool: pool, name: name)
                    }
                    q.withUnsafeMutableBufferPointer { p in for r in 0 ..< info.rowCount { rotated.rotation.invert(p.baseAddress! + r * n) } }
                } else if let prepared {
                    bytes = try q.withUnsafeMutableBufferPointer {
                        try GPTQQuantizer.quantize(weights: $0.baseAddress!, rows: info.rowCount, prepared: prepared, grid: grid,
                                                   options: options.gptq, pool: pool, name: name)
                    }
                } else {
                    bytes = try RTNQuantizer.quantizeTensor(file.data(for: info), type: info.type, rows: info.rowCount, columns: n,
                                                            grid: grid, pool: pool)
                    q = try bytes.withUnsafeBytes { try Codecs.dequantize(type, $0, count: info.elementCount) }
                }
                entry.levels[k].error = w.withUnsafeBufferPointer { a in
                    q.withUnsafeBufferPointer { b in relativeError(a.baseAddress!, b.baseAddress!, rows: info.rowCount, n: n, weights: diag) }
                }
                blobs[dataName(tensor: name, level: entry.levels[k])] = bytes
            }
            tensors.append(entry)
        }

        /// GPTQ's statistics of the rotated input, where rotated levels are asked for.
        func rotatedStatistics(_ h: [Double], n: Int, name: String) throws -> (rotation: HadamardRotation, prepared: GPTQQuantizer.Prepared)? {
            guard !rotatedTypes.isEmpty else { return nil }
            let rotation = HadamardRotation.weightInput(columns: n)
            return (rotation, try GPTQQuantizer.prepare(hessian: rotation.conjugate(symmetric: h), n: n, options: options.gptq, pool: pool, name: name))
        }

        // Transformer blocks, on the original model's activations.
        let seqs = try GPTQModelQuantizer.sequences(file, options.calibration)
        let length = options.calibration.sequenceLength
        guard length <= c.contextLength else {
            throw QuantizeError.calibration(path: options.calibration.textPath ?? "", reason: "sequences of \(length) exceed the context \(c.contextLength)")
        }
        log("level database: \(seqs.count) calibration sequences of \(length) tokens, \(c.layers) blocks, ladder "
            + options.ladder.map(\.name).joined(separator: ",")
            + (options.largeTensorLevels.isEmpty ? "" : "; large matrices also " + options.largeTensorLevels.map(\.name).joined(separator: ","))
            + (rotatedTypes.isEmpty ? "" : "; rotated " + options.rotatedLevels.map(\.name).joined(separator: ",")))
        let run = try CalibrationRun(model: model, sequences: seqs, pool: pool)
        var layerSignals: [LayerSignal] = []
        let steps = c.layers + 1
        for (li, layer) in model.layers.enumerated() {
            let blockStart = Date()
            let stats = BlockStatistics(c, layer: li, pool: pool)
            var cosine = 0.0
            try run.block(li, layer, advance: true, observe: stats.observer) { _, before, after in
                cosine += BlockInfluence.sum(before: before, after: after, tokens: length, dim: c.dim)
            }
            layerSignals.append(LayerSignal(layer: li, cosineDistance: cosine / Double(seqs.count * length)))
            let statsTime = Date().timeIntervalSince(blockStart)
            for site in InputSite.allCases {
                let h = stats.hessian(site)
                let n = site.width(c, layer: li)
                let diag = (0 ..< n).map { h[$0 * n + $0] }
                let first = ModelTensor.block(li, site.consumers[0].tensor).ggufName
                let prepared = options.gptqBlocks
                    ? try GPTQQuantizer.prepare(hessian: h, n: n, options: options.gptq, pool: pool, name: first)
                    : nil
                let rotated = try rotatedStatistics(h, n: n, name: first)
                for kind in site.consumers {
                    let name = ModelTensor.block(li, kind.tensor).ggufName
                    guard let info = file.tensor(named: name) else { throw QuantizeError.badModel(path: file.path, reason: "no tensor '\(name)'") }
                    guard info.shape.count == 2, info.shape[0] == n else {
                        throw QuantizeError.badModel(path: file.path, reason: "tensor '\(name)' has shape \(info.shape), its input has \(n) features")
                    }
                    try quantizeLevels(info, try dequantized(info), prepared: prepared, rotated: rotated, diag: diag)
                }
            }
            log(String(format: "level database: block %d/%d: statistics %.1f s, levels %.1f s (%.0f s so far)", li + 1, c.layers,
                       statsTime, Date().timeIntervalSince(blockStart) - statsTime, Date().timeIntervalSince(start)))
            progress?(li + 1, steps)
        }

        // The embedding and the output matrix (often the same, tied): GPTQ with the statistics of the output's input
        // (see `HessianAccumulator.finalNorm`). Error weighted by the same statistics' diagonal.
        let hFinal = try HessianAccumulator.finalNorm(run)
        let finalDiag = (0 ..< c.dim).map { hFinal[$0 * c.dim + $0] }
        let finalPrepared = options.gptqBlocks
            ? try GPTQQuantizer.prepare(hessian: hFinal, n: c.dim, options: options.gptq, pool: pool, name: "output")
            : nil
        let finalRotated = try rotatedStatistics(hFinal, n: c.dim, name: "output")
        for layer in c.linearLayers where layer.layer == nil {
            guard let info = file.tensor(named: layer.name) else { continue }
            let n = info.shape[0]
            guard n == c.dim else { throw QuantizeError.badModel(path: file.path, reason: "tensor '\(layer.name)' has rows of \(n), not \(c.dim)") }
            try quantizeLevels(info, try dequantized(info), prepared: finalPrepared, rotated: finalRotated, diag: finalDiag)
            log(String(format: "level database: %@ (%.0f s so far)", layer.name, Date().timeIntervalSince(start)))
        }
        progress?(steps, steps)

        let db = LevelDatabase(tensors: tensors, layers: layerSignals, calibrationTokens: seqs.count * length, key: key)
        var writer = GGUFWriter()
        struct Stored: Codable { var tensors: [LevelTensor]; var layers: [LayerSignal]; var calibrationTokens: Int; var key: String }
        let json = try JSONEncoder().encode(Stored(tensors: tensors, layers: layerSignals, calibrationTokens: db.calibrationTokens, key: key))
        writer.set("general.architecture", .string("squish-level-database"))
        writer.set("squish.level_database.version", .uint32(UInt32(version)))
        writer.set("squish.level_database", .string(String(decoding: json, as: UTF8.self)))
        for t in tensors {
            for l in t.levels where !l.isSource {
                let name = dataName(tensor: t.name, level: l)
                writer.addTensor(name: name, shape: [t.rowLength, t.rows], type: GGMLType(name: l.type)!, source: .bytes(blobs[name]!))
            }
        }
        try writer.write(to: output)
        log(String(format: "level database: %d tensors, %.0f s", tensors.count, Date().timeIntervalSince(start)))
        return db
    }
}
