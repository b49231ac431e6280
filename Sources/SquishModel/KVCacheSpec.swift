import Foundation
import SquishCore

/// Which KV cache a session uses: the one `--kv SPEC` of every command that runs a model, parsed here and only here.
///
/// Presets: `f32` (the reference), `f16`, `q8` (8-bit, one f16 scale per 32 channels of a head and position),
/// `kivi4`, `kivi2` (KIVI: keys quantized per channel over groups of g positions, values per position; the most
/// recent r to r + g − 1 positions stay f32). KIVI takes parameters after a colon: `kivi2:g32,r64`
/// (g: positions per key group, a multiple of 8 up to 256; r: the full-precision window).
public struct KVCacheSpec: Equatable, Sendable, CustomStringConvertible {
    public enum Precision: Equatable, Sendable {
        case f32, f16, q8
        /// KIVI with `bits` (4 or 2) per value, keys grouped over `group` positions, `residual` recent positions in f32.
        case kivi(bits: Int, group: Int, residual: Int)
    }

    public var precision: Precision

    public init(_ precision: Precision) { self.precision = precision }

    public static let f32 = KVCacheSpec(.f32)
    /// KIVI's defaults (Liu et al. 2024, section 4: group 32, residual 128).
    public static let kiviGroup = 32, kiviResidual = 128
    public static let presets = ["f32", "f16", "q8", "kivi4", "kivi2"]

    /// The canonical text, which `parse` reads back (e.g. "kivi2:g32,r128").
    public var description: String {
        switch precision {
        case .f32: "f32"
        case .f16: "f16"
        case .q8: "q8"
        case .kivi(let b, let g, let r): "kivi\(b):g\(g),r\(r)"
        }
    }

    /// Parses a specification; errors name the text and what is wrong with it.
    public static func parse(_ text: String) throws -> KVCacheSpec {
        let spec = text.trimmingCharacters(in: .whitespaces).lowercased()
        func fail(_ reason: String) -> ModelError { .invalidKVCacheSpec(spec: text, reason: reason) }
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let name = parts[0]
        let params = parts.count > 1 ? parts[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init) : []
        if parts.count > 1 && params.allSatisfy({ $0.isEmpty }) { throw fail("nothing after ':'") }
        switch name {
        case "f32", "f16", "q8":
            guard params.isEmpty else { throw fail("\(name) takes no parameters") }
            return KVCacheSpec(name == "f32" ? .f32 : name == "f16" ? .f16 : .q8)
        case "kivi4", "kivi2":
            var group = kiviGroup, residual = kiviResidual
            var seen = Set<Character>()
            for p in params {
                guard let key = p.first, let value = Int(p.dropFirst()), value >= 0, key == "g" || key == "r" else {
                    throw fail("parameter '\(p)' is not g<positions> or r<positions>")
                }
                guard seen.insert(key).inserted else { throw fail("parameter '\(key)' given twice") }
                if key == "g" { group = value } else { residual = value }
            }
            guard group >= 8, group <= 256, group % 8 == 0 else { throw fail("group g\(group) must be a multiple of 8 from 8 to 256") }
            guard residual <= 1 << 20 else { throw fail("residual window r\(residual) is larger than 1048576") }
            return KVCacheSpec(.kivi(bits: name == "kivi4" ? 4 : 2, group: group, residual: residual))
        default:
            throw fail("unknown cache; choose from \(presets.joined(separator: ", ")) (KIVI takes :g<group>,r<residual>)")
        }
    }

    /// A cache of this kind for every layer of `config`, holding up to `capacity` positions.
    public func makeCache(config c: ModelConfig, capacity: Int) throws -> KVCache {
        let kvHeads = (0 ..< c.layers).map { c.kvHeads(layer: $0) }
        switch precision {
        case .f32:
            return try F32KVCache(kvHeads: kvHeads, capacity: capacity, headDim: c.headDim)
        case .f16:
            return try QuantizedKVCache(format: .f16, kvHeads: kvHeads, capacity: capacity, headDim: c.headDim, spec: self)
        case .q8:
            return try QuantizedKVCache(format: .q8, kvHeads: kvHeads, capacity: capacity, headDim: c.headDim, spec: self)
        case .kivi(let bits, let group, let residual):
            return try KIVIKVCache(bits: bits, group: group, residual: residual, kvHeads: kvHeads, capacity: capacity,
                                   headDim: c.headDim, spec: self)
        }
    }
}
