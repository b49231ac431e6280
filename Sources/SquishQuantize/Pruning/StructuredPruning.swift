import Foundation
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel

/// What structured pruning keeps of a model: blocks (by their index in the input, in order) and, per kept block, its
/// FFN channels and KV groups (indices in the input block, increasing). A KV group is one KV head with the query
/// heads that share it (GQA), removed or kept whole.
public struct StructurePlan: Sendable, Equatable, Codable {
    public var keptLayers: [Int]
    public var ffnChannels: [[Int]]  // [kept layers][kept channels]
    public var kvGroups: [[Int]]  // [kept layers][kept KV heads]

    public init(keptLayers: [Int], ffnChannels: [[Int]], kvGroups: [[Int]]) {
        self.keptLayers = keptLayers
        self.ffnChannels = ffnChannels
        self.kvGroups = kvGroups
    }

    /// Throws unless the plan fits `c`: kept blocks, channels and groups increasing, in range and not empty, one
    /// list of channels and groups per kept block.
    public func check(_ c: ModelConfig, path: String) throws {
        func increasing(_ v: [Int], below n: Int) -> Bool {
            !v.isEmpty && v.first! >= 0 && v.last! < n && zip(v, v.dropFirst()).allSatisfy { $0 < $1 }
        }
        guard increasing(keptLayers, below: c.layers), ffnChannels.count == keptLayers.count, kvGroups.count == keptLayers.count else {
            throw QuantizeError.unsupportedPruning(path: path, reason: "the plan's kept blocks \(keptLayers) do not fit \(c.layers) blocks")
        }
        for (i, o) in keptLayers.enumerated() {
            guard increasing(ffnChannels[i], below: c.hiddenDim(layer: o)), increasing(kvGroups[i], below: c.kvHeads(layer: o)) else {
                throw QuantizeError.unsupportedPruning(path: path, reason: "the plan's FFN channels or KV groups of block \(o) are empty, out of range or not increasing")
            }
        }
    }

    /// Everything kept.
    public static func identity(_ c: ModelConfig) -> StructurePlan {
        StructurePlan(keptLayers: Array(0 ..< c.layers), ffnChannels: (0 ..< c.layers).map { Array(0 ..< c.hiddenDim(layer: $0)) },
                      kvGroups: (0 ..< c.layers).map { Array(0 ..< c.kvHeads(layer: $0)) })
    }

    /// The configuration of the pruned model made from `c`: the kept blocks (with their attention descriptions) at
    /// their kept widths.
    public func config(_ c: ModelConfig) -> ModelConfig {
        let kept = c.keepingLayers(keptLayers)
        let widths = keptLayers.enumerated().map { i, o in
            LayerWidths(ffn: ffnChannels[i].count, heads: kvGroups[i].count * (c.heads(layer: o) / c.kvHeads(layer: o)),
                        kvHeads: kvGroups[i].count)
        }
        return kept.withLayerWidths(widths)
    }

    /// Whether kept block `i` is its input block unchanged (all channels and groups).
    func isWhole(_ i: Int, _ c: ModelConfig) -> Bool {
        let o = keptLayers[i]
        return ffnChannels[i].count == c.hiddenDim(layer: o) && kvGroups[i].count == c.kvHeads(layer: o)
    }

    /// The first kept block whose input differs from the unpruned model's (a block before it was dropped or it, or
    /// one before it, lost width); `keptLayers.count` when nothing changed.
    func firstChanged(_ c: ModelConfig) -> Int {
        for i in keptLayers.indices where keptLayers[i] != i || !isWhole(i, c) { return i }
        return keptLayers.count
    }

    /// Query rows (equally, attention-output features) of the kept groups of kept block `i`.
    func queryFeatures(_ i: Int, _ c: ModelConfig) -> [Int] {
        let o = keptLayers[i], group = c.heads(layer: o) / c.kvHeads(layer: o), d = c.headDim
        return kvGroups[i].flatMap { g in (g * group ..< (g + 1) * group).flatMap { h in h * d ..< (h + 1) * d } }
    }

