import Foundation
import Testing
import CSquishKernels
import SquishKernels

/// One dispatched attention head (sq_attention_heads with one head; AVX2 where available: four positions per step, vectorized exp) against the
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
        sq_attention_heads(q, 1, keys, values, Int64(stride), Int64(count), Int64(headDim), scale, &scores, &fast)
        sq_attention_head_portable(q, keys, values, Int64(stride), Int64(count), Int64(headDim), scale, &scores, &portable)
        let norm = expected.map(abs).max()! + 1e-3
        for i in 0 ..< headDim {
            // Float summation over up to 1000 positions: 2e-5 of the output's scale.
            #expect(abs(Double(fast[i]) - expected[i]) <= 2e-5 * norm, "dispatched, element \(i)")
            #expect(abs(Double(portable[i]) - expected[i]) <= 2e-5 * norm, "portable, element \(i)")
        }
    }
}

/// Several query heads on one KV head (multi-query attention, as Gemma 3's 4 heads share 1) against the Double
/// reference per head; the portable version too. Head counts 1-6 cover the four-head passes and their remainders.
@Suite struct MultiQueryAttentionKernelTests {
    @Test(arguments: [(256, 4, 1), (256, 4, 2), (256, 4, 37), (256, 4, 513), (64, 2, 9), (64, 3, 100), (128, 6, 33),
                      (64, 1, 5), (8, 5, 3), (24, 4, 17)])
    func matchesReference(headDim: Int, heads: Int, count: Int) {
        var rng = SplitMix64(seed: UInt64(headDim * 31 + heads * 7 + count))
        let stride = headDim + 8  // the KV head's slice inside wider rows
        func rand() -> Float { Float(Double(rng.next() % 20001) / 10000 - 1) }
        let q = (0 ..< heads * headDim).map { _ in rand() * 2 }
        let keys = (0 ..< count * stride).map { _ in rand() }
        let values = (0 ..< count * stride).map { _ in rand() }
        let scale = 1 / Float(headDim).squareRoot()
        var scores = [Float](repeating: 0, count: heads * count)
        var fast = [Float](repeating: .nan, count: heads * headDim), portable = fast
        sq_attention_heads(q, Int64(heads), keys, values, Int64(stride), Int64(count), Int64(headDim), scale, &scores, &fast)
        sq_attention_heads_portable(q, Int64(heads), keys, values, Int64(stride), Int64(count), Int64(headDim), scale, &scores, &portable)
        for h in 0 ..< heads {
            var s = (0 ..< count).map { j in
                Double(scale) * (0 ..< headDim).reduce(0.0) { $0 + Double(q[h * headDim + $1]) * Double(keys[j * stride + $1]) }
            }
            let mx = s.max()!
            s = s.map { exp($0 - mx) }
            let total = s.reduce(0, +)
            let expected = (0 ..< headDim).map { i in (0 ..< count).reduce(0.0) { $0 + s[$1] / total * Double(values[$1 * stride + i]) } }
            let norm = expected.map(abs).max()! + 1e-3
            for i in 0 ..< headDim {
                // Float summation over up to 513 positions and 256 dimensions: 2e-5 of the output's scale.
                #expect(abs(Double(fast[h * headDim + i]) - expected[i]) <= 2e-5 * norm, "dispatched, head \(h) element \(i)")
                #expect(abs(Double(portable[h * headDim + i]) - expected[i]) <= 2e-5 * norm, "portable, head \(h) element \(i)")
            }
        }
    }
}

