import Foundation
import SquishCore
import SquishKernels
import SquishModel
import SquishTokenizer
import SquishZip
import Testing

/// `squish zip` with the default model: byte-exact round trips with 1 and 2 threads, any bytes, and containers that
/// are damaged or meant for another model refused with a clear error.
@Suite("Text compression with a model", .serialized)
struct ZipTests {
    /// Several chunks in two waves (3 lanes) on a short text, so that the lockstep batches and the shrinking last
    /// steps are exercised.
    static let settings = ZipSettings(lanes: 3, maxChunkTokens: 48, minChunkTokens: 16)

    static func coder(threads: Int) throws -> TextCoder {
        try TextCoder(modelPath: try TestSupport.defaultModelPath(), pool: WorkerPool(threads: threads))
    }

    @Test func roundTripIsIdenticalAcrossThreadCounts() throws {
        let text = try TestSupport.austen("persuasion", bytes: 1200)
        let one = try Self.coder(threads: 1), two = try Self.coder(threads: 2)
        let (a, summary) = try one.compress(text, settings: Self.settings)
        let (b, _) = try two.compress(text, settings: Self.settings)
        #expect(a.serialized() == b.serialized())
        #expect(summary.chunks >= 4 && summary.lanes == 3)
        #expect(try two.decompress(a, path: "a.sqz") == text)
        #expect(try one.decompress(b, path: "b.sqz") == text)
        // The coder is within 1% of the model's own cross-entropy (give or take the 64 bits of its final state, which
        // also hold information), which is far below 8 bits per byte.
        let crossEntropyBits = summary.modelBitsPerByte * Double(text.count)
        let codedBits = Double(8 * summary.payloadBytes)
        #expect(codedBits < crossEntropyBits * 1.01 + 64 && codedBits > crossEntropyBits * 0.999 - 64, "\(codedBits) bits coded, cross-entropy \(crossEntropyBits)")
        #expect(summary.modelBitsPerByte < 3)
        // Parsing what was written gives the same container.
        #expect(try ZipContainer(bytes: a.serialized(), path: "a.sqz") == a)
    }

    /// Bytes that are not UTF-8, control characters the tokenizer drops, bytes without a token of their own
    /// (SmolLM2 has none for 0x04 or 0xFF: they go through the escape), a literal special token, and the empty input.
    @Test func anyBytesRoundTrip() throws {
        let coder = try Self.coder(threads: 2)
        var rng = SplitMix64(seed: 4)
        let weird: [UInt8] = [0xFF, 0x04, 0xC3, 0x28, 0x00] + Array("héllo\t\r\n<|endoftext|> 🙂".utf8) + [0xF0, 0x9F, 0x98]
            + (0 ..< 40).map { _ in UInt8(truncatingIfNeeded: rng.next()) } + Array(" the end\n".utf8)
        let (c, summary) = try coder.compress(weird, settings: Self.settings)
        #expect(summary.escapedBytes > 0 && summary.fallbackBytes >= summary.escapedBytes)
        #expect(try coder.decompress(c, path: "weird.sqz") == weird)
        let (e, empty) = try coder.compress([], settings: Self.settings)
        #expect(empty.tokens == 0)
        let back = try ZipContainer(bytes: e.serialized(), path: "empty.sqz")
        #expect(try coder.decompress(back, path: "empty.sqz") == [])
    }

