import Foundation
import SquishCore
import SquishEval
import SquishKernels
import SquishModel

/// The search's fitness: mean KL(reference ‖ candidate) of the next-token distributions over calibration sequences.
/// The reference (the uncompressed model) is run once; each position keeps its top-k tokens, tail mass and sampled
/// tail tokens (`TopKDistribution`, the estimator `squish eval` uses). A candidate is scored on the first
/// `sequences` sequences, or on the first `tokens` positions of the first sequence, so that many candidates can be
/// compared cheaply and few accurately.
public final class KLScorer {
    public let sequences: [[Int]]
    public let pool: WorkerPool
    let vocab: Int
    let length: Int
    private var reference: [[TopKDistribution]] = []  // [sequence][position]
    /// Forward passes run (for the log), and tokens scored.
    public private(set) var evaluations = 0
    public private(set) var tokensScored = 0
    /// Seconds spent scoring, and the resulting forward speed (tokens per second; nil before any scoring).
    public private(set) var secondsScoring = 0.0
    public var tokensPerSecond: Double? { secondsScoring > 0 && tokensScored > 0 ? Double(tokensScored) / secondsScoring : nil }

    public init(reference model: TransformerModel, sequences: [[Int]], topK: Int = 128, tailSamples: Int = 32, pool: WorkerPool,
                progress: ((Int, Int) -> Void)? = nil) throws {
        guard let first = sequences.first, !first.isEmpty, sequences.allSatisfy({ $0.count == first.count }) else {
            throw CompressError.invalidArgument("calibration sequences must be non-empty and of one length")
        }
        self.sequences = sequences
        self.pool = pool
        vocab = model.config.vocabSize
        length = first.count
        let session = try ModelSession(model: model, pool: pool, contextLength: length, maxBatch: length)
        for (s, seq) in sequences.enumerated() {
            session.reset()
            let logits = try session.forward(seq, logitsFor: seq.count)  // [length × vocab]
            var dists: [TopKDistribution] = []
            logits.withUnsafeBufferPointer { l in
                for p in 0 ..< seq.count {
                    dists.append(Divergence.topK(l.baseAddress! + p * vocab, vocab: vocab, k: topK, tailSamples: tailSamples,
                                                 offset: 0.5))
                }
            }
            reference.append(dists)
            progress?(s + 1, sequences.count)
        }
    }

    /// Mean KL over the first `sequences` sequences (all positions), or over the first `tokens` positions of the
    /// first sequence when `tokens` is given.
    public func score(_ model: TransformerModel, sequences count: Int = 1, tokens: Int? = nil) throws -> Double {
        let started = Date()
        defer { secondsScoring += Date().timeIntervalSince(started) }
        let n = min(max(1, count), sequences.count)
        let positions = tokens.map { min(max(1, $0), length) } ?? length
        let session = try ModelSession(model: model, pool: pool, contextLength: length, maxBatch: length)
        var total = 0.0, counted = 0
        for s in 0 ..< (tokens == nil ? n : 1) {
            session.reset()
            let logits = try session.forward(Array(sequences[s].prefix(positions)), logitsFor: positions)
            let ref = reference[s]
            // Positions are independent: split them over the workers, then sum in a fixed order (deterministic).
            var kl = [Double](repeating: 0, count: positions)
            logits.withUnsafeBufferPointer { l in
                kl.withUnsafeMutableBufferPointer { out in
                    let base = l.baseAddress!, o = out.baseAddress!
                    let vocab = self.vocab
                    pool.parallelFor(positions) { range in
                        for p in range {
                            o[p] = Divergence.klDivergence(reference: ref[p], candidate: base + p * vocab, vocab: vocab)
                        }
                    }
                }
            }
            for v in kl { total += v }
            counted += positions
        }
        evaluations += 1
        tokensScored += counted
        return total / Double(max(1, counted))
    }
}
