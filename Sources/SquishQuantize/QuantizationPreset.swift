import SquishFormats
import SquishModel

/// llama-quantize's presets (`Q4_K_M`, `Q3_K_S`, ...), made to fit the same bytes with Squish's types.
///
/// llama.cpp picks a type per tensor from the preset (more bits for attn_v, ffn_down and the output matrix in the
/// `_M`/`_L` variants), then falls back to IQ4_NL, Q5_0, Q5_1 or Q8_0 wherever a row is not a multiple of the
/// K-quants' 256. On a model with 576-wide rows nearly every tensor falls back, so a "Q2_K" file is really 4.5 bits.
/// Squish starts from the same per-tensor choice, expressed in its affine types of the same bit width (groups of 64,
/// which fit any row that is a multiple of 64; rows that are multiples of 256 take the real K-quants Q2_K ... Q6_K,
/// which Squish encodes itself), then spends whatever is left of the bytes llama.cpp's file would
/// take: one level at a time to the tensor with the fewest bits (ties: attn_v, ffn_down, attn_output, attn_k,
/// attn_q, ffn_gate, ffn_up, then the output matrix; within a kind, the layers llama.cpp's `use_more_bits` favours
/// first). The output is therefore never larger than llama-quantize's file of the same preset. A tensor never gets
/// more bits than it has in the input: its own blocks are the top of its ladder and are copied unchanged, so a preset
/// whose bytes exceed a quantized input's (Q4_K_M of a Q4_1 file) keeps the input's blocks wherever it can.
public enum QuantizationPreset: String, CaseIterable, Sendable {
    case q2_K = "Q2_K", q3_K_S = "Q3_K_S", q3_K_M = "Q3_K_M", q3_K_L = "Q3_K_L"
    case q4_K_S = "Q4_K_S", q4_K_M = "Q4_K_M", q5_K_S = "Q5_K_S", q5_K_M = "Q5_K_M", q6_K = "Q6_K"
    case iq4_XS = "IQ4_XS", iq3_XXS = "IQ3_XXS"

    public init?(name: String) {
        guard let p = Self.allCases.first(where: { $0.rawValue.lowercased() == name.lowercased() }) else { return nil }
        self = p
    }

    /// Bits of the preset's default type (Q4_K_M: 4).
    public var nominalBits: Int { Self.level(of: defaultType) + 2 }

    /// llama.cpp's `general.file_type` (enum llama_ftype) for the preset.
    public var llamaFileType: UInt32 {
        switch self {
        case .q2_K: return 10
        case .q3_K_S: return 11
        case .q3_K_M: return 12
        case .q3_K_L: return 13
        case .q4_K_S: return 14
        case .q4_K_M: return 15
        case .q5_K_S: return 16
        case .q5_K_M: return 17
        case .q6_K: return 18
        case .iq3_XXS: return 23
        case .iq4_XS: return 30
        }
    }

    var defaultType: GGMLType {
        switch self {
        case .q2_K: return .q2_K
        case .q3_K_S, .q3_K_M, .q3_K_L: return .q3_K
        case .q4_K_S, .q4_K_M: return .q4_K
        case .q5_K_S, .q5_K_M: return .q5_K
        case .q6_K: return .q6_K
        case .iq4_XS: return .iq4_XS
        case .iq3_XXS: return .iq3_XXS
        }
    }

    /// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third one in between.
    static func useMoreBits(_ i: Int, _ n: Int) -> Bool { i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2 }

