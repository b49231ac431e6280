import SquishCore
import SquishKernels

/// KIVI (Liu et al. 2024, "KIVI: a tuning-free asymmetric 2bit quantization for KV cache"): keys quantized per
/// channel over groups of `group` positions (outlier channels keep their own range), values per position (in groups
/// of 32 channels), both asymmetric with f16 scale and minimum; the most recent positions stay f32 in a window of
/// `residual + group` slots; keys and values may take different bits (`keyBits`: keys carry most of a 2-bit cache's
/// error, so 4-bit keys with 2-bit values is a step between the two). When the window is full its oldest `group` positions are quantized, so between
/// `residual` and `residual + group − 1` positions are f32 (section 3.3's residual, with one group being filled).
///
/// The first `sink` positions (the attention sinks, StreamingLLM's observation: most heads put much of their
/// attention there, so their error weighs most) are also kept in f32 and read from there; the first key group's
/// range is fitted without them.
///
/// With `rotate`, each key is turned by a randomized Hadamard rotation of its head (HadamardRotation) before it is
/// stored, and each query the same way before it is scored, which leaves the scores as they were but spreads outlier
/// channels over all, as llama.cpp does before quantizing keys to 4 bits.
///
/// With `preRoPE` (KVQuant's observation, Hooper et al. 2024, section 3.2), keys are quantized as they were before
/// RoPE turned them: RoPE spins each pair of channels by an angle that grows with the position, so a channel's values
/// across a group of positions oscillate and widen its range, while before RoPE a channel keeps its scale. The window
/// and the sinks keep the keys as they come (after RoPE); a group is turned back by its positions' angles when it is
/// quantized, and its keys are decoded and turned forward again, a group at a time in L1, when they are scored (the
/// rotation, if any, is then applied to the un-turned keys and undone on decoding, as it no longer commutes with the
/// queries).
///
/// With `rotateValues`, each value is turned by a randomized Hadamard rotation of its head before it is quantized (per
/// position, in groups of 32 channels, so one outlier channel widens its whole group's grid; the rotation spreads it).
/// The rotation is linear, so the attention-weighted sum of the quantized values is turned back once per query head
/// rather than each value on decoding (as QuaRot, Ashkboos et al. 2024, rotates the values it quantizes).
///
/// With `allocate`, each key block gives its channels their own widths (0, 2 … 8 bits, the average `keyBits`) for the
/// least expected error of the scores: a channel's error counts as its range squared times `channelWeights`, the
/// queries' mean square on that channel (RetrievalHeads.queryEnergies; all 1 when nil), so the channels the queries
/// read most and that vary most take the bits (KVKernels' allocated channel blocks).
///
/// Positions are stored in order. Layout per layer: key blocks [capacity / group][KV head][block bytes] (per-channel
/// f16 scales, minimums, then the codes of `group` positions), value rows [capacity][KV head][row bytes], and the
/// window's f32 keys and values [window slots][KV heads × headDim] (position p in slot p mod window).
public final class KIVIKVCache: KVCache {
    public let spec: KVCacheSpec
    /// Bits per value and per key.
    public let bits: Int
    public let keyBits: Int
    public let group: Int
    public let residual: Int
    public let sink: Int
    /// Keys and queries are rotated (nil: stored as they are).
    public let rotation: HadamardRotation?
    /// Keys quantized before RoPE (nil: as stored) and with per-channel widths.
    public let preRoPE: KeyRoPE?
    public let allocate: Bool
    /// Values turned by a Hadamard rotation before they are quantized (nil: as they come).
    public let valueRotation: HadamardRotation?
    /// The value rotation's signs, drawn apart from the keys' so that the two rotations are unrelated.
    public static let valueRotationSeed: UInt64 = 0x5641_4C55_4553
    private let channelWeights: [[[Float]]]?  // [layer][KV head][channel]
    /// Queries are turned by `rotation` (keys are scored in the rotated frame); not with preRoPE.
    private var rotatesQueries: Bool { rotation != nil && preRoPE == nil }
    public let capacity: Int
    public let headDim: Int
    /// f32 slots per layer: residual + group, or the capacity when that is smaller.
    public let window: Int
    private let valueFormat: KVKernels.RowFormat
    private let valueGroup: Int  // channels per value quantization group
    private let valueRowBytes: Int  // bytes of one KV head's value row
    private let blockBytes: Int  // bytes of one KV head's key block
    private let kvHeads: [Int]  // [layers]
    private var length: [Int]  // [layers]: positions stored
    private var quantized: [Int]  // [layers]: positions 0 ..< quantized[l] are in the quantized storage (a multiple of group)
    private let keyStart: [Int], valueStart: [Int], windowStart: [Int]  // [layers]: offsets in the buffers below
    private let keyBlocks: UnsafeMutableRawPointer  // [Σ_layers capacity/group × kvHeads × blockBytes]
    private let valueRows: UnsafeMutableRawPointer  // [Σ_layers capacity × kvHeads × valueRowBytes]
    private let windowKeys: UnsafeMutablePointer<Float>  // [Σ_layers window × kvHeads × headDim]
    private let windowValues: UnsafeMutablePointer<Float>  // same layout
    private let gather: UnsafeMutablePointer<Float>  // [group × headDim]: one head's keys of a group being quantized
    private let sinkStart: [Int]  // [layers]: offset of the layer's [sink × kvHeads × headDim] in sinkKeys/sinkValues
    private let sinkKeys: UnsafeMutablePointer<Float>
    private let sinkValues: UnsafeMutablePointer<Float>

