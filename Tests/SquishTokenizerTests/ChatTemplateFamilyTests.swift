import Foundation
import Testing
import SquishData
import SquishFormats
import SquishTokenizer

/// Gemma 3, Gemma 1, Qwen2.5, Qwen3 and Llama 3 chat templates: Squish's rendering against Jinja2 running the published
/// template texts (Tests/Python/chat_templates), with and without the generation prompt and with Qwen3's thinking
/// switch; recognition from the template, or from the vocabulary and architecture when a file has none; the
/// end-of-turn markers are single tokens of each family's vocabulary.
@Suite struct ChatTemplateFamilyTests {
    static let templates = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Python/chat_templates")
    static let tinyModels = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny-models")

    static func source(_ file: String) throws -> String {
        try String(contentsOf: templates.appendingPathComponent(file), encoding: .utf8)
    }

    static func m(_ role: String, _ content: String) -> ChatMessage { ChatMessage(role: role, content: content) }

    /// Conversations valid for every template (Gemma's requires user and assistant turns to alternate).
    static let conversations: [[ChatMessage]] = [
        [m("user", "Hi!")],
        [m("system", "Be brief."), m("user", "What is 2+2?")],
        [m("user", "  spaced \n"), m("assistant", "Yes.\n"), m("user", "Again: ünïcödé 😀")],
        [m("system", "  You are terse.\n"), m("user", "a"), m("assistant", "b"), m("user", "c")],
        [m("user", "q1"), m("assistant", "<think>\nfirst thoughts\n</think>\n\nanswer one"), m("user", "q2")],
        [m("user", "q"), m("assistant", "<think>\nhmm\n\n</think>\n\n\nA")],
        [m("user", "q"), m("assistant", "\nplain answer")],
        [m("system", "sys"), m("user", "u1"), m("assistant", "x</think>y"), m("user", "u2"),
         m("assistant", "<think>r1</think><think>r2</think>z")],
        [m("user", "")],
    ]

    /// (add_generation_prompt, enable_thinking: nil = not passed).
    static let variants: [(Bool, Bool?)] = [(true, nil), (false, nil), (true, false), (true, true)]

