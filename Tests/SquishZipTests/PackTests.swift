import Foundation
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel
import SquishZip
import Testing

/// Packed models: byte-exact round trips (every block type the loader meets, a real Q4_1 file), loading a packed
/// file directly, and damaged files refused or still exact, never silently different.
@Suite("Packed weights")
struct PackTests {
    /// A one-layer Llama (rows of 256, so K-quants fit) whose matrices use many block types, random weights
    /// quantized by our codecs; written by our own GGUF writer.
    static func writeMixedModel(to path: String) throws {
        let c = ModelConfig(architecture: "llama", dim: 256, hiddenDim: 512, layers: 1, heads: 4, kvHeads: 2, headDim: 64,
                            vocabSize: 96, contextLength: 64, normEpsilon: 1e-5, ropeBase: 10000, ropeStyle: .adjacentPairs,
                            tiedEmbeddings: false)
        let family = try #require(Architectures.family(named: c.architecture))
        var w = GGUFWriter()
        for (k, v) in GGUFConfig.metadata(c, arch: family.name) + family.ggufMetadata(c) { w.set(k, v) }
        let types: [String: GGMLType] = [
            "token_embd.weight": .q8_0, "output.weight": .q6_K, "blk.0.attn_q.weight": .q4_K, "blk.0.attn_k.weight": .q5_K,
            "blk.0.attn_v.weight": .q4_1, "blk.0.attn_output.weight": .q5_0, "blk.0.ffn_gate.weight": .bf16,
            "blk.0.ffn_up.weight": .f16, "blk.0.ffn_down.weight": .q3_K,
        ]
        var rng = SplitMix64(seed: 11)
        for tensor in c.tensors() {
            let shape = c.shape(of: tensor)
            let n = shape.reduce(1, *)
            let isNorm = shape.count == 1
            let values = (0 ..< n).map { _ in (isNorm ? 1 : 0) + rng.normal(isNorm ? 0.05 : 0.04) }
            let type = types[tensor.ggufName] ?? .f32
            w.addTensor(name: tensor.ggufName, shape: shape, type: type, source: .bytes(try Codecs.quantize(type, values)))
        }
        try w.write(to: path)
    }

