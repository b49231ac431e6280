import CSquishKernels
import Foundation
import Testing
import SquishCore
import SquishEval
import SquishFormats
import SquishKernels
import SquishModel
import SquishTokenizer

/// The benchmark tools: the bandwidth loop's sum, random weights, kernel and memory benchmarks' results, and the
/// synthetic model writer (file structure, loading, bytes per token). No timing is asserted beyond "positive".
@Suite(.serialized) struct BenchToolsTests {
    @Test func readSumMatchesPlainSum() {
        var rng = SplitMix64(seed: 99)
        let words = (0 ..< (1 << 17)).map { _ in rng.next() }  // 1 MiB
        let expected = words.reduce(UInt64(0), &+)
        words.withUnsafeBytes { raw in
            #expect(sq_read_sum(raw.baseAddress!, raw.count) == expected)
            #expect(sq_read_sum_portable(raw.baseAddress!, raw.count) == expected)
            // A prefix that is a multiple of 128 bytes.
            let prefix = words[0 ..< 48].reduce(UInt64(0), &+)
            #expect(sq_read_sum(raw.baseAddress!, 384) == prefix)
        }
    }

    /// Every path of the int8 peak loop computes the same chains: the returned sums agree with the plain products.
    @Test func int8PeakLoopsComputeTheirProducts() {
        let x = (0 ..< 32).map { Int8($0 % 7 - 3) }, w = (0 ..< 32).map { UInt8($0 * 5 % 16) }
        let dot = zip(x, w).reduce(0) { $0 + Int64($1.0) * Int64($1.1) }
        let steps: Int64 = 5
        #expect(sq_int8_peak(0, steps, x, w) == steps * dot)
        // The vector paths return lanes 0 and 7 of 12 summed chains: 12 · steps · (products of those lanes' 4 bytes).
        let lanes = [0, 7].reduce(Int64(0)) { acc, l in acc + (0 ..< 4).reduce(Int64(0)) { $0 + Int64(x[4 * l + $1]) * Int64(w[4 * l + $1]) } }
        if VectorOps.usesAVX2 { #expect(sq_int8_peak(1, steps, x, w) == 12 * steps * lanes) }
        if VectorOps.usesVNNI { #expect(sq_int8_peak(2, steps, x, w) == 12 * steps * lanes) }
    }

    @Test func memoryBenchReportsPositiveBandwidthAndJSONKeys() throws {
        let r = MemoryBench.run(bytes: 8 << 20, threadCounts: [1, 2], repetitions: 2)
        #expect(r.results.map(\.threads) == [1, 2])
        for e in r.results {
            #expect(e.samples.count == 2)
            #expect(e.gigabytesPerSecond > 0 && e.gigabytesPerSecond.isFinite)
        }
        let json = try jsonString(r)
        for key in ["\"buffer_bytes\"", "\"gigabytes_per_second\"", "\"threads\"", "\"samples\"", "\"uses_avx2\""] {
            #expect(json.contains(key), "missing \(key)")
        }
    }

    @Test(arguments: KernelBench.defaultTypes + [.iq4_XS, .f16])
    func randomWeightsAreFiniteAndSane(type: GGMLType) throws {
        let rows = 300, columns = 512  // more rows than one 256-row tile
        let bytes = try RandomWeights.bytes(type: type, rows: rows, columns: columns, seed: 5)
        #expect(bytes.count == rows * type.rowBytes(elements: columns)!)
        let w = try bytes.withUnsafeBytes { try Codecs.dequantize(type, $0, count: rows * columns) }
        #expect(w.allSatisfy { $0.isFinite && abs($0) < 10 })
        #expect(w.contains { $0 != 0 })
        if Codecs.canQuantize(type) {
            // Quantized from σ = 0.02 Gaussian-like values: the RMS stays near 0.02.
            let rms = (w.reduce(0) { $0 + Double($1) * Double($1) } / Double(w.count)).squareRoot()
            #expect(rms > 0.01 && rms < 0.04, "\(type.name): rms \(rms)")
        }
        // Rows past the tile repeat it.
        let rb = type.rowBytes(elements: columns)!
        #expect(bytes[256 * rb ..< 257 * rb] == bytes[0 ..< rb])
    }

    @Test func kernelBenchCoversTypesAndPaths() throws {
        let pool = WorkerPool(threads: 2)
        let shapes = [KernelShape(name: "t", rows: 64, columns: 256), KernelShape(name: "odd", rows: 16, columns: 128)]
        let r = try KernelBench.run(types: [.q4_0, .q2_K, .sq4_G64], shapes: shapes, tokens: [1, 4], pool: pool,
                                    repetitions: 1, sampleSeconds: 0.001, coldBytes: 1 << 16, repack: true)
        // Q2_K needs rows of 256: its 128-column case is skipped.
        #expect(r.skipped == ["Q2_K 16x128"])
        // SQ4_G64 twice per shape: as the model runs prefill (converted to Q4_1, packed) and through the lookup tables.
        #expect(r.rows.count == 5 * 2 + 2 * 2)
        #expect(r.int8Peak.threads == 2 && r.int8Peak.gigaOpsPerSecond > 0 && r.int8Peak.samples.count == 1)
        #expect(r.int8Peak.path == (VectorOps.usesVNNI ? "avx512-vnni" : VectorOps.usesAVX2 ? "avx2" : "portable"))
        for row in r.rows {
            #expect(row.gflops > 0 && row.weightGigabytesPerSecond > 0 && row.copies >= 1)
            #expect(abs(row.fractionOfInt8Peak * r.int8Peak.gigaOpsPerSecond - row.gflops) <= 1e-9 * row.gflops)
            // Bytes read: the stored rows, the Q4_1 blocks for a converted type, the bit-plane layout for 'lut'.
            let type = GGMLType(name: row.type)!
            let expected = row.path == "lut" ? sq_lut_packed_bytes(Int64(row.rows), Int64(row.columns), 4, 64)
                : row.rows * (type == .sq4_G64 ? GGMLType.q4_1 : type).rowBytes(elements: row.columns)!
            #expect(row.weightBytes == expected, "\(row.type) \(row.path)")
        }
        #expect(r.rows.first { $0.type == "Q4_0" }?.path == "packed")
        #expect(r.rows.first { $0.type == "Q2_K" }?.path == "int8")
        #expect(r.rows.filter { $0.type == "SQ4_G64" }.map(\.path) == ["packed", "packed", "lut", "lut", "packed", "packed", "lut", "lut"])
        let json = try jsonString(r)
        for key in ["\"gflops\"", "\"weight_gigabytes_per_second\"", "\"seconds_per_call\"", "\"tokens\"", "\"skipped\"",
                    "\"int8_peak\"", "\"giga_ops_per_second\"", "\"fraction_of_int8_peak\""] {
            #expect(json.contains(key), "missing \(key)")
        }
    }

    @Test func syntheticModelLoadsWithItsShapesAndBenchCountsItsBytes() throws {
        let tokenizerSource = try GGUFFile(path: try TestSupport.defaultModelPath())
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/synth.gguf"
        let shape = SyntheticModelShape(name: "test", dim: 128, hiddenDim: 256, layers: 2, heads: 4, kvHeads: 2)
        let summary = try SyntheticModel.write(shape: shape, type: .q4_0, tokenizerFrom: tokenizerSource, to: path)
        let file = try GGUFFile(path: path)
        guard let tokens = tokenizerSource["tokenizer.ggml.tokens"]?.arrayValue else { Issue.record("no tokens"); return }
        // token_embd, output, output_norm, and 9 per layer.
        #expect(file.tensors.count == 3 + 9 * shape.layers)
        #expect(summary.tensors == file.tensors.count && summary.vocabSize == tokens.count)
        #expect(file.tensor(named: "blk.1.attn_k.weight")?.shape == [128, 64])
        #expect(file.tensor(named: "blk.0.ffn_down.weight")?.shape == [256, 128])
        #expect(file.tensor(named: "output.weight")?.shape == [128, tokens.count])
        #expect(file.tensors.filter { $0.shape.count == 2 }.allSatisfy { $0.type == .q4_0 })
        // Every tokenizer key is copied unchanged.
        for (key, value) in tokenizerSource.metadata where key.hasPrefix("tokenizer.") { #expect(file[key] == value, "\(key)") }

        let model = try TransformerModel(gguf: file)
        #expect(model.config.dim == 128 && model.config.hiddenDim == 256 && model.config.layers == 2)
        #expect(model.config.heads == 4 && model.config.kvHeads == 2 && model.config.headDim == 32)
        #expect(model.config.vocabSize == tokens.count && !model.config.tiedEmbeddings)
        // Bytes per decoded token: every 2-D tensor but the embedding, from the file's own tensor table.
        let expected = file.tensors.filter { $0.shape.count == 2 && $0.name != "token_embd.weight" }.reduce(0) { $0 + $1.byteCount }
        #expect(model.matrixBytesPerToken == expected)

        let tokenizer = try Tokenizer(gguf: file)
        #expect(!tokenizer.encode("Hello world").isEmpty)
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 8, maxBatch: 4)
        let r = try ModelBench.run(session: session, promptTokens: 4, generatedTokens: 2, repetitions: 1)
        #expect(r.weightBytesPerToken == expected)
        #expect(r.weightsGigabytesPerSecond > 0)
        let json = try jsonString(r)
        #expect(json.contains("\"weight_bytes_per_token\"") && json.contains("\"weights_gigabytes_per_second\""))
        // At depth: the runs start from 4 cached tokens; 4 + 5 positions overflow the context of 8.
        let deep = try ModelBench.run(session: session, promptTokens: 4, generatedTokens: 2, repetitions: 1, depth: 4)
        #expect(deep.depth == 4 && deep.promptSamples.count == 1 && deep.promptTokensPerSecond > 0)
        #expect(try jsonString(deep).contains("\"depth\" : 4"))
        #expect(throws: ModelError.contextOverflow(tokens: 9, context: 8)) {
            try ModelBench.run(session: session, promptTokens: 5, generatedTokens: 0, repetitions: 1, depth: 4)
        }
        session.reset()
        let logits = try session.forward([1, 2, 3], logitsFor: 1)
        #expect(logits.count == tokens.count && logits.allSatisfy(\.isFinite))
    }
}
