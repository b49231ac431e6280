import Foundation
import SquishKernels

/// A reference model's next-token distribution at one position, kept in a compact form: the `k` most likely
/// tokens with their log-probabilities, the probability mass of all other tokens (the tail), and optionally a few
/// tokens drawn from the tail in proportion to their probability.
///
/// KL(P‖Q) = Σ_{i∈top} p_i (log p_i − log q_i) + Σ_{i∈tail} p_i (log p_i − log q_i).
/// With the tail as one bucket, the second sum becomes p_tail · log(p_tail / q_tail): by the log-sum inequality
/// a lower bound that loses the divergence *inside* the tail (measured on the default model vs Q4_0: 5–6% of the
/// KL with k = 256). With tail samples s_1..s_m drawn from p restricted to the tail (systematic sampling over the
/// tail's cumulative distribution), the second sum is estimated without that bias as
/// p_tail · (1/m) Σ_j (log p_{s_j} − log q_{s_j}) — a Monte Carlo estimate of an expectation under p — and each
/// position's estimate is kept at or above the bucket's lower bound. `Tests/SquishEvalTests` compares both with
/// the exact value.
public struct TopKDistribution: Equatable {
    /// Token ids, most likely first (ties: lower id first, so `ids[0]` is the argmax as `argmax` defines it).
    public var ids: [Int32]  // [k]
    /// log p of each id, computed as Float(Double(logit) − logSumExp).
    public var logProbs: [Float]  // [k]
    /// Probability mass outside `ids`.
    public var tailMass: Double
    /// Tail tokens drawn in proportion to p (may repeat), and their log p.
    public var tailIDs: [Int32]  // [m]
    public var tailLogProbs: [Float]  // [m]

    public init(ids: [Int32], logProbs: [Float], tailMass: Double, tailIDs: [Int32] = [], tailLogProbs: [Float] = []) {
        self.ids = ids
        self.logProbs = logProbs
        self.tailMass = tailMass
        self.tailIDs = tailIDs
        self.tailLogProbs = tailLogProbs
    }
}

public enum Divergence {
    /// The softmax normalizer: max logit m and s = Σ exp(logit − m) (terms in Float, summed in Double).
    public struct Normalizer {
        public var max: Float
        public var sum: Double
        public var logSumExp: Double { Double(max) + log(sum) }
    }

    public static func normalizer(_ logits: UnsafePointer<Float>, vocab: Int) -> Normalizer {
        var mx = -Float.infinity
        for i in 0 ..< vocab where logits[i] > mx { mx = logits[i] }
        var s = 0.0
        for i in 0 ..< vocab { s += Double(expf(logits[i] - mx)) }
        return Normalizer(max: mx, sum: s)
    }

    /// log Σ exp(logits), in Double.
    public static func logSumExp(_ logits: UnsafePointer<Float>, vocab: Int) -> Double {
        normalizer(logits, vocab: vocab).logSumExp
    }

    /// Index of the largest logit (the first one on ties; NaN never wins), the kernels' argmax.
    public static func argmax(_ logits: UnsafePointer<Float>, vocab: Int) -> Int { VectorOps.argmax(logits, count: vocab) }

    /// log p of one token given the log-sum-exp, rounded to Float the same way for every model, so that identical
    /// logits give bit-identical log-probabilities.
    @inline(__always)
    static func logProb(_ logit: Float, _ lse: Double) -> Float { Float(Double(logit) - lse) }

    /// Mass of the tokens outside `ids`: (s − Σ_inside exp(logit − m)) / s with the normalizer's own terms, so it
    /// keeps its precision when the tail is tiny, and identical logits give identical tail masses.
    static func tailMass(_ logits: UnsafePointer<Float>, _ n: Normalizer, ids: [Int32]) -> Double {
        var inside = 0.0
        for id in ids { inside += Double(expf(logits[Int(id)] - n.max)) }
        return max(0, n.sum - inside) / n.sum
    }

