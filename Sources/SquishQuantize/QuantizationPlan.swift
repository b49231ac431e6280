import SquishFormats
import SquishModel

/// What the output's weight matrices are quantized to: a llama.cpp block type (chosen by name, or by bits and
/// group size where those map onto one), or else a Squish type (`SQ3_G32`: 3-bit codes in groups of 32 with an f16
/// scale and minimum; `SQ3S_G32`: the same, symmetric, with an f16 scale only), which Squish runs and llama.cpp cannot
/// load.
public struct QuantizationTarget: Sendable, Equatable {
    public let grid: BlockGrid
    /// A llama.cpp preset name (`Q4_K_M`, ...): types chosen per tensor within llama.cpp's bytes (see
    /// `QuantizationPreset`); `grid` is then only the preset's nominal type.
    public let preset: QuantizationPreset?
    public var type: GGMLType { grid.type }
    /// What the report calls the target: the preset's or the type's name.
    public var name: String { preset?.rawValue ?? grid.type.name }

    public init(grid: BlockGrid, preset: QuantizationPreset? = nil) {
        self.grid = grid
        self.preset = preset
    }

    /// `--type NAME`, or `--bits B --group G` (asymmetric, i.e. with a float minimum, unless `symmetric`; B in 2 ... 8,
    /// G in 16, 32, 64, 128, 256). A native llama.cpp block type is preferred (4 bits in groups of 32: Q4_1, or Q4_0
    /// symmetric; 5 bits: Q5_1 / Q5_0; 8 bits: Q8_0 either way); otherwise the Squish affine type SQ<B>_G<G> or the
    /// symmetric SQ<B>S_G<G>.
    /// `pure` (llama-quantize's `--pure`): a preset name means its nominal type for every tensor (Q2_K, Q6_K and
    /// Q4_K_M then mean the single types Q2_K, Q6_K and Q4_K).
    public static func resolve(type name: String?, bits: Int?, group: Int?, symmetric: Bool,
                               pure: Bool = false) throws -> QuantizationTarget {
        if let name {
            guard bits == nil, group == nil else { throw QuantizeError.unsupportedTarget("--type together with --bits/--group") }
            if let preset = QuantizationPreset(name: name), pure, let g = BlockGrid(preset.defaultType) {
                return QuantizationTarget(grid: g)
            }
            if let preset = QuantizationPreset(name: name) {
                return QuantizationTarget(grid: BlockGrid(GGMLType.squishAffine(bits: preset.nominalBits, group: 64)!)!, preset: preset)
            }
            guard let t = GGMLType(name: name) else { throw QuantizeError.unsupportedTarget("unknown type '\(name)'") }
            guard let g = BlockGrid(t) else {
                throw QuantizeError.unsupportedTarget("\(t.name) (supported: \(supportedNames))")
            }
            return QuantizationTarget(grid: g)
        }
        guard let bits else { throw QuantizeError.unsupportedTarget("nothing: give --type or --bits") }
        let group = group ?? 32
        let grid: BlockGrid?
        switch (bits, group, symmetric) {
        case (4, 32, false): grid = .q4_1
        case (4, 32, true): grid = .q4_0
        case (5, 32, false): grid = .q5_1
        case (5, 32, true): grid = .q5_0
        case (8, 32, _): grid = .q8_0
        default: grid = GGMLType.squishType(bits: bits, group: group, symmetric: symmetric).flatMap(BlockGrid.init)
        }
        guard let grid else {
            throw QuantizeError.unsupportedTarget(
                "\(bits)-bit groups of \(group)\(symmetric ? " (symmetric)" : ""): no block type has that layout "
                    + "(llama.cpp: 4, 5 or 8 bits in groups of 32; Squish: \(squishNames))")
        }
        return QuantizationTarget(grid: grid)
    }

    /// Ternary weights (`--method ternary`): TQ2_0 by default, also TQ1_0 or a Squish 2-bit type (SQ2_G32, SQ2_G64).
    /// Rows that are not multiples of 256 fall back from TQ1_0/TQ2_0 to SQ2_G64 (see `QuantizationPlanner`).
    public static func ternary(type name: String?) throws -> QuantizationTarget {
        let name = name ?? "TQ2_0"
        guard let t = GGMLType(name: name), [.tq1_0, .tq2_0, .sq2_G32, .sq2_G64].contains(t) else {
            throw QuantizeError.unsupportedTarget("ternary weights in '\(name)' (supported: TQ1_0, TQ2_0, SQ2_G32, SQ2_G64)")
        }
        return QuantizationTarget(grid: .ternary(t))
    }

    /// The Squish family, as a pattern (75 types).
    public static let squishNames = "SQ<b>_G<g> (affine), SQ<b>S_G<g> (symmetric) for b in "
        + "\(GGMLType.squishBits.lowerBound)-\(GGMLType.squishBits.upperBound), g in "
        + GGMLType.squishGroups.map(String.init).joined(separator: "/")
        + "; non-linear SQ4N_G<g>, g in 64/128/256, SQ4NX_G<g>, g in 128/256"
    public static let supportedNames = "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, MXFP4, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (rows that are not "
        + "multiples of 256 get the Squish affine type of the same bits, SQ<bits>_G64), " + squishNames + "; presets "
        + QuantizationPreset.allCases.map(\.rawValue).joined(separator: ", ")

