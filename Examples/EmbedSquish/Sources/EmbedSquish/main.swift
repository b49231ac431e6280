// Usage: EmbedSquish [MODEL] [PROMPT]
// MODEL is a GGUF file, a Hugging Face directory or a known model name (default: smollm2-135m, fetched beforehand
// with `squish fetch`).
import Foundation
import SquishEngine

let arguments = CommandLine.arguments.dropFirst()
let reference = arguments.first ?? "smollm2-135m"
let prompt = arguments.dropFirst().first ?? "Write a haiku about small models."

// One engine: a worker pool shared by every model it serves, continuous batching per model.
let engine = Engine(threads: nil, options: EngineOptions(parallel: 4, context: 1024))
do {
    let model = try await engine.load(reference)

    // The simplest form: the reply's text, piece by piece.
    for try await piece in try model.textStream(chat: [ChatMessage(role: "user", content: prompt)], maxTokens: 64) {
        print(piece, terminator: "")
    }
    print()

    // Several requests at once are batched together; each is a stream of events (tokens with log-probabilities,
    // the finish reason and timings).
    var parameters = GenerationParameters(maxTokens: 16)
    parameters.logprobs = 1
    try await withThrowingTaskGroup(of: String.self) { group in
        for topic in ["the sea", "the moon"] {
            let generation = try model.generate(chat: [ChatMessage(role: "user", content: "One sentence about \(topic).")],
                                                parameters: parameters)
            group.addTask {
                var text = ""
                for try await event in generation {
                    switch event {
                    case .token(let t): text += t.text
                    case .text(let s): text += s
                    case .finished(let s):
                        text += String(format: "  [%d tokens, first after %.2f s, %@]", s.completionTokens, s.timeToFirstToken, s.finishReason.rawValue)
                    default: break
                    }
                }
                return "\(topic): \(text)"
            }
        }
        for try await line in group { print(line) }
    }
} catch {
    FileHandle.standardError.write(Data("EmbedSquish: \(error)\n".utf8))
    await engine.shutdown(grace: 1)
    exit(1)
}
await engine.shutdown(grace: 1)
