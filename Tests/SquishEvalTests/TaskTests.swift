import Foundation
import Testing
import SquishData
import SquishFormats
import SquishTokenizer
import SquishEval

enum EvalTestSupport {
    static func novel(_ name: String) throws -> CorpusText {
        let path = Corpora.austenPath(name)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TestSetupError("the corpora are not cached at \(path): run `squish fetch` first")
        }
        return CorpusText(name: name, text: String(decoding: data, as: UTF8.self))
    }

    /// Collapses whitespace, as the tasks do, so items can be found in the original text.
    static func normalized(_ s: String) -> String { s.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\r" }).joined(separator: " ") }
}

@Suite("Tasks built from the corpora")
struct TaskTests {
    @Test func lastWordItemsAreDeterministicAndReal() throws {
        let texts = [try EvalTestSupport.novel("emma"), try EvalTestSupport.novel("persuasion")]
        let a = LastWordTask.items(from: texts, count: 40), b = LastWordTask.items(from: texts, count: 40)
        #expect(a.count == 40)
        #expect(a == b)
        let whole = texts.map { EvalTestSupport.normalized($0.text) }
        for item in a {
            #expect(item.word.count >= 3 && item.word.allSatisfy { $0.isLetter })
            // The passage and its final word are a verbatim piece of the novel (up to whitespace).
            #expect(whole.contains { $0.contains(item.context + " " + item.word) })
            #expect(item.context.contains(item.word))
            #expect(item.context.split(separator: " ").count <= 59)
        }
        #expect(Set(a.map { $0.source }) == ["emma", "persuasion"])
    }

    @Test func clozeItemsHaveOneTrueContinuation() throws {
        let texts = [try EvalTestSupport.novel("mansfieldpark")]
        let items = ClozeTask.items(from: texts, count: 24)
        #expect(items == ClozeTask.items(from: texts, count: 24))
        #expect(items.count == 24)
        let whole = EvalTestSupport.normalized(texts[0].text)
        for (i, item) in items.enumerated() {
            #expect(item.choices.count == 4 && item.answer == i % 4)
            #expect(whole.contains(item.context + " " + item.choices[item.answer]))
            #expect(Set(item.choices).count == 4)
            for c in item.choices { #expect(c.split(separator: " ").count == 12) }
        }
    }

    @Test func retrievalItemsPlantTheFact() throws {
        let texts = [try EvalTestSupport.novel("sensesensibility")]
        let items = RetrievalTask.items(from: texts, lengths: [64, 256], depths: [0.1, 0.9], perCell: 3, tokensPerWord: 1.3)
        #expect(items == RetrievalTask.items(from: texts, lengths: [64, 256], depths: [0.1, 0.9], perCell: 3, tokensPerWord: 1.3))
        #expect(items.count == 12)
        for item in items {
            #expect(item.prompt.hasSuffix(RetrievalTask.question))
            let fact = "The secret word is \(item.word)."
            let range = try #require(item.prompt.range(of: fact))
            let depth = Double(item.prompt.distance(from: item.prompt.startIndex, to: range.lowerBound)) / Double(item.prompt.count)
            #expect(abs(depth - item.depth) < 0.3, "fact at \(depth), asked for \(item.depth)")
            #expect(texts[0].text.contains(item.word))
        }
        // Longer contexts have longer passages.
        #expect(items.last!.prompt.count > 2 * items.first!.prompt.count)
    }

    /// The multi-key variant plants four facts about four different doors with four different words; the question
    /// names the door of the one at the cell's depth, whose word is the answer; the others are at the other quarters.
    @Test func multiKeyItemsPlantDistinctFacts() throws {
        let texts = [try EvalTestSupport.novel("sensesensibility")]
        let items = RetrievalTask.items(from: texts, lengths: [128, 512], depths: [0.1, 0.5, 0.9], perCell: 2, tokensPerWord: 1.3, keys: 4)
        #expect(items.count == 12)
        for item in items {
            let fact = try Regex(#"The secret word for the (\w+) door is (\w+)\."#, as: (Substring, Substring, Substring).self)
            let facts = item.prompt.matches(of: fact).map { (String($0.output.1), String($0.output.2)) }
            #expect(facts.count == 4)
            #expect(Set(facts.map(\.0)).count == 4 && Set(facts.map(\.1)).count == 4, "\(facts)")
            let question = try Regex(#"What is the secret word for the (\w+) door\?"#, as: (Substring, Substring).self)
            let asked = try #require(item.prompt.firstMatch(of: question)).output.1
            #expect(item.prompt.hasSuffix("Answer: The secret word for the \(asked) door is"))
            #expect(facts.contains { $0.0 == asked && $0.1 == item.word })
            let range = try #require(item.prompt.range(of: "The secret word for the \(asked) door is \(item.word)."))
            let depth = Double(item.prompt.distance(from: item.prompt.startIndex, to: range.lowerBound)) / Double(item.prompt.count)
            #expect(abs(depth - item.depth) < 0.3, "fact at \(depth), asked for \(item.depth)")
        }
        // The single-fact task is unchanged by the variant's existence.
        #expect(RetrievalTask.items(from: texts, lengths: [128], depths: [0.5], perCell: 1, tokensPerWord: 1.3, keys: 1)[0].prompt
            .hasSuffix(RetrievalTask.question))
    }

    /// Long passages fit the session the evaluation makes (length + 64 positions) with their answer, though the
    /// filler's words may take more tokens than the sample's (a 4,000-token cell overflowed 4,096 positions before).
    @Test func retrievalPassagesFitTheSession() throws {
        let tokenizer = try Tokenizer(gguf: GGUFFile(path: TestSupport.defaultModelPath()))
        var options = EvalOptions()
        options.tasks = [RetrievalTask.name, RetrievalTask.multiKeyName]
        options.retrievalLengths = [256, 4000]
        options.retrievalPerCell = 2
        let set = TaskSet.build(options: options, austen: [try EvalTestSupport.novel("persuasion")], shakespeare: [], tokenizer: tokenizer)
        #expect(set.retrieval.count == 12 && set.multiKey.count == 12)
        for item in set.retrieval + set.multiKey {
            let tokens = 1 + tokenizer.encode(item.prompt + " " + item.word).count
            #expect(tokens <= item.contextTokens + 64 && tokens > item.contextTokens * 9 / 10, "\(tokens) tokens for \(item.contextTokens)")
        }
    }
}