    public init(bits: Int, keyBits: Int? = nil, group: Int, residual: Int, sink: Int = 0, rotate: Bool = false,
                preRoPE: KeyRoPE? = nil, allocate: Bool = false, channelWeights: [[[Float]]]? = nil, rotateValues: Bool = false,
                kvHeads: [Int], capacity: Int, headDim: Int, spec: KVCacheSpec) throws {
        let keyBits = keyBits ?? bits
        try checkKVShape(spec: spec, kvHeads: kvHeads, capacity: capacity, headDim: headDim, needsMultipleOf8: true)
        precondition((bits == 4 || bits == 2) && (keyBits == 4 || keyBits == 2) && group % 8 == 0 && group <= KVKernels.maxGroup && residual >= 0)
        self.spec = spec
        self.bits = bits
        self.keyBits = keyBits
        self.group = group
        self.residual = residual
        self.sink = min(max(sink, 0), capacity)
        rotation = rotate ? HadamardRotation(count: headDim) : nil
        if let preRoPE {
            precondition(preRoPE.layers == kvHeads.count && 2 * preRoPE.half <= headDim && preRoPE.capacity >= capacity)
        }
        self.preRoPE = preRoPE
        self.allocate = allocate
        valueRotation = rotateValues ? HadamardRotation(count: headDim, seed: Self.valueRotationSeed) : nil
        if let channelWeights {
            precondition(channelWeights.map(\.count) == kvHeads && channelWeights.allSatisfy { $0.allSatisfy { $0.count == headDim } })
        }
        self.channelWeights = channelWeights
        self.capacity = capacity
        self.headDim = headDim
        window = min(residual + group, capacity)
        valueFormat = bits == 4 ? .u4 : .u2
        let valueRow = KVRowLayout(valueFormat, headDim: headDim)
        valueGroup = valueRow.group
        valueRowBytes = valueRow.bytes
        blockBytes = allocate ? KVKernels.allocatedBlockBytes(bits: keyBits, headDim: headDim, tokens: group)
            : KVKernels.channelBlockBytes(bits: keyBits, headDim: headDim, tokens: group)
        self.kvHeads = kvHeads
        length = Array(repeating: 0, count: kvHeads.count)
        quantized = length
        let heads = kvHeads.reduce(0, +)
        guard let kb = Checked.product([heads, capacity / group, blockBytes]), let vb = Checked.product([heads, capacity, valueRowBytes]),
              let wb = Checked.product([heads, window, headDim]) else {
            throw ModelError.invalidKVCacheSpec(spec: spec.description, reason: "\(capacity) positions do not fit in memory")
        }
        var k = 0, v = 0, w = 0, ks: [Int] = [], vs: [Int] = [], ws: [Int] = []
        for h in kvHeads {
            ks.append(k); vs.append(v); ws.append(w)
            k += capacity / group * h * blockBytes
            v += capacity * h * valueRowBytes
            w += window * h * headDim
        }
        keyStart = ks; valueStart = vs; windowStart = ws
        let sinks = min(max(sink, 0), capacity)
        sinkStart = kvHeads.indices.map { kvHeads[..<$0].reduce(0, +) * sinks * headDim }
        sinkKeys = .allocate(capacity: max(heads * sinks * headDim, 1))
        sinkValues = .allocate(capacity: max(heads * sinks * headDim, 1))
        // Not zero-filled: only positions that were stored are ever read, so untouched pages cost no memory.
        keyBlocks = .allocate(byteCount: max(kb, 1), alignment: 64)
        valueRows = .allocate(byteCount: max(vb, 1), alignment: 64)
        windowKeys = .allocate(capacity: max(wb, 1))
        windowValues = .allocate(capacity: max(wb, 1))
        gather = .allocate(capacity: group * headDim)
    }

