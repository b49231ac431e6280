import Foundation
import SquishCore
import SquishKernels
import SquishModel

/// How closely a model follows another on one short text: KL(reference ‖ candidate) over the whole vocabulary and
/// whether both put the same token first, at every position of non-overlapping windows (BOS first where the
/// tokenizer adds one). The quick check `squish quantize` closes with; `squish eval` is the full measurement
/// (longer text, llama.cpp's scored positions, cached reference, tasks).
public struct ModelAgreement: Codable, Sendable, Equatable {
    /// Mean KL(reference ‖ candidate) per position, nats (`Divergence.exactKL`).
    public var klDivergence: Double
    public var klMax: Double
    /// Fraction of positions where both models' most likely next token is the same.
    public var top1Agreement: Double
    public var positions: Int

    enum CodingKeys: String, CodingKey {
        case klDivergence = "kl_divergence", klMax = "kl_max", top1Agreement = "top1_agreement", positions
    }

    /// `tokens`: the text without BOS; `bos`: prepended to every window when given. Windows of `context` tokens
    /// (BOS included); a last, shorter window is scored too.
    public static func measure(reference: TransformerModel, candidate: TransformerModel, tokens: [Int], bos: Int?, context: Int,
                               pool: WorkerPool, progress: ProgressBar? = nil) throws -> ModelAgreement {
        let vocab = reference.config.vocabSize
        guard candidate.config.vocabSize == vocab else {
            throw EvalError.incompatible("the vocabularies differ (\(vocab) and \(candidate.config.vocabSize) tokens)")
        }
        let step = context - (bos == nil ? 0 : 1)
        guard step >= 1 else { throw EvalError.invalidArgument("context \(context) is too short") }
        guard !tokens.isEmpty else { throw EvalError.textTooShort(tokens: 0, needed: 1) }
        let sessions = try [reference, candidate].map { try ModelSession(model: $0, pool: pool, contextLength: context) }
        var kl = 0.0, klMax = 0.0, same = 0, positions = 0
        var firstNonFinite: Int?
        var start = 0
        while start < tokens.count {
            let window = (bos.map { [$0] } ?? []) + tokens[start ..< min(start + step, tokens.count)]
            let logits = try sessions.map { s in
                s.reset()
                return try s.forward(window, logitsFor: window.count)  // [window × vocab]
            }
            logits[0].withUnsafeBufferPointer { p in
                logits[1].withUnsafeBufferPointer { q in
                    for t in 0 ..< window.count {
                        let (a, b) = (p.baseAddress! + t * vocab, q.baseAddress! + t * vocab)
                        let d = Divergence.exactKL(reference: a, candidate: b, vocab: vocab)
                        if !d.isFinite && firstNonFinite == nil { firstNonFinite = positions + t }
                        kl += d
                        klMax = max(klMax, d)
                        if Divergence.argmax(a, vocab: vocab) == Divergence.argmax(b, vocab: vocab) { same += 1 }
                    }
                }
            }
            if let i = firstNonFinite {
                // Which model broke: the one whose logits at that position are not all finite.
                let t = i - positions
                let referenceBroken = logits[0][t * vocab ..< (t + 1) * vocab].contains { $0.isNaN || $0 == .infinity }
                throw EvalError.nonFinite(what: referenceBroken ? reference.path : candidate.path, position: i)
            }
            positions += window.count
            start += step
            progress?.advance()
        }
        return ModelAgreement(klDivergence: kl / Double(positions), klMax: klMax,
                              top1Agreement: Double(same) / Double(positions), positions: positions)
    }
}
