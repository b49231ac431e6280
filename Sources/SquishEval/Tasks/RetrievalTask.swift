import Foundation
import SquishCore

/// In-context retrieval ("needle in a haystack", Kamradt 2023): a fact — "The secret word is W." — is planted in a
/// passage of real prose at a given depth; after the passage comes "Question: What is the secret word?\nAnswer: The
/// secret word is", and the model must produce W greedily (exact match, as in `LastWordTask`).
///
/// Items, deterministically: for each context length L (in tokens, approximately: the filler is sized from the
/// filler text's measured tokens per word) and depth d, `perCell` passages; item j of a cell takes its filler from the
/// filler words starting at word offset (j · 7919 + L + round(d·100) · 131) mod (words − needed), and its secret
/// word from the filler texts' lowercase words of 5–9 letters, picked with the same index rule; the fact is
/// inserted at the first sentence start at or after d of the filler's words.
public enum RetrievalTask {
    public struct Item: Equatable, Sendable {
        public var contextTokens: Int
        public var depth: Double
        /// Passage with the fact planted, then the question; the answer follows after a space.
        public var prompt: String
        public var word: String
    }

    public static let name = "retrieval"
    public static let question = "\n\nQuestion: What is the secret word?\nAnswer: The secret word is"

    public static func items(from texts: [CorpusText], lengths: [Int], depths: [Double], perCell: Int,
                             tokensPerWord: Double) -> [Item] {
        let words = texts.flatMap { $0.paragraphs.flatMap { $0 } }
        var candidates: [Substring] = []
        var seen = Set<Substring>()
        for w in words where w.count >= 5 && w.count <= 9 && w.allSatisfy({ $0.isASCII && $0.isLowercase }) {
            if seen.insert(w).inserted { candidates.append(w) }
        }
        guard !words.isEmpty, !candidates.isEmpty else { return [] }
        var out: [Item] = []
        for length in lengths {
            let fillerWords = max(8, Int(Double(length) / tokensPerWord) - 12)  // the fact and question take ~25 tokens
            guard words.count > fillerWords + 1 else { continue }
            for depth in depths {
                for j in 0 ..< perCell {
                    let key = j * 7919 + length + Int((depth * 100).rounded()) * 131
                    let start = key % (words.count - fillerWords)
                    var filler = Array(words[start ..< start + fillerWords])
                    let secret = String(candidates[key % candidates.count])
                    var at = Int((depth * Double(fillerWords)).rounded())
                    while at > 0 && at < filler.count && !Words.stripSentenceEnd(filler[at - 1]).endsSentence { at += 1 }
                    if at >= filler.count { at = Int((depth * Double(fillerWords)).rounded()) }
                    filler.insert(contentsOf: ["The", "secret", "word", "is", Substring(secret + ".")], at: min(at, filler.count))
                    out.append(Item(contextTokens: length, depth: depth, prompt: filler.joined(separator: " ") + question,
                                    word: secret))
                }
            }
        }
        return out
    }

    public static func evaluate(_ items: [Item], scorer: TaskScorer, progress: ProgressBar? = nil) throws -> TaskResult {
        var correct = 0
        var cells: [String: (Int, Double, Int, Int)] = [:]
        var order: [String] = []
        for item in items {
            let (c, a) = scorer.split(context: item.prompt, answer: " " + item.word)
            let ok = try scorer.greedyMatches(context: c, answer: a)
            if ok { correct += 1 }
            let key = "\(item.contextTokens)/\(item.depth)"
            if cells[key] == nil { order.append(key); cells[key] = (item.contextTokens, item.depth, 0, 0) }
            cells[key]!.2 += ok ? 1 : 0
            cells[key]!.3 += 1
            progress?.advance()
        }
        let breakdown = order.map { k -> AccuracyCell in
            let c = cells[k]!
            return AccuracyCell(contextTokens: c.0, depth: c.1, result: Accuracy(correct: c.2, total: c.3))
        }
        return TaskResult(name: name, result: Accuracy(correct: correct, total: items.count), cells: breakdown)
    }

    /// Accuracy by context length over all depths (for the chart).
    public static func byLength(_ result: TaskResult) -> [(Int, Accuracy)] {
        var totals: [Int: (Int, Int)] = [:]
        for c in result.cells ?? [] {
            totals[c.contextTokens, default: (0, 0)].0 += c.result.correct
            totals[c.contextTokens, default: (0, 0)].1 += c.result.total
        }
        return totals.keys.sorted().map { ($0, Accuracy(correct: totals[$0]!.0, total: totals[$0]!.1)) }
    }
}
