import Foundation
import SquishKernels

/// Picks the next token from logits: greedy, or temperature with top-k, top-p and min-p filtering and a
/// repetition penalty. Seeded runs are reproducible; temperature 0 is greedy and deterministic.
public struct SamplerSettings: Sendable, Codable, Equatable {
    public var temperature: Float = 0.8
    public var topK: Int = 40  // 0: off
    public var topP: Float = 0.95  // 1: off
    public var minP: Float = 0.05  // 0: off
    public var repetitionPenalty: Float = 1.0  // 1: off
    /// How many recent tokens the repetition penalty looks at.
    public var repetitionWindow: Int = 64
    public var seed: UInt64 = 0

    public init() {}

    public static var greedy: SamplerSettings {
        var s = SamplerSettings()
        s.temperature = 0
        return s
    }
}

public struct Sampler {
    public var settings: SamplerSettings
    private var rng: Xoshiro256
    private var candidates: [(id: Int, logit: Float)] = []

    public init(_ settings: SamplerSettings) {
        self.settings = settings
        rng = Xoshiro256(seed: settings.seed)
    }

    /// Throws unless every logit is finite or −infinity (−infinity masks a token; NaN and +infinity mean the
    /// model's computation broke down).
    public static func checkFinite(_ logits: UnsafeBufferPointer<Float>) throws {
        var bad = false
        var any = false
        for l in logits {
            bad = bad || l.isNaN || l == .infinity
            any = any || l > -.infinity
        }
        if bad || !any { throw ModelError.nonFiniteLogits(count: logits.count) }
    }

    public static func checkFinite(_ logits: [Float]) throws {
        try logits.withUnsafeBufferPointer { try checkFinite($0) }
    }

    /// Index of the largest value (the first one on ties; NaN never wins; 0 when none exceeds −∞).
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
        logits.isEmpty ? 0 : VectorOps.argmax(logits.baseAddress!, count: logits.count)
    }

    public static func argmax(_ logits: [Float]) -> Int {
        logits.withUnsafeBufferPointer { argmax($0) }
    }

    /// Samples from `logits` (one row of vocabulary size); `history` are the tokens so far (for the penalty).
    /// Throws `ModelError.nonFiniteLogits` when a logit is NaN or +infinity (a broken model or file): there is no
    /// distribution to sample from, and greedy decoding would silently return token 0.
    public mutating func sample(_ logits: [Float], history: [Int] = []) throws -> Int {
        try logits.withUnsafeBufferPointer { try sample($0, history: history) }
    }

    /// The same on a row in place (e.g. a row of a batch's logits; not modified). Tokens at −∞ are never chosen
    /// unless every token is.
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>, history: [Int] = []) throws -> Int {
        try Self.checkFinite(logits)
        if settings.repetitionPenalty != 1, !history.isEmpty {
            var penalized = Array(logits)
            // CTRL (Keskar et al. 2019, sec. 4.1): divide positive logits by the penalty, multiply negative ones.
            for t in Set(history.suffix(settings.repetitionWindow)) where t >= 0 && t < penalized.count {
                penalized[t] = penalized[t] > 0 ? penalized[t] / settings.repetitionPenalty : penalized[t] * settings.repetitionPenalty
            }
            return penalized.withUnsafeBufferPointer { choose($0) }
        }
        return choose(logits)
    }

    private mutating func choose(_ logits: UnsafeBufferPointer<Float>) -> Int {
        if settings.temperature <= 0 { return Self.argmax(logits) }
        if settings.topK <= 0 && settings.topP >= 1 && settings.minP <= 0 { return sampleWhole(logits) }
        selectCandidates(logits)
        // Never empty after checkFinite (the maximum always passes min-p).
        guard !candidates.isEmpty, candidates[0].logit > -.infinity else { return Self.argmax(logits) }
        let mx = candidates[0].logit
        var probs = candidates.map { Double(expf($0.logit - mx)) }
        var total = probs.reduce(0, +)
        // min-p: keep tokens with p ≥ minP · p_max (p_max's weight is exp(0) = 1).
        if settings.minP > 0 {
            let keep = probs.prefix { $0 / 1.0 >= Double(settings.minP) }.count
            probs.removeSubrange(max(keep, 1)...)
            total = probs.reduce(0, +)
        }
        // top-p: the smallest prefix whose mass reaches topP.
        if settings.topP < 1 {
            var mass = 0.0
            var keep = probs.count
            for (i, p) in probs.enumerated() {
                mass += p / total
                if mass >= Double(settings.topP) { keep = i + 1; break }
            }
            probs.removeSubrange(keep...)
            total = probs.reduce(0, +)
        }
        let r = Double(rng.next() >> 11) / Double(1 << 53) * total
        var acc = 0.0
        for (i, p) in probs.enumerated() {
            acc += p
            if r < acc { return candidates[i].id }
        }
        return candidates[probs.count - 1].id
    }
}

