import Foundation
import SquishCore
import SquishModel

/// How a text is cut into windows and which tokens are scored.
public enum PerplexityProtocol: String, CaseIterable, Codable, Sendable {
    /// llama.cpp's `llama-perplexity`: chunks of `context` tokens (the first replaced by BOS when the model adds
    /// one), only the second half of each chunk scored; the final partial chunk is dropped.
    case llamacpp
    /// Non-overlapping windows of `context` tokens, every token scored once (a window's first token is predicted
    /// from BOS when the model has one, otherwise it is not scored); the final partial window is included.
    case windows
}

public struct PerplexityResult: Codable, Sendable {
    public let perplexity: Double
    /// Standard error of the perplexity (llama.cpp's estimate: ppl · sd(nll) / √(n−1)).
    public let stderr: Double
    /// Tokens scored.
    public let tokens: Int
    public let textTokens: Int
    public let chunks: Int
    public let context: Int
    public let `protocol`: PerplexityProtocol
    /// Running perplexity after each chunk, as llama-perplexity prints it.
    public let runningPerplexity: [Double]
    /// Mean negative log-likelihood (nats per scored token).
    public let meanNLL: Double

    public init(perplexity: Double, stderr: Double, tokens: Int, textTokens: Int, chunks: Int, context: Int,
                protocol proto: PerplexityProtocol, runningPerplexity: [Double], meanNLL: Double) {
        self.perplexity = perplexity
        self.stderr = stderr
        self.tokens = tokens
        self.textTokens = textTokens
        self.chunks = chunks
        self.context = context
        self.protocol = proto
        self.runningPerplexity = runningPerplexity
        self.meanNLL = meanNLL
    }

    enum CodingKeys: String, CodingKey {
        case perplexity, stderr, tokens, chunks, context, `protocol`
        case textTokens = "text_tokens", runningPerplexity = "running_perplexity", meanNLL = "mean_nll"
    }
}

public enum EvalError: Error, CustomStringConvertible {
    case textTooShort(tokens: Int, needed: Int)
    case invalidArgument(String)
    case io(path: String, reason: String)
    /// A reference-logits cache file that is truncated, altered or of another version.
    case corruptCache(path: String, reason: String)
    /// A candidate that cannot be compared with the reference (other vocabulary, other tokenization).
    case incompatible(String)
    /// The model's log-likelihood of a scored token is NaN or infinite (NaN or infinite logits): `what` names the
    /// model, `position` the token in the scored text.
    case nonFinite(what: String, position: Int)
    /// The message with non-printing characters escaped (names and values in it may come from a hostile file).
    public var description: String { TerminalText.escape(message) }

    /// The message as composed, before escaping.
    var message: String {
        switch self {
        case .textTooShort(let t, let n): return "the text has \(t) tokens; at least \(n) are needed for one chunk"
        case .invalidArgument(let s): return s
        case .io(let path, let reason): return "\(path): \(reason)"
        case .corruptCache(let path, let reason): return "\(path): corrupt reference cache: \(reason)"
        case .incompatible(let s): return s
        case .nonFinite(let what, let position):
            return "\(what): the log-likelihood of token \(position) is not finite (the model produced NaN or infinite logits); no perplexity can be given"
        }
    }
}

/// Negative log-likelihoods accumulated the way llama.cpp does.
struct NLLAccumulator {
    var sum = 0.0, sumSquares = 0.0, count = 0
    /// Index (in `count` order) of the first token whose NLL was NaN or infinite.
    var firstNonFinite: Int?

    /// −log softmax(logits)[target], with the max subtracted and the sum of exponentials in double.
    mutating func add(logits: UnsafePointer<Float>, vocab: Int, target: Int) {
        var mx = -Float.infinity
        var nan = false
        for i in 0 ..< vocab {
            if logits[i] > mx { mx = logits[i] }
            nan = nan || logits[i].isNaN
        }
        var s = 0.0
        for i in 0 ..< vocab { s += Double(expf(logits[i] - mx)) }
        let nll = nan ? .nan : -(Double(logits[target] - mx) - log(s))
        if !nll.isFinite && firstNonFinite == nil { firstNonFinite = count }
        sum += nll
        sumSquares += nll * nll
        count += 1
    }

