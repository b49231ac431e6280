import Crypto
import Foundation
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel
import SquishTokenizer

/// How `TextCoder.compress` cuts the token stream: into chunks coded independently (each starts from the start token
/// with an empty cache), `lanes` of them at a time in lockstep so that every weight is read once per step for all.
public struct ZipSettings: Sendable, Equatable {
    /// Chunks run together (the batch of each forward step).
    public var lanes = 16
    /// Longest chunk (positions of one lane's KV cache).
    public var maxChunkTokens = 1024
    /// Shortest chunk when the text is long enough: short texts stay in one chunk rather than lose their context.
    public var minChunkTokens = 256
    public init(lanes: Int = 16, maxChunkTokens: Int = 1024, minChunkTokens: Int = 256) {
        self.lanes = lanes
        self.maxChunkTokens = maxChunkTokens
        self.minChunkTokens = minChunkTokens
    }
}

/// What `compress` did.
public struct ZipSummary: Codable, Sendable {
    public var inputBytes: Int
    public var outputBytes: Int
    /// Of the output, the coded tokens (the rest is the container's header and checksum).
    public var payloadBytes: Int
    public var tokens: Int
    /// Input bytes spelled byte by byte (not UTF-8, or text the tokenizer does not reproduce).
    public var fallbackBytes: Int
    /// Of those, bytes without a byte token in the vocabulary, coded after an escape token.
    public var escapedBytes: Int
    public var chunks: Int
    public var chunkTokens: Int
    public var lanes: Int
    /// Container bits per input byte.
    public var bitsPerByte: Double
    /// The model's own cross-entropy on the same tokens and contexts (float softmax of the same logits), per byte:
    /// the floor the coder approaches.
    public var modelBitsPerByte: Double
    /// Payload bits over the model's cross-entropy, minus 1.
    public var coderOverhead: Double
    /// Bits per byte counting the model file as part of the output.
    public var bitsPerByteWithModel: Double
    public var seconds: Double
    public var bytesPerSecond: Double
    public var model: String
    public var modelSHA256: String
    public var kernels: String
    public var threads: Int
}

/// Lossless compression of bytes with a language model: each token is coded by rANS with the model's next-token
/// distribution (`QuantizedSoftmax`), in a fixed schedule of chunks that the decoder follows token by token.
///
/// Bit-exactness: the decoder only learns a token after decoding it, so it runs one token per chunk per step; the
/// encoder runs exactly the same steps (same batches, same lanes in the same order, same positions), not a faster
/// prefill, because a token's logits may depend on the batch (the lookup-table kernels serve 1-token batches only).
/// Each output row is computed in a fixed order by one worker (matmuls split rows, attention splits (token, head)
/// items), so the thread count does not change a bit. The float logits become integer frequencies through one
/// rounding per logit; the rest is integer arithmetic. What can still differ is the C kernel path (AVX2 or portable)
/// and the kernel layout (repacked, lookup tables), which the container records and `decompress` checks, and the
/// binary's own float code (a different compiler or libm, e.g. `expf` in SiLU), which a version bump must guard.
public final class TextCoder {
    public let language: LanguageModel
    public let pool: WorkerPool
    public let layout: KernelLayout
    public let modelPath: String
    public let modelSHA256: [UInt8]
    public let modelBytes: Int
    public let tokenizerSHA256: [UInt8]
    public let startToken: Int
    let stream: TokenStream

    /// Most memory the lanes' KV caches may take (f32 keys and values).
    public static let maxCacheBytes = 16 << 30

    /// The kernel path of this machine, as recorded in containers.
    public static var kernelPath: String { VectorOps.usesAVX2 ? "avx2" : "portable" }

