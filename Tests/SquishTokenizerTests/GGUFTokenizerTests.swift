import Foundation
import Testing
import SquishFormats
import SquishTokenizer

/// Tokenizers read from GGUF metadata written by our own writer: a SentencePiece ("llama") vocabulary and
/// metadata that is missing or wrong.
@Suite struct GGUFTokenizerTests {
    static let pieces = ["<unk>", "<s>", "</s>", "<0xC3>", "<0xA9>", "<0x20>",
                         "\u{2581}", "a", "b", "c", "ab", "bc", "\u{2581}a", "abc", "\u{2581}ab"]
    static let scores: [Float] = [0, 0, 0, 0, 0, 0, -10, -10, -10, -10, -1, -0.5, -2, -3, -4]
    static let types = [2, 3, 3, 6, 6, 6] + Array(repeating: 1, count: 9)

    func strings(_ a: [String]) -> GGUFValue { .array(elementType: .string, values: a.map { .string($0) }) }

    func sentencePieceWriter() -> GGUFWriter {
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        w.set("tokenizer.ggml.model", .string("llama"))
        w.set("tokenizer.ggml.tokens", strings(Self.pieces))
        w.set("tokenizer.ggml.scores", .array(elementType: .float32, values: Self.scores.map { .float32($0) }))
        w.set("tokenizer.ggml.token_type", .array(elementType: .int32, values: Self.types.map { .int32(Int32($0)) }))
        w.set("tokenizer.ggml.bos_token_id", .uint32(1))
        w.set("tokenizer.ggml.eos_token_id", .uint32(2))
        w.set("tokenizer.ggml.unknown_token_id", .uint32(0))
        return w
    }

    func load(_ w: GGUFWriter) throws -> Tokenizer {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try w.write(to: dir + "/t.gguf")
        return try Tokenizer(gguf: try GGUFFile(path: dir + "/t.gguf"))
    }

    @Test func sentencePieceFromGGUF() throws {
        let t = try load(sentencePieceWriter())
        #expect(t.model == .sentencePiece(addSpacePrefix: true))
        #expect(t.addBOS && t.bosID == 1 && t.eosID == 2)
        #expect(t.encode("abc", addSpecial: true).map(t.piece) == ["<s>", "\u{2581}a", "bc"])
        #expect(t.decode(t.encode("ab a é", addSpecial: true)) == "<s>ab a é")
        var w = sentencePieceWriter()
        w.set("tokenizer.ggml.add_space_prefix", .bool(false))
        w.set("tokenizer.ggml.add_bos_token", .bool(false))
        let noPrefix = try load(w)
        #expect(noPrefix.encode("abc", addSpecial: true).map(noPrefix.piece) == ["abc"])
    }

    @Test func badMetadataGivesTypedErrors() throws {
        func failure(_ edit: (inout GGUFWriter) -> Void) throws -> TokenizerError? {
            var w = sentencePieceWriter()
            edit(&w)
            do { _ = try load(w); return nil } catch let e as TokenizerError { return e }
        }
        func isMissing(_ e: TokenizerError?, _ field: String) -> Bool {
            if case .missingField(_, let f) = e { return f == field }
            return false
        }
        #expect(isMissing(try failure { $0.remove("tokenizer.ggml.model") }, "tokenizer.ggml.model"))
        #expect(isMissing(try failure { $0.remove("tokenizer.ggml.tokens") }, "tokenizer.ggml.tokens"))
        #expect(isMissing(try failure { $0.remove("tokenizer.ggml.scores") }, "tokenizer.ggml.scores"))
        #expect(isMissing(try failure { $0.set("tokenizer.ggml.model", .string("gpt2")) }, "tokenizer.ggml.merges"))
        if case .unsupportedModel = try failure({ $0.set("tokenizer.ggml.model", .string("rwkv")) }) {} else {
            Issue.record("an unknown tokenizer model must be rejected")
        }
        if case .unsupportedPreTokenizer = try failure({
            $0.set("tokenizer.ggml.model", .string("gpt2"))
            $0.set("tokenizer.ggml.merges", self.strings(["a b"]))
            $0.set("tokenizer.ggml.pre", .string("some-future-model"))
        }) {} else { Issue.record("an unknown pre-tokenizer must be rejected") }
        if case .invalidVocabulary = try failure({ $0.set("tokenizer.ggml.scores", .array(elementType: .float32, values: [.float32(0)])) }) {
        } else { Issue.record("too few scores must be rejected") }
        if case .invalidVocabulary = try failure({ $0.set("tokenizer.ggml.token_type", .array(elementType: .int32, values: [.int32(1)])) }) {
        } else { Issue.record("too few token types must be rejected") }
        if case .missingField = try failure({ $0.set("tokenizer.ggml.tokens", .array(elementType: .int32, values: [.int32(1)])) }) {
        } else { Issue.record("tokens that are not strings must be rejected") }
        // Special-token ids outside the vocabulary are ignored (nil), not trusted.
        var w = sentencePieceWriter()
        w.set("tokenizer.ggml.bos_token_id", .uint32(1_000_000))
        #expect(try load(w).bosID == nil)
    }
}
