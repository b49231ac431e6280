import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel
import SquishQuantize
import SquishTokenizer
import SquishEval

/// The default model against RTN requantizations of itself, on 1.5 kB of Pride and Prejudice (context 128).
@Suite("Eval on the default model", .serialized)
struct ModelEvalTests {
    @Test func quantizedModelsDivergeInOrder() throws {
        let input = try TestSupport.defaultModelPath()
        let dir = NSTemporaryDirectory() + "squish-eval-model-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = WorkerPool()
        for type in ["Q8_0", "Q4_0"] {
            let options = QuantizeOptions(method: .rtn, target: try .resolve(type: type, bits: nil, group: nil, symmetric: false))
            _ = try ModelQuantizer.quantize(input: input, output: dir + "/\(type).gguf", options: options, pool: pool)
        }
        func load(_ path: String) throws -> EvalModel {
            let file = try GGUFFile(path: path)
            return EvalModel(path: path, model: try TransformerModel(gguf: file), tokenizer: try Tokenizer(gguf: file))
        }
        let reference = try load(input)
        let novel = try EvalTestSupport.novel("prideprejudice")
        let text = try EvalText(name: "pp", bytes: Array(Array(novel.text.utf8)[0 ..< 1500]))
        var options = EvalOptions()
        options.context = 128
        options.topK = 128
        options.tasks = []
        options.cacheDirectory = dir + "/cache"
        let evaluator = try CompressionEvaluator(reference: reference, text: text, options: options, pool: pool, quiet: true)
        let (ref, cached) = try evaluator.referenceLogits()
        #expect(!cached)
        #expect(ref.header.positions == ref.header.llamacpp.chunks * 63)

        // The reference against itself: exactly zero KL and full agreement, same perplexities.
        let same = try evaluator.evaluate(reference, reference: ref, referenceCached: false, tasks: TaskSet(), referenceTasks: [:])
        #expect(same.klDivergence.max == 0 && same.klDivergence.mean == 0)
        #expect(same.top1Agreement == 1)
        #expect(same.perplexity == same.referencePerplexity)
        #expect(same.perplexityWindows == same.referencePerplexityWindows)
        #expect(same.deltaP.rms == 0)
        // Bits per byte agrees with the windows perplexity: ln(ppl) · tokens / (ln 2 · bytes).
        // Without BOS, each window's first token is not scored and its bytes are left out.
        let tokens = reference.tokenizer.encode(text.text)
        var scored = tokens.count, scoredBytes = 1500
        if !reference.tokenizer.addBOS {
            for i in stride(from: 0, to: tokens.count, by: 128) { scored -= 1; scoredBytes -= reference.tokenizer.bytes(for: tokens[i]).count }
        }
        #expect(abs(same.bitsPerByte - log(same.perplexityWindows) * Double(scored) / (log(2) * Double(scoredBytes))) < 1e-9)

        // The second time the reference comes from the cache, identical.
        let (again, cachedNow) = try evaluator.referenceLogits()
        #expect(cachedNow)
        #expect(again.ids == ref.ids && again.logProbs == ref.logProbs && again.tailMass == ref.tailMass)
        // A damaged cache entry is detected and recomputed.
        let path = try evaluator.referenceCachePath()
        var bytes = [UInt8](FileManager.default.contents(atPath: path)!)
        bytes[bytes.count / 3] ^= 0xFF
        try AtomicFileWriter.write(bytes, to: path)
        var messages: [String] = []
        let logging = try CompressionEvaluator(reference: reference, text: text, options: options, pool: pool, quiet: true) { messages.append($0) }
        let (recomputed, fromCache) = try logging.referenceLogits()
        #expect(!fromCache)
        #expect(messages.contains { $0.contains("checksum") })
        #expect(recomputed.ids == ref.ids)
        #expect(try ReferenceLogits.read(from: path).logProbs == ref.logProbs)

        let q8 = try evaluator.evaluate(try load(dir + "/Q8_0.gguf"), reference: ref, referenceCached: true, tasks: TaskSet(), referenceTasks: [:])
        let q4 = try evaluator.evaluate(try load(dir + "/Q4_0.gguf"), reference: ref, referenceCached: true, tasks: TaskSet(), referenceTasks: [:])
        print("KL mean Q8_0 \(q8.klDivergence.mean) Q4_0 \(q4.klDivergence.mean); top-1 \(q8.top1Agreement) \(q4.top1Agreement); PPL ref \(q8.referencePerplexity) Q8_0 \(q8.perplexity) Q4_0 \(q4.perplexity)")
        #expect(q8.klDivergence.mean > 0)
        #expect(q4.top1Agreement > 0 && q4.top1Agreement < 1)
        #expect(q8.klDivergence.mean < q4.klDivergence.mean)
        #expect(q8.klDivergence.median < q4.klDivergence.median)
        #expect(q8.top1Agreement > q4.top1Agreement)
        #expect(abs(q8.perplexity - q8.referencePerplexity) < abs(q4.perplexity - q4.referencePerplexity))

        // The report: results accumulate across runs (a rerun replaces its entry), the Markdown table has a row per
        // model plus the reference, and every chart is a well-formed SVG document.
        let report = dir + "/report"
        try EvalReport.write([q8], to: report)
        let written = try EvalReport.write([q4, q8], to: report)
        let all = try JSONDecoder().decode([ModelEvalResult].self, from: FileManager.default.contents(atPath: report + "/results.json")!)
        #expect(all.count == 2)
        let md = try String(contentsOfFile: report + "/report.md", encoding: .utf8)
        #expect(md.contains("Q8_0.gguf") && md.contains("Q4_0.gguf") && md.contains("(reference)"))
        let svgs = written.filter { $0.hasSuffix(".svg") }
        #expect(!svgs.isEmpty)
        for svg in svgs {
            let parser = XMLParser(data: FileManager.default.contents(atPath: svg)!)
            #expect(parser.parse(), "\(svg) is not well-formed XML")
        }
        #expect(!FileManager.default.subpaths(atPath: report)!.contains { $0.contains(".tmp") })

        // KV caches: one model with several caches keeps an entry per cache, the table gives each cache's bytes per
        // position, and the front is what no other cache beats on both mean KL and bytes.
        var small = q8, large = q8, beaten = q8
        (small.kvCache, small.kvCacheBytesPerToken, small.klDivergence.mean) = ("kivi2:g32,r128", 100, 0.5)
        (large.kvCache, large.kvCacheBytesPerToken, large.klDivergence.mean) = ("q8", 400, 0.01)
        (beaten.kvCache, beaten.kvCacheBytesPerToken, beaten.klDivergence.mean) = ("streaming:sink4,25%", 450, 0.05)
        #expect(EvalReport.kvFront([beaten, large, small]).map(\.kvCache) == ["kivi2:g32,r128", "q8"])
        let kvWritten = try EvalReport.write([small, large, beaten], to: report)
        #expect(try JSONDecoder().decode([ModelEvalResult].self, from: FileManager.default.contents(atPath: report + "/results.json")!).count == 5)
        let kvTable = try String(contentsOfFile: report + "/report.md", encoding: .utf8)
        #expect(kvTable.contains("Q8_0.gguf --kv q8 | ") && kvTable.contains("| 450 |") && kvTable.contains("KV bytes/position"))
        #expect(kvWritten.contains { $0.hasSuffix("kv_front.svg") })
    }