    @Test func mixedModelRoundTripsAndLoadsPacked() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let original = dir + "/mixed.gguf", packed = dir + "/mixed.sqpk", restored = dir + "/restored.gguf"
        try Self.writeMixedModel(to: original)
        let summary = try WeightPacking.pack(input: original, output: packed)
        #expect(summary.packedBytes < summary.originalBytes)
        #expect(Set(summary.types.map(\.type)).isSuperset(of: ["Q8_0", "Q6_K", "Q4_K", "Q5_K", "Q4_1", "Q5_0", "BF16", "F16", "Q3_K", "F32"]))
        // The file opens as the original GGUF, byte for byte.
        let a = try GGUFFile(path: original), b = try GGUFFile(path: packed)
        #expect(Array(a.file.bytes) == Array(b.file.bytes))
        #expect(b.path == packed)
        // A model loads from it and computes what the original computes.
        func logits(_ path: String) throws -> [Float] {
            let model = try TransformerModel(path: path)
            let session = try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 16)
            return try session.forward([1, 5, 9, 2], logitsFor: 4)
        }
        #expect(try logits(original) == logits(packed))
        // Unpack restores the file.
        let u = try WeightPacking.unpack(input: packed, output: restored)
        #expect(u.sha256 == summary.sha256)
        #expect(FileManager.default.contents(atPath: restored) == FileManager.default.contents(atPath: original))
        // A packed file is not packed again, and no output replaces its input.
        #expect(throws: ZipError.self) { try WeightPacking.pack(input: packed, output: dir + "/again.sqpk") }
        #expect(throws: ZipError.self) { try WeightPacking.pack(input: original, output: original) }
        #expect(throws: ZipError.self) { try WeightPacking.unpack(input: packed, output: packed) }
        #expect(throws: ZipError.self) { try WeightPacking.unpack(input: original, output: dir + "/x.gguf") }
    }

    /// Trained-like BF16 weights (normal, σ = 0.02) pack to about 8 + 2.7 of 16 bits: the exponent split works.
    @Test func bf16ExponentCoding() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SplitMix64(seed: 5)
        let values = (0 ..< 256 * 1024).map { _ in rng.normal(0.02) }
        var w = GGUFWriter()
        w.set("general.architecture", .string("none"))
        w.addTensor(name: "w", shape: [256, 1024], type: .bf16, source: .bytes(try Codecs.quantize(.bf16, values)))
        try w.write(to: dir + "/bf16.gguf")
        let s = try WeightPacking.pack(input: dir + "/bf16.gguf", output: dir + "/bf16.sqpk")
        let bf16 = try #require(s.types.first { $0.type == "BF16" })
        let ratio = Double(bf16.packedBytes) / Double(bf16.originalBytes)
        #expect(ratio < 0.70 && ratio > 0.6, "BF16 packed to \(ratio)")
    }

    /// Real Q4_1 and F32 tensors (the default model's first block and its metadata) round-trip, and the codes and
    /// scales shrink (88% of the bytes on the whole file, see README).
    @Test func realQuantizedBlockRoundTrips() throws {
        let source = try GGUFFile(path: try TestSupport.defaultModelPath())
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var w = GGUFWriter()
        for (k, v) in source.metadata { w.set(k, v) }
        for t in source.tensors where t.name.hasPrefix("blk.0.") || t.name.hasPrefix("blk.1.") {
            w.addTensor(name: t.name, shape: t.shape, type: t.type, source: .mapped(source.data(for: t), owner: source))
        }
        try w.write(to: dir + "/part.gguf")
        let s = try WeightPacking.pack(input: dir + "/part.gguf", output: dir + "/part.sqpk")
        let q = try #require(s.types.first { $0.type == "Q4_1" })
        #expect(Double(q.packedBytes) / Double(q.originalBytes) < 0.92)
        #expect(s.restPackedBytes < s.restBytes / 2)  // the tokenizer's strings deflate well
        _ = try WeightPacking.unpack(input: dir + "/part.sqpk", output: dir + "/back.gguf")
        #expect(FileManager.default.contents(atPath: dir + "/back.gguf") == FileManager.default.contents(atPath: dir + "/part.gguf"))
    }

    /// Damaged packed files: every truncation is an error naming the file; a changed byte anywhere either fails
    /// (checksum, bounds, coder state) or, where it cannot matter (a tensor record's informative type id), still
    /// decodes to the exact original. Never a crash, never different bytes.
    @Test func damagedFilesAreRefused() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.writeMixedModel(to: dir + "/m.gguf")
        _ = try WeightPacking.pack(input: dir + "/m.gguf", output: dir + "/m.sqpk")
        let original = [UInt8](try #require(FileManager.default.contents(atPath: dir + "/m.gguf")))
        let packed = [UInt8](try #require(FileManager.default.contents(atPath: dir + "/m.sqpk")))
        for cut in [0, 3, 8, 40, 60, packed.count / 3, packed.count / 2, packed.count - 1] {
            let bytes = Array(packed.prefix(cut))
            #expect(throws: (any Error).self) { try bytes.withUnsafeBytes { _ = try PackedModel.decode($0, path: "cut.sqpk") } }
        }
        var rng = SplitMix64(seed: 9)
        var refused = 0
        let positions = (0 ..< 60).map { _ in Int(rng.next() % UInt64(packed.count)) } + Array(0 ..< 56)
        for p in positions {
            var bytes = packed
            bytes[p] ^= UInt8(1 << (rng.next() % 8))
            do {
                let decoded = try bytes.withUnsafeBytes { try PackedModel.decode($0, path: "flip.sqpk") }
                let header = try bytes.withUnsafeBytes { try PackedModel.header($0, path: "flip.sqpk") }
                // What unpack checks: the SHA-256 recorded in the header (a flip there is caught by this).
                let exact = Array(decoded.bytes) == original
                #expect(exact || header.sha256 != Array(packed[16 ..< 48]), "flip at \(p) decoded to different bytes")
            } catch let e as FormatError {
                refused += 1
                #expect(e.description.contains("flip.sqpk"))
            }
        }
        #expect(refused > positions.count / 2)
    }
}
