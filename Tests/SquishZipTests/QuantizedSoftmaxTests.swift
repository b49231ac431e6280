import Foundation
import SquishZip
import Testing

@Suite struct QuantizedSoftmaxTests {
    /// The integer table is 2^40 · e^(−q/256) rounded (libm as the reference): within 0.5 plus a drift of 1e-9 relative.
    @Test func weightTable() {
        let w = QuantizedSoftmax.weights
        #expect(w.count == QuantizedSoftmax.maxSteps)
        #expect(w[0] == 1 << 40)
        for q in stride(from: 0, to: w.count, by: 7) {
            let exact = Foundation.exp(-Double(q) / 256) * 0x1p40
            #expect(abs(Double(w[q]) - exact) <= 0.5 + 1e-9 * exact, "q \(q): \(w[q]) vs \(exact)")
        }
    }

    /// Frequencies sum to 2^28, every token gets ≥ 1, and coding with them costs within 0.1% of the float softmax's
    /// cross-entropy on model-like logits (a few likely tokens, a long tail).
    @Test func frequenciesTrackTheSoftmax() {
        var rng = SplitMix64(seed: 3)
        let vocab = 49152
        var logits = [Float](repeating: 0, count: vocab)
        var freq = [UInt32](repeating: 0, count: vocab)
        var steps = [UInt16](repeating: 0, count: vocab)
        var ideal = 0.0, coded = 0.0
        for round in 0 ..< 20 {
            for i in 0 ..< vocab { logits[i] = rng.normal(2.5) }
            for _ in 0 ..< 5 { logits[Int(rng.next() % UInt64(vocab))] += Float(8 + round % 5) }
            QuantizedSoftmax.frequencies(logits, count: vocab, steps: &steps, into: &freq)
            #expect(freq.reduce(UInt64(0)) { $0 + UInt64($1) } == 1 << 28)
            #expect(freq.min()! >= 1)
            // Expected code length of a token drawn from the softmax.
            let m = logits.max()!
            let z = logits.reduce(0.0) { $0 + Foundation.exp(Double($1 - m)) }
            for i in 0 ..< vocab {
                let p = Foundation.exp(Double(logits[i] - m)) / z
                ideal += p * -log2(p)
                coded += p * (28 - log2(Double(freq[i])))
            }
        }
        #expect(coded / ideal - 1 < 1e-3, "coded \(coded) vs ideal \(ideal)")
        #expect(coded >= ideal)
    }

    /// Start and lookup agree: the token found at any slot of a token's range is that token.
    @Test func startAndLookup() {
        var freq: [UInt32] = [0, 0, 0, 0, 0, 0, 0, 0]
        var steps = [UInt16](repeating: 0, count: 8)
        let logits: [Float] = [1, 3, -2, 0.5, 3, -40, 2, 1]
        QuantizedSoftmax.frequencies(logits, count: 8, steps: &steps, into: &freq)
        #expect(freq[5] == 1)
        #expect(freq[1] > freq[4])  // the first maximum takes the remainder
        for t in 0 ..< 8 {
            let s = QuantizedSoftmax.start(of: t, freq)
            for slot in [s, s + freq[t] / 2, s + freq[t] - 1] {
                let (found, start) = QuantizedSoftmax.token(at: slot, freq, count: 8)
                #expect(found == t && start == s)
            }
        }
    }
}
