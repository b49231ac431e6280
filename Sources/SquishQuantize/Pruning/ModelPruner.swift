import Foundation
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel

public enum PruningMethod: String, Sendable, Codable, CaseIterable {
    /// Drop whole blocks of least Block Influence (ShortGPT).
    case shortgpt
    /// Narrower FFNs and fewer KV groups by importance (structured, LLM-Pruner-style units, no gradients).
    case width
    /// Unstructured or N:M sparsity into the sparse block types.
    case magnitude, wanda, sparsegpt

    public var isStructured: Bool { self == .shortgpt || self == .width }
    public var sparsity: SparsityMethod? { SparsityMethod(rawValue: rawValue) }
}

public struct PruneOptions: Sendable {
    public var method: PruningMethod
    /// Blocks to drop (ShortGPT; also allowed with `width`).
    public var dropLayers = 0
    /// Share of each block's FFN channels and KV groups kept (`width`; 1: all).
    public var ffnKeep = 1.0
    public var headsKeep = 1.0
    /// Kept FFN widths are multiples of this (and of ffn_down's block size).
    public var channelMultiple = 64
    /// Structured pruning: this plan instead of the one chosen by Block Influence and importance (`dropLayers`,
    /// `ffnKeep`, `headsKeep` are then ignored).
    public var plan: StructurePlan?
    /// Structured pruning: re-fit the remaining layers by least squares to the unpruned model's outputs (off by
    /// default: on the default model it has so far made the pruned model worse, see the closing notes).
    public var recover = false
    /// Sparsity: the pattern and the bits of the kept values' codes.
    public var pattern = SparsityPattern.perGroup(kept: 32)
    public var bits = 8
    public var calibration = CalibrationOptions()
    public var gptq = GPTQOptions()

    public init(method: PruningMethod) { self.method = method }
}

/// The closing summary of a pruning run (`--json` prints it; the caller fills in the evaluation).
public struct PruneReport: Codable, Sendable {
    public var input: String
    public var output: String
    public var method: String
    /// The output's file size and the input's.
    public var bytes: Int
    public var inputBytes: Int
    /// Parameters of the block matrices before and after (structured pruning removes them; sparsity keeps the count
    /// and zeroes `sparsity` of them).
    public var blockParameters: Int
    public var keptBlockParameters: Int
    public var seconds: Double
    public var calibrationTokens: Int?
    /// The GGUF `general.architecture` written ("deci" for Llama blocks of differing widths) and whether llama.cpp
    /// has the block types (Squish's sparse types it has not).
    public var architecture: String
    public var llamaCppBlockTypes: Bool
    // Structured pruning.
    public var droppedLayers: [Int]?
    public var layerWidths: [LayerWidths]?
    public var blockInfluence: [Double]?
    public var recovered: Bool?
    public var recoverySeconds: Double?
    // Sparsity.
    public var pattern: String?
    public var sparseType: String?
    /// Filled in by the caller: KL(input ‖ output) and top-1 on a short text, before recovery where there was one.
    public var klDivergence: Double?
    public var top1Agreement: Double?
    public var klBeforeRecovery: Double?
    public var top1BeforeRecovery: Double?
    public var klText: String?

    enum CodingKeys: String, CodingKey {
        case input, output, method, bytes, seconds, architecture, pattern, recovered
        case inputBytes = "input_bytes", blockParameters = "block_parameters", keptBlockParameters = "kept_block_parameters"
        case calibrationTokens = "calibration_tokens", llamaCppBlockTypes = "llama_cpp_block_types"
        case droppedLayers = "dropped_layers", layerWidths = "layer_widths", blockInfluence = "block_influence"
        case recoverySeconds = "recovery_seconds", sparseType = "sparse_type"
        case klDivergence = "kl_divergence", top1Agreement = "top1_agreement", klBeforeRecovery = "kl_before_recovery"
        case top1BeforeRecovery = "top1_before_recovery", klText = "kl_text"
    }
}

/// Model in, model out: `squish prune`. Structured pruning (ShortGPT, width) writes a smaller dense model of the
/// same family, with the configuration llama.cpp reads (per-layer arrays where block widths differ); sparsity
/// (magnitude, Wanda, SparseGPT) writes every block matrix as a sparse block type. Written atomically; the input is
/// only read.
public enum ModelPruner {
    /// The result in memory as well as on disk: the pruned model before recovery (for measuring what recovery
    /// gained), with the report.
    public struct Outcome {
        public var report: PruneReport
        public var beforeRecovery: TransformerModel?
        /// Structured pruning: what was kept.
        public var plan: StructurePlan?
        /// Keeps the memory behind `beforeRecovery`'s changed matrices.
        let owner: OwnedBuffers
    }

    public static func prune(input: String, output: String, options: PruneOptions, pool: WorkerPool,
                             progress: ((String, Int, Int) -> Void)? = nil, log: @escaping (String) -> Void = { _ in }) throws -> Outcome {
        try ModelQuantizer.checkOutput(output, input: input)
        var outcome = try GGUFConversion.withGGUF(for: input) { gguf in
            try pruneGGUF(input: gguf, output: output, options: options, pool: pool, progress: progress, log: log)
        }
        outcome.report.input = input
        outcome.report.inputBytes = LanguageModel.fileBytes(input)
        return outcome
    }

