import Foundation
import Testing
import SquishCore
import SquishEval

@Suite("Reference logits cache")
struct ReferenceCacheTests {
    func sample() -> ReferenceLogits {
        var rng = SplitMix64(seed: 9)
        let n = 37, k = 8
        let ppl = PerplexityResult(perplexity: 12.5, stderr: 0.25, tokens: n, textTokens: 100, chunks: 1, context: 64,
                                   protocol: .llamacpp, runningPerplexity: [12.5], meanNLL: log(12.5))
        let header = ReferenceLogits.Header(version: ReferenceLogits.version, modelHash: "00ff", textHash: "abcd", context: 64, k: k,
                                            tailSamples: 3, vocab: 500, positions: n, llamacpp: ppl, windows: ppl, top1Accuracy: 0.25)
        return ReferenceLogits(header: header, targets: (0 ..< n).map { _ in Int32.random(in: 0 ..< 500, using: &rng) },
                               targetLogProbs: (0 ..< n).map { _ in -Float.random(in: 0 ..< 10, using: &rng) },
                               tailMass: (0 ..< n).map { _ in Double.random(in: 0 ..< 1, using: &rng) },
                               ids: (0 ..< n * k).map { _ in Int32.random(in: 0 ..< 500, using: &rng) },
                               logProbs: (0 ..< n * k).map { _ in -Float.random(in: 0 ..< 10, using: &rng) },
                               tailIDs: (0 ..< n * 3).map { _ in Int32.random(in: 0 ..< 500, using: &rng) },
                               tailLogProbs: (0 ..< n * 3).map { _ in -Float.random(in: 10 ..< 20, using: &rng) })
    }

    func scratch() throws -> String {
        let dir = NSTemporaryDirectory() + "squish-eval-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func roundTrip() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = sample()
        let path = dir + "/sub/ref.bin"
        try r.write(to: path)
        let back = try ReferenceLogits.read(from: path)
        #expect(back.targets == r.targets)
        #expect(back.targetLogProbs == r.targetLogProbs)
        #expect(back.tailMass == r.tailMass)
        #expect(back.ids == r.ids)
        #expect(back.logProbs == r.logProbs)
        #expect(back.tailIDs == r.tailIDs && back.tailLogProbs == r.tailLogProbs)
        #expect(back.distribution(at: 3).tailIDs == Array(r.tailIDs[9 ..< 12]))
        #expect(back.header.llamacpp.perplexity == 12.5 && back.header.k == 8 && back.header.modelHash == "00ff")
        #expect(back.distribution(at: 3).ids == Array(r.ids[24 ..< 32]))
        // Only the destination is left: the atomic writer's temporary file is gone.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/sub") == ["ref.bin"])
    }

    @Test func truncatedOrAlteredFilesAreRejected() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/ref.bin"
        try sample().write(to: path)
        let good = [UInt8](FileManager.default.contents(atPath: path)!)
        func expectCorrupt(_ bytes: [UInt8], _ fragment: String) throws {
            try AtomicFileWriter.write(bytes, to: path)
            do {
                _ = try ReferenceLogits.read(from: path)
                Issue.record("accepted a bad file (\(fragment))")
            } catch let EvalError.corruptCache(p, reason) {
                #expect(p == path)
                #expect(reason.contains(fragment), "\(reason)")
            }
        }
        try expectCorrupt(Array(good.prefix(good.count - 100)), "checksum")
        var flipped = good
        flipped[good.count / 2] ^= 0x10
        try expectCorrupt(flipped, "checksum")
        var magic = good
        magic[0] = UInt8(ascii: "X")
        try expectCorrupt(magic, "magic")
        try expectCorrupt(Array(good.prefix(10)), "shorter")
    }

    @Test func fnvMatchesPublishedVectors() {
        // Test vectors from the FNV reference (fnv_test.c): "" and "a" and "foobar" for 64-bit FNV-1a.
        var h = FNV1a64()
        #expect(h.value == 0xcbf2_9ce4_8422_2325)
        h.update("a")
        #expect(h.value == 0xaf63_dc4c_8601_ec8c)
        var f = FNV1a64()
        f.update("foobar")
        #expect(f.value == 0x8594_4171_f739_67e8)
    }
}
