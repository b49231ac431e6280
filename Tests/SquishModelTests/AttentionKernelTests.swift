import Foundation
import Testing
import CSquishKernels
import SquishKernels

/// The dispatched attention head (AVX2 where available: four positions per step, vectorized exp) against the
/// portable plain-definition version and a Double-precision reference, over odd lengths and strides.
@Suite struct AttentionKernelTests {
    @Test(arguments: [(64, 1), (64, 3), (64, 4), (64, 7), (64, 37), (64, 512), (128, 9), (80, 13), (8, 5), (32, 1000)])
    func matchesReference(headDim: Int, count: Int) {
        var rng = SplitMix64(seed: UInt64(headDim * 7919 + count))
        let stride = headDim * 3 + 8  // a KV head's slice inside wider rows
        func rand() -> Float { Float(Double(rng.next() % 20001) / 10000 - 1) }
        let q = (0 ..< headDim).map { _ in rand() * 2 }
        let keys = (0 ..< count * stride).map { _ in rand() }
        let values = (0 ..< count * stride).map { _ in rand() }
        let scale = 1 / Float(headDim).squareRoot()
        // Reference in Double.
        var s = (0 ..< count).map { j in Double(scale) * (0 ..< headDim).reduce(0.0) { $0 + Double(q[$1]) * Double(keys[j * stride + $1]) } }
        let mx = s.max()!
        s = s.map { exp($0 - mx) }
        let total = s.reduce(0, +)
        let expected = (0 ..< headDim).map { i in (0 ..< count).reduce(0.0) { $0 + s[$1] / total * Double(values[$1 * stride + i]) } }
        var scores = [Float](repeating: 0, count: count)
        var fast = [Float](repeating: .nan, count: headDim), portable = fast
        sq_attention_head(q, keys, values, Int64(stride), Int64(count), Int64(headDim), scale, &scores, &fast)
        sq_attention_head_portable(q, keys, values, Int64(stride), Int64(count), Int64(headDim), scale, &scores, &portable)
        let norm = expected.map(abs).max()! + 1e-3
        for i in 0 ..< headDim {
            // Float summation over up to 1000 positions: 2e-5 of the output's scale.
            #expect(abs(Double(fast[i]) - expected[i]) <= 2e-5 * norm, "dispatched, element \(i)")
            #expect(abs(Double(portable[i]) - expected[i]) <= 2e-5 * norm, "portable, element \(i)")
        }
    }
}
