import Foundation
import Testing
import SquishEval

func gaussian(_ rng: inout SplitMix64) -> Float {
    // Box–Muller.
    let u = Double.random(in: Double.ulpOfOne ..< 1, using: &rng), v = Double.random(in: 0 ..< 1, using: &rng)
    return Float((-2 * log(u)).squareRoot() * cos(2 * Double.pi * v))
}

@Suite("KL divergence, top-k summaries, statistics")
struct DivergenceTests {
    @Test func identicalLogitsGiveExactlyZero() {
        var rng = SplitMix64(seed: 1)
        let vocab = 3000
        for _ in 0 ..< 20 {
            let logits = (0 ..< vocab).map { _ in 3 * gaussian(&rng) }
            logits.withUnsafeBufferPointer { l in
                let d = Divergence.topK(l.baseAddress!, vocab: vocab, k: 64)
                #expect(Divergence.klDivergence(reference: d, candidate: l.baseAddress!, vocab: vocab) == 0)
                let sampled = Divergence.topK(l.baseAddress!, vocab: vocab, k: 64, tailSamples: 32, offset: 0.3)
                #expect(sampled.tailIDs.count == 32 && Set(sampled.tailIDs).isDisjoint(with: Set(sampled.ids)))
                #expect(Divergence.klDivergence(reference: sampled, candidate: l.baseAddress!, vocab: vocab) == 0)
                #expect(Divergence.argmax(l.baseAddress!, vocab: vocab) == Int(d.ids[0]))
                #expect(abs(Divergence.exactKL(reference: l.baseAddress!, candidate: l.baseAddress!, vocab: vocab)) < 1e-12)
            }
        }
    }

    @Test func topKMatchesAFullSort() {
        var rng = SplitMix64(seed: 2)
        let vocab = 1000
        // Repeated values test the tie rule (lower id first).
        let logits = (0 ..< vocab).map { _ in Float(Int.random(in: 0 ..< 200, using: &rng)) / 10 }
        let d = logits.withUnsafeBufferPointer { Divergence.topK($0.baseAddress!, vocab: vocab, k: 50) }
        let expected = (0 ..< vocab).sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }.prefix(50)
        #expect(d.ids.map(Int.init) == Array(expected))
        let lse = log(logits.reduce(0.0) { $0 + exp(Double($1)) })
        for (j, id) in d.ids.enumerated() { #expect(abs(Double(d.logProbs[j]) - (Double(logits[Int(id)]) - lse)) < 1e-5) }
        let inside = d.ids.reduce(0.0) { $0 + exp(Double(logits[Int($1)]) - lse) }
        #expect(abs(d.tailMass - (1 - inside)) < 1e-6)
    }

    /// The top-k + tail estimate against the exact full-vocabulary KL: never above it (log-sum inequality), equal
    /// when k is the whole vocabulary, and within 2% when the tail holds little mass (peaked distributions, as a
    /// language model's usually are, with candidate = reference + quantization-like noise).
    @Test func topKPlusTailAgreesWithExactKL() {
        var rng = SplitMix64(seed: 3)
        let vocab = 8192
        var exactSum = 0.0, approxSum = 0.0, sampledSum = 0.0
        for trial in 0 ..< 40 {
            // Zipf-like reference logits: log-probabilities falling with log rank, plus noise.
            let ref = (0 ..< vocab).map { i in -1.3 * Float(log(Double(i + 1))) * 1.5 + 0.5 * gaussian(&rng) }
            let noise: Float = trial % 2 == 0 ? 0.1 : 0.4
            let cand = ref.map { $0 + noise * gaussian(&rng) }
            ref.withUnsafeBufferPointer { r in
                cand.withUnsafeBufferPointer { c in
                    let exact = Divergence.exactKL(reference: r.baseAddress!, candidate: c.baseAddress!, vocab: vocab)
                    let approx = Divergence.klDivergence(reference: Divergence.topK(r.baseAddress!, vocab: vocab, k: 256),
                                                         candidate: c.baseAddress!, vocab: vocab)
                    let full = Divergence.klDivergence(reference: Divergence.topK(r.baseAddress!, vocab: vocab, k: vocab),
                                                       candidate: c.baseAddress!, vocab: vocab)
                    #expect(approx <= exact * (1 + 1e-5) + 1e-9)
                    let withSamples = Divergence.klDivergence(
                        reference: Divergence.topK(r.baseAddress!, vocab: vocab, k: 64, tailSamples: 64, offset: Double(trial) * 0.618),
                        candidate: c.baseAddress!, vocab: vocab)
                    sampledSum += withSamples
                    #expect(abs(full - exact) <= exact * 1e-3 + 1e-7)
                    exactSum += exact
                    approxSum += approx
                }
            }
        }
        #expect(abs(approxSum - exactSum) / exactSum < 0.02, "top-k mean \(approxSum / 40), exact \(exactSum / 40)")
        // With only the top-64 the bucket misses more; 64 tail samples recover it.
        #expect(abs(sampledSum - exactSum) / exactSum < 0.02, "top-64 + samples mean \(sampledSum / 40), exact \(exactSum / 40)")
    }

    @Test func sampleSummaryPercentiles() {
        let s = SampleSummary((0 ... 100).map(Double.init).reversed())
        #expect(s.mean == 50)
        #expect(s.median == 50)
        #expect(abs(s.p99 - 99) < 1e-12)
        #expect(s.max == 100 && s.min == 0)
        // Interpolation between order statistics: 4 values, p = 0.5 -> halfway between the 2nd and 3rd.
        #expect(SampleSummary([1, 2, 3, 10]).median == 2.5)
        #expect(abs(SampleSummary([3, 4]).rms - (12.5).squareRoot()) < 1e-12)
    }

    /// Wilson intervals against the values published in Newcombe (1998), "Two-sided confidence intervals for the
    /// single proportion", Statistics in Medicine 17, Table II (method 3, score interval without continuity correction).
    @Test func wilsonIntervalMatchesNewcombe1998() {
        let cases: [(Int, Int, Double, Double)] = [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0, 0.1611),
                                                   (1, 29, 0.0061, 0.1718), (29, 29, 0.8830, 1)]
        for (c, n, lo, hi) in cases {
            let a = Accuracy(correct: c, total: n)
            #expect(abs(a.interval[0] - lo) < 5e-5, "\(c)/\(n)")
            #expect(abs(a.interval[1] - hi) < 5e-5, "\(c)/\(n)")
            #expect(a.accuracy == Double(c) / Double(n))
        }
    }
}
