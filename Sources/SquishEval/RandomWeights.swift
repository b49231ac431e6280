import SquishCore
import SquishFormats

/// Random weight matrices in any block type, for kernel benchmarks and synthetic models. Where a codec can quantize
/// the type (Q4_0 ... Q8_0, TQ1_0/TQ2_0, the Squish affine types, F16/F32), Gaussian-like floats (σ = 0.02) go
/// through `Codecs.quantize`; for the others (K-quants, IQ4_NL/IQ4_XS) the blocks are random bytes whose f16 scale
/// fields are overwritten with a small sane value, so that every weight is finite and of a plausible size.
/// To stay fast, a tile of up to 256 random rows is made and repeated down the matrix (values do not affect speed).
public enum RandomWeights {
    /// Byte offsets of the f16 scale (and minimum) fields in one block, per type without an encoder
    /// (ggml's block structs: e.g. block_q2_K ends with d, dmin; block_q4_K starts with them).
    static func scaleFields(_ type: GGMLType) -> [Int]? {
        switch type {
        case .q2_K: return [80, 82]
        case .q3_K: return [108]
        case .q4_K, .q5_K: return [0, 2]
        case .q6_K: return [208]
        case .iq4_NL, .iq4_XS: return [0]
        default: return nil
        }
    }

    /// True when `bytes(type:...)` can make this type.
    public static func supports(_ type: GGMLType) -> Bool { Codecs.canQuantize(type) || scaleFields(type) != nil }

    /// [rows × columns] weights of `type` (rows of `type.rowBytes(columns)` bytes, ggml order).
    public static func bytes(type: GGMLType, rows: Int, columns: Int, seed: UInt64) throws -> [UInt8] {
        guard let rowBytes = type.rowBytes(elements: columns), rows > 0 else {
            throw FormatError.sizeMismatch(type: type, elements: columns, bytes: -1,
                                           reason: "a row of \(columns) is not whole blocks of \(type.blockElements)")
        }
        var rng = SplitMix(seed: seed)
        let tileRows = min(rows, 256)
        var tile = [UInt8](repeating: 0, count: tileRows * rowBytes)  // [tileRows × rowBytes]
        if Codecs.canQuantize(type) {
            var x = [Float](repeating: 0, count: tileRows * columns)  // [tileRows × columns]
            for i in x.indices { x[i] = rng.gaussian() * 0.02 }
            tile = try Codecs.quantize(type, x)
        } else if let fields = scaleFields(type) {
            tile.withUnsafeMutableBytes { b in
                for i in stride(from: 0, to: b.count - 7, by: 8) { b.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self) }
                let scale = HalfFloat.fromFloat(type == .iq4_NL || type == .iq4_XS ? 0.0005 : 0.002)
                for block in stride(from: 0, to: b.count, by: type.blockBytes) {
                    for f in fields { b.storeBytes(of: scale, toByteOffset: block + f, as: UInt16.self) }
                }
            }
        } else {
            throw FormatError.unsupportedType(type, operation: "random weights")
        }
        if tileRows == rows { return tile }
        var out = [UInt8](repeating: 0, count: rows * rowBytes)
        out.withUnsafeMutableBytes { o in
            tile.withUnsafeBytes { t in
                var r = 0
                while r < rows {
                    let n = min(tileRows, rows - r)
                    (o.baseAddress! + r * rowBytes).copyMemory(from: t.baseAddress!, byteCount: n * rowBytes)
                    r += n
                }
            }
        }
        return out
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014), with an approximately normal draw (sum of four uniforms, Irwin–Hall).
/// Deterministic under its seed; also the search generator of `squish compress`.
public struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Mean 0, variance 1.
    mutating func gaussian() -> Float {
        var s: Float = 0
        for _ in 0 ..< 4 { s += Float(next() >> 40) / Float(1 << 24) }
        return (s - 2) * 1.7320508  // Var of a sum of 4 U(0,1) is 1/3
    }
}
