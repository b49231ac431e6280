import Foundation
import SquishCore
import SquishEval
import SquishFormats
import SquishKernels
import SquishModel
import SquishQuantize
import SquishTokenizer

/// `squish compress`: the best model under a size budget by per-tensor levels (mixed precision) chosen by an
/// start (importance-based or near-uniform) and an evolutionary search on KL against the uncompressed model.
public struct CompressOptions: Sendable {
    public enum Target: Sendable, Equatable {
        /// Bytes of the output file (10^6 per MB).
        case fileBytes(Int)
        /// All tensor bytes × 8 / all parameters.
        case bitsPerWeight(Double)
    }

    public var target: Target
    /// Calibration text (the level database's GPTQ statistics and the search's fitness).
    public var calibration = CalibrationOptions()
    public var ladder = LevelDatabaseOptions().ladder
    /// Extra levels of the large matrices (`LevelDatabaseOptions.largeTensorLevels`).
    public var largeTensorLevels = LevelDatabaseOptions().largeTensorLevels
    /// Levels quantized rotated on the input (`LevelDatabaseOptions.rotatedLevels`).
    public var rotatedLevels = LevelDatabaseOptions().rotatedLevels
    public var gptq = GPTQOptions()
    /// Sequences (and their length) the search scores candidates on; taken from the calibration text after the
    /// level database's tokens when the text is long enough.
    public var searchSequences = 8
    public var searchLength = 256
    /// `search.maxDroppedLayers` is set from `prune` and `maxDroppedLayers`.
    public var search = EvolutionarySearch.Options()
    /// Whole blocks may be dropped where that costs less KL than the bits their bytes buy (`--prune`).
    public var prune = false
    /// With `prune`: most blocks dropped (nil: a quarter of them, ShortGPT's share).
    public var maxDroppedLayers: Int?
    /// Tokens of the first sequence each tensor's sensitivity is measured on.
    public var sensitivityTokens = 128
    /// Wall-clock budget of the whole run (level database, sensitivity, search, writing, held-out evaluation).
    public var budgetSeconds: Double = 15 * 60
    /// Time kept for writing the output (the held-out evaluation's time is added from `evaluationTokens`).
    public var reserveSeconds: Double = 20
    /// Tokens the held-out evaluation after `compress` will run through the model (0: none); the search stops early
    /// enough for them at the measured forward speed, so that the whole run keeps to `budgetSeconds`.
    public var evaluationTokens = 0
    /// Where level databases are cached (`$SQUISH_CACHE/compress`).
    public var cacheDirectory = squishCacheDirectory() + "/compress"
    public var rebuildDatabase = false
    /// Other models of the same vocabulary (e.g. llama-quantize's presets) scored on the same tokens for the report.
    public var compare: [String] = []

    public init(target: Target) { self.target = target }
}

/// One tensor's signals and choice (for `--explain` and the report).
public struct TensorChoice: Codable, Sendable {
    public var name: String
    public var kind: String
    public var layer: Int?
    public var parameters: Int
    public var type: String
    public var bitsPerWeight: Double
    public var outlierShare: Double
    /// KL of the model with only this tensor one level below its top, on the sensitivity tokens.
    public var sensitivity: Double
    public var sensitivityLevel: String

    enum CodingKeys: String, CodingKey {
        case name, kind, layer, parameters, type, sensitivity
        case bitsPerWeight = "bits_per_weight", outlierShare = "outlier_share", sensitivityLevel = "sensitivity_level"
    }
}

/// A reference point of the size-quality chart: an allocation scored on the search's last-stage tokens.
public struct ComparisonPoint: Codable, Sendable {
    public var name: String
    public var bytes: Int
    public var fitness: Double
}