    deinit {
        keyBlocks.deallocate()
        valueRows.deallocate()
        windowKeys.deallocate()
        windowValues.deallocate()
        gather.deallocate()
        sinkKeys.deallocate()
        sinkValues.deallocate()
    }

    /// f32 slot of a position: [kvHeads × headDim] floats.
    @inline(__always) private func slot(_ layer: Int, _ position: Int) -> Int {
        windowStart[layer] + position % window * kvHeads[layer] * headDim
    }

    public func store(layer l: Int, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        precondition(position < capacity, "KV cache position \(position) beyond capacity \(capacity)")
        if position < length[l] { truncate(layer: l, to: position) }
        precondition(position == length[l], "KIVI cache stores positions in order: \(position) after \(length[l])")
        let d = kvHeads[l] * headDim
        (windowKeys + slot(l, position)).update(from: key, count: d)
        if let rotation, rotatesQueries {
            for h in 0 ..< kvHeads[l] { rotation.apply(windowKeys + slot(l, position) + h * headDim) }
        }
        (windowValues + slot(l, position)).update(from: value, count: d)
        if position < sink {
            (sinkKeys + sinkStart[l] + position * d).update(from: windowKeys + slot(l, position), count: d)  // as in the window
            (sinkValues + sinkStart[l] + position * d).update(from: value, count: d)
        }
        length[l] += 1
        if length[l] - quantized[l] >= window && quantized[l] + group <= capacity { quantizeOldestGroup(l) }
    }

