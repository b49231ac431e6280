import Foundation
import Testing
import SquishData
import SquishFormats
import SquishTokenizer

/// A byte-level BPE vocabulary with every byte and a few English merges, for properties that must hold on any text.
func fullByteTokenizer(_ pre: PreTokenizer) throws -> Tokenizer {
    let bytes = (0 ..< 256).map { ByteLevel.encode([UInt8($0)]) }
    let words = ["th", "the", "Ġt", "Ġth", "Ġthe", "in", "ing", "an", "and", "Ġa", "Ġan", "Ġand", "er", "es", "on", "ĠĠ", "ĠĠĠĠ"]
    let merges = ["t h", "th e", "Ġ t", "Ġt h", "Ġth e", "i n", "in g", "a n", "an d", "Ġ a", "Ġa n", "Ġan d", "e r", "e s",
                  "o n", "Ġ Ġ", "ĠĠ ĠĠ"]
    return try Tokenizer(byteLevelTokens: bytes + words + ["<|special|>"], merges: merges,
                         tokenTypes: Array(repeating: .normal, count: 256 + words.count) + [.control], preTokenizer: pre)
}

@Suite struct ByteLevelPropertyTests {
    /// decode(encode(s)) == s for random valid UTF-8 over the whole code space (controls, noncharacters, private
    /// use, every plane), with every pre-tokenizer, when the vocabulary has all 256 bytes.
    @Test func roundTripAnyValidUTF8() throws {
        var rng = SplitMix64(seed: 5)
        let samples = TextSamples.handPicked + TextSamples.random(count: 1500, seed: 21) + (0 ..< 1500).map { _ -> String in
            var s = String.UnicodeScalarView()
            for _ in 0 ..< Int.random(in: 0 ... 30, using: &rng) {
                let v = Bool.random(using: &rng) ? UInt32.random(in: 0 ... 0x7F, using: &rng) : UInt32.random(in: 0 ... 0x10FFFF, using: &rng)
                if let u = Unicode.Scalar(v) { s.append(u) }
            }
            return String(s)
        }
        for pre in PreTokenizer.allCases {
            let t = try fullByteTokenizer(pre)
            #expect(t.coversAllBytes)
            for s in samples {
                let ids = t.encode(s)
                #expect(t.decode(ids) == s, "\(pre) \(s.debugDescription)")
                #expect(Array(t.decodeBytes(ids)) == Array(s.utf8))
                let special = t.encode(s + "<|special|>" + s, parseSpecial: true)
                #expect(t.decode(special) == s + "<|special|>" + s)
                #expect(t.decode(special, skipSpecial: true) == s + s)
            }
        }
    }

    /// The default model's vocabulary lacks tokens for 21 byte values (six control characters and lead bytes of
    /// planes 4–15 among them); like the reference, encoding drops exactly those bytes and keeps all others.
    @Test func defaultVocabularyRoundTrip() throws {
        let t = try DefaultTokenizer.get()
        var present = [Bool](repeating: false, count: 256)
        for b in 0 ..< 256 { present[b] = t.id(of: ByteLevel.encode([UInt8(b)])) != nil }
        #expect(present.filter { !$0 }.count == 21)
        #expect(!t.coversAllBytes)
        var rng = SplitMix64(seed: 17)
        let wide = (0 ..< 2000).map { _ -> String in
            var s = String.UnicodeScalarView()
            for _ in 0 ..< Int.random(in: 0 ... 30, using: &rng) {
                if let u = Unicode.Scalar(UInt32.random(in: 0 ... 0x10FFFF, using: &rng)) { s.append(u) }
            }
            return String(s)
        }
        for s in TextSamples.handPicked + TextSamples.random(count: 2000, seed: 23) + wide {
            let expected = s.utf8.filter { present[Int($0)] }
            #expect(t.decodeBytes(t.encode(s)) == expected, "\(s.debugDescription)")
        }
    }