public struct CompressResult: Codable, Sendable {
    public var input: String
    public var output: String
    public var bytes: Int
    public var targetBytes: Int
    public var bitsPerWeight: Double
    public var parameters: Int
    /// Mean KL on the held-out text (filled in by the evaluation; nil when it was skipped).
    public var klDivergence: Double?
    public var perplexity: Double?
    public var referencePerplexity: Double?
    public var top1Agreement: Double?
    public var heldOutText: String?
    /// Fitness (mean KL on the search tokens) of the start and of the result.
    public var startFitness: Double
    public var searchFitness: Double
    public var generations: Int
    public var candidatesScored: Int
    public var seconds: Double
    public var databaseSeconds: Double
    public var databaseCached: Bool
    public var searchTokens: Int
    public var calibrationTokens: Int
    public var seed: UInt64
    /// Type by the input's tensor name ("dropped" for the tensors of dropped blocks).
    public var tensors: [String: String]
    public var choices: [TensorChoice]
    /// Blocks of the input left out of the output (`--prune`), and the KL on the first search sequence of the model
    /// with only that block dropped, per block (empty without `--prune`).
    public var droppedLayers: [Int]
    public var dropSensitivity: [Double]
    public var layers: [LayerSignal]
    public var history: [EvolutionarySearch.Generation]
    public var comparisons: [ComparisonPoint]
    public var candidates: [ComparisonPoint]

    enum CodingKeys: String, CodingKey {
        case input, output, bytes, parameters, perplexity, generations, seconds, seed, tensors, choices, layers, history, comparisons
        case candidates
        case droppedLayers = "dropped_layers", dropSensitivity = "drop_sensitivity"
        case targetBytes = "target_bytes", bitsPerWeight = "bits_per_weight", klDivergence = "kl_divergence"
        case referencePerplexity = "reference_perplexity", top1Agreement = "top1_agreement", heldOutText = "held_out_text"
        case startFitness = "start_fitness", searchFitness = "search_fitness", candidatesScored = "candidates_scored"
        case databaseSeconds = "database_seconds", databaseCached = "database_cached", searchTokens = "search_tokens"
        case calibrationTokens = "calibration_tokens"
    }
}

public enum Compressor {
    /// Parses `60MB`, `57.5 MB`, `60M`, `55MiB`, `0.06GB`, `60000000` into bytes (MB = 10^6 bytes).
    public static func parseSize(_ s: String) -> Int? { try? ByteSize.parse(s) }

    /// The calibration sequences the search scores on: those after the `calibrationTokens` the level database was
    /// fitted on (text it did not see), or the first ones when the text is too short for that.
    public static func searchSequences(_ source: GGUFFile, options: CompressOptions, calibrationTokens: Int) throws -> [[Int]] {
        var calib = options.calibration
        calib.sequenceLength = options.searchLength
        calib.tokens = (options.searchSequences + calibrationTokens / max(1, options.searchLength) + 1) * options.searchLength
        let all = (try? GPTQModelQuantizer.sequences(source, calib)) ?? []
        let skip = calibrationTokens / options.searchLength + 1
        if all.count >= skip + options.searchSequences {
            return Array(all[skip ..< skip + options.searchSequences])
        }
        calib.tokens = options.searchSequences * options.searchLength
        return try GPTQModelQuantizer.sequences(source, calib)
    }

    /// The cache key of a level database: model content, calibration text and size, ladder, GPTQ settings.
    static func databaseKey(model: String, options: CompressOptions) throws -> String {
        var h = FNV1a64()
        h.update("squish-level-database-\(LevelDatabase.version)")
        h.update(try FNV1a64.file(model))
        if let calib = options.calibration.textPath { h.update(try FNV1a64.file(calib)) }
        h.update("\(options.calibration.textBytes ?? -1)/\(options.calibration.tokens)/\(options.calibration.sequenceLength)")
        h.update(options.ladder.map(\.name).joined(separator: ","))
        h.update("large:" + options.largeTensorLevels.map(\.name).joined(separator: ","))
        h.update("rotated:" + options.rotatedLevels.map(\.name).joined(separator: ","))
        h.update("\(options.gptq.dampPercent)/\(options.gptq.blockSize)/\(options.gptq.actOrder)/refit:\(options.gptq.refitParameters)")
        return h.hex
    }

