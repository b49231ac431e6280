import Foundation

/// Timing of one generation, for the stats line of `squish run`.
public struct GenerationStats: Codable, Sendable {
    public var promptTokens = 0
    public var promptSeconds = 0.0
    public var generatedTokens = 0
    /// Seconds spent in `decodeSteps` single-token forward passes.
    public var generationSeconds = 0.0
    public var decodeSteps = 0
    public var stoppedBy = "length"

    public var promptTokensPerSecond: Double { promptSeconds > 0 ? Double(promptTokens) / promptSeconds : 0 }
    /// Decode speed: tokens after the first, over the time spent decoding them.
    public var generationTokensPerSecond: Double { generationSeconds > 0 ? Double(decodeSteps) / generationSeconds : 0 }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", promptSeconds = "prompt_seconds", generatedTokens = "generated_tokens"
        case generationSeconds = "generation_seconds", stoppedBy = "stopped_by", decodeSteps = "decode_steps"
    }
}

/// Prefill then token-by-token decode with a sampler, continuing from what the session already holds.
public struct Generator {
    public let session: ModelSession
    public var sampler: Sampler

    public init(session: ModelSession, sampler: SamplerSettings) {
        self.session = session
        self.sampler = Sampler(sampler)
    }

    /// Feeds `prompt` (appended to the session's cache), then samples up to `maxTokens` tokens, calling `onToken`
    /// for each; generation stops at a token in `stop` (not passed on), when `onToken` returns false, or when the
    /// context is full. `history` is what the repetition penalty may look at besides the prompt.
    public mutating func generate(prompt: [Int], maxTokens: Int, stop: Set<Int>, history: [Int] = [],
                                  onToken: (Int) -> Bool) throws -> GenerationStats {
        var stats = GenerationStats()
        guard !prompt.isEmpty else { throw ModelError.emptyInput("the prompt") }
        guard session.position + prompt.count < session.contextLength else {
            throw ModelError.contextOverflow(tokens: session.position + prompt.count + 1, context: session.contextLength)
        }
        var seen = history + prompt
        let t0 = DispatchTime.now().uptimeNanoseconds
        var logits = try session.forward(prompt, logitsFor: 1)
        let t1 = DispatchTime.now().uptimeNanoseconds
        stats.promptTokens = prompt.count
        stats.promptSeconds = Double(t1 - t0) / 1e9
        var decodeStart = t1
        for i in 0 ..< maxTokens {
            let token = try sampler.sample(logits, history: seen)
            if stop.contains(token) { stats.stoppedBy = "stop token"; break }
            seen.append(token)
            stats.generatedTokens += 1
            if !onToken(token) { stats.stoppedBy = "caller"; break }
            if i == maxTokens - 1 { break }
            if session.position >= session.contextLength { stats.stoppedBy = "context"; break }
            if i == 0 { decodeStart = DispatchTime.now().uptimeNanoseconds }
            logits = try session.forward([token], logitsFor: 1)
        }
        let t2 = DispatchTime.now().uptimeNanoseconds
        // Decode speed: the single-token forward passes (one per generated token after the first), over their time.
        stats.decodeSteps = max(0, stats.generatedTokens - 1)
        stats.generationSeconds = stats.decodeSteps > 0 ? Double(t2 - decodeStart) / 1e9 : 0
        return stats
    }
}
