import Foundation
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel
import SquishQuantize

/// A level database opened next to the model it was computed from: every (tensor, level) as a ready-to-run weight
/// matrix (converted and repacked for the kernels on first use, then kept), and models assembled from a choice of
/// one level per tensor without touching the files again.
public final class LevelStore {
    public let database: LevelDatabase
    public let file: GGUFFile  // the database's tensors (lossy levels)
    public let source: GGUFFile  // the model
    public let base: TransformerModel  // the model with its own tensors (the source levels)
    /// How level matrices are prepared for the kernels (as the base model's were).
    public let layout: KernelLayout
    private var cache: [Int: WeightMatrix] = [:]  // key: tensor · 16 + level

    public init(database: LevelDatabase, file: GGUFFile, source: GGUFFile, base: TransformerModel, layout: KernelLayout = KernelLayout()) throws {
        guard database.tensors.allSatisfy({ $0.levels.count <= 16 && !$0.levels.isEmpty }) else {
            throw CompressError.badDatabase(path: file.path, reason: "a tensor has no levels or more than 16")
        }
        self.database = database
        self.file = file
        self.source = source
        self.base = base
        self.layout = layout
    }

    public var tensors: [LevelTensor] { database.tensors }

    /// The top level of every tensor (the model as it is, where the source type is a level).
    public var topAllocation: Allocation { Allocation(levels: tensors.map { $0.levels.count - 1 }) }

    /// Bytes of the matrices' data under `allocation`.
    public func matrixBytes(_ allocation: Allocation) -> Int { allocation.bytes(tensors) }

    /// The runnable matrix of tensor `t` at level `l`.
    public func matrix(_ t: Int, _ l: Int) throws -> WeightMatrix {
        let key = t * 16 + l
        if let m = cache[key] { return m }
        let entry = tensors[t], level = entry.levels[l]
        let m: WeightMatrix
        if level.isSource {
            m = try baseMatrix(entry.name)
        } else {
            let name = LevelDatabase.dataName(tensor: entry.name, level: level)
            guard let info = file.tensor(named: name) else { throw CompressError.badDatabase(path: file.path, reason: "no tensor '\(name)'") }
            let stored = try WeightMatrix(name: entry.name, type: info.type, data: file.data(for: info), rows: entry.rows, columns: entry.rowLength)
            let raw = (level.rotated ? stored.rotatingInput() : stored).convertedForKernels()
            m = layout.repack ? raw.repacked() : raw
        }
        cache[key] = m
        return m
    }

    func baseMatrix(_ name: String) throws -> WeightMatrix {
        guard let layer = base.linearLayers.first(where: { $0.name == name }) else {
            throw CompressError.badDatabase(path: file.path, reason: "tensor '\(name)' is not a linear layer of the model")
        }
        return base.matrix(layer)
    }

    /// The model with every tensor at its level in `allocation`, without its dropped blocks.
    public func model(_ allocation: Allocation) throws -> TransformerModel {
        var replacements: [String: WeightMatrix] = [:]
        for (t, l) in allocation.levels.enumerated() where !tensors[t].levels[l].isSource && !allocation.drops(tensors[t]) {
            replacements[tensors[t].name] = try matrix(t, l)
        }
        let m = try TransformerModel(base: base, replacing: replacements)
        guard !allocation.droppedLayers.isEmpty else { return m }
        let kept = allocation.keptLayers(of: base.config.layers)
        return try TransformerModel(base: m, config: base.config.keepingLayers(kept), layers: kept.map { m.layers[$0] })
    }

    /// Drops the cached matrices (memory) of levels `allocation`s never use.
    public func trim(keeping allocations: [Allocation]) {
        var keep = Set<Int>()
        for a in allocations { for (t, l) in a.levels.enumerated() { keep.insert(t * 16 + l) } }
        cache = cache.filter { keep.contains($0.key) }
    }
}

/// One level per tensor (indices into each `LevelTensor.levels`, in the database's tensor order), and the blocks
/// removed whole (`compress --prune`): their tensors keep a level, but take no bytes and are not in the model.
public struct Allocation: Hashable, Sendable {
    public var levels: [Int]
    /// Indices of dropped blocks, increasing.
    public var droppedLayers: [Int]

    public init(levels: [Int], droppedLayers: [Int] = []) {
        self.levels = levels
        self.droppedLayers = droppedLayers
    }

    /// Whether `tensor` belongs to a dropped block.
    public func drops(_ tensor: LevelTensor) -> Bool {
        guard let l = tensor.layer, !droppedLayers.isEmpty else { return false }
        return droppedLayers.contains(l)
    }

    /// Blocks kept of a model with `layers` blocks, in order.
    public func keptLayers(of layers: Int) -> [Int] { (0 ..< layers).filter { !droppedLayers.contains($0) } }

    /// Bytes of the matrices' data: every tensor at its level, those of dropped blocks not at all.
    public func bytes(_ tensors: [LevelTensor]) -> Int {
        var total = 0
        for (t, l) in levels.enumerated() where !drops(tensors[t]) { total += tensors[t].levels[l].bytes }
        return total
    }
}

public enum CompressError: Error, CustomStringConvertible, Equatable {
    case invalidArgument(String)
    case badDatabase(path: String, reason: String)
    /// The requested size or bits per weight is below what the smallest levels can reach (or above the model).
    case budget(String)

    public var description: String {
        switch self {
        case .invalidArgument(let s): return s
        case .badDatabase(let path, let reason): return "\(path): level database: \(reason)"
        case .budget(let s): return "size budget: \(s)"
        }
    }
}