    /// On real logits (default model vs its Q4_0 requantization, one 128-token chunk) the cached top-k + tail KL is
    /// within 2% of the exact full-vocabulary KL for k = 256 with 64 tail samples.
    @Test func topKKLIsCloseToExactOnRealLogits() throws {
        let input = try TestSupport.defaultModelPath()
        let dir = NSTemporaryDirectory() + "squish-eval-model-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = WorkerPool()
        let options = QuantizeOptions(method: .rtn, target: try .resolve(type: "Q4_0", bits: nil, group: nil, symmetric: false))
        _ = try ModelQuantizer.quantize(input: input, output: dir + "/q.gguf", options: options, pool: pool)
        let file = try GGUFFile(path: input)
        let tokenizer = try Tokenizer(gguf: file)
        let a = try TransformerModel(gguf: file), b = try TransformerModel(path: dir + "/q.gguf")
        let novel = try EvalTestSupport.novel("prideprejudice")
        let tokens = [tokenizer.bosID!] + tokenizer.encode(String(novel.text.prefix(4000))).prefix(127)
        let vocab = a.config.vocabSize
        let la = try ModelSession(model: a, pool: pool, contextLength: 128).forward(tokens, logitsFor: 128)
        let lb = try ModelSession(model: b, pool: pool, contextLength: 128).forward(tokens, logitsFor: 128)
        var exact = 0.0, approx = [Int: Double](), sampled = [Int: Double]()
        var exactPer: [Double] = [], sampledPer: [Double] = []
        la.withUnsafeBufferPointer { p in
            lb.withUnsafeBufferPointer { q in
                for j in 0 ..< 128 {
                    let r = p.baseAddress! + j * vocab, c = q.baseAddress! + j * vocab
                    let e = Divergence.exactKL(reference: r, candidate: c, vocab: vocab)
                    exact += e
                    exactPer.append(e)
                    for k in [64, 256] {
                        approx[k, default: 0] += Divergence.klDivergence(reference: Divergence.topK(r, vocab: vocab, k: k), candidate: c, vocab: vocab)
                    }
                    for m in [16, 64] {
                        let d = Divergence.topK(r, vocab: vocab, k: 256, tailSamples: m, offset: (Double(j) * 0.6180339887498949).truncatingRemainder(dividingBy: 1))
                        let v = Divergence.klDivergence(reference: d, candidate: c, vocab: vocab)
                        sampled[m, default: 0] += v
                        if m == 64 { sampledPer.append(v) }
                    }
                }
            }
        }
        print("KL over 128 positions: exact \(exact / 128), top-64 \(approx[64]! / 128), top-256 \(approx[256]! / 128), top-256 + 16 tail samples \(sampled[16]! / 128), + 64 \(sampled[64]! / 128); median exact \(SampleSummary(exactPer).median) sampled \(SampleSummary(sampledPer).median), p99 \(SampleSummary(exactPer).p99) \(SampleSummary(sampledPer).p99)")
        #expect(approx[256]! <= exact * (1 + 1e-6))
        #expect(approx[64]! <= approx[256]! * (1 + 1e-6))
        // The bucket alone: 5.8% below the exact value on this chunk (the tail outside the top-256 holds several
        // percent of the mass here); with 64 tail samples, within 2%.
        #expect((exact - approx[256]!) / exact < 0.08)
        #expect(abs(sampled[64]! - exact) / exact < 0.02)
        #expect(abs(sampled[16]! - exact) / exact < 0.04)
    }
}
