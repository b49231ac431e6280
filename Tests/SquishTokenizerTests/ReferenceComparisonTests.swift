import Foundation
import Testing
import SquishData
import SquishFormats
import SquishTokenizer

/// Squish's tokenizers against the Hugging Face `tokenizers` package on the same inputs.
@Suite struct ReferenceComparisonTests {
    /// Piece boundaries of the four hand-coded pre-tokenizers equal those of the published regular expressions
    /// (run by `tokenizers`) on hand-picked and random strings.
    @Test func preTokenizersMatchPublishedRegexes() throws {
        let strings = TextSamples.handPicked + TextSamples.random(count: 3000, seed: 7)
            + TextSamples.random(count: 300, maxLength: 400, seed: 8)
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try TextSamples.writeJSON(strings, to: dir + "/in.json")
        try TestSupport.runPython("pretokenizer_reference.py", [dir + "/in.json", dir + "/out.json"])
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/out.json"))) as! [String: [[[Int]]]]
        for kind in PreTokenizer.allCases {
            let expected = try #require(reference[kind.rawValue], "no reference for \(kind)")
            try #require(expected.count == strings.count)
            var mismatches = 0
            for (s, boundaries) in zip(strings, expected) {
                let ours = kind.split(s).map { [$0.lowerBound, $0.upperBound] }
                if ours != boundaries {
                    mismatches += 1
                    if mismatches <= 3 {
                        let scalars = Array(s.unicodeScalars)
                        func show(_ b: [[Int]]) -> [String] { b.map { String(String.UnicodeScalarView(scalars[$0[0] ..< $0[1]])) } }
                        Issue.record("\(kind) \(s.debugDescription): \(show(ours)) != \(show(boundaries))")
                    }
                }
            }
            #expect(mismatches == 0, "\(kind): \(mismatches) of \(strings.count) strings split differently")
        }
    }

    /// Tokenizers read from `tokenizer.json` files (one per pre-tokenizer, merges as pairs and as strings) encode
    /// like `tokenizers` itself, special tokens and a BOS-adding post-processor included.
    @Test func huggingFaceJSONTokenizersMatchReference() throws {
        let model = try TestSupport.defaultModelPath()
        var strings = TextSamples.handPicked + TextSamples.random(count: 2000, seed: 11)
        let corpus = try Corpora.allTextFiles()
        strings += try TextSamples.lines(of: corpus[0]).prefix(2000)
        strings += try TextSamples.lines(of: corpus[corpus.count - 1]).prefix(1000)
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try TextSamples.writeJSON(strings, to: dir + "/in.json")
        try TestSupport.runPython("hf_tokenizer_reference.py", [model, dir, dir + "/in.json"])
        let gguf = try Tokenizer(gguf: try GGUFFile(path: model))
        for (kind, file) in [(PreTokenizer.gpt2, "gpt2"), (.smollm, "smollm"), (.smollm, "smollm-string-merges"),
                             (.llama3, "llama3"), (.qwen2, "qwen2")] {
            let t = try Tokenizer(huggingFacePath: "\(dir)/\(file).json")
            #expect(t.model == .byteLevelBPE(kind), "\(file)")
            #expect(t.vocabularySize == gguf.vocabularySize)
            #expect(t.tokenTypes.map(\.rawValue) == gguf.tokenTypes.map(\.rawValue), "\(file): control tokens")
            #expect(t.addBOS == (kind == .llama3) && (kind != .llama3 || t.bosID == 1), "\(file): BOS from the post-processor")
            let idsFile = "\(dir)/\(file == "smollm-string-merges" ? "smollm" : file).ids.json"
            let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: idsFile))) as! [[Int]]
            try #require(expected.count == strings.count)
            var mismatches = 0
            for (s, ids) in zip(strings, expected) {
                let ours = t.encode(s, parseSpecial: true, addSpecial: true)
                if ours != ids {
                    mismatches += 1
                    if mismatches <= 3 { Issue.record("\(file) \(s.debugDescription): \(ours) != \(ids)") }
                }
            }
            #expect(mismatches == 0, "\(file): \(mismatches) of \(strings.count) strings differ")
        }
    }

    /// SentencePiece (llama.cpp's SPM algorithm, from pieces and scores) on a synthetic vocabulary equals `tokenizers`
    /// configured as for a converted SentencePiece model, on corpus lines and random strings, and so does the
    /// SentencePiece BPE read from that tokenizer's own tokenizer.json; decoding restores the text.
    @Test func sentencePieceMatchesReference() throws {
        let model = try TestSupport.defaultModelPath()
        var strings = TextSamples.handPicked + TextSamples.random(count: 2000, seed: 13)
            + TextSamples.random(count: 100, maxLength: 2000, seed: 14)
        let corpus = try Corpora.allTextFiles()
        strings += try TextSamples.lines(of: corpus[1]).prefix(3000)
        strings += try TextSamples.lines(of: corpus[corpus.count - 2]).prefix(1000)
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try TextSamples.writeJSON(strings, to: dir + "/in.json")
        try TestSupport.runPython("spm_reference.py", [model, dir, dir + "/in.json"])
        let vocab = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/spm.json"))) as! [String: Any]
        let tokens = vocab["tokens"] as! [String]
        let scores = (vocab["scores"] as! [NSNumber]).map(\.floatValue)
        let types = (vocab["types"] as! [Int]).map { Tokenizer.TokenType(rawValue: $0)! }
        let t = try Tokenizer(sentencePieceTokens: tokens, scores: scores, tokenTypes: types, bosID: 1, eosID: 2, unknownID: 0)
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/spm.ids.json"))) as! [[Int]]
        try #require(expected.count == strings.count)
        #expect(t.vocabularySize > 40000)
        var mismatches = 0, roundTripFailures = 0
        for (s, ids) in zip(strings, expected) {
            let ours = t.encode(s)
            if ours != ids {
                mismatches += 1
                if mismatches <= 3 { Issue.record("\(s.debugDescription): \(ours.map(t.piece)) != \(ids.map(t.piece))") }
            }
            if t.decode(ours) != s {
                roundTripFailures += 1
                if roundTripFailures <= 3 { Issue.record("round trip \(s.debugDescription) -> \(t.decode(ours).debugDescription)") }
            }
        }
        #expect(mismatches == 0, "\(mismatches) of \(strings.count) strings differ")
        #expect(roundTripFailures == 0)

        // The same model as a tokenizer.json (BPE with byte fallback and merges): Hugging Face's algorithm.
        let hf = try Tokenizer(huggingFacePath: dir + "/spm-hf.json")
        #expect(hf.model == .sentencePieceBPE(addSpacePrefix: true))
        var hfMismatches = 0
        for (s, ids) in zip(strings, expected) {
            let ours = hf.encode(s)
            if ours != ids {
                hfMismatches += 1
                if hfMismatches <= 3 { Issue.record("tokenizer.json \(s.debugDescription): \(ours.map(hf.piece)) != \(ids.map(hf.piece))") }
            }
            if hf.decode(ours) != s { roundTripFailures += 1 }
        }
        #expect(hfMismatches == 0, "tokenizer.json: \(hfMismatches) of \(strings.count) strings differ")
        #expect(roundTripFailures == 0)
    }
}