    /// A piece of a million letters (one pre-tokenizer piece) encodes and decodes back: BPE keeps its candidate
    /// pairs in a heap instead of rescanning the piece after every merge (a quadratic encoder would take hours here;
    /// the time limit only turns such a hang into a failure, it measures nothing). Its speed is measured by
    /// `squish bench --tokenizer`, outside the tests.
    @Test(.timeLimit(.minutes(5))) func longPieceIsNotQuadratic() throws {
        let t = try DefaultTokenizer.get()
        let text = String(repeating: "abcdefghij", count: 100_000)
        let ids = t.encode(text)
        #expect(t.decode(ids) == text)
    }
}

@Suite struct SentencePieceUnitTests {
    /// <unk> <s> </s>, three byte tokens, then pieces with scores (higher merges first).
    func tokenizer(addSpacePrefix: Bool = true) throws -> Tokenizer {
        let tokens = ["<unk>", "<s>", "</s>", "<0xC3>", "<0xA9>", "<0x20>",
                      "\u{2581}", "a", "b", "c", "ab", "bc", "\u{2581}a", "abc", "\u{2581}ab", "<sep>"]
        let scores: [Float] = [0, 0, 0, 0, 0, 0, -10, -10, -10, -10, -1, -0.5, -2, -3, -4, 0]
        let types: [Tokenizer.TokenType] = [.unknown, .control, .control, .byte, .byte, .byte] + Array(repeating: .normal, count: 9) + [.userDefined]
        return try Tokenizer(sentencePieceTokens: tokens, scores: scores, tokenTypes: types, addSpacePrefix: addSpacePrefix)
    }

    @Test func handWorkedMerges() throws {
        let t = try tokenizer()
        // ▁ a b c: "bc" (−0.5) beats "ab" (−1) and "▁a" (−2); then "▁a" (−2) beats "abc" (−3); "▁abc" is no piece.
        #expect(t.encode("abc").map(t.piece) == ["\u{2581}a", "bc"])
        // ▁ a b: "ab" (−1) first, then "▁ab" (−4).
        #expect(t.encode("ab").map(t.piece) == ["\u{2581}ab"])
        // Without the prefix: a b c → a bc → abc.
        #expect(try tokenizer(addSpacePrefix: false).encode("abc").map(t.piece) == ["abc"])
        // Equal scores: the leftmost pair first (▁ a b a b → ▁ ab a b → ▁ ab ab → ▁ab ab).
        #expect(t.encode("abab").map(t.piece) == ["\u{2581}ab", "ab"])
        // Spaces become ▁; a character without a piece falls back to its bytes; a byte without a token to <unk>.
        #expect(t.encode("a é").map(t.piece) == ["\u{2581}a", "\u{2581}", "<0xC3>", "<0xA9>"])
        #expect(t.encode("d").map(t.piece) == ["\u{2581}", "<unk>"])
        #expect(t.decode(t.encode("a é ab")) == "a é ab")
        #expect(t.encode("") == [])
        #expect(t.encode("", addSpecial: true) == [1])
        #expect(t.encode("ab", addSpecial: true) == [1, 14])
    }

    /// Control tokens only with parseSpecial, user-defined ones (<sep> here) always, as llama.cpp partitions text;
    /// like llama.cpp, text after a special token gets the space prefix too.
    @Test func specialTokens() throws {
        let t = try tokenizer()
        #expect(t.encode("ab<sep>ab", parseSpecial: true).map(t.piece) == ["\u{2581}ab", "<sep>", "\u{2581}ab"])
        #expect(t.decode(t.encode("ab<sep>ab", parseSpecial: true)) == "ab<sep>ab")
        #expect(t.encode("ab<sep>ab") == t.encode("ab<sep>ab", parseSpecial: true))
        #expect(!t.encode("<s>ab").contains(1) && t.encode("<s>ab", parseSpecial: true).first == 1)
        #expect(t.decode(t.encode("<s>ab", parseSpecial: true, addSpecial: true), skipSpecial: true) == "ab")
        // Like llama.cpp and tokenizers, BOS is added even when the text starts with it.
        #expect(t.encode("<s>ab", parseSpecial: true, addSpecial: true) == [1, 1, 14])
    }
}

