import Foundation
import SquishModel
import SquishTokenizer

/// A named text the tasks are built from (a novel, a play).
public struct CorpusText: Sendable {
    public let name: String
    public let text: String
    public init(name: String, text: String) {
        self.name = name
        self.text = text
    }

    /// Paragraphs: blocks separated by blank lines, with line breaks and runs of spaces collapsed to one space.
    public var paragraphs: [[Substring]] {
        var out: [[Substring]] = []
        var current: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if words.isEmpty {
                if !current.isEmpty { out.append(current); current = [] }
            } else {
                current += words
            }
        }
        if !current.isEmpty { out.append(current) }
        return out
    }
}

/// Accuracy with a 95% Wilson score interval (Wilson 1927; Agresti & Coull 1998, eq. 2), which stays inside [0, 1]
/// and behaves at accuracies near 0 or 1, unlike the normal approximation.
public struct Accuracy: Codable, Sendable, Equatable {
    public var correct: Int
    public var total: Int
    public var accuracy: Double
    /// 95% confidence interval [low, high].
    public var interval: [Double]

    public init(correct: Int, total: Int, z: Double = 1.959963984540054) {
        self.correct = correct
        self.total = total
        let (p, lo, hi) = Accuracy.wilson(correct: correct, total: total, z: z)
        accuracy = p
        interval = [lo, hi]
    }

    public static func wilson(correct: Int, total: Int, z: Double = 1.959963984540054) -> (Double, Double, Double) {
        guard total > 0 else { return (0, 0, 1) }
        let n = Double(total), p = Double(correct) / n, z2 = z * z
        let denominator = 1 + z2 / n
        let center = (p + z2 / (2 * n)) / denominator
        let half = z / denominator * (p * (1 - p) / n + z2 / (4 * n * n)).squareRoot()
        return (p, max(0, center - half), min(1, center + half))
    }
}

/// One cell of a task's breakdown (e.g. retrieval at one context length and fact position).
public struct AccuracyCell: Codable, Sendable, Equatable {
    public var contextTokens: Int
    /// Where the fact sits, as a fraction of the passage (0 = start).
    public var depth: Double
    public var result: Accuracy

    enum CodingKeys: String, CodingKey {
        case contextTokens = "context_tokens", depth, result
    }
}

public struct TaskResult: Codable, Sendable, Equatable {
    public var name: String
    public var accuracy: Double
    public var interval: [Double]
    public var correct: Int
    public var total: Int
    /// Retrieval: accuracy by context length and fact depth.
    public var cells: [AccuracyCell]?

    public init(name: String, result: Accuracy, cells: [AccuracyCell]? = nil) {
        self.name = name
        accuracy = result.accuracy
        interval = result.interval
        correct = result.correct
        total = result.total
        self.cells = cells
    }
}

/// The model operations the tasks need, on one session.
public final class TaskScorer {
    public let session: ModelSession
    public let tokenizer: Tokenizer
    let bos: Int?
    let vocab: Int

    public init(session: ModelSession, tokenizer: Tokenizer) {
        self.session = session
        self.tokenizer = tokenizer
        bos = tokenizer.addBOS ? tokenizer.bosID : nil
        vocab = session.model.config.vocabSize
    }

    /// Context tokens (with BOS when the model adds one) and the tokens of `answer` as they follow the context
    /// (taken from tokenizing the joined text when it extends the context's tokens, else tokenized alone).
    public func split(context: String, answer: String) -> (context: [Int], answer: [Int]) {
        let c = tokenizer.encode(context)
        let joined = tokenizer.encode(context + answer)
        let a = joined.count > c.count && Array(joined.prefix(c.count)) == c ? Array(joined.dropFirst(c.count)) : tokenizer.encode(answer)
        return ((bos.map { [$0] } ?? []) + c, a)
    }

    /// Whether greedy decoding after `context` produces exactly `answer`'s tokens and then a token that does not
    /// continue the word (its first byte is not an ASCII letter or digit); stops at the first token that differs.
    public func greedyMatches(context: [Int], answer: [Int]) throws -> Bool {
        session.reset()
        // The context as a prompt, then the answer one token at a time, as generation runs it (a cache that compresses
        // a prompt once it has been read, SnapKV, does so before the first answer token).
        var logits = try session.forward(context, logitsFor: 1)
        for token in answer {
            guard logits.withUnsafeBufferPointer({ Divergence.argmax($0.baseAddress!, vocab: vocab) }) == token else { return false }
            logits = try session.forward([token], logitsFor: 1)
        }
        let next = logits.withUnsafeBufferPointer { Divergence.argmax($0.baseAddress!, vocab: vocab) }
        guard let first = tokenizer.bytes(for: next).first else { return true }
        let isWordByte = (first >= 0x41 && first <= 0x5A) || (first >= 0x61 && first <= 0x7A) || (first >= 0x30 && first <= 0x39)
        return !isWordByte
    }

    /// Sum of log p over each continuation's tokens after `context` (the context is run once; each continuation
    /// reuses its KV cache).
    public func logLikelihoods(context: [Int], continuations: [[Int]]) throws -> [Double] {
        session.reset()
        let first = try session.forward(context, logitsFor: 1)  // [vocab]: predicts each continuation's first token
        let firstLSE = first.withUnsafeBufferPointer { Divergence.logSumExp($0.baseAddress!, vocab: vocab) }
        var out: [Double] = []
        for cont in continuations {
            guard !cont.isEmpty else { out.append(0); continue }
            session.reset(to: context.count)
            var ll = Double(first[cont[0]]) - firstLSE
            if cont.count > 1 {
                let logits = try session.forward(cont, logitsFor: cont.count)  // [cont.count × vocab]
                logits.withUnsafeBufferPointer { l in
                    for j in 0 ..< cont.count - 1 {
                        let row = l.baseAddress! + j * vocab
                        ll += Double(row[cont[j + 1]]) - Divergence.logSumExp(row, vocab: vocab)
                    }
                }
            }
            out.append(ll)
        }
        return out
    }
}

/// Word helpers shared by the tasks.
enum Words {
    static func isLetters(_ s: Substring) -> Bool { !s.isEmpty && s.allSatisfy { $0.isASCII && $0.isLetter } }

    /// The word without trailing sentence punctuation and quotes, and whether it ended a sentence.
    static func stripSentenceEnd(_ w: Substring) -> (word: Substring, endsSentence: Bool) {
        var s = w
        var sentence = false
        while let last = s.last, ".!?\"'”’".contains(last) {
            if ".!?".contains(last) { sentence = true }
            s = s.dropLast()
        }
        return (s, sentence)
    }

    /// `count` indices spread evenly over 0 ..< n (deterministic selection of items from an eligible list).
    static func spread(_ count: Int, over n: Int) -> [Int] {
        guard n > 0, count > 0 else { return [] }
        if count >= n { return Array(0 ..< n) }
        return (0 ..< count).map { $0 * n / count }
    }
}
