import Foundation
import Testing
import PropertyBased
import SquishCore
import SquishFormats

/// Properties of the block codecs on random blocks (any scale, any offset, outliers): decoding what was encoded
/// stays within one quantization step of the input. The step follows from each format's definition: symmetric
/// b-bit blocks (Q4_0, Q5_0, Q8_0, SQ<b>S, Q3_K, Q6_K) w = d·q with d = amax / 2^(b−1), affine ones (Q4_1, Q5_1,
/// SQ<b>, Q2_K, Q4_K, Q5_K) w = d·q + m with d = (max − min) / (2^b − 1); plus the f16 rounding of d and m
/// (relative 2^−11, counted twice) and, for the K-quants, the quantized sub-block scales (a factor of 2 and the
/// 4-bit scales of Q2_K another 2). The codecs' exact arithmetic is checked against gguf-py elsewhere
/// (CodecReferenceTests); this checks the guarantee a quantizer relies on, on inputs no fixed vector covers.
@Suite("Block codecs: properties")
struct CodecPropertyTests {
    /// (type, bits, symmetric, slack factor on the step).
    static let cases: [(GGMLType, Int, Bool, Double)] = [
        (.q4_0, 4, true, 1), (.q5_0, 5, true, 1), (.q8_0, 8, true, 1), (.q4_1, 4, false, 1), (.q5_1, 5, false, 1),
        (.sq2_G16, 2, false, 1), (.sq3_G64, 3, false, 1), (.sq5_G128, 5, false, 1), (.sq8_G256, 8, false, 1),
        (.sq2s_G32, 2, true, 1), (.sq4s_G16, 4, true, 1), (.sq6s_G128, 6, true, 1), (.sq7s_G64, 7, true, 1),
        (.q2_K, 2, false, 4), (.q3_K, 3, true, 2), (.q4_K, 4, false, 2), (.q5_K, 5, false, 2), (.q6_K, 6, true, 2),
    ]

    /// Blocks of values: uniform in [offset − scale, offset + scale] with a few outliers up to 4 × scale.
    static func blocks(_ type: GGMLType) -> Generator<[Float], some Sequence> {
        let n = type.blockElements
        return zip(Gen.double(in: 0.05 ... 500), Gen.double(in: -1 ... 1), Gen.int(in: 0 ... 1_000_000)).map { t in
            let (scale, shift, seed) = t
            var rng = SplitMix64(seed: UInt64(seed))
            let offset = shift * scale
            return (0 ..< n).map { i in
                let outlier = i % 17 == 3 && seed % 3 == 0 ? 4.0 : 1.0
                return Float(offset + outlier * scale * Double.random(in: -1 ... 1, using: &rng))
            }
        }
    }

    @Test(arguments: cases.map { $0.0 })
    func roundTripWithinOneStep(type: GGMLType) async throws {
        let (_, bits, symmetric, slack) = Self.cases.first { $0.0 == type }!
        await propertyCheck(count: 60, input: Self.blocks(type)) { x in
            let encoded = try Codecs.quantize(type, x)
            let decoded = try encoded.withUnsafeBytes { try Codecs.dequantize(type, $0, count: x.count) }
            // The step over the whole block (a K-quant's super-block): sub-blocks never get a coarser one than this times the slack.
            let lo = Double(x.min()!), hi = Double(x.max()!), amax = max(abs(lo), abs(hi))
            let step = symmetric ? amax / Double(1 << (bits - 1)) : (hi - lo) / Double((1 << bits) - 1)
            let bound = slack * step + (abs(lo) + abs(hi)) * 0x1p-10
            let worst = zip(x, decoded).map { abs(Double($0) - Double($1)) }.max()!
            #expect(worst <= bound, "\(type.name): max error \(worst) above \(bound) (range [\(lo), \(hi)])")
        }
    }

    /// Constant blocks (and all zeros) come back as the constant, to f16 precision.
    @Test(arguments: cases.map { $0.0 })
    func constantBlocks(type: GGMLType) async throws {
        await propertyCheck(count: 20, input: Gen.double(in: -1000 ... 1000)) { c in
            for value in [Float(c), 0] {
                let x = [Float](repeating: value, count: type.blockElements)
                let encoded = try Codecs.quantize(type, x)
                let decoded = try encoded.withUnsafeBytes { try Codecs.dequantize(type, $0, count: x.count) }
                let worst = decoded.map { abs(Double($0) - Double(value)) }.max()!
                #expect(worst <= abs(Double(value)) * 0x1p-9, "\(type.name): constant \(value) decoded with error \(worst)")
            }
        }
    }
}
