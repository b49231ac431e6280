import Foundation
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel

/// Recovery after structured pruning: every linear layer of the pruned model's blocks, from the first block that
/// pruning changed on, is re-fitted by least squares to reproduce what the same layer of the unpruned model computes
/// on the same calibration text (layer-wise reconstruction, as in OBC/SparseGPT's setup and LLM-Surgeon's
/// "re-fit to the dense outputs"; no gradients).
///
/// Both models run the calibration sequences block by block. For a layer W (rows R kept of the original's, input
/// site s), with X' the pruned model's input at s (features S', after the blocks re-fitted so far) and X the unpruned
/// model's (features S ⊇ S'), the re-fitted W' minimizes
///     ‖X' W'ᵀ − X W_Rᵀ‖² + λ ‖W' − W_{R,S'}‖²    (ridge towards the layer as pruned, λ = 1% of mean diag(X'ᵀX'))
/// so W' = (W_R Cᵀ + λ W_{R,S'}) (G + λI)⁻¹ with G = X'ᵀX' and C = X'ᵀX (f64 sums of f32 products). Within a block the
/// sites are re-fitted in the order the block computes them (q/k/v, o, gate/up, down), each after the block ran again
/// with the layers before it re-fitted, so every layer sees what the pruned model will feed it. The re-fitted f32
/// weights are encoded back into the layer's stored type by GPTQ with the same G.
enum LeastSquaresRecovery {
    struct Block {
        var layer: TransformerLayer
        var changed: [BlockTensor: StructuredPruning.ChangedTensor]
    }

    /// `blocks[i]`: kept block i as pruning left it (its changed tensors); re-fitted from `plan.firstChanged` on.
    static func run(original: TransformerModel, pruned: TransformerModel, plan: StructurePlan, blocks: [Block],
                    sequences: [[Int]], gptq: GPTQOptions, owner: OwnedBuffers, pool: WorkerPool,
                    progress: ((Int, Int) -> Void)? = nil, log: (String) -> Void) throws -> [Block] {
        let c = original.config, pc = pruned.config
        let first = plan.firstChanged(c)
        var out = blocks
        guard first < plan.keptLayers.count else { return out }
        let originalRun = try CalibrationRun(model: original, sequences: sequences, pool: pool)
        let prunedRun = try CalibrationRun(model: pruned, sequences: sequences, pool: pool)
        let matmul = Matmul(pool: pool)
        var o = 0  // next block of the original model to run
        for (i, k) in plan.keptLayers.enumerated() {
            let blockStart = Date()
            // The original model's stream up to block k (through the blocks pruning dropped).
            while o < k { try originalRun.block(o, original.layers[o], advance: true); o += 1 }
            if i < first {
                try originalRun.block(k, original.layers[k], advance: true)
                try prunedRun.block(i, out[i].layer, advance: true)
                o = k + 1
                progress?(i + 1, plan.keptLayers.count)
                continue
            }
            // The original block's inputs at every site, per sequence: [sequence][site] → [length × width].
            var seen = [[InputSite: [Float]]](repeating: [:], count: sequences.count)
            var s = -1
            try originalRun.block(k, original.layers[k], advance: true, observe: { _, site, x, t in
                if site == .attentionInput { s += 1 }
                seen[s][site] = Array(UnsafeBufferPointer(start: x, count: t * site.width(c, layer: k)))
            })
            o = k + 1
            var weights = out[i].layer
            var changed = out[i].changed
            for site in InputSite.allCases {
                let n = site.width(c, layer: k), np = site.width(pc, layer: i)
                let g = HessianAccumulator(n: np), cross = CrossAccumulator(na: np, nb: n)
                var sequence = -1
                var failure: Error?
                try prunedRun.block(i, weights, advance: false, observe: { _, observed, x, t in
                    if observed == .attentionInput { sequence += 1 }
                    guard observed == site, failure == nil else { return }
                    do {
                        try g.add(x, tokens: t, matmul: matmul)
                        try seen[sequence][site]!.withUnsafeBufferPointer { try cross.add(x, $0.baseAddress!, tokens: t, matmul: matmul) }
                    } catch { failure = error }
                })
                if let failure { throw failure }
                let gram = g.finish()
                let (inverse, lambda) = try LinearAlgebra.dampedInverse(gram, n: np, damp: Double(gptq.dampPercent), pool: pool)
                let cf = cross.c.map { Float($0) }  // [np × n]
                let features = plan.keptFeatures(site, i, c) ?? Array(0 ..< n)
                for kind in site.consumers {
                    let name = ModelTensor.block(i, kind.tensor).ggufName
                    let full = try original.layers[k][kind].dequantized()  // [rows × n]
                    let rows = plan.keptRows(kind, i, c) ?? Array(0 ..< original.layers[k][kind].rows)
                    var wr = [Float](repeating: 0, count: rows.count * n)
                    for (a, r) in rows.enumerated() { for j in 0 ..< n { wr[a * n + j] = full[r * n + j] } }
                    // A = W_R Cᵀ + λ W_{R,S'}, then W' = A (G + λI)⁻¹ (the inverse is symmetric).
                    var a = try LinearAlgebra.multiplyByTransposed(wr, rows: rows.count, cf, wRows: np, inner: n, pool: pool)
                    for r in 0 ..< rows.count { for (b, j) in features.enumerated() { a[r * np + b] += Float(lambda) * wr[r * n + j] } }
                    var refit = try LinearAlgebra.multiplyByTransposed(a, rows: rows.count, inverse, wRows: np, inner: np, pool: pool)
                    let type = weights[kind].type
                    let bytes = try PrunedEncoding.encode(&refit, rows: rows.count, columns: np, type: type, hessian: gram, importance: nil,
                                                          gptq: gptq, pool: pool, name: name)
                    weights[kind] = try owner.matrix(name, type: type, bytes: bytes, rows: rows.count, columns: np)
                    changed[kind.tensor] = StructuredPruning.ChangedTensor(type: type, shape: pc.shape(of: .block(i, kind.tensor)), bytes: bytes)
                }
            }
            try prunedRun.block(i, weights, advance: true)
            out[i] = Block(layer: weights, changed: changed)
            log(String(format: "recovery: block %d/%d (input block %d) re-fitted, %.1f s", i + 1, plan.keptLayers.count, k,
                       Date().timeIntervalSince(blockStart)))
            progress?(i + 1, plan.keptLayers.count)
        }
        return out
    }
}