extension Sampler {
    /// Sampling from the whole tempered distribution (no filter): one pass for the normalizer, one for the draw,
    /// in vocabulary order (no sort).
    fileprivate mutating func sampleWhole(_ l: UnsafeBufferPointer<Float>) -> Int {
        let t = settings.temperature
        var mx = -Float.infinity
        for v in l { mx = max(mx, v / t) }
        guard mx > -.infinity else { return Self.argmax(l) }
        var total = 0.0
        for v in l { total += Double(expf(v / t - mx)) }
        let r = Double(rng.next() >> 11) / Double(1 << 53) * total
        var acc = 0.0
        var last = 0
        for i in 0 ..< l.count {
            let p = Double(expf(l[i] / t - mx))
            guard p > 0 else { continue }
            acc += p
            last = i
            if r < acc { return i }
        }
        return last
    }
}

/// Log-probabilities of the model's next-token distribution (softmax of the raw logits, before temperature and
/// filtering): the chosen token's and the `top` most likely tokens', as OpenAI's `logprobs` report them.
public struct TokenLogprobs: Sendable {
    public var token: Int
    public var logprob: Float
    /// Most likely first (ties: lower id first).
    public var top: [(token: Int, logprob: Float)]

    public init(token: Int, logprob: Float, top: [(token: Int, logprob: Float)]) {
        self.token = token
        self.logprob = logprob
        self.top = top
    }

    public init(_ logits: UnsafeBufferPointer<Float>, chosen: Int, top n: Int) {
        let s = Self.summarize(logits, top: n)
        self.init(token: chosen, logprob: chosen >= 0 && chosen < logits.count ? logits[chosen] - s.logSumExp : -.infinity, top: s.top)
    }

    /// log Σ exp(logits) and the `n` most likely tokens' log-probabilities of a row; a token's log-probability is
    /// then its logit minus the first.
    public static func summarize(_ logits: UnsafeBufferPointer<Float>, top n: Int) -> (logSumExp: Float, top: [(token: Int, logprob: Float)]) {
        var mx = -Float.infinity
        for v in logits { mx = max(mx, v) }
        var sum = 0.0
        for v in logits { sum += Double(expf(v - mx)) }
        let lse = mx + Float(log(sum))
        var best: [(token: Int, logprob: Float)] = []
        if n > 0 {
            for i in 0 ..< logits.count {
                let v = logits[i]
                if best.count == n { if v <= best[n - 1].logprob { continue }; best.removeLast() }
                var k = best.count
                while k > 0 && best[k - 1].logprob < v { k -= 1 }
                best.insert((i, v), at: k)
            }
        }
        return (lse, best.map { ($0.token, $0.logprob - lse) })
    }
}

extension Sampler {
    /// Fills `candidates` with what survives top-k and min-p, sorted by scaled logit (ties: lower id first) —
    /// the same list a full sort followed by truncation gives, without sorting the whole vocabulary: min-p keeps
    /// exactly the tokens whose weight exp(l/T − max) reaches minP, and top-k keeps a running list of the best k.
    fileprivate mutating func selectCandidates(_ l: UnsafeBufferPointer<Float>) {
        let t = settings.temperature
        candidates.removeAll(keepingCapacity: true)
        var mxRaw = -Float.infinity
        for v in l { mxRaw = max(mxRaw, v) }
        // min-p keeps s = l/t with exp(s − max s) ≥ minP, i.e. l ≥ t·(max s + ln minP). `choose` applies the exact
        // rule afterwards, so this test on the raw logit (no exp per token) only has to keep a superset: a small
        // margin covers rounding. max s = max(l)/t exactly (division by t > 0 is monotonic).
        let floor: Float = settings.minP > 0 ? t * (mxRaw / t + logf(settings.minP) - 1e-3) : -.infinity
        let k = settings.topK > 0 ? settings.topK : Int.max
        @inline(__always) func better(_ a: (id: Int, logit: Float), _ b: (id: Int, logit: Float)) -> Bool {
            a.logit > b.logit || (a.logit == b.logit && a.id < b.id)
        }
        // Raw logit of the current worst candidate once the list is full: a smaller raw logit cannot be better (its
        // s is at most the worst's, and on a tie its larger id loses).
        var worstRaw = -Float.infinity
        for i in 0 ..< l.count {
            let raw = l[i]
            if raw < floor { continue }
            if candidates.count == k {
                if raw < worstRaw { continue }
                let c = (id: i, logit: raw / t)
                // Full: only something better than the current worst gets in.
                guard better(c, candidates[k - 1]) else { continue }
                candidates.removeLast()
            }
            let c = (id: i, logit: raw / t)
            if k == Int.max {
                candidates.append(c)
            } else {
                // Binary search for the insertion point in the sorted (best-first) list.
                var lo = 0, hi = candidates.count
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if better(candidates[mid], c) { lo = mid + 1 } else { hi = mid }
                }
                candidates.insert(c, at: lo)
                if candidates.count == k { worstRaw = l[candidates[k - 1].id] }
            }
        }
        if settings.topK <= 0 { candidates.sort { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) } }
    }
}

/// xoshiro256** (Blackman & Vigna), seeded through SplitMix64: fast, reproducible across platforms.
public struct Xoshiro256: RandomNumberGenerator {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }
}
