import Foundation
import SquishCore

/// Last-word prediction in the style of LAMBADA (Paperno et al. 2016): a passage ends with a word; the model must
/// produce that word greedily (exact match, case-sensitive, and the next predicted token must not continue it).
///
/// Items, deterministically: paragraphs of the given texts, in order, that have at least 40 words and end a
/// sentence with a word of 3+ ASCII letters which already occurs earlier in the passage (a cheap stand-in for
/// LAMBADA's human filtering: the word is recoverable from the context, as names and topics usually are). The passage
/// is the paragraph's last 60 words at most; `count` items are taken evenly spaced over all eligible paragraphs.
public enum LastWordTask {
    public struct Item: Equatable, Sendable {
        public var source: String
        /// The passage without its last word (and without the space before it).
        public var context: String
        /// The word to predict.
        public var word: String
    }

    public static let name = "last_word"

    public static func items(from texts: [CorpusText], count: Int) -> [Item] {
        var eligible: [Item] = []
        for t in texts {
            for paragraph in t.paragraphs where paragraph.count >= 40 {
                let words = paragraph.suffix(60)
                let (last, endsSentence) = Words.stripSentenceEnd(words.last!)
                guard endsSentence, last.count >= 3, Words.isLetters(last) else { continue }
                let before = words.dropLast()
                guard before.contains(where: { Words.stripSentenceEnd($0.drop(while: { "\"'“‘(".contains($0) })).word == last }) else { continue }
                eligible.append(Item(source: t.name, context: before.joined(separator: " "), word: String(last)))
            }
        }
        return Words.spread(count, over: eligible.count).map { eligible[$0] }
    }

    public static func evaluate(_ items: [Item], scorer: TaskScorer, progress: ProgressBar? = nil) throws -> TaskResult {
        var correct = 0
        for item in items {
            let (c, a) = scorer.split(context: item.context, answer: " " + item.word)
            if try scorer.greedyMatches(context: c, answer: a) { correct += 1 }
            progress?.advance()
        }
        return TaskResult(name: name, result: Accuracy(correct: correct, total: items.count))
    }
}
