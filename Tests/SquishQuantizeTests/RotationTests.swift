import Foundation
import Testing
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel
import SquishQuantize

/// GPTQ in the basis of a Hadamard rotation of each matrix's input (`quantize --rotate`), on the default model.
@Suite("Rotated GPTQ", .serialized)
struct RotationTests {
    @Test func rotatedGPTQWritesAModelThatRunsRotated() throws {
        let input = try TestSupport.defaultModelPath()
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = WorkerPool(threads: 2)
        var options = try TestSupport.tinyCalibration(.gptq, type: "SQ3_G64")
        let plainOut = dir + "/plain.gguf", rotatedOut = dir + "/rotated.gguf"
        _ = try ModelQuantizer.quantize(input: input, output: plainOut, options: options, pool: pool)
        options.rotateInputs = true
        _ = try ModelQuantizer.quantize(input: input, output: rotatedOut, options: options, pool: pool)

        // Every block matrix is listed rotated, the embedding is not; the model binds them rotated.
        let file = try GGUFFile(path: rotatedOut), original = try GGUFFile(path: input)
        let blockMatrices = Set(file.tensors.filter { $0.name.hasPrefix("blk.") && $0.shape.count == 2 }.map(\.name))
        #expect(RotatedInputs.names(in: file) == blockMatrices && blockMatrices.count == 30 * 7)
        let model = try TransformerModel(gguf: file)
        #expect(model.layers.allSatisfy { l in LinearKind.allCases.allSatisfy { l[$0].inputRotation != nil } })
        #expect(model.embedding.inputRotation == nil)

        // Read back, a rotated matrix is the original's weights with 3-bit error, no further from them than the
        // unrotated GPTQ's (measured relative errors, rotated / plain: 0.054 / 0.090, 0.030 / 0.147, 0.051 / 0.064).
        let plainModel = try TransformerModel(gguf: try GGUFFile(path: plainOut)), source = try TransformerModel(gguf: original)
        func relativeError(_ m: WeightMatrix, _ ref: WeightMatrix) throws -> Double {
            var a = [Float](repeating: 0, count: m.columns), b = a
            var num = 0.0, den = 0.0
            for r in 0 ..< m.rows {
                try a.withUnsafeMutableBufferPointer { try m.dequantizeRow(r, into: $0.baseAddress!) }
                try b.withUnsafeMutableBufferPointer { try ref.dequantizeRow(r, into: $0.baseAddress!) }
                for j in 0 ..< m.columns { num += Double(a[j] - b[j]) * Double(a[j] - b[j]); den += Double(b[j] * b[j]) }
            }
            return num / den
        }
        for (l, kind) in [(0, LinearKind.attnQ), (11, .ffnDown), (29, .ffnUp)] {
            let rotatedError = try relativeError(model.layers[l][kind], source.layers[l][kind])
            let plainError = try relativeError(plainModel.layers[l][kind], source.layers[l][kind])
            print("block \(l) \(kind): relative error rotated \(rotatedError), plain \(plainError)")
            #expect(rotatedError < 0.1 && rotatedError < 1.5 * plainError, "block \(l) \(kind)")
        }
        let rotatedPerplexity = try TestSupport.persuasionPerplexity(file, pool: pool)
        let plainPerplexity = try TestSupport.persuasionPerplexity(try GGUFFile(path: plainOut), pool: pool)
        print("persuasion perplexity: rotated \(rotatedPerplexity), plain \(plainPerplexity)")
        // Measured 67.5 rotated, 70.6 plain (128 calibration tokens; the held-out figures are in the README).
        #expect(rotatedPerplexity.isFinite && rotatedPerplexity < plainPerplexity * 1.05)

        // Exported as a checkpoint, the rotated matrices are un-rotated: the same logits (f32 activations both ways;
        // the export rounds nothing, so only the order of sums differs).
        try HFExport.write(gguf: file, to: dir + "/hf", dtype: .F32)
        let tokens = [1, 504, 3458, 282, 253, 1345, 30, 216]
        let logits = try [model, try TransformerModel(hfDirectory: dir + "/hf")].map { m in
            try ModelSession(model: m, pool: pool, contextLength: 16, exactActivations: true).forward(tokens, logitsFor: tokens.count)
        }
        let worst = zip(logits[0], logits[1]).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-3, "max |Δlogit| \(worst)")

        // Pipelines that read raw weights refuse a rotated model; rotation needs a calibrated method.
        #expect(throws: ModelError.self) { try ModelQuantizer.quantize(input: rotatedOut, output: dir + "/again.gguf", options: options, pool: pool) }
        var rtn = QuantizeOptions(method: .rtn, target: options.target)
        rtn.rotateInputs = true
        #expect(throws: QuantizeError.self) { try ModelQuantizer.quantize(input: input, output: dir + "/rtn.gguf", options: rtn, pool: pool) }
    }
}