    static func blockParameters(_ c: ModelConfig) -> Int {
        c.linearLayers.filter { $0.layer != nil }.reduce(0) { $0 + $1.rows * $1.columns }
    }

    static func pruneGGUF(input: String, output: String, options: PruneOptions, pool: WorkerPool,
                          progress: ((String, Int, Int) -> Void)?, log: @escaping (String) -> Void) throws -> Outcome {
        let start = Date()
        let file = try GGUFFile(path: input)
        try RotatedInputs.refuse(file, pipeline: "prune")
        let model = try TransformerModel(gguf: file)
        let c = model.config
        if options.method.isStructured {
            return try structured(file: file, model: model, options: options, output: output, start: start, pool: pool,
                                  progress: progress, log: log)
        }
        // Sparsity, block by block on the pruned model's own activations (SparseGPT's and Wanda's sequential setup).
        let method = options.method.sparsity!
        guard let type = GGMLType.squishSparse(bits: options.bits, kept: options.pattern.kept) else {
            throw QuantizeError.unsupportedTarget("\(options.bits)-bit codes keeping \(options.pattern.kept) of 64 (sparse types: bits \(GGMLType.sparseBits), kept \(GGMLType.sparseKept))")
        }
        for l in c.linearLayers where l.layer != nil && l.columns % 64 != 0 {
            throw QuantizeError.rowLength(tensor: l.name, rowLength: l.columns, type: type)
        }
        let owner = OwnedBuffers()
        var tensors: [String: [UInt8]] = [:]
        let sequences = method == .magnitude ? [] : try GPTQModelQuantizer.sequences(file, options.calibration)
        let run = method == .magnitude ? nil : try CalibrationRun(model: model, sequences: sequences, pool: pool)
        for (li, layer) in model.layers.enumerated() {
            let blockStart = Date()
            let stats = run == nil ? nil : BlockStatistics(c, layer: li, pool: pool)
            if let run, let stats { try run.block(li, layer, advance: false, observe: stats.observer) }
            var weights = layer
            for site in InputSite.allCases {
                let h = stats?.hessian(site)
                for kind in site.consumers {
                    let name = ModelTensor.block(li, kind.tensor).ggufName
                    let m = layer[kind]
                    var w = try m.dequantized()
                    let bytes = try w.withUnsafeMutableBufferPointer {
                        try SparsityPruner.prune(weights: $0.baseAddress!, rows: m.rows, columns: m.columns, hessian: h, method: method,
                                                 pattern: options.pattern, bits: options.bits, options: options.gptq, pool: pool, name: name)
                    }
                    tensors[name] = bytes
                    weights[kind] = try owner.matrix(name, type: type, bytes: bytes, rows: m.rows, columns: m.columns)
                }
            }
            try run?.block(li, weights, advance: true)
            log(String(format: "%@: block %d/%d, %.1f s", method.rawValue, li + 1, c.layers, Date().timeIntervalSince(blockStart)))
            progress?(method.rawValue, li + 1, c.layers)
        }
        var writer = GGUFWriter(copying: file)
        for l in c.linearLayers where l.layer != nil {
            writer.replaceTensor(name: l.name, shape: [l.columns, l.rows], type: type, source: .bytes(tensors[l.name]!))
        }
        writer.set("general.file_type", .uint32(1024))  // no llama.cpp file type describes Squish's sparse blocks
        try writer.write(to: output)
        let params = blockParameters(c)
        let report = PruneReport(
            input: input, output: output, method: options.method.rawValue, bytes: LanguageModel.fileBytes(output), inputBytes: 0,
            blockParameters: params, keptBlockParameters: Int(Double(params) * (1 - options.pattern.sparsity)),
            seconds: Date().timeIntervalSince(start), calibrationTokens: sequences.isEmpty ? nil : sequences.count * options.calibration.sequenceLength,
            architecture: file.architecture ?? c.architecture, llamaCppBlockTypes: false,
            pattern: options.pattern.description, sparseType: type.name)
        return Outcome(report: report, beforeRecovery: nil, plan: nil, owner: owner)
    }