    /// Moves positions quantized ..< quantized + group of layer l from the window into the quantized storage.
    private func quantizeOldestGroup(_ l: Int) {
        let q0 = quantized[l], heads = kvHeads[l]
        // Sinks are read from their f32 copies: their key rows take the first other position's (so they do not
        // widen the channels' ranges), and their value rows are not written.
        let firstOther = max(q0, sink)
        for h in 0 ..< heads {
            for t in 0 ..< group {
                let from = firstOther < q0 + group ? max(q0 + t, firstOther) : q0 + t
                let row = gather + t * headDim
                row.update(from: windowKeys + slot(l, from) + h * headDim, count: headDim)
                if let preRoPE {
                    preRoPE.turn(row, count: 1, stride: headDim, layer: l, first: from, inverse: true)
                    rotation?.apply(row)
                }
            }
            let block = keyBlocks + keyStart[l] + (q0 / group * heads + h) * blockBytes
            if allocate {
                let quantize = { (w: UnsafePointer<Float>?) in
                    KVKernels.quantizeChannelsAllocated(bits: self.keyBits, self.gather, stride: self.headDim, tokens: self.group,
                                                        headDim: self.headDim, weights: w, into: block)
                }
                if let w = channelWeights?[l][h] { w.withUnsafeBufferPointer { quantize($0.baseAddress) } } else { quantize(nil) }
            } else {
                KVKernels.quantizeChannels(bits: keyBits, gather, stride: headDim, tokens: group, headDim: headDim, into: block)
            }
            for t in min(group, max(0, sink - q0)) ..< group {
                var from = UnsafePointer(windowValues + slot(l, q0 + t) + h * headDim)
                if let valueRotation { valueRotation.apply(from, into: gather); from = UnsafePointer(gather) }
                KVKernels.quantizeRow(valueFormat, from, headDim: headDim, group: valueGroup,
                                      into: valueRows + valueStart[l] + ((q0 + t) * heads + h) * valueRowBytes)
            }
        }
        quantized[l] = q0 + group
    }


    public func attend(layer l: Int, kvHead: Int, queries: UnsafePointer<Float>, heads: Int, headDim: Int, positions: Range<Int>,
                       scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
        attend(layer: l, kvHead: kvHead, queries: queries, heads: heads, headDim: headDim, positions: positions, scale: scale,
               scores: scores, output: output, decoded: nil)
    }

