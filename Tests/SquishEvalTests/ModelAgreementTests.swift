import Foundation
import Testing
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel
import SquishQuantize
import SquishTokenizer
import SquishEval

/// The closing check of `squish quantize`: the default model against itself and a Q8_0 / Q4_0 requantization on
/// 600 bytes of Pride and Prejudice in windows of 48 tokens.
@Suite("Model agreement (quantize's closing KL)", .serialized)
struct ModelAgreementTests {
    @Test func klAndTop1MatchAHandComputation() throws {
        let input = try TestSupport.defaultModelPath()
        let dir = NSTemporaryDirectory() + "squish-agreement-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = WorkerPool()
        let file = try GGUFFile(path: input)
        let reference = try TransformerModel(gguf: file)
        let tokenizer = try Tokenizer(gguf: file)
        let novel = try EvalTestSupport.novel("prideprejudice")
        let tokens = tokenizer.encode(String(decoding: Array(novel.text.utf8)[0 ..< 600], as: UTF8.self))
        let bos = tokenizer.addBOS ? tokenizer.bosID : nil
        let context = 48

        let same = try ModelAgreement.measure(reference: reference, candidate: reference, tokens: tokens, bos: bos,
                                              context: context, pool: pool)
        #expect(same.klDivergence == 0 && same.klMax == 0 && same.top1Agreement == 1)
        #expect(same.positions == tokens.count + (bos == nil ? 0 : (tokens.count + context - 2) / (context - 1)))

        var kls: [Double] = []
        for type in ["Q8_0", "Q4_0"] {
            let path = dir + "/\(type).gguf"
            let options = QuantizeOptions(method: .rtn, target: try .resolve(type: type, bits: nil, group: nil, symmetric: false))
            _ = try ModelQuantizer.quantize(input: input, output: path, options: options, pool: pool)
            let candidate = try TransformerModel(gguf: try GGUFFile(path: path))
            let r = try ModelAgreement.measure(reference: reference, candidate: candidate, tokens: tokens, bos: bos,
                                               context: context, pool: pool)
            // By hand: the same windows through fresh sessions, softmax and KL in Double, argmax by a plain scan.
            let vocab = reference.config.vocabSize
            let step = context - (bos == nil ? 0 : 1)
            var kl = 0.0, agree = 0, count = 0
            for start in stride(from: 0, to: tokens.count, by: step) {
                let window = (bos.map { [$0] } ?? []) + tokens[start ..< min(start + step, tokens.count)]
                let p = try ModelSession(model: reference, pool: pool, contextLength: context).forward(window, logitsFor: window.count)
                let q = try ModelSession(model: candidate, pool: pool, contextLength: context).forward(window, logitsFor: window.count)
                for t in 0 ..< window.count {
                    let a = p[t * vocab ..< (t + 1) * vocab].map(Double.init), b = q[t * vocab ..< (t + 1) * vocab].map(Double.init)
                    let (ma, mb) = (a.max()!, b.max()!)
                    let za = a.reduce(0) { $0 + exp($1 - ma) }, zb = b.reduce(0) { $0 + exp($1 - mb) }
                    for i in 0 ..< vocab {
                        let la = a[i] - ma - log(za), lb = b[i] - mb - log(zb)
                        kl += exp(la) * (la - lb)
                    }
                    if a.firstIndex(of: ma)! == b.firstIndex(of: mb)! { agree += 1 }
                    count += 1
                }
            }
            #expect(r.positions == count)
            #expect(abs(r.klDivergence - kl / Double(count)) <= 1e-6 + 1e-4 * r.klDivergence)
            #expect(r.top1Agreement == Double(agree) / Double(count))
            #expect(r.klDivergence > 0 && r.top1Agreement > 0.5)
            kls.append(r.klDivergence)
        }
        // Fewer bits, larger divergence.
        #expect(kls[0] < kls[1])
    }
}