    static func structured(file: GGUFFile, model: TransformerModel, options: PruneOptions, output: String, start: Date,
                           pool: WorkerPool, progress: ((String, Int, Int) -> Void)?, log: @escaping (String) -> Void) throws -> Outcome {
        let c = model.config
        let sequences = try GPTQModelQuantizer.sequences(file, options.calibration)
        log("\(options.method.rawValue): \(sequences.count) calibration sequences of \(options.calibration.sequenceLength) tokens")
        let stats = try StructureStatistics.measure(model, sequences: sequences, pool: pool, progress: { progress?("statistics", $0, $1) })
        let plan = try options.plan ?? StructuredPruning.plan(model, statistics: stats, dropLayers: options.dropLayers, ffnKeep: options.ffnKeep,
                                                              headsKeep: options.headsKeep, channelMultiple: options.channelMultiple)
        try plan.check(c, path: file.path)
        let pc = plan.config(c)
        try pc.validate(path: output, keys: .gguf(c.architecture))
        let owner = OwnedBuffers()
        var blocks: [LeastSquaresRecovery.Block] = []
        for i in plan.keptLayers.indices {
            let o = plan.keptLayers[i]
            let importance: [InputSite: [Double]] = [.attentionOutput: stats.attentionSquares[o], .ffnHidden: stats.hiddenSquares[o]]
            let (layer, changed) = try StructuredPruning.slice(model, plan: plan, position: i, config: pc, importance: importance,
                                                               owner: owner, pool: pool)
            blocks.append(LeastSquaresRecovery.Block(layer: layer, changed: changed))
        }
        let pruned = try TransformerModel(base: model, config: pc, layers: blocks.map(\.layer))
        var recoverySeconds: Double?
        if options.recover {
            let t0 = Date()
            blocks = try LeastSquaresRecovery.run(original: model, pruned: pruned, plan: plan, blocks: blocks, sequences: sequences,
                                                  gptq: options.gptq, owner: owner, pool: pool,
                                                  progress: { progress?("recovery", $0, $1) }, log: log)
            recoverySeconds = Date().timeIntervalSince(t0)
        }
        try write(file: file, config: pc, plan: plan, blocks: blocks, to: output)
        let dropped = (0 ..< c.layers).filter { !plan.keptLayers.contains($0) }
        let arch = Architectures.ggufMetadata(pc).first { $0.0 == "general.architecture" }?.1.string ?? pc.architecture
        let report = PruneReport(
            input: file.path, output: output, method: options.method.rawValue, bytes: LanguageModel.fileBytes(output), inputBytes: 0,
            blockParameters: blockParameters(c), keptBlockParameters: blockParameters(pc), seconds: Date().timeIntervalSince(start),
            calibrationTokens: sequences.count * options.calibration.sequenceLength, architecture: arch,
            llamaCppBlockTypes: file.tensors.allSatisfy { $0.type.isGGMLNative },
            droppedLayers: dropped, layerWidths: (0 ..< pc.layers).map { pc.widths(layer: $0) }, blockInfluence: stats.influence,
            recovered: options.recover, recoverySeconds: recoverySeconds)
        return Outcome(report: report, beforeRecovery: options.recover ? pruned : nil, plan: plan, owner: owner)
    }

    /// The pruned model as GGUF: the input's metadata with the architecture's keys rewritten for `config` (the
    /// architecture's name too, e.g. "deci" for Llama blocks of differing widths), its tensors renumbered to the kept
    /// blocks, changed tensors replaced, the rest copied as stored.
    static func write(file: GGUFFile, config pc: ModelConfig, plan: StructurePlan, blocks: [LeastSquaresRecovery.Block],
                      to output: String) throws {
        try writer(file: file, config: pc, keptLayers: plan.keptLayers) { tensor, _ in
            guard case .block(let i, let t) = tensor, let changed = blocks[i].changed[t] else { return nil }
            return (changed.shape, changed.type, .bytes(changed.bytes))
        }.write(to: output)
    }

    /// A GGUF writer for the model of structure `config` made from `file`'s blocks `keptLayers` (in order): the
    /// input's metadata with the architecture's keys rewritten for `config`, every tensor of `config` taken from
    /// `replacement(tensor, source)` where it gives one, else copied as stored from `source` (the same tensor of
    /// input block `keptLayers[i]` for block i).
    public static func writer(file: GGUFFile, config pc: ModelConfig, keptLayers: [Int],
                              replacement: (ModelTensor, ModelTensor) -> (shape: [Int], type: GGMLType, source: GGUFWriter.Source)?) throws -> GGUFWriter {
        var w = GGUFWriter()
        w.version = file.version
        let oldArch = file.architecture ?? ""
        for (k, v) in file.metadata where !k.hasPrefix(oldArch + ".") && k != "general.architecture" { w.set(k, v) }
        for (k, v) in Architectures.ggufMetadata(pc) { w.set(k, v) }
        // general.architecture first, as llama.cpp's writer puts it.
        var ordered = GGUFWriter()
        ordered.version = w.version
        if let arch = w.metadata.first(where: { $0.key == "general.architecture" }) { ordered.set(arch.key, arch.value) }
        for (k, v) in w.metadata where k != "general.architecture" { ordered.set(k, v) }
        let rope = file.tensor(named: ModelTensor.ropeFrequencies.ggufName) != nil
        for tensor in pc.tensors(ropeFrequencies: rope) {
            let source: ModelTensor
            if case .block(let i, let t) = tensor { source = .block(keptLayers[i], t) } else { source = tensor }
            if let r = replacement(tensor, source) {
                ordered.addTensor(name: tensor.ggufName, shape: r.shape, type: r.type, source: r.source)
                continue
            }
            guard let info = file.tensor(named: source.ggufName) else { throw ModelError.missingTensor(path: file.path, tensor: source.ggufName) }
            ordered.addTensor(name: tensor.ggufName, shape: info.shape, type: info.type, source: .mapped(file.data(for: info), owner: file))
        }
        return ordered
    }
}