    /// A tile of prefill queries: where the keys are decoded before they are scored (`p`, `a`), the quantized groups
    /// the tile reads are decoded once for all its tokens rather than once per token.
    public func attend(layer l: Int, kvHead: Int, queries: UnsafePointer<Float>, queryStride: Int, tokens: Int, heads: Int,
                       headDim: Int, lower: UnsafePointer<Int64>, upper: UnsafePointer<Int64>, scale: Float,
                       scratch: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>, outputStride: Int) {
        var lo = Int.max, hi = 0
        for i in 0 ..< tokens { lo = min(lo, Int(lower[i])); hi = max(hi, Int(upper[i])) }
        let g0 = lo / group, g1 = (min(hi, quantized[l]) + group - 1) / group
        let shares = (allocate || preRoPE != nil) && tokens > 1 && g0 < g1
        func run(_ decoded: (keys: UnsafePointer<Float>, first: Int)?) {
            for i in 0 ..< tokens {
                attend(layer: l, kvHead: kvHead, queries: queries + i * queryStride, heads: heads, headDim: headDim,
                       positions: Int(lower[i]) ..< Int(upper[i]), scale: scale, scores: scratch, output: output + i * outputStride,
                       decoded: decoded)
            }
        }
        guard shares else { return run(nil) }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: (g1 - g0) * group * headDim) { keys in
            for g in g0 ..< g1 { decodeKeys(layer: l, head: kvHead, group: g, 0 ..< group, into: keys.baseAddress! + (g - g0) * group * headDim) }
            run((UnsafePointer(keys.baseAddress!), g0 * group))
        }
    }

    /// `decoded`: the keys of the quantized positions from `first` on, already decoded (the tiled path above).
    private func attend(layer l: Int, kvHead: Int, queries: UnsafePointer<Float>, heads: Int, headDim: Int, positions: Range<Int>,
                        scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>,
                        decoded: (keys: UnsafePointer<Float>, first: Int)?) {
        precondition(headDim == self.headDim, "head size \(headDim) is not the cache's \(self.headDim)")
        guard let rotation, rotatesQueries else {
            return attendStored(layer: l, kvHead: kvHead, queries: queries, heads: heads, positions: positions, scale: scale,
                                scores: scores, output: output, decoded: decoded)
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: heads * headDim) { q in
            let q = q.baseAddress!
            q.update(from: queries, count: heads * headDim)
            for r in 0 ..< heads { rotation.apply(q + r * headDim) }
            attendStored(layer: l, kvHead: kvHead, queries: q, heads: heads, positions: positions, scale: scale, scores: scores,
                         output: output, decoded: decoded)
        }
    }

    /// Keys of positions g·group + j, j in js, of KV head h as the window holds them (after RoPE; rotated when the
    /// queries are): dst[(j − js.lowerBound)·headDim ..].
    private func decodeKeys(layer l: Int, head h: Int, group g: Int, _ js: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        let block = keyBlocks + keyStart[l] + (g * kvHeads[l] + h) * blockBytes
        if allocate {
            KVKernels.dequantizeChannelsAllocated(block, headDim: headDim, tokens: group, positions: js, into: dst, stride: headDim)
        } else {
            for j in js { KVKernels.dequantizeChannels(bits: keyBits, block, headDim: headDim, token: j, into: dst + (j - js.lowerBound) * headDim) }
        }
        guard let preRoPE else { return }
        if let rotation { for j in js.indices { rotation.invert(dst + (j - js.lowerBound) * headDim) } }
        preRoPE.turn(dst, count: js.count, stride: headDim, layer: l, first: g * group + js.lowerBound, inverse: false)
    }

    /// Attention with queries in the stored keys' frame (rotated when the keys are).
    private func attendStored(layer l: Int, kvHead: Int, queries: UnsafePointer<Float>, heads: Int, positions: Range<Int>,
                              scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>,
                              decoded: (keys: UnsafePointer<Float>, first: Int)?) {
        precondition(positions.upperBound <= length[l], "attending to positions \(positions) of \(length[l]) stored")
        let n = positions.count, first = positions.lowerBound
        let kvh = kvHeads[l]
        let qEnd = min(positions.upperBound, quantized[l])
        let f32Stride = kvh * headDim * MemoryLayout<Float>.size
        // Scores: quantized key blocks, then the f32 window (its slots may wrap around).
        var p = first
        let decodes = allocate || preRoPE != nil
        if let decoded, p < qEnd {
            precondition(p >= decoded.first, "positions \(positions) begin before the decoded keys (\(decoded.first))")
            KVKernels.scores(.f32, queries: queries, heads: heads, headDim: headDim, group: 8, rows: decoded.keys + (p - decoded.first) * headDim,
                             rowStride: headDim * MemoryLayout<Float>.size, count: qEnd - p, scale: scale, into: scores, ld: n)
            p = qEnd
        }
        while p < qEnd {
            let g = p / group, j0 = p - g * group, j1 = min(qEnd - g * group, group)
            if decodes {
                // A group's keys decoded into L1 and scored as f32 rows.
                withUnsafeTemporaryAllocation(of: Float.self, capacity: group * headDim) { rows in
                    decodeKeys(layer: l, head: kvHead, group: g, j0 ..< j1, into: rows.baseAddress!)
                    KVKernels.scores(.f32, queries: queries, heads: heads, headDim: headDim, group: 8, rows: rows.baseAddress!,
                                     rowStride: headDim * MemoryLayout<Float>.size, count: j1 - j0, scale: scale,
                                     into: scores + (p - first), ld: n)
                }
            } else {
                KVKernels.channelScores(bits: keyBits, queries: queries, heads: heads, headDim: headDim,
                                        block: keyBlocks + keyStart[l] + (g * kvh + kvHead) * blockBytes, positions: j0 ..< j1,
                                        scale: scale, into: scores + (p - first), ld: n)
            }
            p += j1 - j0
        }
        while p < positions.upperBound {
            let s = p % window, run = min(positions.upperBound - p, window - s)
            KVKernels.scores(.f32, queries: queries, heads: heads, headDim: headDim, group: 8,
                             rows: windowKeys + slot(l, p) + kvHead * headDim, rowStride: f32Stride, count: run, scale: scale,
                             into: scores + (p - first), ld: n)
            p += run
        }
        // Quantized sinks: scores again from their f32 copies.
        let sinkEnd = min(sink, qEnd), sinkRows = sinkKeys + sinkStart[l] + kvHead * headDim
        if first < sinkEnd {
            KVKernels.scores(.f32, queries: queries, heads: heads, headDim: headDim, group: 8, rows: sinkRows + first * kvh * headDim,
                             rowStride: f32Stride, count: sinkEnd - first, scale: scale, into: scores, ld: n)
        }
        KVKernels.softmax(scores, rows: heads, count: n, ld: n)
        output.update(repeating: 0, count: heads * headDim)
        // Quantized values first: with a rotation, their sum is turned back before the f32 rows are added.
        let q1 = max(first, sinkEnd)
        if q1 < qEnd {
            KVKernels.accumulate(valueFormat, weights: scores + (q1 - first), heads: heads, ld: n,
                                 rows: valueRows + valueStart[l] + (q1 * kvh + kvHead) * valueRowBytes, rowStride: kvh * valueRowBytes,
                                 count: qEnd - q1, headDim: headDim, group: valueGroup, into: output)
            if let valueRotation { for r in 0 ..< heads { valueRotation.invert(output + r * headDim) } }
        }
        if first < sinkEnd {
            KVKernels.accumulate(.f32, weights: scores, heads: heads, ld: n,
                                 rows: sinkValues + sinkStart[l] + (first * kvh + kvHead) * headDim, rowStride: f32Stride,
                                 count: sinkEnd - first, headDim: headDim, group: 8, into: output)
        }
        p = max(first, qEnd)
        while p < positions.upperBound {
            let s = p % window, run = min(positions.upperBound - p, window - s)
            KVKernels.accumulate(.f32, weights: scores + (p - first), heads: heads, ld: n,
                                 rows: windowValues + slot(l, p) + kvHead * headDim, rowStride: f32Stride, count: run,
                                 headDim: headDim, group: 8, into: output)
            p += run
        }
    }

    /// Forgets positions from `count` on. Positions of a quantized group that stay are dequantized back into the
    /// window (they are quantized again when the group completes).
    private func truncate(layer l: Int, to count: Int) {
        guard count < length[l] else { return }
        let c = max(0, count)
        if c < quantized[l] {
            let q0 = c / group * group, heads = kvHeads[l]
            for p in q0 ..< c {
                if p < sink {
                    let d = heads * headDim
                    (windowKeys + slot(l, p)).update(from: sinkKeys + sinkStart[l] + p * d, count: d)
                    (windowValues + slot(l, p)).update(from: sinkValues + sinkStart[l] + p * d, count: d)
                    continue
                }
                for h in 0 ..< heads {
                    decodeKeys(layer: l, head: h, group: q0 / group, p - q0 ..< p - q0 + 1, into: windowKeys + slot(l, p) + h * headDim)
                    KVKernels.dequantizeRow(valueFormat, valueRows + valueStart[l] + (p * heads + h) * valueRowBytes, headDim: headDim,
                                            group: valueGroup, into: windowValues + slot(l, p) + h * headDim)
                    valueRotation?.invert(windowValues + slot(l, p) + h * headDim)
                }
            }
            quantized[l] = q0
        }
        length[l] = c
    }

    public func truncate(to count: Int) {
        for l in kvHeads.indices { truncate(layer: l, to: count) }
    }

    public func copy(prefix count: Int) throws -> KVCache {
        precondition(count >= 0 && count <= capacity)
        let c = try KIVIKVCache(bits: bits, keyBits: keyBits, group: group, residual: residual, sink: sink, rotate: rotation != nil,
                                preRoPE: preRoPE, allocate: allocate, channelWeights: channelWeights, rotateValues: valueRotation != nil,
                                kvHeads: kvHeads, capacity: capacity, headDim: headDim, spec: spec)
        let sinkFloats = kvHeads.reduce(0, +) * sink * headDim
        c.sinkKeys.update(from: sinkKeys, count: sinkFloats)
        c.sinkValues.update(from: sinkValues, count: sinkFloats)
        for l in kvHeads.indices {
            let heads = kvHeads[l], q = quantized[l]
            (c.keyBlocks + keyStart[l]).copyMemory(from: keyBlocks + keyStart[l], byteCount: q / group * heads * blockBytes)
            (c.valueRows + valueStart[l]).copyMemory(from: valueRows + valueStart[l], byteCount: q * heads * valueRowBytes)
            (c.windowKeys + windowStart[l]).update(from: windowKeys + windowStart[l], count: window * heads * headDim)
            (c.windowValues + windowStart[l]).update(from: windowValues + windowStart[l], count: window * heads * headDim)
            c.length[l] = length[l]
            c.quantized[l] = q
        }
        c.truncate(to: count)
        return c
    }

    /// Positions a sequence of `count` positions holds quantized.
    public func quantizedPositions(_ count: Int) -> Int {
        let n = min(count, capacity)
        guard n >= window, window >= group else { return 0 }
        return min(((n - window) / group + 1) * group, capacity / group * group)
    }

    public func bytes(positions count: Int) -> Int {
        let n = min(count, capacity), q = quantizedPositions(n), heads = kvHeads.reduce(0, +)
        // Sinks: f32 copies from the start, and no value rows once quantized.
        return heads * (q / group * blockBytes + (q - min(sink, q)) * valueRowBytes
            + (min(n, window) + min(sink, n)) * headDim * 2 * MemoryLayout<Float>.size)
    }
}