    /// The `k` most likely tokens of `logits`, their log-probabilities and the tail mass.
    /// `tailSamples`: tokens to draw from the tail (systematic sampling with offset `offset` in [0, 1)).
    public static func topK(_ logits: UnsafePointer<Float>, vocab: Int, k: Int, normalizer: Normalizer? = nil,
                            tailSamples: Int = 0, offset: Double = 0.5) -> TopKDistribution {
        let k = min(k, vocab)
        let n = normalizer ?? self.normalizer(logits, vocab: vocab)
        let lse = n.logSumExp
        // A min-heap of the k best (logit, id) pairs; "worse" = smaller logit, or equal logit and larger id.
        var heap: [(Float, Int32)] = []
        heap.reserveCapacity(k)
        @inline(__always) func worse(_ a: (Float, Int32), _ b: (Float, Int32)) -> Bool {
            a.0 < b.0 || (a.0 == b.0 && a.1 > b.1)
        }
        func siftDown(_ start: Int) {
            var i = start
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && worse(heap[l], heap[m]) { m = l }
                if r < heap.count && worse(heap[r], heap[m]) { m = r }
                if m == i { return }
                heap.swapAt(i, m)
                i = m
            }
        }
        for i in 0 ..< vocab {
            let e = (logits[i], Int32(i))
            if heap.count < k {
                heap.append(e)
                var c = heap.count - 1
                while c > 0 {
                    let p = (c - 1) / 2
                    if worse(heap[c], heap[p]) { heap.swapAt(c, p); c = p } else { break }
                }
            } else if worse(heap[0], e) {
                heap[0] = e
                siftDown(0)
            }
        }
        heap.sort { worse($1, $0) }
        let ids = heap.map { $0.1 }
        let logProbs = heap.map { logProb($0.0, lse) }
        var d = TopKDistribution(ids: ids, logProbs: logProbs, tailMass: tailMass(logits, n, ids: ids))
        if tailSamples > 0 && k < vocab {
            // Systematic sampling (one uniform offset, m evenly spaced points) over the tail's cumulative mass, in
            // token-id order, with the same exp terms as the normalizer.
            var inTop = [Bool](repeating: false, count: vocab)
            for id in ids { inTop[Int(id)] = true }
            var tailTotal = 0.0
            for i in 0 ..< vocab where !inTop[i] { tailTotal += Double(expf(logits[i] - n.max)) }
            if tailTotal > 0 {
                var cumulative = 0.0, j = 0
                let offset = offset - offset.rounded(.down)
                var next = (Double(j) + offset) / Double(tailSamples) * tailTotal
                var lastTail = -1
                for i in 0 ..< vocab where !inTop[i] {
                    cumulative += Double(expf(logits[i] - n.max))
                    lastTail = i
                    while j < tailSamples && next < cumulative {
                        d.tailIDs.append(Int32(i))
                        d.tailLogProbs.append(logProb(logits[i], lse))
                        j += 1
                        next = (Double(j) + offset) / Double(tailSamples) * tailTotal
                    }
                }
                while j < tailSamples && lastTail >= 0 {  // rounding at the very end of the cumulative sum
                    d.tailIDs.append(Int32(lastTail))
                    d.tailLogProbs.append(logProb(logits[lastTail], lse))
                    j += 1
                }
            }
        }
        return d
    }

    /// KL(reference ‖ candidate) over the reference's top-k tokens plus one tail bucket, in nats.
    /// `normalizer`: the candidate's (computed when not given).
    public static func klDivergence(reference p: TopKDistribution, candidate logits: UnsafePointer<Float>, vocab: Int,
                                    normalizer: Normalizer? = nil) -> Double {
        let n = normalizer ?? self.normalizer(logits, vocab: vocab)
        let lse = n.logSumExp
        var kl = 0.0
        for (j, id) in p.ids.enumerated() {
            let lp = p.logProbs[j]
            let lq = logProb(logits[Int(id)], lse)
            if lp == lq { continue }
            kl += exp(Double(lp)) * (Double(lp) - Double(lq))
        }
        let qTail = tailMass(logits, n, ids: p.ids)
        var bucket = 0.0
        if p.tailMass > 0 && p.tailMass != qTail {
            // q_tail = 0 only when the candidate puts (numerically) all mass on the top-k: bound it away from 0.
            bucket = p.tailMass * log(p.tailMass / max(qTail, 1e-300))
        }
        guard !p.tailIDs.isEmpty else { return kl + bucket }
        var sampled = 0.0
        for (j, id) in p.tailIDs.enumerated() {
            let lp = p.tailLogProbs[j], lq = logProb(logits[Int(id)], lse)
            if lp != lq { sampled += Double(lp) - Double(lq) }
        }
        sampled *= p.tailMass / Double(p.tailIDs.count)
        return kl + max(bucket, sampled)
    }

    /// Exact KL(P‖Q) over the whole vocabulary (for tests and checks), in nats.
    public static func exactKL(reference: UnsafePointer<Float>, candidate: UnsafePointer<Float>, vocab: Int) -> Double {
        let lp = logSumExp(reference, vocab: vocab), lq = logSumExp(candidate, vocab: vocab)
        var kl = 0.0
        for i in 0 ..< vocab {
            let a = Double(reference[i]) - lp, b = Double(candidate[i]) - lq
            kl += exp(a) * (a - b)
        }
        return kl
    }
}

/// Summary statistics of a sample (KL values, Δp values), as llama-perplexity prints them.
public struct SampleSummary: Codable, Sendable, Equatable {
    public var mean: Double
    /// Standard error of the mean.
    public var meanStderr: Double
    public var median: Double
    public var p1: Double
    public var p5: Double
    public var p10: Double
    public var p90: Double
    public var p95: Double
    public var p99: Double
    public var min: Double
    public var max: Double
    public var rms: Double
    public var count: Int

    enum CodingKeys: String, CodingKey {
        case mean, median, p1, p5, p10, p90, p95, p99, min, max, rms, count
        case meanStderr = "mean_stderr"
    }

    /// Percentiles by linear interpolation between order statistics (position q·(n−1)), as llama.cpp does.
    public init(_ values: [Double]) {
        let n = values.count
        count = n
        guard n > 0 else {
            mean = 0; meanStderr = 0; median = 0; p1 = 0; p5 = 0; p10 = 0; p90 = 0; p95 = 0; p99 = 0; min = 0; max = 0; rms = 0
            return
        }
        let sorted = values.sorted()
        func q(_ f: Double) -> Double {
            let pos = f * Double(n - 1)
            let lo = Int(pos.rounded(.down)), hi = Swift.min(lo + 1, n - 1)
            let t = pos - Double(lo)
            return sorted[lo] * (1 - t) + sorted[hi] * t
        }
        let m = values.reduce(0, +) / Double(n)
        let sq = values.reduce(0) { $0 + $1 * $1 } / Double(n)
        mean = m
        meanStderr = n > 1 ? (Swift.max(0, sq - m * m) / Double(n - 1)).squareRoot() : 0
        median = q(0.5); p1 = q(0.01); p5 = q(0.05); p10 = q(0.10); p90 = q(0.90); p95 = q(0.95); p99 = q(0.99)
        min = sorted[0]; max = sorted[n - 1]
        rms = sq.squareRoot()
    }
}