    @Test func familyTemplatesMatchJinja() throws {
        let cases: [(name: String, file: String, bos: String, expected: ChatTemplate)] = [
            ("gemma3", "gemma3.jinja", "<bos>", .gemma3),
            // Gemma 1's template is Gemma 3's without system messages (it refuses them; Squish folds them into the
            // first user turn as Gemma 3's does).
            ("gemma", "gemma.jinja", "<bos>", .gemma3),
            ("qwen2.5", "qwen2.5-instruct.jinja", "", .chatML(defaultSystem: ChatTemplate.qwen2DefaultSystem)),
            ("qwen3", "qwen3.jinja", "", .qwen3),
            ("llama3", "llama3.jinja", "<|begin_of_text|>", .llama3),
        ]
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var templates: [String: Any] = [:]
        for c in cases { templates[c.name] = ["source": try Self.source(c.file), "bos_token": c.bos] }
        let spec: [String: Any] = [
            "templates": templates,
            "conversations": Self.conversations.map { $0.map { ["role": $0.role, "content": $0.content] } },
            "variants": Self.variants.map { v -> [String: Any] in
                ["add_generation_prompt": v.0, "enable_thinking": v.1.map { $0 as Any } ?? NSNull()]
            },
        ]
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: dir + "/in.json"))
        try TestSupport.runPython("chat_template_reference.py", [dir + "/in.json", dir + "/out.json"])
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/out.json")))
            as! [String: [[Any]]]  // a prompt the template refused is null
        for c in cases {
            let template = ChatTemplate(jinja: try Self.source(c.file))
            #expect(template == c.expected, "\(c.name)")
            for (i, conversation) in Self.conversations.enumerated() {
                for (k, v) in Self.variants.enumerated() {
                    let ours = template.render(conversation, addGenerationPrompt: v.0, enableThinking: v.1 ?? true)
                    guard let theirs = reference[c.name]![i][k] as? String else {
                        #expect(c.name == "gemma" && conversation.first?.role == "system", "\(c.name) refused conversation \(i)")
                        continue
                    }
                    #expect(ours == theirs, "\(c.name), conversation \(i), variant \(v)")
                }
            }
        }
        // Qwen3's two generation prompts differ only by the empty think block.
        let q = ChatTemplate.qwen3.render([Self.m("user", "Hi")], enableThinking: false)
        #expect(q.hasSuffix("<|im_start|>assistant\n<think>\n\n</think>\n\n"))
        #expect(ChatTemplate.qwen3.render([Self.m("user", "Hi")]).hasSuffix("<|im_start|>assistant\n"))
    }

    /// Each tiny model's tokenizer_config.json template is recognized; without it, the vocabulary and the
    /// model_type give the same family; the end-of-turn markers are single tokens and survive tokenization of a
    /// rendered prompt.
    @Test(arguments: [("llama", ChatTemplate.llama3), ("qwen2", .chatML(defaultSystem: ChatTemplate.qwen2DefaultSystem)),
                      ("qwen3", .qwen3), ("gemma3", .gemma3), ("gemma", .gemma3)])
    func tinyModelTemplates(family: String, expected: ChatTemplate) throws {
        let dir = Self.tinyModels.appendingPathComponent(family).path
        let config = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/tokenizer_config.json"))))
        let modelConfig = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))))
        let tokenizer = try Tokenizer(huggingFacePath: dir + "/tokenizer.json", bosToken: config["bos_token"]?.string,
                                      eosToken: config["eos_token"]?.string)
        let architecture = modelConfig["model_type"]?.string
        let template = ChatTemplate(jinja: config["chat_template"]?.string, architecture: architecture, tokenizer: tokenizer)
        #expect(template == expected)
        #expect(ChatTemplate(jinja: nil, architecture: architecture == "gemma3_text" ? "gemma3" : architecture,
                             tokenizer: tokenizer) == expected)
        let markers = template.endOfTurnTokens.compactMap(tokenizer.id(of:))
        #expect(!markers.isEmpty && markers.count == template.endOfTurnTokens.count)
        let prompt = template.render([Self.m("user", "Hi"), Self.m("assistant", "Hello."), Self.m("user", "Bye")])
        let ids = tokenizer.encode(prompt, parseSpecial: true)
        let turnsClosed = template.endOfTurnTokens.map { prompt.components(separatedBy: $0).count - 1 }.reduce(0, +)
        #expect(turnsClosed >= 3 && ids.filter { markers.contains($0) }.count == turnsClosed)
        #expect(tokenizer.decode(ids) == prompt)
    }

    /// The real Gemma-3-270M GGUF carries no chat template: its vocabulary identifies Gemma 3; <end_of_turn> is
    /// id 106 and a rendered prompt starts with <bos> <start_of_turn>.
    @Test(.enabled(if: KnownModel.gemma3_270M.isCached, "Gemma-3-270M is not cached: run `squish fetch --model gemma3-270m`"))
    func gemmaFileWithoutTemplate() throws {
        let file = try GGUFFile(path: KnownModel.gemma3_270M.path)
        let tokenizer = try Tokenizer(gguf: file)
        #expect(file["tokenizer.chat_template"] == nil)
        let template = ChatTemplate(jinja: file["tokenizer.chat_template"]?.string,
                                    architecture: file["general.architecture"]?.string, tokenizer: tokenizer)
        #expect(template == .gemma3)
        #expect(template.endOfTurnTokens.compactMap(tokenizer.id(of:)) == [106])
        let ids = tokenizer.encode(template.render([Self.m("system", "Be kind."), Self.m("user", "Hi")]), parseSpecial: true)
        #expect(Array(ids.prefix(2)) == [2, 105] && ids.filter { $0 == 106 }.count == 1 && ids.suffix(3).first == 105)
    }
}
