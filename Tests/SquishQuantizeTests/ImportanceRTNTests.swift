import Foundation
import Testing
import SquishCore
import SquishFormats
import SquishKernels
import SquishQuantize

/// Importance-weighted RTN (`--method rtn --importance`): with inputs whose channels differ in scale, weighting each
/// block's fit by Σ x² per channel must lower the output error ‖(W − Ŵ) X‖² against plain RTN, for every grid.
@Suite("Importance-weighted RTN")
struct ImportanceRTNTests {
    static let types: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q5_1, .iq4_NL, .sq3_G64, .sq2_G64, .q3_K, .q4_K, .q6_K]

    /// ‖(W − Ŵ) Xᵀ‖² over the tokens of X ([tokens × n]), with Ŵ decoded from `blocks` by the format's codec.
    func outputError(_ w: [Float], _ blocks: [UInt8], type: GGMLType, rows: Int, n: Int, x: [Float], tokens: Int) throws -> Double {
        let decoded = try blocks.withUnsafeBytes { try Codecs.dequantize(type, $0, count: rows * n) }
        var e = 0.0
        for r in 0 ..< rows {
            for t in 0 ..< tokens {
                var s = 0.0
                for j in 0 ..< n { s += Double(w[r * n + j] - decoded[r * n + j]) * Double(x[t * n + j]) }
                e += s * s
            }
        }
        return e
    }

    @Test(arguments: types)
    func weightedRoundingLowersOutputError(type: GGMLType) throws {
        let grid = try #require(BlockGrid(type))
        let rows = 16, n = 512, tokens = 256
        var rng = SplitMix64(seed: 11)
        func gaussian() -> Float {
            let u = Float.random(in: Float.ulpOfOne ... 1, using: &rng), v = Float.random(in: 0 ..< 1, using: &rng)
            return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
        }
        // Channel scales spread over about two orders of magnitude, as in real activations.
        let channelScale = (0 ..< n).map { _ in exp(1.2 * gaussian()) }
        let x = (0 ..< tokens * n).map { gaussian() * channelScale[$0 % n] }  // [tokens × n]
        let w = (0 ..< rows * n).map { _ in 0.02 * gaussian() }  // [rows × n]
        var diag = [Double](repeating: 0, count: n)
        for t in 0 ..< tokens { for j in 0 ..< n { diag[j] += Double(x[t * n + j] * x[t * n + j]) } }
        let mean = diag.reduce(0, +) / Double(n)
        let importance = diag.map { Float($0 + 0.01 * mean) }

        let pool = WorkerPool(threads: 2)
        let rowBytes = try #require(type.rowBytes(elements: n))
        var plain = [UInt8](repeating: 0, count: rows * rowBytes)
        w.withUnsafeBufferPointer { wp in
            plain.withUnsafeMutableBytes { out in
                for r in 0 ..< rows {
                    RTNQuantizer.quantize(wp.baseAddress! + r * n, count: n, grid: grid, into: out.baseAddress! + r * rowBytes)
                }
            }
        }
        let weighted = w.withUnsafeBufferPointer { wp in
            importance.withUnsafeBufferPointer {
                RTNQuantizer.quantize(weights: wp.baseAddress!, rows: rows, columns: n, grid: grid, importance: $0.baseAddress!, pool: pool)
            }
        }
        #expect(weighted.count == plain.count)
        let ePlain = try outputError(w, plain, type: type, rows: rows, n: n, x: x, tokens: tokens)
        let eWeighted = try outputError(w, weighted, type: type, rows: rows, n: n, x: x, tokens: tokens)
        // Measured reductions are 20-60%; require at least 10% so that a weighting that does nothing fails.
        #expect(eWeighted < 0.9 * ePlain, "\(type.name): weighted \(eWeighted) vs plain \(ePlain)")
    }

    /// With equal weights the symmetric search can only improve on the reference rule's squared error.
    @Test func symmetricSearchNeverWorseThanReference() {
        var rng = SplitMix64(seed: 5)
        let ones = [Float](repeating: 1, count: 32)
        for grid in [BlockGrid.q4_0, .q5_0] {
            for _ in 0 ..< 300 {
                let x = (0 ..< 32).map { _ in Float.random(in: -1 ... 1, using: &rng) * (Float.random(in: 0 ..< 1, using: &rng) < 0.1 ? 4 : 1) }
                func sse(_ p: BlockParameters) -> Float { x.reduce(0) { $0 + pow($1 - grid.round($1, p), 2) } }
                let reference = x.withUnsafeBufferPointer { grid.parameters($0.baseAddress!) }
                let searched = x.withUnsafeBufferPointer { xs in ones.withUnsafeBufferPointer { grid.parameters(xs.baseAddress!, importance: $0.baseAddress!) } }
                #expect(sse(searched) <= sse(reference) * (1 + 1e-6))
            }
        }
    }
}