/// The element-wise block steps (gated SiLU/GELU, RMSNorm, the finiteness check) against Double references.
@Suite struct ElementwiseKernelTests {
    @Test(arguments: [0, 1, 7, 8, 9, 64, 1000])
    func gatedActivationsMatchDefinitions(count: Int) {
        var rng = SplitMix64(seed: UInt64(count) + 3)
        // Inputs from −12 to 12 (saturated tails), plus exact zeros.
        let g = (0 ..< count).map { i in i % 11 == 0 ? 0 : Float(Double(rng.next() % 24001) / 1000 - 12) }
        let u = (0 ..< count).map { _ in Float(Double(rng.next() % 4001) / 1000 - 2) }
        for act in [VectorOps.GatedActivation.silu, .geluTanh] {
            var fast = g, portable = g
            fast.withUnsafeMutableBufferPointer { VectorOps.gatedActivation(act, gate: $0.baseAddress!, up: u, count: count) }
            sq_gated_activation_portable(act.rawValue, &portable, u, Int64(count))
            for i in 0 ..< count {
                let x = Double(g[i])
                let a = act == .silu ? x / (1 + Foundation.exp(-x)) : 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
                let expected = a * Double(u[i])
                // A few float roundings of values up to 24: 1e-6 relative plus 1e-6 absolute.
                #expect(abs(Double(fast[i]) - expected) <= 1e-6 * abs(expected) + 1e-6, "\(act) dispatched at \(i): x \(x)")
                #expect(abs(Double(portable[i]) - expected) <= 1e-6 * abs(expected) + 1e-6, "\(act) portable at \(i): x \(x)")
            }
        }
    }

    @Test func rmsNormAndFiniteness() {
        var rng = SplitMix64(seed: 99)
        for n in [1, 7, 8, 13, 640, 2051] {
            let x = (0 ..< n).map { _ in Float(Double(rng.next() % 20001) / 1000 - 10) }
            let w = (0 ..< n).map { _ in Float(Double(rng.next() % 2001) / 1000) }
            var y = [Float](repeating: 0, count: n)
            VectorOps.rmsNorm(x, weight: w, into: &y, count: n, epsilon: 1e-6)
            let ss = x.reduce(0.0) { $0 + Double($1) * Double($1) }
            let scale = 1 / (ss / Double(n) + 1e-6).squareRoot()
            for i in 0 ..< n {
                let expected = Double(x[i]) * scale * Double(w[i])
                #expect(abs(Double(y[i]) - expected) <= 1e-6 * abs(expected) + 1e-7, "n \(n) element \(i)")
            }
            #expect(VectorOps.allFinite(x, count: n))
            for bad in [Float.nan, .infinity, -.infinity] {
                for at in Set([0, n / 2, n - 1]) {
                    var z = x
                    z[at] = bad
                    #expect(!VectorOps.allFinite(z, count: n), "n \(n): \(bad) at \(at)")
                }
            }
        }
        #expect(VectorOps.allFinite([Float](), count: 0))
    }

    /// The vectorized argmax picks what the plain loop picks: first index on ties, NaN ignored, any length.
    @Test func argmaxMatchesScalarLoop() {
        var rng = SplitMix64(seed: 5)
        for n in [1, 2, 7, 8, 9, 31, 262_144 + 3] {
            var x = (0 ..< n).map { _ in Float(Int(rng.next() % 1000)) / 10 }  // many ties
            if n > 20 { x[3] = .nan; x[n - 2] = .nan }
            var best = 0, mx = -Float.infinity
            for (i, v) in x.enumerated() where v > mx { mx = v; best = i }
            #expect(VectorOps.argmax(x, count: n) == best, "n \(n)")
        }
        #expect(VectorOps.argmax([-Float.infinity, -Float.infinity], count: 2) == 0)
        #expect(VectorOps.argmax([Float.nan, 1, 3, 3], count: 4) == 2)
    }
}

