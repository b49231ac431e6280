import Foundation
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel
import SquishTokenizer

/// GPTQ over a whole model, one transformer block at a time (GPTQ §5 setup): the calibration sequences' residual
/// stream enters block i; a pass with the block's original weights records every linear layer's input statistics
/// H = XᵀX; the block's linear layers are quantized with GPTQ; a second pass with the quantized weights produces
/// the input of block i + 1, so later blocks are calibrated on what the quantized model actually computes.
/// Only one block's activations are held at a time (besides the residual stream); the weights stay memory-mapped.
/// With `--method rtn --importance` the same pipeline feeds importance-weighted RTN (`RTNQuantizer`) instead of GPTQ.
/// After the last block, the output matrix and the token embedding (where the plan quantizes them) get the same
/// treatment with the statistics of the final normed hidden state.
public enum GPTQModelQuantizer {
    struct Result {
        var tensors: [String: [UInt8]]
        var tokens: Int
        /// Tensors stored rotated on their input (`RotatedInputs`).
        var rotated: [String] = []
    }

    /// Calibration token sequences: the text's tokens cut into sequences of `length` (BOS first when the
    /// tokenizer adds one), as many whole sequences as fit in `options.tokens`.
    public static func sequences(_ file: GGUFFile, _ options: CalibrationOptions) throws -> [[Int]] {
        guard let path = options.textPath else { throw QuantizeError.calibration(path: "<none>", reason: "no calibration text given") }
        guard var data = FileManager.default.contents(atPath: path) else {
            throw QuantizeError.calibration(path: path, reason: "cannot read the file")
        }
        if let limit = options.textBytes, limit < data.count {
            var cut = limit
            while cut > 0 && data[data.startIndex + cut] & 0xC0 == 0x80 { cut -= 1 }  // back to a character boundary
            data = data.prefix(cut)
        }
        guard let text = String(data: data, encoding: .utf8) else { throw QuantizeError.calibration(path: path, reason: "not valid UTF-8") }
        let tokenizer = try Tokenizer(gguf: file)
        let ids = tokenizer.encode(text)
        let length = options.sequenceLength
        let bos = tokenizer.addBOS ? tokenizer.bosID : nil
        let content = length - (bos == nil ? 0 : 1)
        let count = max(1, options.tokens / length)
        guard length >= 16, count * content <= ids.count else {
            throw QuantizeError.calibration(path: path, reason: "\(ids.count) tokens of text, but \(count) sequences of \(length) "
                                                + "(\(count * content) text tokens) were asked for; give a longer text or fewer --calib-tokens")
        }
        return (0 ..< count).map { s in (bos.map { [$0] } ?? []) + Array(ids[s * content ..< (s + 1) * content]) }
    }

    /// One matrix `w` [rows × columns] with its input statistics `h` [columns × columns]: GPTQ, or importance-weighted
    /// RTN for `--method rtn --importance`.
    static func quantizeMatrix(_ w: inout [Float], rows: Int, columns n: Int, h: [Double], grid: BlockGrid, name: String,
                               options: QuantizeOptions, pool: WorkerPool) throws -> [UInt8] {
        if options.method == .rtn {
            // Importance-weighted RTN: the weights are diag(H) = Σ x² per input channel, plus 1% of their mean
            // (as GPTQ's damping) so that channels the calibration never excited still count a little.
            var mean = 0.0
            for j in 0 ..< n { mean += h[j * n + j] }
            mean /= Double(n)
            let importance = (0 ..< n).map { Float(h[$0 * n + $0] + 0.01 * mean) }
            return w.withUnsafeBufferPointer { wp in
                importance.withUnsafeBufferPointer {
                    RTNQuantizer.quantize(weights: wp.baseAddress!, rows: rows, columns: n, grid: grid, importance: $0.baseAddress!, pool: pool)
                }
            }
        }
        return try w.withUnsafeMutableBufferPointer {
            try GPTQQuantizer.quantize(weights: $0.baseAddress!, rows: rows, columns: n, hessian: h, grid: grid,
                                       options: options.gptq, pool: pool, name: name)
        }
    }

