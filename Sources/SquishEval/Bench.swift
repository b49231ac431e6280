import Foundation
import SquishCore
import SquishKernels
import SquishModel

/// llama-bench style throughput: prompt processing (one batch of `promptTokens`) and text generation
/// (`generatedTokens` single-token decodes), each from a cache holding `depth` tokens (0: empty), after one warm-up
/// run, repeated.
public struct BenchResult: Codable, Sendable {
    public let promptTokens: Int
    /// Tokens in the cache before each run (llama-bench's -d): the speed at that context depth.
    public let depth: Int
    public let generatedTokens: Int
    public let threads: Int
    public let repetitions: Int
    public let promptTokensPerSecond: Double
    public let promptTokensPerSecondSD: Double
    public let generationTokensPerSecond: Double
    public let generationTokensPerSecondSD: Double
    public let promptSamples: [Double]
    public let generationSamples: [Double]
    /// Bytes of all weight matrices one decoded token reads (every layer's seven, and the output matrix).
    public let weightBytesPerToken: Int
    /// weightBytesPerToken × generation tokens/s: the effective bandwidth at which decode streams the weights.
    public let weightsGigabytesPerSecond: Double

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", depth, generatedTokens = "generated_tokens", threads, repetitions
        case promptTokensPerSecond = "prompt_tokens_per_second", promptTokensPerSecondSD = "prompt_tokens_per_second_sd"
        case generationTokensPerSecond = "generation_tokens_per_second"
        case generationTokensPerSecondSD = "generation_tokens_per_second_sd"
        case promptSamples = "prompt_samples", generationSamples = "generation_samples"
        case weightBytesPerToken = "weight_bytes_per_token", weightsGigabytesPerSecond = "weights_gigabytes_per_second"
    }
}

public enum ModelBench {
    static func meanSD(_ v: [Double]) -> (Double, Double) {
        guard !v.isEmpty else { return (0, 0) }
        let m = v.reduce(0, +) / Double(v.count)
        guard v.count > 1 else { return (m, 0) }
        let s = v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(v.count - 1)
        return (m, s.squareRoot())
    }

    /// `depth` random tokens are run once (untimed); every run then starts from them.
    public static func run(session: ModelSession, promptTokens: Int, generatedTokens: Int, repetitions: Int, depth: Int = 0,
                           progress: ProgressBar? = nil) throws -> BenchResult {
        let vocab = session.model.config.vocabSize
        var rng = SystemRandomNumberGenerator()
        var pp: [Double] = [], tg: [Double] = []
        session.reset()
        if depth > 0 { _ = try session.forward((0 ..< depth).map { _ in Int.random(in: 0 ..< vocab, using: &rng) }) }
        for rep in 0 ... repetitions {  // rep 0 is the warm-up
            if promptTokens > 0 {
                let tokens = (0 ..< promptTokens).map { _ in Int.random(in: 0 ..< vocab, using: &rng) }
                session.reset(to: depth)
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = try session.forward(tokens, logitsFor: 1)
                let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                if rep > 0 { pp.append(Double(promptTokens) / dt) }
            }
            if generatedTokens > 0 {
                session.reset(to: depth)
                var token = Int.random(in: 0 ..< vocab, using: &rng)
                let t0 = DispatchTime.now().uptimeNanoseconds
                for _ in 0 ..< generatedTokens {
                    let logits = try session.forward([token], logitsFor: 1)
                    token = Sampler.argmax(logits)
                }
                let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                if rep > 0 { tg.append(Double(generatedTokens) / dt) }
            }
            progress?.advance()
        }
        let (ppm, pps) = meanSD(pp), (tgm, tgs) = meanSD(tg)
        return BenchResult(promptTokens: promptTokens, depth: depth, generatedTokens: generatedTokens, threads: session.pool.threadCount,
                           repetitions: repetitions, promptTokensPerSecond: ppm, promptTokensPerSecondSD: pps,
                           generationTokensPerSecond: tgm, generationTokensPerSecondSD: tgs,
                           promptSamples: pp, generationSamples: tg, weightBytesPerToken: session.model.matrixBytesPerToken,
                           weightsGigabytesPerSecond: Double(session.model.matrixBytesPerToken) * tgm / 1e9)
    }
}