    /// KV rows of the kept groups of kept block `i`.
    func kvFeatures(_ i: Int, _ c: ModelConfig) -> [Int] {
        kvGroups[i].flatMap { g in g * c.headDim ..< (g + 1) * c.headDim }
    }

    /// Rows of the input block's matrix `kind` that kept block `i` keeps (nil: all).
    func keptRows(_ kind: LinearKind, _ i: Int, _ c: ModelConfig) -> [Int]? {
        switch kind {
        case .attnQ: return kvGroups[i].count == c.kvHeads(layer: keptLayers[i]) ? nil : queryFeatures(i, c)
        case .attnK, .attnV: return kvGroups[i].count == c.kvHeads(layer: keptLayers[i]) ? nil : kvFeatures(i, c)
        case .ffnGate, .ffnUp: return ffnChannels[i].count == c.hiddenDim(layer: keptLayers[i]) ? nil : ffnChannels[i]
        case .attnOutput, .ffnDown: return nil
        }
    }

    /// Input features of `site` that kept block `i` keeps (nil: all).
    func keptFeatures(_ site: InputSite, _ i: Int, _ c: ModelConfig) -> [Int]? {
        switch site {
        case .attentionInput, .ffnInput: return nil
        case .attentionOutput: return kvGroups[i].count == c.kvHeads(layer: keptLayers[i]) ? nil : queryFeatures(i, c)
        case .ffnHidden: return ffnChannels[i].count == c.hiddenDim(layer: keptLayers[i]) ? nil : ffnChannels[i]
        }
    }
}

/// What the calibration text says about each block of the unpruned model: ShortGPT's Block Influence and the mean
/// square of every attention-output feature and FFN channel (their importance's activation part).
public struct StructureStatistics: Sendable {
    /// Per block: mean over tokens of 1 − cos(input, output) of the residual stream.
    public var influence: [Double]
    /// Per block: Σ x² per attention-output feature [qDim] and per FFN channel [hidden].
    public var attentionSquares: [[Double]]
    public var hiddenSquares: [[Double]]

    /// One pass of `sequences` through `model`, block by block.
    static func measure(_ model: TransformerModel, sequences: [[Int]], pool: WorkerPool,
                        progress: ((Int, Int) -> Void)? = nil) throws -> StructureStatistics {
        let c = model.config
        let run = try CalibrationRun(model: model, sequences: sequences, pool: pool)
        var influence: [Double] = [], att: [[Double]] = [], hidden: [[Double]] = []
        for (li, layer) in model.layers.enumerated() {
            let a = SquareSumAccumulator(n: c.qDim(layer: li)), h = SquareSumAccumulator(n: c.hiddenDim(layer: li))
            var bi = 0.0
            try run.block(li, layer, advance: true, observe: { _, site, x, t in
                if site == .attentionOutput { a.add(x, tokens: t) }
                if site == .ffnHidden { h.add(x, tokens: t) }
            }) { _, before, after in
                bi += BlockInfluence.sum(before: before, after: after, tokens: run.length, dim: c.dim)
            }
            influence.append(bi / Double(sequences.count * run.length))
            att.append(a.sums)
            hidden.append(h.sums)
            progress?(li + 1, c.layers)
        }
        return StructureStatistics(influence: influence, attentionSquares: att, hiddenSquares: hidden)
    }
}

