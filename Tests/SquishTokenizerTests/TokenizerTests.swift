import Foundation
import Testing
import SquishData
import SquishFormats
import SquishTokenizer

/// The default model's tokenizer, loaded once.
enum DefaultTokenizer {
    static let shared: Result<Tokenizer, Error> = Result {
        try Tokenizer(gguf: try GGUFFile(path: try TestSupport.defaultModelPath()))
    }
    static func get() throws -> Tokenizer { try shared.get() }
}

@Suite struct TokenizerReferenceTests {
    /// Token ids equal the Hugging Face `tokenizers` package's on every line of every Austen novel and every
    /// Shakespeare and Milton text.
    @Test func everyCorpusLineMatchesHuggingFace() throws {
        let tokenizer = try DefaultTokenizer.get()
        let files = try Corpora.allTextFiles()
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try TestSupport.runPython("tokenizer_reference.py", [try TestSupport.defaultModelPath(), dir] + files)
        var lines = 0, tokens = 0, mismatches = 0
        for (index, file) in files.enumerated() {
            // Decoded without dropping a byte-order mark (String(contentsOfFile:) would strip it; Python keeps it).
            let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: file)), as: UTF8.self)
            let reference = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(index).ids"))
            var cursor = 0
            func next() -> Int {
                let v = reference.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: cursor, as: UInt32.self) }
                cursor += 4
                return Int(UInt32(littleEndian: v))
            }
            // Split on U+000A scalars (String.split would keep "\r\n" together as one Character).
            for line in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map({ String(String.UnicodeScalarView($0)) }) {
                let count = next()
                let expected = (0 ..< count).map { _ in next() }
                let ours = tokenizer.encode(line)
                lines += 1
                tokens += count
                if ours != expected {
                    mismatches += 1
                    if mismatches <= 5 { Issue.record("\(file): line \(line.debugDescription): \(ours) != \(expected)") }
                }
            }
            #expect(cursor == reference.count, "\(file): line count differs")
        }
        print("tokenizer reference: \(files.count) files, \(lines) lines, \(tokens) tokens, \(mismatches) mismatching lines")
        #expect(mismatches == 0)
        #expect(files.count > 80)
    }

    @Test func specialTokensOnlyWhenAsked() throws {
        let t = try DefaultTokenizer.get()
        let text = "<|im_start|>user\nhi<|im_end|>"
        let plain = t.encode(text)
        let special = t.encode(text, parseSpecial: true)
        #expect(special.first == 1 && special.last == 2)
        #expect(!plain.contains(1) && !plain.contains(2))
        #expect(t.decode(special) == text && t.decode(plain) == text)
    }

    /// decode(encode(s)) == s for random valid UTF-8 (bytes without a token in this vocabulary excluded).
    @Test func roundTripsRandomText() throws {
        let t = try DefaultTokenizer.get()
        var rng = SplitMix64(seed: 99)
        let pools: [ClosedRange<UInt32>] = [0x20 ... 0x7E, 0x0A ... 0x0A, 0xA0 ... 0x24F, 0x370 ... 0x3FF, 0x4E00 ... 0x4FFF,
                                            0x1F600 ... 0x1F64F, 0x300 ... 0x36F, 0x0660 ... 0x0669, 0x2000 ... 0x206F]
        for _ in 0 ..< 2000 {
            var s = ""
            for _ in 0 ..< Int.random(in: 0 ... 40, using: &rng) {
                let pool = pools.randomElement(using: &rng)!
                if let u = Unicode.Scalar(UInt32.random(in: pool, using: &rng)) { s.unicodeScalars.append(u) }
            }
            #expect(t.decode(t.encode(s)) == s, "\(s.debugDescription)")
        }
    }
}

@Suite struct PreTokenizerTests {
    /// Synthetic vocabulary: the 256 byte tokens only, no merges: encoding then shows the pre-tokenizer's pieces
    /// through the ids (each piece is encoded separately, but with no merges pieces are invisible)... so test the
    /// splitting through a vocabulary where whole pieces exist.
    func tokenizer(_ pre: PreTokenizer, pieces: [String]) throws -> Tokenizer {
        let bytes = (0 ..< 256).map { String(Unicode.Scalar(ByteLevel.byteToUnicode[$0])!) }
        let mapped = pieces.map { p in String(String.UnicodeScalarView(p.utf8.map { Unicode.Scalar(ByteLevel.byteToUnicode[Int($0)])! })) }
        return try Tokenizer(byteLevelTokens: bytes + mapped, merges: [], preTokenizer: pre)
    }

    /// Piece boundaries for sample strings, as the published regular expressions split them.
    @Test func llama3AndQwen2Splits() throws {
        let text = "Hello World's 12345 x\n\n  y!!\n"
        let llamaPieces = ["Hello", " World", "'s", " ", "123", "45", " x", "\n\n", " ", " y", "!!\n"]
        let t = try tokenizer(.llama3, pieces: llamaPieces)
        #expect(t.encode(text).map { t.decode([$0]) } == llamaPieces)
        let qwenPieces = ["Hello", " World", "'s", " ", "1", "2", "3", "4", "5", " x", "\n\n", " ", " y", "!!\n"]
        let q = try tokenizer(.qwen2, pieces: qwenPieces)
        #expect(q.encode(text).map { q.decode([$0]) } == qwenPieces)
        let gptPieces = ["Hello", " World", "'s", " 12345", " x", "\n\n ", " y", "!!", "\n"]
        let g = try tokenizer(.gpt2, pieces: gptPieces)
        #expect(g.encode(text).map { g.decode([$0]) } == gptPieces)
    }
}

/// A small deterministic PRNG.
extension SplitMix64 {}
