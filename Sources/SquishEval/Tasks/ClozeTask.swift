import Foundation
import SquishCore

/// Multiple-choice cloze: the context is up to 40 words of a paragraph, the true continuation its next 12 words,
/// and three distractors are 12-word continuations taken from other paragraphs of the same pool. The model picks the
/// continuation with the highest log-likelihood per byte (the length normalization of lm-evaluation-harness's
/// `acc_norm`); accuracy by chance is 25%.
///
/// Items, deterministically: paragraphs of at least 40 words of the given texts, in order; `count` of them evenly
/// spaced; item i's distractors are the continuations of the selected items i + s, i + 2s, i + 3s (mod count) with
/// s = max(1, count / 4); the true continuation's position among the four choices is i mod 4.
public enum ClozeTask {
    public struct Item: Equatable, Sendable {
        public var source: String
        public var context: String
        /// Four continuations (each without its leading space).
        public var choices: [String]
        public var answer: Int

        public init(source: String, context: String, choices: [String], answer: Int) {
            self.source = source
            self.context = context
            self.choices = choices
            self.answer = answer
        }
    }

    public static let name = "cloze"
    static let continuationWords = 12, contextWords = 40

    public static func items(from texts: [CorpusText], count: Int) -> [Item] {
        var eligible: [(source: String, context: String, continuation: String)] = []
        for t in texts {
            for paragraph in t.paragraphs where paragraph.count >= 40 {
                let m = paragraph.count - continuationWords
                let context = paragraph[max(0, m - contextWords) ..< m].joined(separator: " ")
                eligible.append((t.name, context, paragraph[m...].joined(separator: " ")))
            }
        }
        let chosen = Words.spread(count, over: eligible.count).map { eligible[$0] }
        let n = chosen.count
        guard n >= 4 else { return [] }
        let s = max(1, n / 4)
        return (0 ..< n).map { i in
            var choices = (1 ... 3).map { chosen[(i + $0 * s) % n].continuation }
            choices.insert(chosen[i].continuation, at: i % 4)
            return Item(source: chosen[i].source, context: chosen[i].context, choices: choices, answer: i % 4)
        }
    }

    public static func evaluate(_ items: [Item], scorer: TaskScorer, progress: ProgressBar? = nil) throws -> TaskResult {
        var correct = 0
        for item in items {
            let splits = item.choices.map { scorer.split(context: item.context, answer: " " + $0) }
            let ll = try scorer.logLikelihoods(context: splits[0].context, continuations: splits.map { $0.answer })
            let scores = zip(ll, item.choices).map { $0 / Double(max(1, $1.utf8.count + 1)) }
            let best = scores.indices.max { scores[$0] < scores[$1] }!
            if best == item.answer { correct += 1 }
            progress?.advance()
        }
        return TaskResult(name: name, result: Accuracy(correct: correct, total: items.count))
    }
}
