import Foundation
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel

/// AWQ over a whole model, one transformer block at a time, like `GPTQModelQuantizer`: the calibration residual
/// stream enters block i; a pass with the original weights records each input's mean |x| and a sample of its rows;
/// the scales are searched (see `AWQScaleSearch`) and folded in — q/k/v's into attn_norm, gate/up's into
/// ffn_norm, down's into the rows of up — then every linear layer is rounded with each block's range clipped by
/// output error (`AWQClip`, from block-diagonal Gram matrices of the inputs gathered in the same pass; plain
/// rounding with `AWQOptions.clip` off); a pass with the quantized
/// block produces block i + 1's input. The attention output projection gets no scales (clipping only): with
/// grouped-query attention its input channels do not map one-to-one onto rows of v, so there is nothing to fold
/// scales into.
/// Sites where a consumer is not being quantized (e.g. copied unchanged) keep scale 1.
enum AWQModelQuantizer {
    struct Result {
        var tensors: [String: [UInt8]]
        /// Norm weights with the scales folded in, stored as F32.
        var norms: [String: [Float]]
        var tokens: Int
    }

    static func run(file: GGUFFile, plan: [TensorPlan], options: QuantizeOptions, pool: WorkerPool,
                    log: (String) -> Void) throws -> Result {
        let start = Date()
        let model = try LlamaModel(gguf: file)
        let c = model.config
        let seqs = try GPTQModelQuantizer.sequences(file, options.calibration)
        let length = options.calibration.sequenceLength
        guard length <= c.contextLength else {
            throw QuantizeError.calibration(path: options.calibration.textPath ?? "", reason: "sequences of \(length) exceed the context \(c.contextLength)")
        }
        log("awq: \(seqs.count) calibration sequences of \(length) tokens, \(c.layers) blocks, \(options.awq.gridSize) values of α")
        var actions: [String: TensorAction] = [:]
        for p in plan { actions[p.info.name] = p.action }

        let x = UnsafeMutablePointer<Float>.allocate(capacity: seqs.count * length * c.dim)
        defer { x.deallocate() }
        for (s, ids) in seqs.enumerated() {
            for (t, id) in ids.enumerated() { try model.embedding.dequantizeRow(id, into: x + (s * length + t) * c.dim) }
        }
        let runner = BlockRunner(model: model, pool: pool, length: length)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: length * c.dim)
        defer { scratch.deallocate() }
        var out: [String: [UInt8]] = [:]
        var norms: [String: [Float]] = [:]