    /// Loads the model at `modelPath` (a GGUF file, one packed by `squish pack`, or a checkpoint directory) with
    /// `layout`.
    public init(modelPath: String, layout: KernelLayout = KernelLayout(), pool: WorkerPool) throws {
        let language = try LanguageModel(path: modelPath, layout: layout)
        let identity: (sha256: [UInt8], bytes: Int)
        if let file = language.model.storage as? GGUFFile {
            identity = (Array(SHA256.hash(data: file.file.bytes)), file.file.count)
        } else if language.model.storage is HFCheckpoint {
            identity = try Self.checkpointIdentity(directory: modelPath)
        } else {
            throw ZipError.unsupportedModel(path: modelPath, reason: "zip needs a GGUF file or a checkpoint directory (their bytes identify the model)")
        }
        guard language.model.config.vocabSize < 1 << (QuantizedSoftmax.precisionBits - 1) else {
            throw ZipError.unsupportedModel(path: modelPath, reason: "a vocabulary of \(language.model.config.vocabSize) tokens is too large for 2^\(QuantizedSoftmax.precisionBits) frequencies")
        }
        self.language = language
        self.pool = pool
        self.layout = layout
        self.modelPath = modelPath
        modelSHA256 = identity.sha256
        modelBytes = identity.bytes
        let tokenizer = language.tokenizer
        var h = SHA256()
        for id in 0 ..< tokenizer.vocabularySize {
            let b = tokenizer.bytes(for: id)
            var n = UInt32(b.count).littleEndian
            withUnsafeBytes(of: &n) { h.update(bufferPointer: $0) }
            h.update(data: b)
        }
        tokenizerSHA256 = Array(h.finalize())
        startToken = tokenizer.bosID ?? tokenizer.eosID ?? 0
        stream = TokenStream(tokenizer: tokenizer)
    }

    var modelName: String { (modelPath as NSString).lastPathComponent }

