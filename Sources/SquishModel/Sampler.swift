import Foundation

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
    public static func checkFinite(_ logits: [Float]) throws {
        var bad = false
        var any = false
        for l in logits {
            bad = bad || l.isNaN || l == .infinity
            any = any || l > -.infinity
        }
        if bad || !any { throw ModelError.nonFiniteLogits(count: logits.count) }
    }

    /// Index of the largest value (the first one on ties).
    public static func argmax(_ logits: [Float]) -> Int {
        var best = 0
        var mx = -Float.infinity
        for (i, l) in logits.enumerated() where l > mx {
            mx = l
            best = i
        }
        return best
    }

    /// Samples from `logits` (one row of vocabulary size); `history` are the tokens so far (for the penalty).
    /// Throws `ModelError.nonFiniteLogits` when a logit is NaN or +infinity (a broken model or file): there is no
    /// distribution to sample from, and greedy decoding would silently return token 0.
    public mutating func sample(_ logits: [Float], history: [Int] = []) throws -> Int {
        try Self.checkFinite(logits)
        var logits = logits
        if settings.repetitionPenalty != 1, !history.isEmpty {
            // CTRL (Keskar et al. 2019, sec. 4.1): divide positive logits by the penalty, multiply negative ones.
            for t in Set(history.suffix(settings.repetitionWindow)) where t >= 0 && t < logits.count {
                logits[t] = logits[t] > 0 ? logits[t] / settings.repetitionPenalty : logits[t] * settings.repetitionPenalty
            }
        }
        if settings.temperature <= 0 { return Self.argmax(logits) }
        selectCandidates(logits)
        // Never empty for finite logits (the maximum always passes min-p); kept as a typed error, not a trap.
        guard let first = candidates.first, first.logit.isFinite else { throw ModelError.nonFiniteLogits(count: logits.count) }
        let mx = first.logit
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
    /// Fills `candidates` with what survives top-k and min-p, sorted by scaled logit (ties: lower id first) —
    /// the same list a full sort followed by truncation gives, without sorting the whole vocabulary: min-p keeps
    /// exactly the tokens whose weight exp(l/T − max) reaches minP, and top-k keeps a running list of the best k.
    fileprivate mutating func selectCandidates(_ logits: [Float]) {
        let t = settings.temperature
        candidates.removeAll(keepingCapacity: true)
        logits.withUnsafeBufferPointer { l in
            var mx = -Float.infinity
            for v in l { mx = max(mx, v / t) }
            let minP = Double(settings.minP)
            let k = settings.topK > 0 ? settings.topK : Int.max
            @inline(__always) func better(_ a: (id: Int, logit: Float), _ b: (id: Int, logit: Float)) -> Bool {
                a.logit > b.logit || (a.logit == b.logit && a.id < b.id)
            }
            for i in 0 ..< l.count {
                let s = l[i] / t
                if minP > 0 && !(Double(expf(s - mx)) >= minP) && s != mx { continue }
                let c = (id: i, logit: s)
                if candidates.count == k {
                    // Full: only something better than the current worst gets in.
                    guard better(c, candidates[k - 1]) else { continue }
                    candidates.removeLast()
                }
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
                }
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