public enum StructuredPruning {
    /// The plan: drop the `dropLayers` blocks of least Block Influence (ShortGPT §3), then in every kept block keep
    /// the FFN channels and KV groups of largest importance, E[x_j²] · ‖W_out[:, j]‖² summed over a unit's features
    /// (the squared contribution of the unit to the block's output; W_out is ffn_down for channels, attn_output for a
    /// group's query heads). Kept widths are `ffnKeep` of each block's channels, rounded to a multiple of
    /// `channelMultiple` (and of ffn_down's block size, so the narrower matrix stays in its type), and `headsKeep`
    /// of its KV groups (at least one).
    public static func plan(_ model: TransformerModel, statistics s: StructureStatistics, dropLayers: Int, ffnKeep: Double,
                            headsKeep: Double, channelMultiple: Int = 64) throws -> StructurePlan {
        let c = model.config
        guard dropLayers >= 0, dropLayers < c.layers else {
            throw QuantizeError.unsupportedPruning(path: model.path, reason: "dropping \(dropLayers) of \(c.layers) blocks")
        }
        guard ffnKeep > 0, ffnKeep <= 1, headsKeep > 0, headsKeep <= 1 else {
            throw QuantizeError.unsupportedPruning(path: model.path, reason: "keeping \(ffnKeep) of the FFN width and \(headsKeep) of the KV groups (each must be in (0, 1])")
        }
        let dropped = Set((0 ..< c.layers).sorted { (s.influence[$0], $0) < (s.influence[$1], $1) }.prefix(dropLayers))
        let kept = (0 ..< c.layers).filter { !dropped.contains($0) }
        var channels: [[Int]] = [], groups: [[Int]] = []
        for o in kept {
            let layer = model.layers[o]
            // FFN channels.
            let hidden = c.hiddenDim(layer: o)
            if ffnKeep < 1 {
                let multiple = lcm(channelMultiple, layer.down.type.blockElements)
                let target = min(hidden, max(multiple, Int((ffnKeep * Double(hidden) / Double(multiple)).rounded()) * multiple))
                let down = try layer.down.dequantized()  // [dim × hidden]
                var score = [Double](repeating: 0, count: hidden)
                for r in 0 ..< c.dim { for j in 0 ..< hidden { let w = Double(down[r * hidden + j]); score[j] += w * w } }
                for j in 0 ..< hidden { score[j] *= s.hiddenSquares[o][j] }
                channels.append(topIndices(score, target))
            } else {
                channels.append(Array(0 ..< hidden))
            }
            // KV groups.
            let kv = c.kvHeads(layer: o), group = c.heads(layer: o) / kv, qDim = c.qDim(layer: o), d = c.headDim
            if headsKeep < 1 {
                let target = min(kv, max(1, Int((headsKeep * Double(kv)).rounded())))
                let wo = try layer.wo.dequantized()  // [dim × qDim]
                var feature = [Double](repeating: 0, count: qDim)
                for r in 0 ..< c.dim { for j in 0 ..< qDim { let w = Double(wo[r * qDim + j]); feature[j] += w * w } }
                let score = (0 ..< kv).map { g in
                    (g * group * d ..< (g + 1) * group * d).reduce(0.0) { $0 + feature[$1] * s.attentionSquares[o][$1] }
                }
                groups.append(topIndices(score, target))
            } else {
                groups.append(Array(0 ..< kv))
            }
        }
        return StructurePlan(keptLayers: kept, ffnChannels: channels, kvGroups: groups)
    }

    /// The `count` indices of largest score (ties: the lower index), in increasing order.
    static func topIndices(_ score: [Double], _ count: Int) -> [Int] {
        Array(score.indices.sorted { (score[$0], -$0) > (score[$1], -$1) }.prefix(count)).sorted()
    }

    static func lcm(_ a: Int, _ b: Int) -> Int {
        func gcd(_ x: Int, _ y: Int) -> Int { y == 0 ? x : gcd(y, x % y) }
        return a / gcd(a, b) * b
    }

    /// A pruned block's matrices and vectors that differ from the input's, as they are written (GGUF type, ggml
    /// shape, bytes); tensors not listed are the input block's, unchanged.
    struct ChangedTensor {
        var type: GGMLType
        var shape: [Int]
        var bytes: [UInt8]
    }