    /// SHA-256 and total size of what a checkpoint directory's model is made of: config.json, tokenizer.json and the
    /// safetensors shards with their index, each as (name length, name, size, contents), in name order. Other files
    /// (READMEs, generation settings) do not change the probabilities and are left out.
    static func checkpointIdentity(directory: String) throws -> (sha256: [UInt8], bytes: Int) {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        } catch {
            throw ZipError.badInput(path: directory, reason: "cannot list the checkpoint directory (\(error))")
        }
        var h = SHA256()
        var total = 0
        func update<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { h.update(bufferPointer: $0) } }
        for name in names where name == "config.json" || name == "tokenizer.json" || name.hasSuffix(".safetensors")
            || name.hasSuffix(".safetensors.index.json") {
            let file = try MappedFile(path: directory + "/" + name)
            update(UInt32(name.utf8.count))
            h.update(data: Array(name.utf8))
            update(UInt64(file.count))
            h.update(bufferPointer: file.bytes)
            total += file.count
        }
        return (Array(h.finalize()), total)
    }

    /// Chunk length for `tokens` tokens: as many waves of `lanes` chunks as `maxChunkTokens` requires, chunks as
    /// equal as possible, none shorter than `minChunkTokens` unless the text is, none longer than the context.
    func chunkTokens(for tokens: Int, _ s: ZipSettings) -> Int {
        guard tokens > 0 else { return 0 }
        let maxChunk = max(1, min(s.maxChunkTokens, language.model.config.contextLength))
        let lanes = max(1, s.lanes)
        let waves = (tokens + lanes * maxChunk - 1) / (lanes * maxChunk)
        let even = (tokens + waves * lanes - 1) / (waves * lanes)
        return min(maxChunk, max(even, min(tokens, s.minChunkTokens)))
    }

    // MARK: Compression

    /// Compresses `input`; `progress(done, total)` sees tokens coded.
    public func compress(_ input: [UInt8], settings: ZipSettings = ZipSettings(),
                         progress: (Int, Int) -> Void = { _, _ in }) throws -> (container: ZipContainer, summary: ZipSummary) {
        guard settings.lanes >= 1, settings.maxChunkTokens >= 1, settings.minChunkTokens >= 1 else {
            throw ZipError.badInput(path: modelPath, reason: "lanes and chunk lengths must be positive")
        }
        let began = Date()
        let text = try stream.tokens(for: input, path: modelPath)
        let tokens = text.tokens
        let escape = stream.escapeToken
        let schedule = Schedule(tokenCount: tokens.count, lanes: settings.lanes, chunkTokens: chunkTokens(for: tokens.count, settings))
        var symbols: [(start: UInt32, freq: UInt32)] = []
        symbols.reserveCapacity(tokens.count)
        var crossEntropy = 0.0  // nats
        var mutableTokens = tokens
        let vocab = language.model.config.vocabSize
        var lossRows = [Double](repeating: 0, count: schedule.lanes)
        try mutableTokens.withUnsafeMutableBufferPointer { toks in
            try run(schedule, tokens: toks, progress: progress) { targets, logits, freq in
                // The model's float cross-entropy of each row (reporting only; not part of the coded data).
                lossRows.withUnsafeMutableBufferPointer { loss in
                    let loss = loss.baseAddress!
                    pool.parallelFor(targets.count) { rows in
                        for r in rows { loss[r] = Self.negativeLogLikelihood(logits + r * vocab, count: vocab, target: toks[targets[r]]) }
                    }
                }
                for (r, g) in targets.enumerated() {
                    let f = freq + r * vocab
                    let t = toks[g]
                    symbols.append((QuantizedSoftmax.start(of: t, f), f[t]))
                    if t == escape, let b = text.escaped[g] { symbols.append(Self.escapedByte(b)) }
                    crossEntropy += lossRows[r]
                }
            }
        }
        let payload = RANS.encode(count: symbols.count, scaleBits: QuantizedSoftmax.precisionBits) { symbols[$0] }
        let container = ZipContainer(
            originalBytes: input.count, originalSHA256: Array(SHA256.hash(data: input)), modelSHA256: modelSHA256,
            modelBytes: modelBytes, modelName: modelName, tokenizerSHA256: tokenizerSHA256, vocabulary: vocab,
            startToken: startToken, escapeToken: escape, lanes: schedule.lanes, chunkTokens: schedule.chunkTokens, tokenCount: tokens.count,
            kernels: Self.kernelPath, repacked: layout.repack, lookupTables: layout.lookupTables, payload: payload)
        let outputBytes = container.serialized().count
        let seconds = Date().timeIntervalSince(began)
        let bytes = Double(max(input.count, 1))
        let ceBits = crossEntropy / log(2.0)
        let summary = ZipSummary(
            inputBytes: input.count, outputBytes: outputBytes, payloadBytes: payload.count, tokens: tokens.count, fallbackBytes: text.fallbackBytes,
            escapedBytes: text.escaped.count,
            chunks: schedule.chunks, chunkTokens: schedule.chunkTokens, lanes: schedule.lanes,
            bitsPerByte: Double(outputBytes * 8) / bytes, modelBitsPerByte: ceBits / bytes,
            coderOverhead: ceBits > 0 ? Double(payload.count * 8) / ceBits - 1 : 0,
            bitsPerByteWithModel: Double((outputBytes + modelBytes) * 8) / bytes,
            seconds: seconds, bytesPerSecond: Double(input.count) / max(seconds, 1e-9), model: modelName,
            modelSHA256: hex(modelSHA256), kernels: Self.kernelPath, threads: pool.threadCount)
        return (container, summary)
    }

    /// An escaped byte's symbol: uniform over 256 values, outside the model.
    static func escapedByte(_ b: UInt8) -> (start: UInt32, freq: UInt32) {
        let width = UInt32(1) << (QuantizedSoftmax.precisionBits - 8)
        return (UInt32(b) * width, width)
    }

    /// −ln softmax(logits)[target], in Double.
    static func negativeLogLikelihood(_ logits: UnsafePointer<Float>, count: Int, target: Int) -> Double {
        var m = logits[0]
        for i in 1 ..< count where logits[i] > m { m = logits[i] }
        var s = 0.0
        for i in 0 ..< count { s += Double(expf(logits[i] - m)) }
        return log(s) - Double(logits[target] - m)
    }

    // MARK: Decompression

    /// Checks that `container` (read from `path`) was made with this model, kernel path and layout.
    public func check(_ container: ZipContainer, path: String) throws {
        guard container.modelSHA256 == modelSHA256 else {
            throw ZipError.modelMismatch(path: path, reason: "it was compressed with \(container.modelName) (sha256 \(hex(container.modelSHA256)), \(container.modelBytes) bytes), but \(modelPath) has sha256 \(hex(modelSHA256)); pass that model with --model")
        }
        guard container.tokenizerSHA256 == tokenizerSHA256, container.vocabulary == language.model.config.vocabSize else {
            throw ZipError.modelMismatch(path: path, reason: "the tokenizer of \(modelPath) differs from the one recorded")
        }
        guard container.probabilityBits == QuantizedSoftmax.precisionBits, container.stepsPerNat == Int(QuantizedSoftmax.stepsPerNat),
              container.maxSteps == QuantizedSoftmax.maxSteps else {
            throw ZipError.environmentMismatch(path: path, reason: "it uses a probability model (2^\(container.probabilityBits), \(container.stepsPerNat) steps per nat, cap \(container.maxSteps)) this build does not implement")
        }
        guard container.kernels == Self.kernelPath else {
            throw ZipError.environmentMismatch(path: path, reason: "it was compressed with the \(container.kernels) kernels and this machine runs the \(Self.kernelPath) kernels, whose logits differ in the last bits; decode it on a machine with the \(container.kernels) path")
        }
        guard container.repacked == layout.repack, container.lookupTables == layout.lookupTables else {
            throw ZipError.environmentMismatch(path: path, reason: "the model was loaded with another kernel layout (repack \(container.repacked), lookup tables \(container.lookupTables))")
        }
        guard container.escapeToken == stream.escapeToken else {
            throw ZipError.modelMismatch(path: path, reason: "the escape token recorded (\(container.escapeToken.map(String.init) ?? "none")) is not \(modelPath)'s first control token")
        }
        guard container.startToken < language.model.config.vocabSize, container.lanes <= 4096,
              container.chunkTokens <= language.model.config.contextLength else {
            throw ZipError.corrupt(path: path, reason: "settings outside what the model allows (start token \(container.startToken), \(container.lanes) lanes, chunks of \(container.chunkTokens) tokens)")
        }
        // Every token costs at least −log2(1 − (V − 1)/2^28) ≥ (V − 1)/2^28/ln 2 bits (all other tokens keep a
        // frequency of 1), so the payload bounds the token count before anything that large is allocated.
        let minimumBits = Double(language.model.config.vocabSize - 1) / Double(1 << QuantizedSoftmax.precisionBits) / log(2.0)
        guard Double(container.tokenCount) * minimumBits <= Double(container.payload.count * 8 + 64) else {
            throw ZipError.corrupt(path: path, reason: "\(container.tokenCount) tokens cannot fit in a payload of \(container.payload.count) bytes")
        }
    }

    /// The original bytes of `container` (read from `path`); `progress(done, total)` sees tokens decoded.
    public func decompress(_ container: ZipContainer, path: String, progress: (Int, Int) -> Void = { _, _ in }) throws -> [UInt8] {
        try check(container, path: path)
        let schedule = Schedule(tokenCount: container.tokenCount, lanes: container.lanes, chunkTokens: container.chunkTokens)
        var tokens = [Int](repeating: 0, count: container.tokenCount)
        var escaped: [Int: UInt8] = [:]
        let vocab = language.model.config.vocabSize
        let diverged = ZipError.decodedMismatch(path: path, reason: "the coded tokens do not decode consistently: the file is damaged, or this machine computes other probabilities than the encoder's")
        try container.payload.withUnsafeBytes { payload in
            guard var decoder = RANSDecoder(payload, scaleBits: QuantizedSoftmax.precisionBits) else {
                throw ZipError.corrupt(path: path, reason: "the payload is too short or its coder state is invalid")
            }
            try tokens.withUnsafeMutableBufferPointer { toks in
                try run(schedule, tokens: toks, startToken: container.startToken, progress: progress) { targets, _, freq in
                    for (r, g) in targets.enumerated() {
                        let f = freq + r * vocab
                        let (t, start) = QuantizedSoftmax.token(at: decoder.slot(), f, count: vocab)
                        guard decoder.advance(start: start, freq: f[t]) else { throw diverged }
                        toks[g] = t
                        if t == container.escapeToken {
                            let b = UInt8(decoder.slot() >> UInt32(QuantizedSoftmax.precisionBits - 8))
                            let (s, w) = Self.escapedByte(b)
                            guard decoder.advance(start: s, freq: w) else { throw diverged }
                            escaped[g] = b
                        }
                    }
                }
            }
            guard decoder.isComplete else { throw diverged }
        }
        guard let bytes = stream.bytes(for: TokenStream.Tokens(tokens: tokens, escaped: escaped)), bytes.count == container.originalBytes,
              Array(SHA256.hash(data: bytes)) == container.originalSHA256 else {
            throw ZipError.decodedMismatch(path: path, reason: "the decoded bytes do not match the original's SHA-256 (this machine computed other probabilities than the encoder's, or the file is damaged)")
        }
        return bytes
    }

    // MARK: The lockstep schedule

    /// Chunk k holds tokens [k·chunkTokens, min(n, (k+1)·chunkTokens)); waves of `lanes` consecutive chunks run
    /// together, lane i of a wave holding chunk wave·lanes + i.
    struct Schedule {
        let tokenCount: Int
        let lanes: Int
        let chunkTokens: Int
        var chunks: Int { chunkTokens == 0 ? 0 : (tokenCount + chunkTokens - 1) / chunkTokens }
        func range(ofChunk k: Int) -> Range<Int> { k * chunkTokens ..< min(tokenCount, (k + 1) * chunkTokens) }
    }

    /// Runs every step of `schedule`: each active lane feeds its previous token (the start token at position 0) and
    /// gets the frequencies of the token at its next index; `code(targets, logits, freq)` then sees, per active lane in
    /// order, the index of the token predicted (`targets`), the logits [active × vocab] and the frequencies
    /// [active × vocab], and must leave that token in `tokens` before the next step.
    private func run(_ schedule: Schedule, tokens: UnsafeMutableBufferPointer<Int>, startToken: Int? = nil,
                     progress: (Int, Int) -> Void,
                     code: (_ targets: [Int], _ logits: UnsafePointer<Float>, _ freq: UnsafePointer<UInt32>) throws -> Void) throws {
        guard schedule.tokenCount > 0 else { return }
        let model = language.model
        let c = model.config
        let start = startToken ?? self.startToken
        let lanes = min(schedule.lanes, schedule.chunks)
        let cacheBytes = Double(lanes) * Double(schedule.chunkTokens) * Double(2 * c.layers * c.kvDim * MemoryLayout<Float>.size)
        guard cacheBytes <= Double(Self.maxCacheBytes) else {
            throw ZipError.badInput(path: modelPath, reason: String(format: "%d lanes × %d tokens need %.1f GiB of KV cache (at most %d GiB); use fewer lanes or shorter chunks", lanes, schedule.chunkTokens, cacheBytes / 0x1p30, Self.maxCacheBytes >> 30))
        }
        let pass = ForwardPass(model: model, pool: pool, maxBatch: lanes)
        let caches: [KVCache] = try (0 ..< lanes).map { _ in
            try F32KVCache(layers: c.layers, capacity: schedule.chunkTokens, kvHeads: c.kvHeads, headDim: c.headDim)
        }
        let vocab = c.vocabSize
        let x = UnsafeMutablePointer<Float>.allocate(capacity: lanes * c.dim)  // residual stream [lanes × dim]
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: lanes * vocab)  // [lanes × vocab]
        let freq = UnsafeMutablePointer<UInt32>.allocate(capacity: lanes * vocab)  // [lanes × vocab]
        let steps = UnsafeMutablePointer<UInt16>.allocate(capacity: lanes * vocab)  // scratch [lanes × vocab]
        defer { x.deallocate(); logits.deallocate(); freq.deallocate(); steps.deallocate() }
        var done = 0
        var wave = 0
        while wave < schedule.chunks {
            let chunks = Array(wave ..< min(schedule.chunks, wave + lanes))
            let longest = chunks.map { schedule.range(ofChunk: $0).count }.max()!
            for t in 0 ..< longest {
                var inputs: [Int] = [], targets: [Int] = [], segments: [BatchSegment] = []
                for (lane, k) in chunks.enumerated() {
                    let r = schedule.range(ofChunk: k)
                    guard t < r.count else { continue }
                    inputs.append(t == 0 ? start : tokens[r.lowerBound + t - 1])
                    targets.append(r.lowerBound + t)
                    segments.append(BatchSegment(cache: caches[lane], start: t, count: 1))
                }
                try pass.embed(inputs, into: x)
                for (li, layer) in model.layers.enumerated() {
                    try pass.block(li, layer, x: x, segments: segments, cacheLayer: li)
                }
                let n = inputs.count
                try pass.logits(x, rows: n, into: logits)
                pool.parallelFor(n) { rows in
                    for r in rows {
                        QuantizedSoftmax.frequencies(logits + r * vocab, count: vocab, steps: steps + r * vocab, into: freq + r * vocab)
                    }
                }
                try code(targets, logits, freq)
                done += n
                progress(done, schedule.tokenCount)
            }
            wave += lanes
        }
    }
}

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
