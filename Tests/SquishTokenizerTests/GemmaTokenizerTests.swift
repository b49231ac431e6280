import Foundation
import Testing
import SquishData
import SquishFormats
import SquishTokenizer

/// The real Gemma 3 tokenizer (Gemma-3-270M's GGUF: SentencePiece vocabulary of 262,144 pieces with scores, no
/// space prefix, byte fallback, control and user-defined tokens) against llama.cpp's `llama-tokenize` on varied
/// text: Tests/Fixtures/gemma3-tokenizer.json, written by Tests/Python/gemma_tokenizer_reference.py (its header
/// names the reference and how transformers' GGUF tokenizer compares).
@Suite(.enabled(if: KnownModel.gemma3_270M.isCached,
                "Gemma-3-270M is not cached: run `squish fetch --model gemma3-270m`"))
struct GemmaTokenizerTests {
    struct Sample: Decodable {
        let name: String
        let text: String
        let parse_special: Bool
        let ids: [Int]
    }

    struct Fixture: Decodable {
        let model: String
        let sha256: String
        let reference: String
        let samples: [Sample]
    }

    static func fixture() throws -> Fixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/gemma3-tokenizer.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    static let tokenizer = Result { try Tokenizer(gguf: GGUFFile(path: KnownModel.gemma3_270M.path)) }

    @Test func metadata() throws {
        let t = try Self.tokenizer.get()
        #expect(t.model == .sentencePiece(addSpacePrefix: false))
        #expect(t.vocabularySize == 262_144)
        #expect(t.bosID == 2 && t.eosID == 1 && t.unknownID == 3 && t.paddingID == 0)
        #expect(t.addBOS && !t.addEOS && t.coversAllBytes)
        #expect(t.id(of: "<start_of_turn>") == 105 && t.id(of: "<end_of_turn>") == 106)
        #expect(try Self.fixture().sha256 == KnownModel.gemma3_270M.sha256)
    }

    /// Every sample encodes to the reference ids (BOS added, special-token text parsed or not as the sample says)
    /// and decodes back to its text.
    @Test func matchesReference() throws {
        let t = try Self.tokenizer.get()
        let fixture = try Self.fixture()
        var mismatches: [String] = []
        var tokens = 0
        for s in fixture.samples {
            let ids = t.encode(s.text, parseSpecial: s.parse_special, addSpecial: true)
            tokens += s.ids.count
            if ids != s.ids {
                let at = zip(ids, s.ids).prefix { $0 == $1 }.count
                mismatches.append("\(s.name) (special: \(s.parse_special)) from token \(at): "
                    + "got \(ids[at...].prefix(8).map(t.piece)) \(Array(ids[at...].prefix(8))), "
                    + "expected \(s.ids[at...].prefix(8).map(t.piece)) \(Array(s.ids[at...].prefix(8)))")
            }
            // SentencePiece's ▁ (U+2581) stands for a space, so one in the text decodes as a space.
            let text = s.text.replacingOccurrences(of: "\u{2581}", with: " ")
            #expect(t.decode(Array(s.ids.dropFirst())) == text, "\(s.name) does not decode to its text")
        }
        #expect(fixture.samples.count >= 60 && tokens > 3000)
        let report = "\(mismatches.count) of \(fixture.samples.count) samples differ from \(fixture.reference):\n"
            + mismatches.prefix(12).joined(separator: "\n")
        #expect(mismatches.isEmpty, Comment(rawValue: report))
    }
}
