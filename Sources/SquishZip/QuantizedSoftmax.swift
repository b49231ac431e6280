/// The model's next-token distribution as integer frequencies for the coder, computed with integer arithmetic only
/// after one deterministic rounding of each logit, so that the encoder and the decoder (given bit-identical logits)
/// always agree, whatever the libm or the compiler's float contractions:
///
/// 1. q_i = ⌊(max − l_i) · 256⌋, capped at 8192 (the logit gap in steps of 1/256 nat; beyond 32 nats → weight 0);
/// 2. w_i = E[q_i] where E[q] ≈ 2^40 · e^(−q/256) comes from an integer recurrence (no libm);
/// 3. f_i = 1 + ⌊w_i · r / 2^64⌋ with r = ⌊2^64 (2^28 − V) / Σ w⌋, so that Σ f ≤ 2^28 and every token keeps a
///    frequency of at least 1; the remainder goes to the first most likely token.
///
/// The coding cost over the float softmax: the floor takes V / 2^28 of the mass (0.02% for 49,152 tokens), the
/// 1/256-nat steps change probabilities by < 0.4%.
public enum QuantizedSoftmax {
    /// Frequencies sum to 2^precisionBits.
    public static let precisionBits = 28
    /// Logit steps per nat.
    public static let stepsPerNat: Float = 256
    /// Gaps of this many steps or more get weight 0 (and frequency 1).
    public static let maxSteps = 8192

    /// [maxSteps] E[q] = round(2^40 · e^(−q/256)), by the recurrence E[q] = E[q−1] · ρ in 62-bit fixed point with
    /// ρ = round(2^62 · e^(−1/256)), a constant written out so that no libm is involved.
    public static let weights: [UInt64] = {
        let rho: UInt64 = 0x3FC0_1FF5_57FF_778E  // round(2^62 · e^(−1/256))
        var e: UInt64 = 1 << 62
        var table: [UInt64] = []
        table.reserveCapacity(maxSteps)
        for _ in 0 ..< maxSteps {
            table.append((e + (1 << 21)) >> 22)
            let (high, low) = e.multipliedFullWidth(by: rho)
            // e · ρ / 2^62, rounded
            e = high << 2 | low >> 62
            if low & (1 << 61) != 0 { e += 1 }
        }
        return table
    }()

    /// Writes the frequencies of `logits` [count] into `freq` [count] (count < 2^precisionBits); `steps` [count] is
    /// scratch. Returns the index of the token that took the remainder.
    @discardableResult
    public static func frequencies(_ logits: UnsafePointer<Float>, count: Int, steps: UnsafeMutablePointer<UInt16>,
                                   into freq: UnsafeMutablePointer<UInt32>) -> Int {
        precondition(count >= 1 && count < 1 << precisionBits)
        var best = 0
        var m = logits[0]
        for i in 1 ..< count where logits[i] > m { m = logits[i]; best = i }
        let cap = Float(maxSteps)
        var sum: UInt64 = 0
        weights.withUnsafeBufferPointer { w in
            for i in 0 ..< count {
                let d = (m - logits[i]) * stepsPerNat
                // d ≥ 0; a NaN (impossible: the forward pass checks its output) would count as the cap.
                let q = d < cap ? UInt16(d) : UInt16(maxSteps)
                steps[i] = q
                if q < maxSteps { sum &+= w[Int(q)] }
            }
        }
        // sum ≥ E[0] = 2^40 > 2^28 − count, so the quotient fits.
        let spare = UInt64((1 << precisionBits) - count)
        let r = sum.dividingFullWidth((high: spare, low: 0)).quotient
        var total: UInt64 = 0
        weights.withUnsafeBufferPointer { w in
            for i in 0 ..< count {
                let q = Int(steps[i])
                let f: UInt64 = q < maxSteps ? 1 + w[q].multipliedFullWidth(by: r).high : 1
                freq[i] = UInt32(f)
                total += f
            }
        }
        freq[best] += UInt32(UInt64(1 << precisionBits) - total)
        return best
    }

    /// Σ freq[0 ..< token].
    @inline(__always) public static func start(of token: Int, _ freq: UnsafePointer<UInt32>) -> UInt32 {
        var s: UInt32 = 0
        for i in 0 ..< token { s &+= freq[i] }
        return s
    }

    /// The token whose range [start, start + freq) holds `slot`, with its start.
    @inline(__always) public static func token(at slot: UInt32, _ freq: UnsafePointer<UInt32>, count: Int) -> (token: Int, start: UInt32) {
        var s: UInt32 = 0
        for i in 0 ..< count {
            let next = s &+ freq[i]
            if slot < next { return (i, s) }
            s = next
        }
        return (count - 1, s &- freq[count - 1])  // unreachable: the frequencies sum to 2^precisionBits > slot
    }
}