    static func run(file: GGUFFile, plan: [TensorPlan], options: QuantizeOptions, pool: WorkerPool,
                    log: (String) -> Void) throws -> Result {
        let start = Date()
        let model = try TransformerModel(gguf: file)
        let c = model.config
        let seqs = try sequences(file, options.calibration)
        let length = options.calibration.sequenceLength
        guard length <= c.contextLength else {
            throw QuantizeError.calibration(path: options.calibration.textPath ?? "", reason: "sequences of \(length) exceed the context \(c.contextLength)")
        }
        let label = options.method == .rtn ? "rtn (importance)" : "gptq"
        log("\(label): \(seqs.count) calibration sequences of \(length) tokens, \(c.layers) blocks")
        var actions: [String: TensorAction] = [:]
        for p in plan { actions[p.info.name] = p.action }

        let run = try CalibrationRun(model: model, sequences: seqs, pool: pool)
        var out: [String: [UInt8]] = [:]
        var rotated: [String] = []

        for (li, layer) in model.layers.enumerated() {
            let blockStart = Date()
            let stats = BlockStatistics(c, layer: li, pool: pool)
            try run.block(li, layer, advance: false, observe: stats.observer)
            let statsTime = Date().timeIntervalSince(blockStart)
            var weights = layer
            var buffers: [UnsafeMutableRawBufferPointer] = []
            defer { for b in buffers { b.deallocate() } }
            for site in InputSite.allCases {
                let kinds = site.consumers.filter { k in
                    if case .quantize(_, calibrated: true)? = actions[ModelTensor.block(li, k.tensor).ggufName] { return true }
                    return false
                }
                guard !kinds.isEmpty else { continue }
                let rotation = options.rotateInputs ? HadamardRotation.weightInput(columns: site.width(c, layer: li)) : nil
                let h = rotation.map { $0.conjugate(symmetric: stats.hessian(site)) } ?? stats.hessian(site)
                for kind in kinds {
                    let name = ModelTensor.block(li, kind.tensor).ggufName
                    guard case .quantize(let grid, calibrated: true)? = actions[name] else { continue }
                    let m = layer[kind]
                    var w = [Float](repeating: 0, count: m.rows * m.columns)  // [rows × columns]
                    try w.withUnsafeMutableBufferPointer { wp in
                        for r in 0 ..< m.rows { try m.dequantizeRow(r, into: wp.baseAddress! + r * m.columns) }
                    }
                    rotation?.applyToRows(&w)
                    let bytes = try quantizeMatrix(&w, rows: m.rows, columns: m.columns, h: h, grid: grid, name: name,
                                                   options: options, pool: pool)
                    out[name] = bytes
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 64)
                    bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
                    buffers.append(buffer)
                    let q = try WeightMatrix(name: name, type: grid.type, data: UnsafeRawBufferPointer(buffer), rows: m.rows, columns: m.columns)
                    weights[kind] = rotation == nil ? q : q.rotatingInput()
                    if rotation != nil { rotated.append(name) }
                }
            }
            let quantizeTime = Date().timeIntervalSince(blockStart) - statsTime
            // The next block's input: this block with its quantized weights.
            try run.block(li, weights, advance: true)
            log(String(format: "%@: block %d/%d: statistics %.1f s, quantization %.1f s, total %.1f s (%.0f s so far)",
                       label, li + 1, c.layers, statsTime, quantizeTime, Date().timeIntervalSince(blockStart), Date().timeIntervalSince(start)))
        }

        // The output matrix and the token embedding (tied or not), where the plan quantizes them: the same method with
        // the statistics of the output's input, the final normed hidden state of the quantized model.
        let edges = [ModelTensor.output, .tokenEmbedding].compactMap { t -> (GGUFTensorInfo, BlockGrid)? in
            guard case .quantize(let grid, _)? = actions[t.ggufName], let info = file.tensor(named: t.ggufName) else { return nil }
            return (info, grid)
        }
        if !edges.isEmpty {
            let h = try HessianAccumulator.finalNorm(run)
            for (info, grid) in edges {
                let edgeStart = Date()
                guard info.shape.count == 2, info.shape[0] == c.dim else {
                    throw QuantizeError.badModel(path: file.path, reason: "tensor '\(info.name)' has rows of \(info.shape[0]), not \(c.dim)")
                }
                var w = try Codecs.dequantize(info.type, file.data(for: info), count: info.elementCount)  // [rows × dim]
                out[info.name] = try quantizeMatrix(&w, rows: info.rowCount, columns: c.dim, h: h, grid: grid, name: info.name,
                                                    options: options, pool: pool)
                log(String(format: "%@: %@: %.1f s (%.0f s so far)", label, info.name, Date().timeIntervalSince(edgeStart),
                           Date().timeIntervalSince(start)))
            }
        }
        return Result(tensors: out, tokens: seqs.count * length, rotated: rotated)
    }
}