        for (li, layer) in model.layers.enumerated() {
            let blockStart = Date()
            let p = "blk.\(li)."
            // 1. Input statistics with the original weights.
            let keep = options.awq.searchTokens
            let samples: [InputSite: ActivationSample] = [
                .attentionInput: ActivationSample(n: c.dim, keep: keep), .ffnInput: ActivationSample(n: c.dim, keep: keep),
                .ffnHidden: ActivationSample(n: c.hiddenDim, keep: keep),
            ]
            func grid(_ suffix: String) -> BlockGrid? {
                if case .quantize(let g, calibrated: true)? = actions[p + suffix] { return g }
                return nil
            }
            // Block-diagonal input Gram matrices for clipping, where every quantized consumer of a site has one group size.
            let consumers: [InputSite: [String]] = [
                .attentionInput: ["attn_q.weight", "attn_k.weight", "attn_v.weight"], .attentionOutput: ["attn_output.weight"],
                .ffnInput: ["ffn_gate.weight", "ffn_up.weight"], .ffnHidden: ["ffn_down.weight"],
            ]
            var grams: [InputSite: GroupGram] = [:]
            if options.awq.clip {
                for (site, names) in consumers {
                    let sizes = Set(names.compactMap(grid).map(\.groupSize))
                    let n = site == .ffnHidden ? c.hiddenDim : site == .attentionOutput ? c.qDim : c.dim
                    // K-quant blocks fit 8-16 sub-blocks jointly: no clipping search for them (they are rounded by their fit).
                    let kQuant = names.compactMap(grid).contains { $0.isKQuant }
                    if !kQuant, sizes.count == 1, let g = sizes.first, n % g == 0 { grams[site] = GroupGram(n: n, g: g) }
                }
            }
            for s in 0 ..< seqs.count {
                scratch.update(from: x + s * length * c.dim, count: length * c.dim)
                try runner.forward(BlockWeights(layer), scratch, tokens: length, record: nil) { site, v, n in
                    samples[site]?.add(v, tokens: n)
                    grams[site]?.add(v, tokens: n, pool: pool)
                }
            }
            // 2. f32 weights of the linear layers that will be quantized.
            func f32(_ m: WeightMatrix) throws -> [Float] {
                var w = [Float](repeating: 0, count: m.rows * m.columns)
                try w.withUnsafeMutableBufferPointer { wp in
                    for r in 0 ..< m.rows { try m.dequantizeRow(r, into: wp.baseAddress! + r * m.columns) }
                }
                return w
            }
            var w: [String: [Float]] = [:]
            let all: [(String, WeightMatrix)] = [("attn_q.weight", layer.wq), ("attn_k.weight", layer.wk), ("attn_v.weight", layer.wv),
                                                 ("attn_output.weight", layer.wo), ("ffn_gate.weight", layer.gate),
                                                 ("ffn_up.weight", layer.up), ("ffn_down.weight", layer.down)]
            for (suffix, m) in all where grid(suffix) != nil { w[suffix] = try f32(m) }
            // 3. Scale search per input site; only where every consumer is quantized with one grid.
            var attnNorm = layer.attentionNorm, ffnNorm = layer.ffnNorm
            var notes: [String] = []
            func site(_ site: InputSite, _ consumers: [String], n: Int) throws -> [Float]? {
                let grids = consumers.map(grid)
                guard let g = grids.first ?? nil, grids.allSatisfy({ $0 == g }), let sample = samples[site], sample.sampleTokens > 0 else { return nil }
                let result = try sample.rows.withUnsafeBufferPointer { xs in
                    try AWQScaleSearch.search(weights: consumers.map { (rows: w[$0]!.count / n, values: w[$0]!) }, n: n,
                                              x: xs.baseAddress!, tokens: sample.sampleTokens, meanAbs: sample.meanAbs,
                                              grid: g, options: options.awq, pool: pool)
                }
                notes.append(String(format: "%@ α=%.2f err %.3g→%.3g", consumers[0].split(separator: ".")[0].description,
                                    result.alpha, result.plainError, result.error))
                return result.scales
            }
            func scaleColumns(_ suffix: String, _ s: [Float]) {
                guard var v = w[suffix] else { return }
                let n = s.count, rows = v.count / n
                for r in 0 ..< rows { for j in 0 ..< n { v[r * n + j] *= s[j] } }
                w[suffix] = v
            }
            let sAttn = try site(.attentionInput, ["attn_q.weight", "attn_k.weight", "attn_v.weight"], n: c.dim)
            let sFFN = try site(.ffnInput, ["ffn_gate.weight", "ffn_up.weight"], n: c.dim)
            let sDown = w["ffn_up.weight"] != nil ? try site(.ffnHidden, ["ffn_down.weight"], n: c.hiddenDim) : nil
            if let s = sAttn {
                for suffix in ["attn_q.weight", "attn_k.weight", "attn_v.weight"] { scaleColumns(suffix, s) }
                for j in 0 ..< c.dim { attnNorm[j] /= s[j] }
                norms[p + "attn_norm.weight"] = attnNorm
            }
            if let s = sFFN {
                for suffix in ["ffn_gate.weight", "ffn_up.weight"] { scaleColumns(suffix, s) }
                for j in 0 ..< c.dim { ffnNorm[j] /= s[j] }
                norms[p + "ffn_norm.weight"] = ffnNorm
            }
            if let s = sDown, var up = w["ffn_up.weight"] {
                scaleColumns("ffn_down.weight", s)
                for r in 0 ..< c.hiddenDim { for j in 0 ..< c.dim { up[r * c.dim + j] /= s[r] } }
                w["ffn_up.weight"] = up
            }
            // 4. Round every quantized linear layer (with clipping where there are Gram matrices); the block runs on the result.
            var scaledGrams: [InputSite: [Float]] = [:]
            let siteScales: [InputSite: [Float]?] = [.attentionInput: sAttn, .attentionOutput: nil, .ffnInput: sFFN, .ffnHidden: sDown]
            for (site, gram) in grams { scaledGrams[site] = gram.scaled(siteScales[site] ?? nil) }
            var clipStats = AWQClip.Stats()
            var weights = BlockWeights(layer)
            weights.attentionNorm = attnNorm
            weights.ffnNorm = ffnNorm
            var buffers: [UnsafeMutableRawBufferPointer] = []
            defer { for b in buffers { b.deallocate() } }
            func quantized(_ m: WeightMatrix, _ suffix: String) throws -> WeightMatrix {
                guard let g = grid(suffix), let values = w[suffix] else { return m }
                let rowBytes = g.type.rowBytes(elements: m.columns)!
                var bytes = [UInt8](repeating: 0, count: rowBytes * m.rows)
                let site = consumers.first { $0.value.contains(suffix) }?.key
                values.withUnsafeBufferPointer { vp in
                    bytes.withUnsafeMutableBytes { bp in
                        let (src, dst) = (vp.baseAddress!, bp.baseAddress!)
                        if let site, let gram = scaledGrams[site] {
                            let stats = AWQClip.quantize(src, rows: m.rows, n: m.columns, grid: g, gram: gram, steps: options.awq.clipSteps,
                                                         minRatio: options.awq.clipMinRatio, into: dst, pool: pool)
                            clipStats.plainError += stats.plainError
                            clipStats.clippedError += stats.clippedError
                        } else {
                            pool.parallelFor(m.rows, granularity: 8) { range in
                                for r in range { RTNQuantizer.quantize(src + r * m.columns, count: m.columns, grid: g, into: dst + r * rowBytes) }
                            }
                        }
                    }
                }
                out[p + suffix] = bytes
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 64)
                bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
                buffers.append(buffer)
                return try WeightMatrix(name: p + suffix, type: g.type, data: UnsafeRawBufferPointer(buffer), rows: m.rows, columns: m.columns)
            }
            weights.wq = try quantized(layer.wq, "attn_q.weight")
            weights.wk = try quantized(layer.wk, "attn_k.weight")
            weights.wv = try quantized(layer.wv, "attn_v.weight")
            weights.wo = try quantized(layer.wo, "attn_output.weight")
            weights.gate = try quantized(layer.gate, "ffn_gate.weight")
            weights.up = try quantized(layer.up, "ffn_up.weight")
            weights.down = try quantized(layer.down, "ffn_down.weight")
            for s in 0 ..< seqs.count {
                try runner.forward(weights, x + s * length * c.dim, tokens: length, record: nil)
            }
            if clipStats.plainError > 0 {
                notes.append(String(format: "clip err %.3g→%.3g", clipStats.plainError, clipStats.clippedError))
            }
            log(String(format: "awq: block %d/%d: %@; %.1f s (%.0f s so far)", li + 1, c.layers, notes.joined(separator: ", "),
                       Date().timeIntervalSince(blockStart), Date().timeIntervalSince(start)))
        }
        return Result(tensors: out, norms: norms, tokens: seqs.count * length)
    }
}