/// The tiled causal attention of prefill (sq_attention_tile: several tokens' query heads on one KV head, keys and
/// values in blocks) against the Double reference per row, dispatched and portable; every row of a tile bit-identical
/// to the same row attended alone (a one-token, one-head tile: decoding), which keeps logits independent of the batch
/// split and of the thread count, and to the grouped kernel (sq_attention_heads, heads in groups of 2-4), so tiling does
/// not move a model's results.
@Suite struct AttentionTileKernelTests {
    /// (head size, heads per KV head, tokens in the tile, position of the first token, sliding window or 0).
    @Test(arguments: [(64, 3, 10, 0, 0), (64, 3, 7, 100, 0), (256, 4, 8, 40, 0), (128, 2, 5, 513, 64), (8, 1, 3, 0, 0),
                      (24, 5, 4, 31, 0), (80, 1, 32, 1000, 0), (64, 3, 9, 70, 33)])
    func matchesReference(headDim: Int, heads: Int, tokens: Int, first: Int, window: Int) {
        var rng = SplitMix64(seed: UInt64(headDim * 131 + heads * 17 + tokens * 3 + first + window))
        let stride = headDim * 2 + 8  // the KV head's slice inside wider rows
        let positions = first + tokens
        func rand() -> Float { Float(Double(rng.next() % 20001) / 10000 - 1) }
        let qStride = heads * headDim + 16  // a token's queries inside a wider row
        let q = (0 ..< tokens * qStride).map { _ in rand() * 3 }
        let keys = (0 ..< positions * stride).map { _ in rand() }
        let values = (0 ..< positions * stride).map { _ in rand() }
        let scale = 1 / Float(headDim).squareRoot()
        let upper = (0 ..< tokens).map { Int64(first + $0 + 1) }
        let lower = upper.map { window > 0 ? max(0, $0 - Int64(window)) : 0 }
        let scratch = VectorOps.attentionTileScratch(rows: tokens * heads, headDim: headDim, positions: positions)
        var work = [Float](repeating: .nan, count: scratch)
        var fast = [Float](repeating: .nan, count: tokens * qStride), portable = fast
        sq_attention_tile(q, Int64(qStride), Int64(tokens), Int64(heads), keys, values, Int64(stride), lower, upper,
                          Int64(headDim), scale, &work, &fast, Int64(qStride))
        sq_attention_tile_portable(q, Int64(qStride), Int64(tokens), Int64(heads), keys, values, Int64(stride), lower, upper,
                                   Int64(headDim), scale, &work, &portable, Int64(qStride))
        for i in 0 ..< tokens {
            for h in 0 ..< heads {
                let row = i * qStride + h * headDim
                let range = Int(lower[i]) ..< Int(upper[i])
                var s = range.map { j in
                    Double(scale) * (0 ..< headDim).reduce(0.0) { $0 + Double(q[row + $1]) * Double(keys[j * stride + $1]) }
                }
                let mx = s.max()!
                s = s.map { exp($0 - mx) }
                let total = s.reduce(0, +)
                let expected = (0 ..< headDim).map { d in
                    zip(range, s).reduce(0.0) { $0 + $1.1 / total * Double(values[$1.0 * stride + d]) }
                }
                let norm = expected.map(abs).max()! + 1e-3
                // Float sums over up to 1,032 positions and 256 dimensions: 2e-5 of the scale.
                for d in 0 ..< headDim {
                    #expect(abs(Double(fast[row + d]) - expected[d]) <= 2e-5 * norm, "dispatched, token \(i) head \(h) element \(d)")
                    #expect(abs(Double(portable[row + d]) - expected[d]) <= 2e-5 * norm, "portable, token \(i) head \(h) element \(d)")
                }
                // The row alone, as decoding computes it.
                var alone = [Float](repeating: .nan, count: headDim)
                let one = [lower[i]], end = [upper[i]]
                let qRow = Array(q[row ..< row + headDim])
                sq_attention_tile(qRow, Int64(headDim), 1, 1, keys, values, Int64(stride), one, end, Int64(headDim), scale,
                                  &work, &alone, Int64(headDim))
                #expect(alone == Array(fast[row ..< row + headDim]), "token \(i) head \(h): alone differs from the tile")
                if h == 0 && heads >= 2 && heads % 4 != 1 {  // sq_attention_heads takes a lone fifth head alone
                    var grouped = [Float](repeating: .nan, count: heads * headDim)
                    let base = Int(lower[i]) * stride
                    sq_attention_heads(Array(q[row ..< row + heads * headDim]), Int64(heads), Array(keys[base...]),
                                       Array(values[base...]), Int64(stride), Int64(range.count), Int64(headDim), scale,
                                       &work, &grouped)
                    #expect(grouped == Array(fast[row ..< row + heads * headDim]), "token \(i): the grouped kernel differs from the tile")
                }
            }
        }
    }
}