    /// The type llama-quantize (with an importance matrix) wants for a tensor of a dense Llama-family model before
    /// its row-length fallback. `kind`: the name's last component before ".weight" (attn_v, ffn_down, ...), or
    /// "output" for the output matrix (also the token embedding when the two are tied).
    func llamaType(kind: String, layer i: Int, layers n: Int, gqa: Int) -> GGMLType {
        let d = defaultType
        if kind == LinearLayer.outputKind { return self == .iq3_XXS ? .q5_K : .q6_K }
        if kind == LinearLayer.embeddingKind { return self == .iq3_XXS ? .iq3_S : d }
        switch LinearKind(rawValue: kind) {
        case .attnV?:
            switch self {
            case .q2_K: return gqa >= 4 ? .q4_K : .q3_K
            case .iq3_XXS: return gqa >= 4 ? .q4_K : .iq3_XXS
            case .q3_K_M: return i < 2 ? .q5_K : .q4_K
            case .q3_K_L: return .q5_K
            case .iq4_XS: return gqa >= 4 ? .q5_K : d
            case .q4_K_M, .q5_K_M: return Self.useMoreBits(i, n) ? .q6_K : d
            case .q4_K_S: return i < 4 ? .q5_K : d
            default: return d
            }
        case .attnK?, .attnQ?: return self == .iq3_XXS ? .iq2_S : d
        case .ffnDown?:
            switch self {
            case .q2_K: return .q3_K
            case .q3_K_M: return i < n / 16 ? .q5_K : .q4_K
            case .q3_K_L: return .q5_K
            case .q4_K_M, .q5_K_M: return Self.useMoreBits(i, n) ? .q6_K : d
            case .q4_K_S: return i < n / 8 ? .q5_K : d
            default: return d
            }
        case .attnOutput?:
            switch self {
            case .q2_K: return .q3_K
            case .iq3_XXS: return .iq3_S
            case .q3_K_M: return .q4_K
            case .q3_K_L: return .q5_K
            default: return d
            }
        default: return d
        }
    }

    /// llama.cpp's replacement for a 256-block type on rows that are not a multiple of 256.
    static func llamaFallback(_ t: GGMLType, rowLength: Int) -> GGMLType {
        guard t.blockElements == 256, rowLength % 256 != 0 else { return t }
        switch t {
        case .q4_K: return .q5_0
        case .q5_K: return .q5_1
        case .q6_K: return .q8_0
        default: return .iq4_NL
        }
    }

    /// The Squish levels a tensor can take, smallest first. All of them run on the int8 kernels (2-5-bit affine
    /// types are loaded as Q4_1/Q5_1); 6 bits would not, so llama.cpp's Q6_K choices start at 5 bits and may rise
    /// to Q8_0 where bytes are left.
    static let levels: [GGMLType] = [.sq2_G64, .sq3_G64, .sq4_G64, .sq5_G64, .q8_0]
    /// Rows that are multiples of 256 take llama.cpp's own K-quants (Squish encodes them, see `BlockGrid.kQuant`).
    static let kLevels: [GGMLType] = [.q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_0]

    /// The levels a row of `rowLength` weights can take.
    static func ladder(rowLength: Int) -> [GGMLType] { rowLength % 256 == 0 ? kLevels : levels }

    /// The levels a tensor stored as `source` can take: the row's levels with fewer bits per weight than the source,
    /// then the source type itself, which is copied unchanged (lossless, and smaller than any level above it: a
    /// Q4_1 matrix re-encoded as 5.5-bit blocks would only approximate its own values with more bytes). Float
    /// sources keep the whole ladder.
    public static func ladder(rowLength: Int, source: GGMLType?) -> [GGMLType] {
        let base = ladder(rowLength: rowLength)
        guard let source, source.blockElements > 1, source.rowBytes(elements: rowLength) != nil else { return base }
        return base.filter { $0 != source && $0.bitsPerWeight < source.bitsPerWeight } + [source]
    }

    /// A tensor's starting level on its ladder: llama.cpp's type itself on the K ladder, else its bit width.
    static func startLevel(of t: GGMLType, ladder: [GGMLType]) -> Int {
        if ladder == kLevels {
            if let i = kLevels.firstIndex(of: t) { return i }
            return min(level(of: t), 4)
        }
        return level(of: t)
    }

    /// The level with the bit width of llama.cpp's type.
    static func level(of t: GGMLType) -> Int {
        switch t {
        case .q2_K, .iq2_S, .iq2_XS, .iq2_XXS: return 0
        case .q3_K, .iq3_S, .iq3_XXS: return 1
        case .q4_K, .iq4_XS, .iq4_NL, .q4_0, .q4_1: return 2
        case .q5_K, .q5_0, .q5_1, .q6_K: return 3
        default: return 4
        }
    }

    static let kindPriority = [LinearKind.attnV, .ffnDown, .attnOutput, .attnK, .attnQ, .ffnGate, .ffnUp].map(\.rawValue)
        + [LinearLayer.outputKind, LinearLayer.embeddingKind]

    /// One matrix the preset decides on.
    public struct Choice: Sendable {
        public let name: String
        public let kind: String
        public let layer: Int
        /// What llama-quantize would write (after its fallback) and what Squish writes.
        public let llamaType: GGMLType
        public var type: GGMLType
    }

