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
///
/// The multi-key variant (`multikey`, after RULER's multi-key needle): `keys` facts "The secret word for the red door
/// is W." with different doors and words, the asked one at depth d and the others at d + i/keys (mod 1) of the
/// filler; the question names the door, so the model must copy the word that follows that door, not another.
public enum RetrievalTask {
    public struct Item: Equatable, Sendable {
        public var contextTokens: Int
        public var depth: Double
        /// Passage with the fact planted, then the question; the answer follows after a space.
        public var prompt: String
        public var word: String
    }

    public static let name = "retrieval"
    public static let multiKeyName = "multikey"
    public static let question = "\n\nQuestion: What is the secret word?\nAnswer: The secret word is"
    /// The doors of the multi-key variant (at most this many keys).
    public static let doors = ["red", "blue", "green", "yellow", "white", "black", "silver", "golden"]

    public static func items(from texts: [CorpusText], lengths: [Int], depths: [Double], perCell: Int,
                             tokensPerWord: Double, keys: Int = 1) -> [Item] {
        precondition(keys >= 1 && keys <= doors.count)
        let words = texts.flatMap { $0.paragraphs.flatMap { $0 } }
        var candidates: [Substring] = []
        var seen = Set<Substring>()
        for w in words where w.count >= 5 && w.count <= 9 && w.allSatisfy({ $0.isASCII && $0.isLowercase }) {
            if seen.insert(w).inserted { candidates.append(w) }
        }
        guard !words.isEmpty, !candidates.isEmpty else { return [] }
        var out: [Item] = []
        for length in lengths {
            // The fact and question take ~25 tokens, each further fact ~12.
            let fillerWords = max(8, Int(Double(length) / tokensPerWord) - 12 - 9 * (keys - 1))
            guard words.count > fillerWords + 1 else { continue }
            for depth in depths {
                for j in 0 ..< perCell {
                    let key = j * 7919 + length + Int((depth * 100).rounded()) * 131
                    let start = key % (words.count - fillerWords)
                    var filler = Array(words[start ..< start + fillerWords])
                    let secret = String(candidates[key % candidates.count])
                    func sentenceStart(_ d: Double) -> Int {
                        var at = Int((d * Double(fillerWords)).rounded())
                        while at > 0 && at < filler.count && !Words.stripSentenceEnd(filler[at - 1]).endsSentence { at += 1 }
                        return min(at >= filler.count ? Int((d * Double(fillerWords)).rounded()) : at, filler.count)
                    }
                    guard keys > 1 else {
                        filler.insert(contentsOf: ["The", "secret", "word", "is", Substring(secret + ".")], at: sentenceStart(depth))
                        out.append(Item(contextTokens: length, depth: depth, prompt: filler.joined(separator: " ") + question,
                                        word: secret))
                        continue
                    }
                    // Fact i: door (j + i) mod doors, at depth d + i/keys; fact 0 is asked for. Words differ.
                    var words = [secret]
                    for i in 1 ..< keys {
                        var k = key + i * 104_729
                        while words.contains(String(candidates[k % candidates.count])) && candidates.count >= keys { k += 1 }
                        words.append(String(candidates[k % candidates.count]))
                    }
                    let facts = (0 ..< keys).map { i in
                        (at: sentenceStart((depth + Double(i) / Double(keys)).truncatingRemainder(dividingBy: 1)),
                         door: doors[(j + i) % doors.count], word: words[i])
                    }
                    // From the last insertion point back, so that earlier points stay where they were.
                    for f in facts.sorted(by: { $0.at > $1.at }) {
                        filler.insert(contentsOf: ["The", "secret", "word", "for", "the", Substring(f.door), "door", "is", Substring(f.word + ".")],
                                      at: f.at)
                    }
                    let door = facts[0].door
                    out.append(Item(contextTokens: length, depth: depth,
                                    prompt: filler.joined(separator: " ")
                                        + "\n\nQuestion: What is the secret word for the \(door) door?\nAnswer: The secret word for the \(door) door is",
                                    word: secret))
                }
            }
        }
        return out
    }

    public static func evaluate(_ items: [Item], name: String = name, scorer: TaskScorer, progress: ProgressBar? = nil) throws -> TaskResult {
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