    @Test func damagedAndMismatchedContainersAreRefused() throws {
        let coder = try Self.coder(threads: 2)
        let text = Array("It was a truth universally acknowledged, and then some more words followed.\n".utf8)
        let (c, _) = try coder.compress(text, settings: Self.settings)
        let bytes = c.serialized()
        // Any changed or missing byte fails the CRC (or the signature) before the model runs.
        for p in [0, 5, 20, bytes.count / 2, bytes.count - 5, bytes.count - 1] {
            var b = bytes
            b[p] ^= 0x40
            #expect(throws: ZipError.self) { try ZipContainer(bytes: b, path: "x.sqz") }
        }
        #expect(throws: ZipError.self) { try ZipContainer(bytes: Array(bytes.dropLast(3)), path: "x.sqz") }
        #expect(throws: ZipError.notAContainer(path: "x.gguf", reason: "not a file written by `squish zip` (no SQZT signature)")) {
            try ZipContainer(bytes: Array("GGUF and more".utf8), path: "x.gguf")
        }
        // A changed payload with a valid CRC: the coder notices (state or SHA-256), never returns other bytes.
        var payload = c
        payload.payload[payload.payload.count / 2] ^= 0x01
        #expect(throws: ZipError.self) { try coder.decompress(payload, path: "p.sqz") }
        // Another model, another kernel path, another layout.
        var model = c
        model.modelSHA256[0] ^= 1
        #expect {
            try coder.decompress(model, path: "m.sqz")
        } throws: { e in
            guard case ZipError.modelMismatch(let path, let reason) = e else { return false }
            return path == "m.sqz" && reason.contains("--model")
        }
        var kernels = c
        kernels.kernels = TextCoder.kernelPath == "avx2" ? "portable" : "avx2"
        #expect { try coder.decompress(kernels, path: "k.sqz") } throws: { e in
            if case ZipError.environmentMismatch = e { return true } else { return false }
        }
        var layout = c
        layout.repacked.toggle()
        #expect(throws: ZipError.self) { try coder.decompress(layout, path: "l.sqz") }
    }

    /// A checkpoint directory (the tiny Llama fixture, safetensors weights) is a model like a GGUF file: the text
    /// round-trips, and a copy whose weights differ in one byte is refused as another model.
    @Test func checkpointDirectoryRoundTripAndIdentity() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tiny-models/llama").path
        let coder = try TextCoder(modelPath: fixture, pool: WorkerPool(threads: 2))
        let text = Array("It was a truth universally acknowledged, that a single man in possession of a good fortune.\n".utf8)
        let (c, summary) = try coder.compress(text, settings: ZipSettings(lanes: 2, maxChunkTokens: 16, minChunkTokens: 16))
        #expect(summary.chunks >= 2 && summary.fallbackBytes == 0)
        #expect(try coder.decompress(ZipContainer(bytes: c.serialized(), path: "t.sqz"), path: "t.sqz") == text)
        // Only the files the model is made of count: weights, config.json, tokenizer.json.
        let sizes = try ["config.json", "model.safetensors", "reference.safetensors", "tokenizer.json"].map {
            try FileManager.default.attributesOfItem(atPath: fixture + "/" + $0)[.size] as! Int
        }
        #expect(coder.modelBytes == sizes.reduce(0, +))

        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let copy = dir + "/llama"
        try FileManager.default.copyItem(atPath: fixture, toPath: copy)
        try Data("notes".utf8).write(to: URL(fileURLWithPath: copy + "/README.md"))
        #expect(try TextCoder(modelPath: copy, pool: WorkerPool(threads: 1)).modelSHA256 == coder.modelSHA256)
        var weights = try [UInt8](Data(contentsOf: URL(fileURLWithPath: copy + "/model.safetensors")))
        weights[weights.count - 1] ^= 0x01  // lowest mantissa bit of the last weight
        try Data(weights).write(to: URL(fileURLWithPath: copy + "/model.safetensors"))
        let other = try TextCoder(modelPath: copy, pool: WorkerPool(threads: 1))
        #expect(other.modelSHA256 != coder.modelSHA256)
        #expect { try other.decompress(c, path: "t.sqz") } throws: { e in
            if case ZipError.modelMismatch = e { return true } else { return false }
        }
    }
}

@Suite struct TokenStreamTests {
    /// The UTF-8 validator agrees with Swift's on random and edge-case byte strings.
    @Test func utf8Validator() {
        var rng = SplitMix64(seed: 8)
        var cases: [[UInt8]] = [[0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xF0, 0x9F, 0x98, 0x80]]
        for _ in 0 ..< 2000 { cases.append((0 ..< Int(rng.next() % 6)).map { _ in UInt8(truncatingIfNeeded: rng.next() | 0x80) }) }
        for c in cases {
            let end = TokenStream.validUTF8Prefix(c, from: 0)
            #expect(String(validating: c[..<end], as: UTF8.self) != nil)
            if end < c.count {
                // No longer prefix is valid.
                #expect((end + 1 ... c.count).allSatisfy { String(validating: c[..<$0], as: UTF8.self) == nil })
            }
        }
    }

    /// Text, whitespace runs, CRLF and special-token text reproduce without fallback; the tokens' bytes are the input.
    @Test func tokensReproduceTheInput() throws {
        let model = try LanguageModel(path: try TestSupport.defaultModelPath())
        let stream = TokenStream(tokenizer: model.tokenizer)
        #expect(stream.escapeToken != nil)
        for text in ["Hello, world!\n", "  two  spaces\r\nand tabs\t\t.", "<|im_start|>user<|im_end|>", "naïve café — 中文 🙂\n\n\n"] {
            let t = try stream.tokens(for: Array(text.utf8), path: "t")
            #expect(t.fallbackBytes == 0, "\(text)")
            #expect(stream.bytes(for: t) == Array(text.utf8))
        }
        let raw: [UInt8] = [0x04, 0xFF, 0x41, 0x80]
        let t = try stream.tokens(for: raw, path: "t")
        #expect(t.escaped.count == 2 && stream.bytes(for: t) == raw)  // 0x80 has a token of its own
    }
}