    /// Per-matrix types for the linear layers of `file` (configuration `config`): llama.cpp's choice, then Squish's
    /// within the same total bytes.
    public func allocate(_ file: GGUFFile, config: ModelConfig) throws -> [Choice] {
        let n = config.layers, gqa = config.heads(layer: 0) / max(config.kvHeads(layer: 0), 1), tied = config.tiedEmbeddings  // llama.cpp: layer 0's
        let matrices = config.linearLayers.map { (name: $0.name, rowLength: $0.columns, rows: $0.rows, layer: $0) }
        var choices: [Choice] = []
        var budget = 0
        var ladders: [String: [GGMLType]] = [:]
        let rows = Dictionary(uniqueKeysWithValues: matrices.map { ($0.name, ($0.rowLength, $0.rows)) })
        for m in matrices {
            var kind = m.layer.kind
            let layer = m.layer.layer ?? 0
            if m.layer.role == .output || (tied && m.layer.role == .tokenEmbedding) { kind = LinearLayer.outputKind }
            let wanted = llamaType(kind: kind, layer: layer, layers: n, gqa: gqa)
            let llama = Self.llamaFallback(wanted, rowLength: m.rowLength)
            guard let bytes = llama.rowBytes(elements: m.rowLength) else {
                throw QuantizeError.rowLength(tensor: m.name, rowLength: m.rowLength, type: llama)
            }
            budget += bytes * m.rows
            let base = Self.ladder(rowLength: m.rowLength)
            var level = Self.startLevel(of: wanted, ladder: base)
            while level < base.count - 1, base[level].rowBytes(elements: m.rowLength) == nil { level += 1 }
            guard base[level].rowBytes(elements: m.rowLength) != nil else {
                throw QuantizeError.rowLength(tensor: m.name, rowLength: m.rowLength, type: base[level])
            }
            // On the tensor's own ladder: the same level, or the source type where that level has as many bits or more.
            let own = Self.ladder(rowLength: m.rowLength, source: file.tensor(named: m.name)?.type)
            ladders[m.name] = own
            let start = own.firstIndex(of: base[level]) ?? own.count - 1
            choices.append(Choice(name: m.name, kind: kind, layer: layer, llamaType: llama, type: own[start]))
        }
        func ladder(_ c: Choice) -> [GGMLType] { ladders[c.name]! }
        func size(_ t: GGMLType, _ name: String) -> Int? {
            let (len, r) = rows[name]!
            return t.rowBytes(elements: len).map { $0 * r }
        }
        var used = choices.reduce(0) { $0 + size($1.type, $1.name)! }
        // Fewest bits first (the two ladders interleave: Q2_K 2.6, SQ2_G64 2.5, Q3_K 3.4, SQ3_G64 3.5, ... bits).
        func order(_ a: Choice) -> (Double, Int, Int, Int) {
            (a.type.bitsPerWeight, Self.kindPriority.firstIndex(of: a.kind) ?? Self.kindPriority.count,
             Self.useMoreBits(a.layer, n) ? 0 : 1, a.layer)
        }
        // Over budget (rows where llama.cpp's K-quant is a little smaller than the Squish type): take levels back from
        // the tensors with the most bits, least important first.
        while used > budget {
            guard let i = choices.indices.filter({ ladder(choices[$0]).firstIndex(of: choices[$0].type)! > 0 })
                .max(by: { order(choices[$0]) < order(choices[$1]) }) else { break }
            let down = ladder(choices[i])[ladder(choices[i]).firstIndex(of: choices[i].type)! - 1]
            guard let s = size(down, choices[i].name) else { break }
            used += s - size(choices[i].type, choices[i].name)!
            choices[i].type = down
        }
        // Spend the rest: one level at a time to the tensor with the fewest bits that still fits.
        while true {
            let candidates = choices.indices.filter { i in
                let steps = ladder(choices[i]), l = steps.firstIndex(of: choices[i].type)!
                guard l + 1 < steps.count, let s = size(steps[l + 1], choices[i].name) else { return false }
                return used + s - size(choices[i].type, choices[i].name)! <= budget
            }
            guard let i = candidates.min(by: { order(choices[$0]) < order(choices[$1]) }) else { break }
            let up = ladder(choices[i])[ladder(choices[i]).firstIndex(of: choices[i].type)! + 1]
            used += size(up, choices[i].name)! - size(choices[i].type, choices[i].name)!
            choices[i].type = up
        }
        return choices
    }
}
