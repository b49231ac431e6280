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
        let model = try TransformerModel(gguf: file)
        let c = model.config
        let seqs = try GPTQModelQuantizer.sequences(file, options.calibration)
        let length = options.calibration.sequenceLength
        guard length <= c.contextLength else {
            throw QuantizeError.calibration(path: options.calibration.textPath ?? "", reason: "sequences of \(length) exceed the context \(c.contextLength)")
        }
        log("awq: \(seqs.count) calibration sequences of \(length) tokens, \(c.layers) blocks, \(options.awq.gridSize) values of α")
        var actions: [String: TensorAction] = [:]
        for p in plan { actions[p.info.name] = p.action }

        let run = try CalibrationRun(model: model, sequences: seqs, pool: pool)
        var out: [String: [UInt8]] = [:]
        var norms: [String: [Float]] = [:]

        for (li, layer) in model.layers.enumerated() {
            let blockStart = Date()
            func grid(_ kind: LinearKind) -> BlockGrid? {
                if case .quantize(let g, calibrated: true)? = actions[ModelTensor.block(li, kind.tensor).ggufName] { return g }
                return nil
            }
            // 1. Input statistics with the original weights: each input's mean |x| and a sample of its rows, and
            // block-diagonal input Gram matrices for clipping where every quantized consumer of a site has one group size.
            let keep = options.awq.searchTokens
            var samples: [InputSite: ActivationSample] = [:]
            for site in [InputSite.attentionInput, .ffnInput, .ffnHidden] { samples[site] = ActivationSample(n: site.width(c, layer: li), keep: keep) }
            var grams: [InputSite: GroupGram] = [:]
            if options.awq.clip {
                for site in InputSite.allCases {
                    let grids = site.consumers.compactMap(grid)
                    let sizes = Set(grids.map(\.groupSize))
                    let n = site.width(c, layer: li)
                    // K-quant blocks fit 8-16 sub-blocks jointly: no clipping search for them (they are rounded by their fit).
                    if !grids.contains(where: { $0.isKQuant }), sizes.count == 1, let g = sizes.first, n % g == 0 { grams[site] = GroupGram(n: n, g: g) }
                }
            }
            try run.block(li, layer, advance: false) { _, site, v, n in
                samples[site]?.add(v, tokens: n)
                grams[site]?.add(v, tokens: n, pool: pool)
            }
            // 2. f32 weights of the linear layers that will be quantized.
            func f32(_ m: WeightMatrix) throws -> [Float] {
                var w = [Float](repeating: 0, count: m.rows * m.columns)
                try w.withUnsafeMutableBufferPointer { wp in
                    for r in 0 ..< m.rows { try m.dequantizeRow(r, into: wp.baseAddress! + r * m.columns) }
                }
                return w
            }
            var w: [LinearKind: [Float]] = [:]
            for kind in LinearKind.allCases where grid(kind) != nil { w[kind] = try f32(layer[kind]) }
            // 3. Scale search per input site; only where every consumer is quantized with one grid.
            var weights = layer
            var notes: [String] = []
            func search(_ site: InputSite) throws -> [Float]? {
                let consumers = site.consumers, n = site.width(c, layer: li)
                let grids = consumers.map(grid)
                guard let g = grids.first ?? nil, grids.allSatisfy({ $0 == g }), let sample = samples[site], sample.sampleTokens > 0 else { return nil }
                let result = try sample.rows.withUnsafeBufferPointer { xs in
                    try AWQScaleSearch.search(weights: consumers.map { (rows: w[$0]!.count / n, values: w[$0]!) }, n: n,
                                              x: xs.baseAddress!, tokens: sample.sampleTokens, meanAbs: sample.meanAbs,
                                              grid: g, options: options.awq, pool: pool)
                }
                notes.append(String(format: "%@ α=%.2f err %.3g→%.3g", consumers[0].rawValue, result.alpha, result.plainError, result.error))
                return result.scales
            }
            func scaleColumns(_ kind: LinearKind, _ s: [Float]) {
                guard var v = w[kind] else { return }
                let n = s.count, rows = v.count / n
                for r in 0 ..< rows { for j in 0 ..< n { v[r * n + j] *= s[j] } }
                w[kind] = v
            }
            var siteScales: [InputSite: [Float]] = [:]
            // Scales of a normed input fold into that norm's weights.
            for site in [InputSite.attentionInput, .ffnInput] {
                guard let (normTensor, normWeights) = layer.normBefore(site), let s = try search(site) else { continue }
                siteScales[site] = s
                for kind in site.consumers { scaleColumns(kind, s) }
                let folded = zip(normWeights, s).map { $0 / $1 }
                weights.setNorm(normTensor, folded)
                norms[ModelTensor.block(li, normTensor).ggufName] = folded
            }
            // down's scales fold into the rows of up (the gated hidden state is linear in up's output).
            if w[.ffnUp] != nil, let s = try search(.ffnHidden), var up = w[.ffnUp] {
                siteScales[.ffnHidden] = s
                scaleColumns(.ffnDown, s)
                for r in 0 ..< c.hiddenDim(layer: li) { for j in 0 ..< c.dim { up[r * c.dim + j] /= s[r] } }
                w[.ffnUp] = up
            }
            // 4. Round every quantized linear layer (with clipping where there are Gram matrices); the block runs on the result.
            var scaledGrams: [InputSite: [Float]] = [:]
            for (site, gram) in grams { scaledGrams[site] = gram.scaled(siteScales[site]) }
            var clipStats = AWQClip.Stats()
            var buffers: [UnsafeMutableRawBufferPointer] = []
            defer { for b in buffers { b.deallocate() } }
            for kind in LinearKind.allCases {
                guard let g = grid(kind), let values = w[kind] else { continue }
                let m = layer[kind], name = ModelTensor.block(li, kind.tensor).ggufName
                let rowBytes = g.type.rowBytes(elements: m.columns)!
                var bytes = [UInt8](repeating: 0, count: rowBytes * m.rows)
                values.withUnsafeBufferPointer { vp in
                    bytes.withUnsafeMutableBytes { bp in
                        let (src, dst) = (vp.baseAddress!, bp.baseAddress!)
                        if let gram = scaledGrams[kind.site] {
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
                out[name] = bytes
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 64)
                bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
                buffers.append(buffer)
                weights[kind] = try WeightMatrix(name: name, type: g.type, data: UnsafeRawBufferPointer(buffer), rows: m.rows, columns: m.columns)
            }
            try run.block(li, weights, advance: true)
            if clipStats.plainError > 0 {
                notes.append(String(format: "clip err %.3g→%.3g", clipStats.plainError, clipStats.clippedError))
            }
            log(String(format: "awq: block %d/%d: %@; %.1f s (%.0f s so far)", li + 1, c.layers, notes.joined(separator: ", "),
                       Date().timeIntervalSince(blockStart), Date().timeIntervalSince(start)))
        }
        return Result(tensors: out, norms: norms, tokens: seqs.count * length)
    }
}