    /// Throws if any token so far had a non-finite NLL (a model that produced NaN or infinite logits).
    func checkFinite(_ what: String) throws {
        if let i = firstNonFinite { throw EvalError.nonFinite(what: what, position: i) }
    }

    var mean: Double { sum / Double(max(count, 1)) }
    var perplexity: Double { exp(mean) }
    var standardError: Double {
        guard count > 1 else { return 0 }
        let variance = sumSquares / Double(count) - mean * mean
        return variance > 0 ? (variance / Double(count - 1)).squareRoot() * perplexity : 0
    }
}

public enum Perplexity {
    /// Scores `tokens` (the tokenized text, without BOS) with `session`'s model.
    /// `bos`: the BOS id when the model's tokenizer adds one, else nil.
    public static func evaluate(session: ModelSession, tokens: [Int], context: Int, protocol proto: PerplexityProtocol,
                                bos: Int?, progress: ProgressBar? = nil,
                                onChunk: ((Int, Double) -> Void)? = nil) throws -> PerplexityResult {
        guard context >= 4, context <= session.contextLength else {
            throw EvalError.invalidArgument("context \(context) must be between 4 and the session's \(session.contextLength)")
        }
        let vocab = session.model.config.vocabSize
        var acc = NLLAccumulator()
        var running: [Double] = []
        switch proto {
        case .llamacpp:
            // llama.cpp tokenizes with BOS prepended when the model adds one, then cuts chunks of `context`.
            let all = (bos.map { [$0] } ?? []) + tokens
            let chunks = all.count / context
            guard chunks > 0 else { throw EvalError.textTooShort(tokens: all.count, needed: context) }
            let first = context / 2
            for i in 0 ..< chunks {
                var chunk = Array(all[i * context ..< (i + 1) * context])
                if let bos { chunk[0] = bos }
                session.reset()
                // Logits for positions first ..< context−1 predict tokens first+1 ..< context.
                let logits = try session.score(chunk, last: context - first)
                logits.withUnsafeBufferPointer { l in
                    for j in first ..< context - 1 {
                        acc.add(logits: l.baseAddress! + (j - first) * vocab, vocab: vocab, target: chunk[j + 1])
                    }
                }
                try acc.checkFinite(session.model.path)
                running.append(acc.perplexity)
                onChunk?(i, acc.perplexity)
                progress?.advance()
            }
            return PerplexityResult(perplexity: acc.perplexity, stderr: acc.standardError, tokens: acc.count,
                                    textTokens: tokens.count, chunks: chunks, context: context, protocol: proto,
                                    runningPerplexity: running, meanNLL: acc.mean)
        case .windows:
            guard !tokens.isEmpty else { throw EvalError.textTooShort(tokens: 0, needed: 2) }
            let step = bos == nil ? context : context - 1
            var start = 0
            var chunks = 0
            while start < tokens.count {
                let end = min(tokens.count, start + step)
                let window = (bos.map { [$0] } ?? []) + Array(tokens[start ..< end])
                let offset = bos == nil ? 0 : 1  // window index of the first text token
                session.reset()
                if window.count >= 2 {
                    let logits = try session.score(window, last: window.count)
                    logits.withUnsafeBufferPointer { l in
                        for j in 0 ..< window.count - 1 {
                            acc.add(logits: l.baseAddress! + j * vocab, vocab: vocab, target: window[j + 1])
                        }
                    }
                }
                _ = offset
                try acc.checkFinite(session.model.path)
                chunks += 1
                running.append(acc.perplexity)
                onChunk?(chunks - 1, acc.perplexity)
                progress?.advance()
                start = end
            }
            return PerplexityResult(perplexity: acc.perplexity, stderr: acc.standardError, tokens: acc.count,
                                    textTokens: tokens.count, chunks: chunks, context: context, protocol: proto,
                                    runningPerplexity: running, meanNLL: acc.mean)
        }
    }

    /// Number of chunks `evaluate` will run (for progress bars).
    public static func chunkCount(tokens: Int, context: Int, protocol proto: PerplexityProtocol, hasBOS: Bool) -> Int {
        switch proto {
        case .llamacpp: return (tokens + (hasBOS ? 1 : 0)) / context
        case .windows:
            let step = hasBOS ? context - 1 : context
            return (tokens + step - 1) / step
        }
    }
}