    /// The best model under the budget from a GGUF file or a checkpoint directory (converted to GGUF first).
    public static func compress(input: String, output: String, options: CompressOptions, pool: WorkerPool, quiet: Bool,
                                log: @escaping (String) -> Void) throws -> CompressResult {
        try ModelQuantizer.checkOutput(output, input: input)
        guard options.budgetSeconds > 0 else { throw CompressError.invalidArgument("the time budget must be positive") }
        return try GGUFConversion.withGGUF(for: input) { gguf in
            var r = try compressGGUF(input: gguf, output: output, options: options, pool: pool, quiet: quiet, log: log)
            r.input = input
            return r
        }
    }

    static func compressGGUF(input: String, output: String, options: CompressOptions, pool: WorkerPool, quiet: Bool,
                             log: @escaping (String) -> Void) throws -> CompressResult {
        let start = Date()
        var deadline = start.addingTimeInterval(options.budgetSeconds - options.reserveSeconds)
        let source = try GGUFFile(path: input)
        try RotatedInputs.refuse(source, pipeline: "compress")
        let parameters = source.tensors.reduce(0) { $0 + $1.elementCount }

        let sourceConfig = try Architectures.configuration(gguf: source)
        let maxDropped = options.prune ? min(options.maxDroppedLayers ?? sourceConfig.layers / 4, sourceConfig.layers - 1) : 0
        // A budget below the smallest levels (with the most blocks dropped) fails now, before any quantization.
        do {
            let layerOf = Dictionary(sourceConfig.linearLayers.map { ($0.name, $0.layer) }, uniquingKeysWith: { a, _ in a })
            let matrices = source.tensors.filter { layerOf[$0.name] != nil }
            var perLayer = [Int](repeating: 0, count: sourceConfig.layers)
            var all = 0
            for t in matrices {
                let bytes = options.ladder.compactMap { $0.rowBytes(elements: t.shape[0]).map { $0 * t.rowCount } }.filter { $0 < t.byteCount }
                let b = bytes.min() ?? t.byteCount
                all += b
                if let l = layerOf[t.name]!, l < perLayer.count { perLayer[l] += b }
            }
            let smallest = all - largestSum(perLayer, maxDropped)
            let tensorBytes = source.tensors.reduce(0) { $0 + $1.byteCount }
            let fileBytes = (try? FileManager.default.attributesOfItem(atPath: input)[.size] as? Int) ?? tensorBytes
            let matrixBytes = matrices.reduce(0) { $0 + $1.byteCount }
            let possible: Bool
            switch options.target {
            case .fileBytes(let b): possible = smallest + (fileBytes - matrixBytes) <= b
            case .bitsPerWeight(let bpw): possible = Double(smallest + tensorBytes - matrixBytes) * 8 / Double(parameters) <= bpw
            }
            guard possible else {
                throw CompressError.budget(String(format: "%@ is below what the smallest levels (%@)%@ can reach: a file of about %.2f MB, %.3f bits per weight",
                                                  describe(options.target), options.ladder.first?.name ?? "?",
                                                  maxDropped > 0 ? " with \(maxDropped) blocks dropped" : "",
                                                  Double(smallest + fileBytes - matrixBytes) / 1e6,
                                                  Double(smallest + tensorBytes - matrixBytes) * 8 / Double(parameters)))
            }
        }

        // 1. The level database, from the cache or built now.
        let key = try databaseKey(model: input, options: options)
        try FileManager.default.createDirectory(atPath: options.cacheDirectory, withIntermediateDirectories: true)
        let dbPath = options.cacheDirectory + "/levels-\(key).gguf"
        var dbFile: GGUFFile?
        var database: LevelDatabase?
        var cached = false
        if !options.rebuildDatabase, FileManager.default.fileExists(atPath: dbPath) {
            do {
                let f = try GGUFFile(path: dbPath)
                let d = try LevelDatabase.describe(f)
                if d.key == key { (dbFile, database, cached) = (f, d, true) }
            } catch {
                log("\(dbPath): \(error); building it again")
            }
        }
        let dbStart = Date()
        if database == nil {
            var dbOptions = LevelDatabaseOptions()
            dbOptions.calibration = options.calibration
            dbOptions.gptq = options.gptq
            dbOptions.ladder = options.ladder
            dbOptions.largeTensorLevels = options.largeTensorLevels
            dbOptions.rotatedLevels = options.rotatedLevels
            let bar = ProgressBar(total: 1, label: "level database", quiet: quiet)
            database = try LevelDatabase.build(file: source, key: key, options: dbOptions, output: dbPath, pool: pool,
                                               progress: { done, total in
                                                   if bar.total != total { bar.update(done * bar.total / max(1, total)) } else { bar.update(done) }
                                               }, log: quiet ? { _ in } : log)
            bar.finish()
            dbFile = try GGUFFile(path: dbPath)
        }
        let databaseSeconds = Date().timeIntervalSince(dbStart)
        let db = database!
        let base = try TransformerModel(gguf: source)
        let store = try LevelStore(database: db, file: dbFile!, source: source, base: base)
        let tensors = store.tensors

        // 2. The budget for the matrices' bytes.
        let levelNames = Set(tensors.map(\.name))
        let otherTensorBytes = source.tensors.filter { !levelNames.contains($0.name) }.reduce(0) { $0 + $1.byteCount }
        let tensorIndex = Dictionary(tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        func writer(_ a: Allocation) throws -> GGUFWriter {
            var native = true
            var rotated: [String] = []
            // Tensor `t`'s data at its level in `a`, where that is not the source's own.
            func level(_ t: Int) -> (shape: [Int], type: GGMLType, source: GGUFWriter.Source)? {
                let entry = tensors[t], level = entry.levels[a.levels[t]]
                guard !level.isSource else { return nil }
                let type = GGMLType(name: level.type)!
                native = native && type.isGGMLNative && !level.rotated
                let info = store.file.tensor(named: LevelDatabase.dataName(tensor: entry.name, level: level))!
                return ([entry.rowLength, entry.rows], type, .mapped(store.file.data(for: info), owner: store.file))
            }
            var w: GGUFWriter
            if a.droppedLayers.isEmpty {
                w = GGUFWriter(copying: source)
                for t in tensors.indices {
                    guard let d = level(t) else { continue }
                    w.replaceTensor(name: tensors[t].name, shape: d.shape, type: d.type, source: d.source)
                    if tensors[t].levels[a.levels[t]].rotated { rotated.append(tensors[t].name) }
                }
            } else {
                // Blocks renumbered, the configuration rewritten (as `prune --method shortgpt` writes it).
                let kept = a.keptLayers(of: sourceConfig.layers)
                w = try ModelPruner.writer(file: source, config: sourceConfig.keepingLayers(kept), keptLayers: kept) { to, from in
                    guard let t = tensorIndex[from.ggufName], let d = level(t) else { return nil }
                    if tensors[t].levels[a.levels[t]].rotated { rotated.append(to.ggufName) }
                    return d
                }
            }
            if !native { w.set("general.file_type", .uint32(1024)) }  // a mix no llama.cpp file type describes
            if !rotated.isEmpty { w.set(RotatedInputs.metadataKey, RotatedInputs.value(rotated)) }
            return w
        }
        let smallest = Allocation(levels: tensors.map { _ in 0 })
        // Header, other tensors, padding (with blocks dropped, less: their norms and names are gone too).
        let overhead = try writer(smallest).fileSize() - store.matrixBytes(smallest)
        let matrixBudget: Int, targetBytes: Int
        switch options.target {
        case .fileBytes(let b):
            // Alignment padding differs by at most (alignment − 1) bytes per tensor between allocations.
            matrixBudget = b - overhead - tensors.count * 32
            targetBytes = b
        case .bitsPerWeight(let bpw):
            let tensorBytes = Int((bpw * Double(parameters) / 8).rounded(.down))
            matrixBudget = tensorBytes - otherTensorBytes
            targetBytes = matrixBudget + overhead
        }
        let layerBytes = (0 ..< sourceConfig.layers).map { l in
            tensors.indices.filter { tensors[$0].layer == l }.reduce(0) { $0 + tensors[$1].levels[0].bytes }
        }
        let minimum = store.matrixBytes(smallest) - largestSum(layerBytes, maxDropped)
        guard matrixBudget >= minimum else {
            let smallestFile = minimum + overhead
            throw CompressError.budget(String(format: "the smallest levels (%@) give a file of %.2f MB (%.3f bits per weight); asked for %@",
                                              options.ladder.first?.name ?? "?", Double(smallestFile) / 1e6,
                                              Double(minimum + otherTensorBytes) * 8 / Double(parameters), describe(options.target)))
        }

        // 3. Search sequences and the reference's distributions.
        let searchSeqs = try searchSequences(source, options: options, calibrationTokens: db.calibrationTokens)
        let refBar = ProgressBar(total: searchSeqs.count, label: "reference", quiet: quiet)
        let scorer = try KLScorer(reference: base, sequences: searchSeqs, pool: pool, progress: { d, _ in refBar.update(d) })
        refBar.finish()
        var scoreCache: [Allocation: [String: Double]] = [:]
        func score(_ a: Allocation, _ stage: EvolutionarySearch.Stage) throws -> Double {
            let k = "\(stage.sequences)/\(stage.tokens ?? -1)"
            if let s = scoreCache[a]?[k] { return s }
            let s = try scorer.score(store.model(a), sequences: stage.sequences, tokens: stage.tokens)
            scoreCache[a, default: [:]][k] = s
            return s
        }

        /// Every tensor at `type`, or where it lacks that level at its largest level no larger.
        func uniform(_ type: GGMLType) -> Allocation {
            Allocation(levels: tensors.map { entry in
                let limit = type.rowBytes(elements: entry.rowLength).map { $0 * entry.rows } ?? .max
                return entry.levels.lastIndex { $0.type == type.name || $0.bytes <= limit } ?? 0
            })
        }

        // 4. Sensitivity of every tensor one level below its top, then the start.
        let top = store.topAllocation
        let probeStage = EvolutionarySearch.Stage(sequences: 1, tokens: options.sensitivityTokens, survivors: 1)
        let topScore = try score(top, probeStage)
        var sensitivity = [Double](repeating: 0, count: tensors.count)
        var measured = tensors.map { [Double?](repeating: nil, count: $0.levels.count) }
        let totalParameters = tensors.reduce(0) { $0 + $1.parameters }
        // Large tensors (the embedding) are measured at every level: their share of the budget is large and their
        // cost far from the probe level is not well predicted by the weight error.
        let large = tensors.indices.filter { LevelDatabase.isLarge(parameters: tensors[$0].parameters, of: totalParameters) }
        let probes = tensors.indices.reduce(0) { $0 + (large.contains($1) ? top.levels[$1] : min(1, top.levels[$1])) }
        let sensStart = Date()
        let sensBar = ProgressBar(total: probes, label: "sensitivity", quiet: quiet)
        for t in tensors.indices where top.levels[t] > 0 {
            for l in stride(from: top.levels[t] - 1, through: large.contains(t) ? 0 : top.levels[t] - 1, by: -1) {
                var a = top
                a.levels[t] = l
                let kl = max(0, try score(a, probeStage) - topScore)
                measured[t][l] = kl
                if l == top.levels[t] - 1 { sensitivity[t] = kl }
                sensBar.advance()
                scoreCache[a] = nil
            }
        }
        sensBar.finish()
        if !quiet { log(String(format: "sensitivity: %d tensors, %d forward passes of %d tokens, %.0f s", tensors.count, probes,
                               options.sensitivityTokens, Date().timeIntervalSince(sensStart))) }
        // With --prune: the KL of dropping each block alone, on the whole first search sequence (a dropped block costs
        // more the longer the context, so the first positions the tensors are probed on would understate it).
        var dropSensitivity: [Double] = []
        if maxDropped > 0 {
            let blockStage = EvolutionarySearch.Stage(sequences: 1, survivors: 1)
            let blockTop = try score(top, blockStage)
            let bar = ProgressBar(total: sourceConfig.layers, label: "blocks", quiet: quiet)
            for l in 0 ..< sourceConfig.layers {
                var a = top
                a.droppedLayers = [l]
                dropSensitivity.append(max(0, try score(a, blockStage) - blockTop))
                scoreCache[a] = nil
                bar.advance()
            }
            bar.finish()
            if !quiet {
                log("blocks: KL with one dropped: " + dropSensitivity.enumerated().sorted { $0.element < $1.element }
                    .map { String(format: "%d %.4f", $0.offset, $0.element) }.joined(separator: ", "))
            }
        }
        let costs = ImportanceAllocation.costs(tensors, sensitivity: sensitivity, measured: measured)
        for t in large where !quiet {
            log("sensitivity: \(tensors[t].name): " + tensors[t].levels.indices.map { l in
                "\(tensors[t].levels[l].label) " + (measured[t][l].map { String(format: "%.5f", $0) } ?? "0") }.joined(separator: ", "))
        }
        // The start: the greedy allocation on the separable costs, and the same with each large tensor pinned to each of
        // its levels (their cost interacts with everything else, so the pinned variants are measured, not estimated);
        // the best on the last stage's tokens.
        let lastStage = options.search.stages.last!
        // With --prune, a budget only dropped blocks reach has no start of all blocks.
        var starts: [Allocation] = []
        do {
            starts.append(try ImportanceAllocation.allocate(tensors, costs: costs, budget: matrixBudget))
        } catch where maxDropped > 0 {}
        for t in large {
            for l in tensors[t].levels.indices {
                if let a = try? ImportanceAllocation.allocate(tensors, costs: costs, budget: matrixBudget, fixed: [t: l]), !starts.contains(a) {
                    starts.append(a)
                }
            }
        }
        // Each ladder type for every tensor (where a tensor lacks it, its largest level no larger), brought within the
        // budget by as few downgrades as possible (`ImportanceAllocation.fit`): the estimated costs misjudge how the
        // errors of many tensors add up, and a near-uniform model is often a better place to search from.
        for type in options.ladder {
            if let a = ImportanceAllocation.fit(uniform(type), tensors, costs: costs, budget: matrixBudget), !starts.contains(a) {
                starts.append(a)
            }
        }
        // With --prune: the k blocks cheapest to drop alone dropped, k = 1 … the most allowed, the rest allocated as
        // above; the large tensors pinned to each of their levels only for the best of those.
        let cheapest = dropSensitivity.indices.sorted { (dropSensitivity[$0], $0) < (dropSensitivity[$1], $1) }
        for k in stride(from: 1, through: maxDropped, by: 1) {
            if let a = try? ImportanceAllocation.allocate(tensors, costs: costs, budget: matrixBudget, droppedLayers: Array(cheapest.prefix(k)).sorted()) {
                starts.append(a)
            }
        }
        guard !starts.isEmpty else {
            throw CompressError.budget("no allocation with up to \(maxDropped) blocks dropped fits \(describe(options.target))")
        }
        var startAllocation = starts[0]
        var startFitness = Double.infinity
        func consider(_ candidates: [Allocation]) throws {
            for a in candidates {
                let f = try score(a, lastStage)
                if f < startFitness { (startAllocation, startFitness) = (a, f) }
            }
        }
        try consider(starts)
        if !startAllocation.droppedLayers.isEmpty {
            let dropped = startAllocation.droppedLayers
            let pinned = large.flatMap { t in
                tensors[t].levels.indices.compactMap { try? ImportanceAllocation.allocate(tensors, costs: costs, budget: matrixBudget, fixed: [t: $0], droppedLayers: dropped) }
            }.filter { !starts.contains($0) }
            starts += pinned
            try consider(pinned)
        }
        if !quiet {
            log(String(format: "start: %d candidates (importance-based and near-uniform), best KL %.5f%@", starts.count, startFitness,
                       startAllocation.droppedLayers.isEmpty ? "" : " with blocks \(startAllocation.droppedLayers) dropped"))
        }

        // What must still fit after the search, at the forward speed measured so far: the comparison points and the
        // held-out evaluation.
        if let speed = scorer.tokensPerSecond {
            let stageTokens = lastStage.tokens ?? lastStage.sequences * options.searchLength
            let after = Double(options.evaluationTokens + (options.ladder.count + 1 + options.compare.count) * stageTokens) / speed
            deadline = min(deadline, start.addingTimeInterval(options.budgetSeconds - options.reserveSeconds - after * 1.15))
        }

        // 5. Evolutionary search from there, until the deadline.
        var searchOptions = options.search
        searchOptions.maxDroppedLayers = maxDropped
        let search = EvolutionarySearch(tensors: tensors, budget: matrixBudget, options: searchOptions)
        if !quiet { log(String(format: "search: start KL %.5f on %d tokens; searching until %@", startFitness,
                               lastStage.tokens ?? lastStage.sequences * options.searchLength, clock(deadline))) }
        let searchBar = ProgressBar(total: max(1, Int(deadline.timeIntervalSinceNow)), label: "search", quiet: quiet)
        let searchStart = Date()
        let outcome = try search.run(start: startAllocation, deadline: deadline, score: { a, stage in
            let s = try score(a, stage)
            searchBar.update(Int(Date().timeIntervalSince(searchStart)))
            return s
        }, report: { g in
            if !quiet && (g.improved || g.generation % 5 == 0) {
                log(String(format: "search: generation %d: best KL %.5f%@ (%.1f s)", g.generation, g.fitness, g.improved ? " (improved)" : "", g.seconds))
            }
            // Keep only the parent's scores: candidates are never revisited.
            scoreCache = scoreCache.filter { $0.key == startAllocation }
        })
        searchBar.finish()
        let best = outcome.best
        store.trim(keeping: [best])

        // 6. Comparison points (uniform levels) on the same tokens, for the report.
        var comparisons: [ComparisonPoint] = []
        for type in options.ladder {
            let a = uniform(type)
            guard a != top, !comparisons.contains(where: { $0.bytes == store.matrixBytes(a) + overhead }) else { continue }
            let rotated = tensors.indices.contains { tensors[$0].levels[a.levels[$0]].rotated }
            comparisons.append(ComparisonPoint(name: "uniform " + type.name + (rotated ? "+H" : ""), bytes: store.matrixBytes(a) + overhead,
                                               fitness: try score(a, lastStage)))
            store.trim(keeping: [best])
        }
        comparisons.append(ComparisonPoint(name: "input", bytes: store.matrixBytes(top) + overhead, fitness: try score(top, lastStage)))
        for path in options.compare {
            let other = try TransformerModel(path: path)
            guard other.config.vocabSize == base.config.vocabSize else {
                throw CompressError.invalidArgument("\(path): its vocabulary (\(other.config.vocabSize)) differs from the model's")
            }
            let bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            comparisons.append(ComparisonPoint(name: (path as NSString).lastPathComponent, bytes: bytes,
                                               fitness: try scorer.score(other, sequences: lastStage.sequences, tokens: lastStage.tokens)))
        }

        // 7. The output file.
        let w = try writer(best)
        let size = try w.fileSize()
        if case .fileBytes(let b) = options.target, size > b {
            throw CompressError.budget("internal: the chosen levels give \(size) bytes, more than the \(b) asked for")
        }
        try w.write(to: output)
        var tensorTypes: [String: String] = [:]
        var choices: [TensorChoice] = []
        for (t, l) in best.levels.enumerated() {
            let e = tensors[t], dropped = best.drops(e)
            tensorTypes[e.name] = dropped ? "dropped" : e.levels[l].label
            choices.append(TensorChoice(name: e.name, kind: e.kind, layer: e.layer, parameters: e.parameters, type: tensorTypes[e.name]!,
                                        bitsPerWeight: dropped ? 0 : Double(e.levels[l].bytes * 8) / Double(e.parameters), outlierShare: e.outlierShare,
                                        sensitivity: sensitivity[t],
                                        sensitivityLevel: e.levels[max(0, top.levels[t] - 1)].label))
        }
        let outBytes = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? size
        let tensorBytes = try GGUFFile(path: output).tensors.reduce(0) { $0 + $1.byteCount }
        return CompressResult(
            input: input, output: output, bytes: outBytes, targetBytes: targetBytes,
            bitsPerWeight: Double(tensorBytes) * 8 / Double(parameters), parameters: parameters,
            klDivergence: nil, perplexity: nil, referencePerplexity: nil, top1Agreement: nil, heldOutText: nil,
            startFitness: startFitness, searchFitness: outcome.fitness, generations: outcome.history.count,
            candidatesScored: scorer.evaluations, seconds: Date().timeIntervalSince(start), databaseSeconds: databaseSeconds,
            databaseCached: cached, searchTokens: searchSeqs.count * options.searchLength, calibrationTokens: db.calibrationTokens,
            seed: options.search.seed, tensors: tensorTypes, choices: choices, droppedLayers: best.droppedLayers,
            dropSensitivity: dropSensitivity, layers: db.layers, history: outcome.history,
            comparisons: comparisons,
            candidates: outcome.candidates.map { ComparisonPoint(name: "candidate", bytes: $0.bytes + overhead, fitness: $0.fitness) })
    }

    /// The sum of the `k` largest of `values` (the bytes the most blocks allowed to drop free at most).
    static func largestSum(_ values: [Int], _ k: Int) -> Int { values.sorted(by: >).prefix(k).reduce(0, +) }

    static func describe(_ t: CompressOptions.Target) -> String {
        switch t {
        case .fileBytes(let b): return String(format: "%.2f MB", Double(b) / 1e6)
        case .bitsPerWeight(let v): return String(format: "%.3f bits per weight", v)
        }
    }

    static func clock(_ d: Date) -> String {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        return f.string(from: d)
    }
}

extension Compressor {
    /// Scores the written output against the input on a held-out text with `squish eval`'s machinery (llama.cpp
    /// protocol perplexity and KL against the cached reference; no tasks), and fills in the result's figures.
    /// `cacheDirectory`: where the input's reference logits are cached (`squish eval`'s cache by default).
    public static func evaluate(_ result: inout CompressResult, text: EvalText, pool: WorkerPool, quiet: Bool,
                                cacheDirectory: String = ReferenceLogits.defaultDirectory, log: @escaping (String) -> Void) throws {
        let input = try LanguageModel(path: result.input), output = try LanguageModel(path: result.output)
        let reference = EvalModel(path: result.input, model: input.model, tokenizer: input.tokenizer)
        let candidate = EvalModel(path: result.output, model: output.model, tokenizer: output.tokenizer)
        var options = EvalOptions()
        options.tasks = []
        options.cacheDirectory = cacheDirectory
        let evaluator = try CompressionEvaluator(reference: reference, text: text, options: options, pool: pool, quiet: quiet, log: log)
        let (ref, cached) = try evaluator.referenceLogits()
        let r = try evaluator.evaluate(candidate, reference: ref, referenceCached: cached, tasks: TaskSet(), referenceTasks: [:])
        result.klDivergence = r.klDivergence.mean
        result.perplexity = r.perplexity
        result.referencePerplexity = r.referencePerplexity
        result.top1Agreement = r.top1Agreement
        result.heldOutText = text.name
    }
}