@Suite struct HostileTokenizerInputTests {
    func error(_ json: String) -> TokenizerError? {
        do {
            _ = try Tokenizer(huggingFaceJSON: Data(json.utf8), source: "t.json")
            return nil
        } catch let e as TokenizerError {
            return e
        } catch {
            return .invalidInput("unexpected error type \(error)")
        }
    }

    let byteLevel = #""pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}"#

    @Test func badJSONGivesTypedErrors() throws {
        func isInvalid(_ e: TokenizerError?) -> Bool { if case .invalidVocabulary = e { return true }; return false }
        #expect(isInvalid(error("not json")))
        #expect(isInvalid(error("[1, 2]")))
        #expect(isInvalid(error(String(repeating: "[", count: 100_000))))  // nesting is bounded, no stack overflow
        #expect(isInvalid(error(#"{"model": {"type": "BPE", "vocab": {"a": 0}"#)))  // truncated
        #expect(error("{}") == .missingField(source: "t.json", field: "model"))
        #expect(error(#"{"model": {"type": "Unigram"}}"#) == .unsupportedModel(source: "t.json", model: "Unigram"))
        if case .unsupportedPreTokenizer = error(#"{"model": {"type": "BPE", "vocab": {}}, "pre_tokenizer": {"type": "Whitespace"}}"#) {
        } else { Issue.record("an unknown pre-tokenizer must be rejected") }
        #expect(isInvalid(error(#"{"model": {"type": "BPE", "vocab": {"a": -1}}, \#(byteLevel)}"#)))
        #expect(isInvalid(error(#"{"model": {"type": "BPE", "vocab": {"a": 1000000000}}, \#(byteLevel)}"#)))
        #expect(isInvalid(error(#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [1]}, \#(byteLevel)}"#)))
        #expect(isInvalid(error(#"{"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": [{"id": 0, "content": "b"}], \#(byteLevel)}"#)))
        let ok = try Tokenizer(huggingFaceJSON: Data(#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}, \#(byteLevel)}"#.utf8))
        #expect(ok.encode("abba") == [2, 1, 0])
        #expect(ok.normalization == .none)
        if case .unsupportedModel = error(#"{"normalizer": {"type": "Lowercase"}, "model": {"type": "BPE", "vocab": {}}, \#(byteLevel)}"#) {
        } else { Issue.record("an unsupported normalizer must be rejected") }
        // NFC (Qwen2's normalizer): e + U+0301 is encoded as the precomposed é.
        let nfcJSON = #"{"normalizer": {"type": "NFC"}, "model": {"type": "BPE", "vocab": {"a": 0, "Ã": 1, "©": 2, "Ã©": 3, "Ì": 4, "ģ": 5, "e": 6}, "merges": [["Ã", "©"]]}, \#(byteLevel)}"#
        let nfc = try Tokenizer(huggingFaceJSON: Data(nfcJSON.utf8))
        #expect(nfc.normalization == .nfc)
        #expect(nfc.encode("e\u{0301}a") == [3, 0])
        #expect(nfc.encode("\u{00E9}a") == [3, 0])
    }

    /// A member of the wrong type is an error naming the field, never its default: a `merges` string used to load
    /// as a tokenizer without merges.
    @Test func wrongTypesAreErrorsNamingTheField() throws {
        let vocab = #""vocab": {"a": 0, "b": 1, "ab": 2}"#
        let cases: [(String, String)] = [
            (#"{"model": {"type": "BPE", \#(vocab), "merges": "a b"}, \#(byteLevel)}"#, "model.merges"),
            (#"{"model": {"type": "BPE", \#(vocab), "merges": {"a": "b"}}, \#(byteLevel)}"#, "model.merges"),
            (#"{"model": {"type": 3, \#(vocab)}, \#(byteLevel)}"#, "model.type"),
            (#"{"model": {"type": "BPE", "vocab": ["a", "b"]}, \#(byteLevel)}"#, "model.vocab"),
            (#"{"model": "BPE", \#(byteLevel)}"#, "model"),
            (#"{"model": {"type": "BPE", \#(vocab)}, "added_tokens": {"id": 0}, \#(byteLevel)}"#, "added_tokens"),
            (#"{"model": {"type": "BPE", \#(vocab)}, "added_tokens": ["<s>"], \#(byteLevel)}"#, "added_tokens[0]"),
            (#"{"model": {"type": "BPE", \#(vocab)}, "added_tokens": [{"id": 0, "content": "a", "special": "yes"}], \#(byteLevel)}"#,
             "added_tokens[0].special"),
            (#"{"model": {"type": "BPE", \#(vocab), "unk_token": 5}, \#(byteLevel)}"#, "model.unk_token"),
            (#"{"model": {"type": "BPE", \#(vocab), "byte_fallback": "true"}, \#(byteLevel)}"#, "model.byte_fallback"),
            (#"{"model": {"type": "BPE", \#(vocab)}, "post_processor": "TemplateProcessing", \#(byteLevel)}"#, "post_processor"),
            (#"{"model": {"type": "BPE", \#(vocab)}, "normalizer": [], \#(byteLevel)}"#, "normalizer"),
            (#"{"model": {"type": "BPE", \#(vocab)}, "pre_tokenizer": "ByteLevel"}"#, "pre_tokenizer"),
        ]
        for (json, field) in cases {
            let e = error(json)
            guard case .invalidVocabulary(_, let reason)? = e else { Issue.record("\(field): \(String(describing: e))"); continue }
            #expect(reason.contains("field '\(field)'"), "\(reason)")
        }
        // Absent and null keep their defaults.
        let ok = try Tokenizer(huggingFaceJSON: Data(#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": null, "unk_token": null}, "added_tokens": null, "normalizer": null, \#(byteLevel)}"#.utf8))
        #expect(ok.encode("ab") == [0, 1])
    }

    /// SentencePiece-style tokenizer.json variants: Metaspace without splitting (its prepend_scheme decides the
    /// prefix), normalizer Replace without Prepend; splitting Metaspace is rejected.
    @Test func sentencePieceJSONVariants() throws {
        let model = #""model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>", "vocab": {"<unk>": 0, "▁": 1, "a": 2, "▁a": 3, "<0x62>": 4}, "merges": ["▁ a"]}"#
        func load(_ rest: String) throws -> Tokenizer { try Tokenizer(huggingFaceJSON: Data("{\(model), \(rest)}".utf8)) }
        let first = try load(#""pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}"#)
        #expect(first.model == .sentencePieceBPE(addSpacePrefix: true))
        #expect(first.encode("a ab") == [3, 3, 4])
        #expect(first.decode([3, 3, 4]) == "a ab")
        let never = try load(#""pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": false}"#)
        #expect(never.encode("a a") == [2, 3])
        let replace = try load(#""normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}"#)
        #expect(replace.model == .sentencePieceBPE(addSpacePrefix: false))
        // "c" has neither a piece nor a byte token: one unknown token.
        #expect(replace.encode("a c") == [2, 1, 0])
        #expect(throws: TokenizerError.self) {
            try load(#""pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}"#)
        }
    }

    @Test func badArraysGiveTypedErrors() {
        #expect(throws: TokenizerError.self) { try Tokenizer(sentencePieceTokens: ["a"], scores: []) }
        #expect(throws: TokenizerError.self) { try Tokenizer(byteLevelTokens: ["a"], merges: ["ab"], preTokenizer: .gpt2) }
        #expect(throws: TokenizerError.self) { try Tokenizer(byteLevelTokens: ["a"], merges: [], tokenTypes: [], preTokenizer: .gpt2) }
        #expect(throws: TokenizerError.self) { try Tokenizer(byteLevelTokens: ["a"], merges: [], preTokenizer: .gpt2, bosID: 5) }
    }

    @Test func preTokenizerNames() {
        #expect(PreTokenizer(ggufName: "smollm") == .smollm)
        #expect(PreTokenizer(ggufName: "llama-bpe") == .llama3)
        #expect(PreTokenizer(ggufName: "qwen2") == .qwen2)
        #expect(PreTokenizer(ggufName: "gpt2") == .gpt2)
        #expect(PreTokenizer(ggufName: "no-such-thing") == nil)
    }
}

@Suite struct ChatTemplateTests {
    static let llama3Jinja = """
        {% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + \
        message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}\
        {% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}\
        {{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}
        """

    /// ChatML (the default model's own template) and Llama 3 render exactly as Jinja2 renders the model templates.
    @Test func templatesMatchJinja() throws {
        let file = try GGUFFile(path: try TestSupport.defaultModelPath())
        let smol = try #require(file["tokenizer.chat_template"]?.string)
        let conversations: [[ChatMessage]] = [
            [ChatMessage(role: "user", content: "Hi!")],
            [ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "What is 2+2?")],
            [ChatMessage(role: "user", content: "  spaced \n"), ChatMessage(role: "assistant", content: "Yes.\n"),
             ChatMessage(role: "user", content: "Again: ünïcödé 😀")],
        ]
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spec: [String: Any] = [
            "templates": ["chatml": smol, "llama3": Self.llama3Jinja],
            "conversations": conversations.map { $0.map { ["role": $0.role, "content": $0.content] } },
        ]
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: dir + "/in.json"))
        try TestSupport.runPython("chat_template_reference.py", [dir + "/in.json", dir + "/out.json"])
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/out.json"))) as! [String: [String]]
        let chatML = ChatTemplate(jinja: smol)
        #expect(chatML == .chatML(defaultSystem: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"))
        let llama3 = ChatTemplate(jinja: Self.llama3Jinja)
        #expect(llama3 == .llama3)
        for (i, c) in conversations.enumerated() {
            #expect(chatML.render(c) == reference["chatml"]![i])
            #expect(llama3.render(c) == reference["llama3"]![i])
        }
        #expect(ChatTemplate(jinja: nil) == .plain)
        #expect(ChatTemplate.plain.render([ChatMessage(role: "user", content: "Hi")]) == "User: Hi\nAssistant:")
    }

    /// The rendered ChatML prompt tokenizes with its markers as single special tokens.
    @Test func renderedPromptTokenizes() throws {
        let t = try DefaultTokenizer.get()
        let prompt = ChatTemplate.chatML(defaultSystem: nil).render([ChatMessage(role: "user", content: "Hi")])
        let ids = t.encode(prompt, parseSpecial: true)
        #expect(ids.filter { $0 == 1 }.count == 2 && ids.filter { $0 == 2 }.count == 1)
        #expect(t.decode(ids) == prompt)
    }
}

@Suite struct DefaultTokenizerTests {
    /// The default model's metadata: SmolLM pre-tokenizer, ChatML specials, no BOS added.
    @Test func metadata() throws {
        let t = try DefaultTokenizer.get()
        #expect(t.model == .byteLevelBPE(.smollm))
        #expect(t.vocabularySize == 49152)
        #expect(t.bosID == 1 && t.eosID == 2 && t.unknownID == 0 && t.paddingID == 2)
        #expect(!t.addBOS && !t.addEOS)
        #expect((0 ..< 17).allSatisfy(t.isSpecial) && !t.isSpecial(17))
        #expect(t.id(of: "<|im_end|>") == 2)
        // "Hello world" is two whole-word tokens; digits are split one by one.
        #expect(t.encode("Hello world").map(t.piece) == ["Hello", "Ġworld"])
        #expect(t.encode("in 1815").map(t.piece) == ["in", "Ġ", "1", "8", "1", "5"])
    }

    /// Several threads encoding at once (sharing the piece cache) get the same ids as one thread.
    @Test func concurrentEncodingAgrees() throws {
        let t = try DefaultTokenizer.get()
        let lines = try Array(TextSamples.lines(of: try Corpora.allTextFiles()[2]).prefix(4000))
        t.clearCache()
        let serial = lines.map { t.encode($0) }
        t.clearCache()
        let results = UnsafeMutableBufferPointer<[Int]>.allocate(capacity: lines.count)
        results.initialize(repeating: [])
        defer { results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for i in stride(from: worker, to: lines.count, by: 8) { results[i] = t.encode(lines[i]) }
        }
        #expect(Array(results) == serial)
    }
}
