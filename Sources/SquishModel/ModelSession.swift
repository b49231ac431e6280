import Foundation
import SquishKernels

/// Runs a model over a growing sequence: batched prefill and single-token decode against a KV cache, through the one
/// forward pass. Not thread-safe; one session per conversation.
public final class ModelSession {
    public let model: TransformerModel
    public let pool: WorkerPool
    public let cache: KVCache
    public let contextLength: Int
    /// Most tokens run through the model in one batch; longer inputs are split.
    public var maxBatch: Int { pass.maxBatch }
    /// Positions already in the cache.
    public private(set) var position = 0

    public let pass: ForwardPass
    private let x: UnsafeMutablePointer<Float>  // residual stream [maxBatch × dim]

    /// A context of `contextLength` positions (default and maximum: what the model was trained for).
    /// `exactActivations`: multiply with f32 activations instead of 8-bit-rounded ones (a slow reference mode).
    /// `kv`: the kind of cache to make when `cache` is not given.
    public init(model: TransformerModel, pool: WorkerPool, contextLength: Int? = nil, maxBatch: Int = 512, cache: KVCache? = nil,
                kv: KVCacheSpec = .f32, exactActivations: Bool = false) throws {
        let c = model.config
        let ctx = contextLength ?? c.contextLength
        guard ctx >= 1, ctx <= c.contextLength else {
            throw ModelError.invalidArgument("a context of \(ctx) positions is outside 1 ... \(c.contextLength), what \(model.path) was trained for")
        }
        self.model = model
        self.pool = pool
        self.contextLength = ctx
        self.cache = try cache ?? kv.makeCache(model: model, pool: pool, capacity: ctx, batch: min(max(1, maxBatch), ctx))
        pass = ForwardPass(model: model, pool: pool, maxBatch: min(max(1, maxBatch), ctx, self.cache.largestBatch),
                           exactActivations: exactActivations)
        x = .allocate(capacity: pass.maxBatch * c.dim)
    }

    deinit { x.deallocate() }

    /// Forgets everything (or everything from `position` on).
    public func reset(to position: Int = 0) {
        self.position = max(0, min(position, self.position))
        cache.truncate(to: self.position)
    }

    /// Logits [count × vocab] for the last `count` of `tokens` (run at the next positions) as a user of the cache meets
    /// them: a cache that compresses a prompt when generation begins (SnapKV) reads the tokens before the scored ones as
    /// a prompt and the scored ones one at a time, as generated text; any other cache reads them all as one input.
    public func score(_ tokens: [Int], last count: Int) throws -> [Float] {
        let n = max(0, min(count, tokens.count))
        guard cache.compressesAfterPrompt, n > 0 else { return try forward(tokens, logitsFor: n) }
        var logits: [Float] = []
        logits.reserveCapacity(n * model.config.vocabSize)
        let split = tokens.count - n
        if split > 0 { _ = try forward(Array(tokens[..<split]), logitsFor: 0) }
        for t in tokens[split...] { logits += try forward([t]) }
        return logits
    }

    /// Runs `tokens` at the next positions. Returns logits [count × vocab] for the last `logitsFor` tokens
    /// (default 1: the next-token distribution after the input).
    public func forward(_ tokens: [Int], logitsFor: Int = 1) throws -> [Float] {
        let c = model.config
        guard !tokens.isEmpty else { throw ModelError.emptyInput("the token sequence") }
        guard position + tokens.count <= contextLength else {
            throw ModelError.contextOverflow(tokens: position + tokens.count, context: contextLength)
        }
        for t in tokens where t < 0 || t >= c.vocabSize { throw ModelError.invalidToken(t, vocabulary: c.vocabSize) }
        let wanted = max(0, min(logitsFor, tokens.count))
        var logits = [Float](repeating: 0, count: wanted * c.vocabSize)
        var start = 0
        while start < tokens.count {
            let n = min(maxBatch, tokens.count - start)
            // Rows of this batch whose logits are wanted: the overall last `wanted` tokens.
            let firstWanted = tokens.count - wanted
            let lo = max(firstWanted, start), hi = start + n
            try pass.embed(tokens[start ..< start + n], into: x)
            do {
                for (li, layer) in model.layers.enumerated() {
                    try pass.block(li, layer, x: x, tokens: n, start: position, cache: cache, cacheLayer: li)
                }
            } catch {
                cache.truncate(to: position)  // the failed batch leaves nothing behind
                throw error
            }
            position += n
            if lo < hi {
                try logits.withUnsafeMutableBufferPointer { out in
                    try pass.logits(x + (lo - start) * c.dim, rows: hi - lo, into: out.baseAddress! + (lo - firstWanted) * c.vocabSize)
                }
            }
            start += n
        }
        return logits
    }
}