/// RoPE's angles for the keys of every layer, so that a cache can turn keys back to before RoPE and forward again.
/// Immutable after init (the tables are written once there), hence `@unchecked Sendable`.
public final class KeyRoPE: @unchecked Sendable {
    /// Pairs of channels RoPE turns (the first 2·half of a head), and how it pairs them.
    public let half: Int
    public let style: RoPEStyle
    /// Positions covered.
    public let capacity: Int
    public let layers: Int
    private let cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>  // [distinct tables × capacity × half]
    private let layerOffset: [Int]  // [layer]: offset of its table in cos/sin

    /// The angles of `config`'s layers (and Llama 3 frequency `factors`) for positions 0 ..< capacity.
    public init(config c: ModelConfig, factors: [Float]?, capacity: Int) {
        let (tables, ofLayer) = RoPETable.perLayer(config: c, factors: factors)
        half = c.ropeDimensions / 2
        style = c.ropeStyle
        self.capacity = capacity
        layers = ofLayer.count
        let size = capacity * half
        cos = .allocate(capacity: max(1, tables.count * size))
        sin = .allocate(capacity: max(1, tables.count * size))
        for (i, t) in tables.enumerated() {
            t.reserve(capacity)
            (cos + i * size).initialize(from: t.cos, count: size)
            (sin + i * size).initialize(from: t.sin, count: size)
        }
        layerOffset = ofLayer.map { $0 * size }
    }

    deinit {
        cos.deallocate()
        sin.deallocate()
    }

    /// Turns `count` keys of one head (rows `stride` floats apart) by RoPE at positions first, first + 1, … of
    /// `layer`, or back when `inverse`.
    public func turn(_ keys: UnsafeMutablePointer<Float>, count: Int, stride: Int, layer: Int, first: Int, inverse: Bool) {
        precondition(first >= 0 && first + count <= capacity)
        let o = layerOffset[layer] + first * half
        for r in 0 ..< count {
            RoPETable.rotate(keys + r * stride, half: half, style: style, cos: cos + o + r * half, sin: sin + o + r * half, inverse: inverse)
        }
    }
}