    /// llama.cpp's `general.file_type` (enum llama_ftype) for a file mostly of this type.
    public var fileType: UInt32 {
        if preset != nil { return 1024 }  // per-tensor Squish types: no llama.cpp file type describes the mix
        switch grid {
        case .q4_0: return 2
        case .q4_1: return 3
        case .q8_0: return 7
        case .q5_0: return 8
        case .q5_1: return 9
        case .iq4_NL: return 25
        case .mxfp4: return 38  // MOSTLY_MXFP4_MOE, the only llama.cpp file type of MXFP4
        case .affine, .symmetric, .nonLinear, .nonLinearX: return 1024  // LLAMA_FTYPE_GUESSED: no llama.cpp file type describes a Squish type
        case .ternary(let t): return t == .tq1_0 ? 36 : t == .tq2_0 ? 37 : 1024
        // MOSTLY_Q2_K, Q3_K_S, Q4_K_S, Q5_K_S, Q6_K (a single K type throughout).
        case .kQuant(let f): return [GGMLType.q2_K: 10, .q3_K: 11, .q4_K: 14, .q5_K: 16, .q6_K: 18][f.type] ?? 1024
        }
    }
}

/// What happens to one tensor of the input.
public enum TensorAction: Equatable, Sendable {
    /// Bytes copied unchanged.
    case copy
    /// Dequantized to f32 (1-D tensors: norms, biases).
    case toF32
    /// Quantized into `grid`'s block type. `calibrated`: a linear layer of a transformer block, which calibrated
    /// methods (GPTQ) quantize with its input statistics; everything else is rounded to nearest.
    case quantize(BlockGrid, calibrated: Bool)
}

public struct TensorPlan: Sendable {
    public let info: GGUFTensorInfo
    public let action: TensorAction
    public var outputType: GGMLType {
        switch action {
        case .copy: return info.type
        case .toF32: return .f32
        case .quantize(let g, _): return g.type
        }
    }
}

/// Per-tensor choices, made like llama-quantize's defaults for the legacy types:
/// - 1-D tensors (norms, biases) are stored as F32;
/// - the token embedding and output matrix keep 8 bits (Q8_0; llama.cpp would choose Q6_K, which needs rows of
///   256 and falls back to Q8_0 for the default model's rows of 576), or the target when it has 8 bits itself;
/// - every other matrix gets the target type (a K-quant target: rows that are not multiples of 256 get SQ<bits>_G64);
/// - a tensor already in the type it would get is copied unchanged (lossless) unless `requantize` is set.
public enum QuantizationPlanner {
    /// `embeddingType`: the token embedding's and output matrix's type instead of the default (as llama-quantize's
    /// `--token-embedding-type` / `--output-tensor-type`), e.g. to quantize a model whose tied embedding dominates.
    public static func plan(_ file: GGUFFile, target: QuantizationTarget, requantize: Bool,
                            embeddingType: GGMLType? = nil) throws -> [TensorPlan] {
        let embeddingGrid: BlockGrid?
        if let embeddingType {
            guard let g = BlockGrid(embeddingType) else {
                throw QuantizeError.unsupportedTarget("\(embeddingType.name) for the embedding (supported: \(QuantizationTarget.supportedNames))")
            }
            embeddingGrid = g
        } else {
            embeddingGrid = nil
        }
        var presetTypes: [String: GGMLType] = [:]
        if let preset = target.preset {
            for c in try preset.allocate(file, config: try Architectures.configuration(gguf: file)) { presetTypes[c.name] = c.type }
        }
        return try file.tensors.map { t in
            let isMatrix = t.shape.count >= 2 && t.shape.dropFirst().contains { $0 > 1 }
            guard isMatrix else {
                return TensorPlan(info: t, action: t.type == .f32 ? .copy : .toF32)
            }
            guard Codecs.canDequantize(t.type) else {
                throw QuantizeError.badModel(path: file.path, reason: "tensor '\(t.name)' has type \(t.type.name), which Squish cannot decode")
            }
            let role = ModelTensor(ggufName: t.name)
            let isEdge = role == .tokenEmbedding || role == .output
            var grid: BlockGrid = isEdge ? (target.grid.bits >= 8 ? target.grid : .q8_0) : target.grid
            if let type = presetTypes[t.name], let g = BlockGrid(type) { grid = g }
            if isEdge, let g = embeddingGrid { grid = g }
            if case .ternary(let type) = grid, type.blockElements == 256, t.shape[0] % 256 != 0 { grid = .ternary(.sq2_G64) }
            // K-quants need rows of whole 256-weight super-blocks; other rows get the Squish affine type of the same bits.
            if case .kQuant = grid, t.shape[0] % 256 != 0 { grid = .affine(bits: grid.bits, group: 64) }
            guard t.shape[0] % grid.type.blockElements == 0 else {
                throw QuantizeError.rowLength(tensor: t.name, rowLength: t.shape[0], type: grid.type)
            }
            if t.type == grid.type && !requantize { return TensorPlan(info: t, action: .copy) }
            var calibrated = false
            if case .block(_, let b)? = role, b.linear != nil { calibrated = true }
            return TensorPlan(info: t, action: .quantize(grid, calibrated: calibrated))
        }
    }
}