    /// Kept block `i` of `plan` cut out of the input model: rows are copied as stored (whole rows of blocks), columns
    /// too where the kept ones are whole blocks (attention heads), others re-encoded in the matrix's type from f32
    /// with importance-weighted rounding (the input's Σ x² per column, `importance` per site).
    static func slice(_ model: TransformerModel, plan: StructurePlan, position i: Int, config pc: ModelConfig,
                      importance: [InputSite: [Double]], owner: OwnedBuffers, pool: WorkerPool) throws -> (TransformerLayer, [BlockTensor: ChangedTensor]) {
        let c = model.config, o = plan.keptLayers[i]
        var layer = model.layers[o]
        var changed: [BlockTensor: ChangedTensor] = [:]
        for kind in LinearKind.allCases {
            let rows = plan.keptRows(kind, i, c), columns = plan.keptFeatures(kind.site, i, c)
            guard rows != nil || columns != nil else { continue }
            let m = model.layers[o][kind]
            let name = ModelTensor.block(i, kind.tensor).ggufName
            let keepRows = rows ?? Array(0 ..< m.rows)
            var bytes: [UInt8]
            if let columns {
                bytes = try sliceColumns(m, rows: keepRows, columns: columns,
                                         importance: importance[kind.site].map { imp in columns.map { Float(imp[$0]) } },
                                         pool: pool, name: name)
            } else {
                bytes = []
                bytes.reserveCapacity(keepRows.count * m.rowBytes)
                for r in keepRows { bytes += UnsafeRawBufferPointer(start: m.data + r * m.rowBytes, count: m.rowBytes) }
            }
            let shape = pc.shape(of: .block(i, kind.tensor))
            layer[kind] = try owner.matrix(name, type: m.type, bytes: bytes, rows: shape[1], columns: shape[0])
            changed[kind.tensor] = ChangedTensor(type: m.type, shape: shape, bytes: bytes)
        }
        if plan.kvGroups[i].count != c.kvHeads(layer: o) {
            let q = plan.queryFeatures(i, c), kv = plan.kvFeatures(i, c)
            func cut(_ v: [Float]?, _ keep: [Int], _ t: BlockTensor) -> [Float]? {
                guard let v else { return nil }
                let out = keep.map { v[$0] }
                changed[t] = ChangedTensor(type: .f32, shape: [out.count], bytes: out.withUnsafeBytes { Array($0) })
                return out
            }
            layer.bq = cut(layer.bq, q, .attnQBias)
            layer.bk = cut(layer.bk, kv, .attnKBias)
            layer.bv = cut(layer.bv, kv, .attnVBias)
        }
        return (layer, changed)
    }

    /// Rows `rows` and columns `columns` (increasing) of `m`: byte ranges of whole blocks where every kept run of
    /// columns starts and ends on a block boundary, else decoded, cut and re-encoded in `m`'s type.
    static func sliceColumns(_ m: WeightMatrix, rows: [Int], columns: [Int], importance: [Float]?, pool: WorkerPool,
                             name: String) throws -> [UInt8] {
        let be = m.type.blockElements, bb = m.type.blockBytes
        var runs: [Range<Int>] = []
        for j in columns {
            if let last = runs.last, last.upperBound == j { runs[runs.count - 1] = last.lowerBound ..< j + 1 } else { runs.append(j ..< j + 1) }
        }
        if runs.allSatisfy({ $0.lowerBound % be == 0 && $0.upperBound % be == 0 }) {
            var out: [UInt8] = []
            out.reserveCapacity(rows.count * columns.count / be * bb)
            for r in rows {
                let row = m.data + r * m.rowBytes
                for run in runs { out += UnsafeRawBufferPointer(start: row + run.lowerBound / be * bb, count: run.count / be * bb) }
            }
            return out
        }
        let full = try m.dequantized()
        var w = [Float](repeating: 0, count: rows.count * columns.count)
        for (a, r) in rows.enumerated() { for (b, j) in columns.enumerated() { w[a * columns.count + b] = full[r * m.columns + j] } }
        return try PrunedEncoding.encode(&w, rows: rows.count, columns: columns.count, type: m.type, hessian: nil,
                                         importance: importance, gptq: GPTQOptions(), pool: pool, name: name)
    }
}
