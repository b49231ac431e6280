import Foundation
import Testing
import SquishCore
import SquishFormats
import SquishKernels
import SquishQuantize

@Suite("RTN and block grids")
struct RTNTests {
    static let grids: [BlockGrid] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .iq4_NL]

    /// 32 values exactly on a block's grid, with the extreme codes present so that the block's own parameter rule
    /// recovers the same parameters.
    func onGrid(_ g: BlockGrid, _ rng: inout SplitMix64) -> (values: [Float], params: BlockParameters) {
        let d = Float(HalfFloat.toFloat(HalfFloat.fromFloat(Float.random(in: 0.001 ... 0.05, using: &rng))))
        let m = Float(HalfFloat.toFloat(HalfFloat.fromFloat(Float.random(in: -0.3 ... -0.01, using: &rng))))
        let levels: Int
        let p: BlockParameters
        var extremes: [UInt8]
        switch g {
        case .q4_0: levels = 16; p = BlockParameters(scale: -d); extremes = [0]  // x = -8·(-d) is the largest magnitude
        case .q5_0: levels = 32; p = BlockParameters(scale: -d); extremes = [0]
        case .q4_1: levels = 16; p = BlockParameters(scale: d, minimum: m); extremes = [0, 15]
        case .q5_1: levels = 32; p = BlockParameters(scale: d, minimum: m); extremes = [0, 31]
        case .q8_0: levels = 255; p = BlockParameters(scale: d); extremes = [1, 255]
        case .iq4_NL: levels = 16; p = BlockParameters(scale: d); extremes = [0]
        case .affine, .symmetric, .nonLinear, .nonLinearX, .ternary, .kQuant, .mxfp4: fatalError("32-weight ggml grids with f16 scales only")
        }
        var codes = (0 ..< 32).map { _ in UInt8(Int.random(in: 0 ..< levels, using: &rng) + (g == .q8_0 ? 1 : 0)) }
        for (i, e) in extremes.enumerated() { codes[i * 7] = e }
        return (codes.map { g.value($0, p) }, p)
    }

    @Test(arguments: grids)
    func roundTripIsExactOnGridValues(grid: BlockGrid) throws {
        var rng = SplitMix64(seed: 7)
        for _ in 0 ..< 200 {
            let (x, p) = onGrid(grid, &rng)
            var block = [UInt8](repeating: 0, count: grid.blockBytes)
            x.withUnsafeBufferPointer { xs in block.withUnsafeMutableBytes { RTNQuantizer.quantize(xs.baseAddress!, count: 32, grid: grid, into: $0.baseAddress!) } }
            let back = try block.withUnsafeBytes { try Codecs.dequantize(grid.type, $0, count: 32) }
            #expect(back == x, "\(grid) params \(p)")
            if grid != .iq4_NL {
                x.withUnsafeBufferPointer { #expect(grid.parameters($0.baseAddress!) == p) }
            }
        }
    }

    /// The packing written here is read back by the SquishFormats decoders (checked against gguf-py) as the exact
    /// values the grid says, for random (off-grid) weights.
    @Test(arguments: grids)
    func packedBlocksDecodeToTheGridValues(grid: BlockGrid) throws {
        var rng = SplitMix64(seed: 11)
        for _ in 0 ..< 200 {
            let x = (0 ..< 32).map { _ in Float.random(in: -1 ... 1, using: &rng) * Float.random(in: 0 ... 1, using: &rng) }
            var block = [UInt8](repeating: 0, count: grid.blockBytes)
            var rounded = [Float](repeating: 0, count: 32)
            x.withUnsafeBufferPointer { xs in
                block.withUnsafeMutableBytes { b in rounded.withUnsafeMutableBufferPointer { grid.quantizeBlock(xs.baseAddress!, into: b.baseAddress!, rounded: $0.baseAddress!) } }
            }
            let back = try block.withUnsafeBytes { try Codecs.dequantize(grid.type, $0, count: 32) }
            #expect(back == rounded)
            // Round to nearest: no other code of the same block is closer to the weight.
            let p = x.withUnsafeBufferPointer { grid.parameters($0.baseAddress!) }
            let codeCount = grid == .q8_0 ? 256 : 1 << grid.bits
            for i in 0 ..< 32 {
                let best = (0 ..< codeCount).filter { grid != .q8_0 || $0 > 0 }.map { abs(grid.value(UInt8($0), p) - x[i]) }.min()!
                #expect(abs(rounded[i] - x[i]) <= best * (1 + 1e-6) + 1e-9)
            }
        }
    }

    /// The IQ4_NL scale search never does worse than the plain rule d = s / -127 (s the weight of largest
    /// magnitude), and does better on average.
    @Test func iq4NLSearchBeatsPlainScale() {
        var rng = SplitMix64(seed: 3)
        var plainTotal: Float = 0, searchTotal: Float = 0
        for _ in 0 ..< 500 {
            let x = (0 ..< 32).map { _ in Float.random(in: -1 ... 1, using: &rng) + Float.random(in: -1 ... 1, using: &rng) }
            func error(_ d: Float) -> Float {
                x.reduce(0) { acc, v in
                    let r = BlockGrid.iq4_NL.round(v, BlockParameters(scale: d))
                    return acc + (v - r) * (v - r)
                }
            }
            let s = x.max { abs($0) < abs($1) }!
            let plain = error(HalfFloat.toFloat(HalfFloat.fromFloat(s / -127)))
            let searched = error(x.withUnsafeBufferPointer { IQ4NLScale.search($0.baseAddress!, importance: nil) })
            #expect(searched <= plain * 1.0001)
            plainTotal += plain
            searchTotal += searched
        }
        #expect(searchTotal < 0.9 * plainTotal)
    }

    @Test func iq4NLNearestLevelMatchesBruteForce() {
        var rng = SplitMix64(seed: 5)
        for _ in 0 ..< 20000 {
            let t = Float.random(in: -140 ... 140, using: &rng)
            let i = Int(IQ4NLScale.nearest(t))
            let best = IQ4NLScale.levels.map { abs($0 - t) }.min()!
            #expect(abs(IQ4NLScale.levels[i] - t) == best)
        }
    }

    @Test func bitsAndGroupMapOntoNativeTypes() throws {
        #expect(try QuantizationTarget.resolve(type: nil, bits: 4, group: 32, symmetric: false).type == .q4_1)
        #expect(try QuantizationTarget.resolve(type: nil, bits: 4, group: nil, symmetric: true).type == .q4_0)
        #expect(try QuantizationTarget.resolve(type: nil, bits: 8, group: 32, symmetric: false).type == .q8_0)
        #expect(try QuantizationTarget.resolve(type: "iq4_nl", bits: nil, group: nil, symmetric: false).type == .iq4_NL)
        #expect(try QuantizationTarget.resolve(type: nil, bits: 3, group: 64, symmetric: false).type == .sq3_G64)
        #expect(try QuantizationTarget.resolve(type: nil, bits: 4, group: 64, symmetric: false).type == .sq4_G64)
        #expect(try QuantizationTarget.resolve(type: "sq3_g32", bits: nil, group: nil, symmetric: false).type == .sq3_G32)
        #expect(try QuantizationTarget.resolve(type: nil, bits: 3, group: 64, symmetric: true).type == .sq3s_G64)
        #expect(throws: QuantizeError.self) { try QuantizationTarget.resolve(type: nil, bits: 3, group: 48, symmetric: false) }
        #expect(try QuantizationTarget.resolve(type: "Q4_K", bits: nil, group: nil, symmetric: false).type == .q4_K)
        #expect(try QuantizationTarget.resolve(type: "q6_k", bits: nil, group: nil, symmetric: false, pure: true).fileType == 18)
        #expect(try QuantizationTarget.resolve(type: "Q2_K", bits: nil, group: nil, symmetric: false, pure: true).type == .q2_K)
        #expect(try QuantizationTarget.resolve(type: "Q4_K_M", bits: nil, group: nil, symmetric: false, pure: true).type == .q4_K)
        #expect(try QuantizationTarget.resolve(type: "Q2_K", bits: nil, group: nil, symmetric: false).preset == .q2_K)
        #expect(throws: QuantizeError.self) { try QuantizationTarget.resolve(type: "Q8_K", bits: nil, group: nil, symmetric: false) }
    }
}
