import Foundation
import Testing
import CSquishKernels
import SquishCore
import SquishKernels
import SquishModel

/// Independent Swift versions of the compressed caches' grids (CSquishKernels/kvcache.c documents the layouts):
/// quantize, then dequantize, in plain scalar code.
enum KVReference {
    static func f16(_ x: Float) -> Float { Float(Float16(x)) }

    /// Asymmetric: m = f16(min), d = f16((max − min) / levels), q = round((x − m) / d) clamped, x' = m + d·q.
    static func asymmetric(_ v: [Float], levels: Int) -> [Float] {
        let lo = v.min()!, hi = v.max()!
        let m = f16(lo), d = f16((hi - lo) / Float(levels))
        let inv: Float = d > 0 ? 1 / d : 0
        return v.map { x in m + d * min(max(((x - m) * inv).rounded(.toNearestOrEven), 0), Float(levels)) }
    }

    /// Symmetric 8-bit: d = f16(max |x| / 127), q = round(x / d) clamped to ±127.
    static func q8(_ v: [Float]) -> [Float] {
        let d = f16(v.map(abs).max()! / 127)
        let inv: Float = d > 0 ? 1 / d : 0
        return v.map { d * min(max(($0 * inv).rounded(.toNearestOrEven), -127), 127) }
    }

    /// A row quantized in the frame of `rotation` (values with `v`) and turned back.
    static func row(_ format: KVKernels.RowFormat, _ x: [Float], group: Int, rotation: HadamardRotation?) -> [Float] {
        guard let rotation else { return row(format, x, group: group) }
        var y = x
        y.withUnsafeMutableBufferPointer { rotation.apply($0.baseAddress!) }
        y = row(format, y, group: group)
        y.withUnsafeMutableBufferPointer { rotation.invert($0.baseAddress!) }
        return y
    }

    /// One token row (one KV head's headDim values) in groups of `group` channels.
    static func row(_ format: KVKernels.RowFormat, _ x: [Float], group: Int) -> [Float] {
        switch format {
        case .f32: return x
        case .f16: return x.map(f16)
        case .q8, .u4, .u2:
            return stride(from: 0, to: x.count, by: group).flatMap { g -> [Float] in
                let v = Array(x[g ..< g + group])
                return format == .q8 ? q8(v) : asymmetric(v, levels: format == .u4 ? 15 : 3)
            }
        }
    }

    /// Keys [tokens][headDim] quantized per channel over the tokens.
    static func channels(_ keys: [[Float]], bits: Int) -> [[Float]] {
        let hd = keys[0].count
        let columns = (0 ..< hd).map { c in asymmetric(keys.map { $0[c] }, levels: (1 << bits) - 1) }
        return keys.indices.map { t in (0 ..< hd).map { columns[$0][t] } }
    }

    /// Keys [tokens][headDim] quantized per channel with widths of their own: starting from 0, repeatedly the step (0 → 2
    /// bits, else one bit more, at most 8) that removes the most of weight · range² · (1/s₀² − 1/s₁²) per bit (s = 2^w − 1 steps,
    /// 1 for width 0; the lower channel on ties) until the widths sum to bits · headDim; a width-0 channel is the f16
    /// midpoint of its range. Also returns the widths.
    static func allocatedChannels(_ keys: [[Float]], bits: Int, weights: [Float]? = nil) -> (keys: [[Float]], widths: [Int]) {
        let hd = keys[0].count
        let ranges = (0 ..< hd).map { c in Double(keys.map { $0[c] }.max()!) - Double(keys.map { $0[c] }.min()!) }
        let err0 = (0 ..< hd).map { c in Double(weights?[c] ?? 1) * ranges[c] * ranges[c] }
        var w = [Int](repeating: 0, count: hd), left = bits * hd
        func steps(_ w: Int) -> Double { w == 0 ? 1 : Double((1 << w) - 1) }
        while left > 0 {
            var best: (c: Int, step: Int, gain: Double)? = nil
            for c in 0 ..< hd where w[c] < 8 {
                let step = w[c] == 0 ? 2 : 1
                guard step <= left else { continue }
                let gain = err0[c] * (1 / (steps(w[c]) * steps(w[c])) - 1 / (steps(w[c] + step) * steps(w[c] + step))) / Double(step)
                if best == nil || gain > best!.gain { best = (c, step, gain) }
            }
            guard let b = best else { break }
            w[b.c] += b.step
            left -= b.step
        }
        let columns = (0 ..< hd).map { c -> [Float] in
            let v = keys.map { $0[c] }
            return w[c] == 0 ? Array(repeating: f16(0.5 * v.min()! + 0.5 * v.max()!), count: v.count) : asymmetric(v, levels: (1 << w[c]) - 1)
        }
        return (keys.indices.map { t in (0 ..< hd).map { columns[$0][t] } }, w)
    }

    /// RoPE of one head's key at `position` in `layer` of `c`, in Double from the definition (angle position / scale ·
    /// θ_i, θ_i = base^(−2i/d), divided by Llama 3's frequency factor when there are factors), or its inverse.
    static func rope(_ x: [Float], config c: ModelConfig, factors: [Float]?, layer: Int, position: Int, inverse: Bool) -> [Float] {
        let half = c.ropeDimensions / 2, a = c.layerAttention[layer]
        var y = x
        for i in 0 ..< half {
            let theta = Foundation.pow(a.ropeBase, -2 * Double(i) / Double(c.ropeDimensions)) / Double(factors?[i] ?? 1)
            let angle = Double(position) / a.ropeLinearScale * theta
            let cs = Foundation.cos(angle), sn = (inverse ? -1 : 1) * Foundation.sin(angle)
            let (u, v) = c.ropeStyle == .adjacentPairs ? (2 * i, 2 * i + 1) : (i, i + half)
            y[u] = Float(Double(x[u]) * cs - Double(x[v]) * sn)
            y[v] = Float(Double(x[u]) * sn + Double(x[v]) * cs)
        }
        return y
    }

    /// Positions a KIVI cache holds quantized after storing `count` in order: a group leaves the f32 window each time
    /// the window (residual + group slots, at most the capacity) is full.
    static func kiviQuantized(count: Int, group: Int, residual: Int, capacity: Int) -> Int {
        let window = min(residual + group, capacity)
        var q = 0
        for length in 1 ... max(count, 1) where length <= count && length - q >= window && q + group <= capacity { q += group }
        return q
    }

    /// softmax(scale · K q_h) · V per head, in Double; keys/values [positions][headDim].
    static func attend(queries: [Float], heads: Int, keys: [[Float]], values: [[Float]], scale: Float) -> [Double] {
        let hd = keys[0].count
        var out: [Double] = []
        for h in 0 ..< heads {
            var s = keys.map { k in Double(scale) * (0 ..< hd).reduce(0.0) { $0 + Double(queries[h * hd + $1]) * Double(k[$1]) } }
            let mx = s.max()!
            s = s.map { exp($0 - mx) }
            let total = s.reduce(0, +)
            out += (0 ..< hd).map { i in values.indices.reduce(0.0) { $0 + s[$1] / total * Double(values[$1][i]) } }
        }
        return out
    }
}

/// The compressed caches' attention (kernels reading the quantized storage) against dequantize-then-attend in Double
/// with the Swift grids above, over ranges that start inside a key group and end in the f32 window (KIVI), two layers
/// of different KV widths and head sizes 64 (groups of 32 channels) and 24 (one group per head).
/// Tolerance: 2e-5 of the output's scale (float summation over ≤ 150 positions; the kernels' decoding may fuse the
/// multiply-add of m + d·q, one rounding fewer than the reference).
@Suite struct CompressedKVCacheTests {
    struct Data {
        let keys: [[[Float]]]  // [layer][position][kvHeads × headDim]
        let values: [[[Float]]]
    }

    static func data(kvHeads: [Int], headDim: Int, positions: Int, seed: UInt64) -> Data {
        var rng = SplitMix64(seed: seed)
        func rand() -> Float { Float(Double(rng.next() % 20001) / 10000 - 1) }
        // Keys with a few large channels (the outliers KIVI's per-channel grid is for).
        let keys = kvHeads.map { h in (0 ..< positions).map { _ in (0 ..< h * headDim).map { i in rand() * (i % headDim % 7 == 3 ? 8 : 1) } } }
        let values = kvHeads.map { h in (0 ..< positions).map { _ in (0 ..< h * headDim).map { _ in rand() } } }
        return Data(keys: keys, values: values)
    }

    static func fill(_ cache: KVCache, _ d: Data) {
        for p in 0 ..< d.keys[0].count {
            for l in d.keys.indices {
                d.keys[l][p].withUnsafeBufferPointer { k in
                    d.values[l][p].withUnsafeBufferPointer { v in cache.store(layer: l, position: p, key: k.baseAddress!, value: v.baseAddress!) }
                }
            }
        }
    }

    static func run(_ cache: KVCache, layer: Int, kvHead: Int, queries: [Float], heads: Int, headDim: Int, range: Range<Int>) -> [Float] {
        var scores = [Float](repeating: .nan, count: heads * range.count)
        var out = [Float](repeating: .nan, count: heads * headDim)
        cache.attend(layer: layer, kvHead: kvHead, queries: queries, heads: heads, headDim: headDim, positions: range,
                     scale: 1 / Float(headDim).squareRoot(), scores: &scores, output: &out)
        return out
    }

    static func check(_ got: [Float], _ want: [Double], _ what: String) {
        let norm = want.map(abs).max()! + 1e-3
        let worst = zip(got, want).map { abs(Double($0) - $1) }.max()!
        #expect(worst <= 2e-5 * norm, "\(what): max error \(worst) (scale \(norm))")
    }

    @Test(arguments: [("f16", 64), ("q8", 64), ("f16", 24), ("q8", 24)])
    func rowCachesMatchReference(spec: String, headDim: Int) throws {
        let kvHeads = [2, 1], n = 150
        let s = try KVCacheSpec.parse(spec)
        let format: KVKernels.RowFormat = spec == "f16" ? .f16 : .q8
        let cache = try QuantizedKVCache(format: spec == "f16" ? .f16 : .q8, kvHeads: kvHeads, capacity: 200, headDim: headDim, spec: s)
        let d = Self.data(kvHeads: kvHeads, headDim: headDim, positions: n, seed: UInt64(headDim))
        Self.fill(cache, d)
        let group = headDim % 32 == 0 ? 32 : headDim
        var rng = SplitMix64(seed: 99)
        let heads = 3
        let q = (0 ..< heads * headDim).map { _ in Float(Double(rng.next() % 20001) / 10000 - 1) }
        for (layer, kvHead) in [(0, 1), (1, 0)] {
            for range in [0 ..< n, 37 ..< n, 0 ..< 1] {
                let slice = { (rows: [[Float]]) in rows[range].map { Array($0[kvHead * headDim ..< (kvHead + 1) * headDim]) } }
                let keys = slice(d.keys[layer]).map { KVReference.row(format, $0, group: group) }
                let values = slice(d.values[layer]).map { KVReference.row(format, $0, group: group) }
                let want = KVReference.attend(queries: q, heads: heads, keys: keys, values: values, scale: 1 / Float(headDim).squareRoot())
                Self.check(Self.run(cache, layer: layer, kvHead: kvHead, queries: q, heads: heads, headDim: headDim, range: range), want,
                           "\(spec) hd \(headDim) layer \(layer) \(range)")
            }
        }
        // Memory: the row bytes of every stored position, keys and values.
        let rowBytes = format == .f16 ? 2 * headDim : headDim / group * (2 + group)
        #expect(cache.bytes(positions: n) == 2 * n * 3 * rowBytes)
        // A copy of a prefix attends exactly as the original over that prefix.
        let copy = try cache.copy(prefix: 100)
        #expect(Self.run(copy, layer: 0, kvHead: 1, queries: q, heads: heads, headDim: headDim, range: 0 ..< 100)
            == Self.run(cache, layer: 0, kvHead: 1, queries: q, heads: heads, headDim: headDim, range: 0 ..< 100))
    }

    /// With `rotateValues`, values are quantized rotated and read turned back.
    @Test(arguments: [(4, 32, 16, 64, false), (2, 32, 16, 64, false), (4, 8, 8, 24, false), (2, 8, 0, 24, false), (2, 16, 40, 64, false),
                      (2, 32, 16, 64, true), (4, 8, 8, 24, true)])
    func kiviMatchesReference(bits: Int, group: Int, residual: Int, headDim: Int, rotateValues: Bool) throws {
        let kvHeads = [2, 1], n = 150, capacity = 200
        let s = try KVCacheSpec.parse("kivi\(bits):g\(group),r\(residual)" + (rotateValues ? ",v" : ""))
        let cache = try KIVIKVCache(bits: bits, group: group, residual: residual, rotateValues: rotateValues, kvHeads: kvHeads,
                                    capacity: capacity, headDim: headDim, spec: s)
        let rotation = HadamardRotation(count: headDim, seed: KIVIKVCache.valueRotationSeed)
        let d = Self.data(kvHeads: kvHeads, headDim: headDim, positions: n, seed: UInt64(bits * 1000 + group + residual))
        Self.fill(cache, d)
        let quantized = KVReference.kiviQuantized(count: n, group: group, residual: residual, capacity: capacity)
        #expect(quantized > 0 && quantized < n)
        let valueGroup = headDim % 32 == 0 ? 32 : headDim
        let format: KVKernels.RowFormat = bits == 4 ? .u4 : .u2
        var rng = SplitMix64(seed: 5)
        let heads = 3
        let q = (0 ..< heads * headDim).map { _ in Float(Double(rng.next() % 20001) / 10000 - 1) }
        for (layer, kvHead) in [(0, 1), (1, 0)] {
            let head = { (rows: [[Float]]) in rows.map { Array($0[kvHead * headDim ..< (kvHead + 1) * headDim]) } }
            var keys = head(d.keys[layer]), values = head(d.values[layer])
            for g in stride(from: 0, to: quantized, by: group) {
                keys.replaceSubrange(g ..< g + group, with: KVReference.channels(Array(keys[g ..< g + group]), bits: bits))
            }
            for p in 0 ..< quantized { values[p] = KVReference.row(format, values[p], group: valueGroup, rotation: rotateValues ? rotation : nil) }
            for range in [0 ..< n, 13 ..< n, quantized - 3 ..< n, 0 ..< 5, n - 2 ..< n] {
                let want = KVReference.attend(queries: q, heads: heads, keys: Array(keys[range]), values: Array(values[range]),
                                              scale: 1 / Float(headDim).squareRoot())
                Self.check(Self.run(cache, layer: layer, kvHead: kvHead, queries: q, heads: heads, headDim: headDim, range: range), want,
                           "\(s) hd \(headDim) layer \(layer) \(range)")
            }
        }
        // Memory: per-channel key blocks (f16 scale and minimum per channel, codes) and value rows (f16 scale and
        // minimum per group) of the quantized positions, and the f32 window.
        let window = min(residual + group, capacity)
        let block = headDim * 4 + group * headDim * bits / 8, valueRow = headDim / valueGroup * (4 + valueGroup * bits / 8)
        #expect(cache.bytes(positions: n) == 3 * (quantized / group * block + quantized * valueRow + min(n, window) * headDim * 8))
        // Copies: the whole cache attends identically; a prefix inside the quantized part (dequantized back into the
        // window) attends as the original over that prefix, to rounding.
        let all = try cache.copy(prefix: n)
        #expect(Self.run(all, layer: 0, kvHead: 1, queries: q, heads: heads, headDim: headDim, range: 0 ..< n)
            == Self.run(cache, layer: 0, kvHead: 1, queries: q, heads: heads, headDim: headDim, range: 0 ..< n))
        let cut = quantized - group / 2
        let prefix = try cache.copy(prefix: cut)
        let a = Self.run(prefix, layer: 0, kvHead: 1, queries: q, heads: heads, headDim: headDim, range: 0 ..< cut)
        let b = Self.run(cache, layer: 0, kvHead: 1, queries: q, heads: heads, headDim: headDim, range: 0 ..< cut)
        Self.check(a, b.map(Double.init), "copy of \(cut) positions")
    }

    /// Allocated channel blocks (kvcache.c) against KVReference.allocatedChannels: the same widths and decoded keys, the
    /// widths summing to bits · headDim with a wider channel never taking fewer bits than a narrower one and channels
    /// that do not vary taking none; a range of positions decodes as those rows of the whole block; the block size.
    @Test(arguments: [(2, 32, 64), (4, 32, 64), (2, 8, 24), (2, 16, 128)])
    func allocatedBlocksMatchReference(bits: Int, tokens: Int, headDim: Int) {
        var rng = SplitMix64(seed: UInt64(bits * 100 + headDim))
        // Channel c varies on a scale of 2^(c mod 7 − 3); every ninth channel is constant.
        func key(_ c: Int) -> Float {
            if c % 9 == 4 { return 0.75 }
            let u = Float(Double(rng.next() % 20001) / 10000 - 1), scale = Float(1 << (c % 7)) / 8
            return u * scale + Float(c % 5)
        }
        let keys: [[Float]] = (0 ..< tokens).map { _ in (0 ..< headDim).map(key) }
        let bytes = sq_kv_allocated_block_bytes(Int32(bits), Int64(headDim), Int64(tokens))
        #expect(bytes == headDim * 4 + headDim / 2 + tokens * headDim * bits / 8)
        let range = (0 ..< headDim).map { c in keys.map { $0[c] }.max()! - keys.map { $0[c] }.min()! }
        for weights in [nil, (0 ..< headDim).map { Float(1 + $0 * 7 % 5) / 3 }] {
            var block = [UInt8](repeating: 0xAA, count: bytes)
            sq_kv_quantize_channels_allocated(Int32(bits), keys.flatMap { $0 }, Int64(headDim), Int64(tokens), Int64(headDim), weights, &block)
            var got = [Float](repeating: .nan, count: tokens * headDim)
            sq_kv_dequantize_channels_allocated(block, Int64(headDim), Int64(tokens), 0, Int64(tokens), &got, Int64(headDim))
            let (want, widths) = KVReference.allocatedChannels(keys, bits: bits, weights: weights)
            let stored: [Int] = (0 ..< headDim).map { c in
                let byte = Int(block[headDim * 4 + c / 2])
                return (byte >> (c % 2 * 4)) & 15
            }
            #expect(stored == widths)
            #expect(widths.reduce(0, +) == bits * headDim && widths.allSatisfy { $0 == 0 || (2 ... 8).contains($0) })
            let importance = (0 ..< headDim).map { c in (weights?[c] ?? 1) * range[c] * range[c] }
            for a in 0 ..< headDim {
                for b in 0 ..< headDim where importance[a] > importance[b] { #expect(widths[a] >= widths[b], "channels \(a), \(b)") }
            }
            #expect((0 ..< headDim).filter { range[$0] == 0 }.allSatisfy { widths[$0] == 0 })
            #expect(got == want.flatMap { $0 })
            var part = [Float](repeating: .nan, count: 5 * headDim)
            sq_kv_dequantize_channels_allocated(block, Int64(headDim), Int64(tokens), 3, 8, &part, Int64(headDim))
            #expect(part == Array(got[3 * headDim ..< 8 * headDim]))
            // The dispatched decoder (AVX2 where available) equals the portable one on aligned and unaligned ranges.
            for (j0, j1) in [(0, tokens), (3, tokens - 1), (1, 7), (8, tokens)] {
                var fast = [Float](repeating: .nan, count: (j1 - j0) * headDim), plain = fast
                sq_kv_dequantize_channels_allocated(block, Int64(headDim), Int64(tokens), Int64(j0), Int64(j1), &fast, Int64(headDim))
                sq_kv_dequantize_channels_allocated_portable(block, Int64(headDim), Int64(tokens), Int64(j0), Int64(j1), &plain, Int64(headDim))
                #expect(fast == plain && fast == Array(got[j0 * headDim ..< j1 * headDim]), "positions \(j0) ..< \(j1)")
            }
        }
    }

    /// Keys that are one vector per head turned by RoPE at each position (plus a little noise): a channel of them
    /// oscillates across positions, so quantized per channel after RoPE they lose much, before RoPE almost nothing.
    /// The attention of 2-bit caches (values exact on their grid) against f32 in Double: keys quantized before RoPE
    /// have under a fifth of the error.
    @Test func keysQuantizedBeforeRoPEKeepTheirStructure() throws {
        let model = try TransformerModel(hfDirectory: FamilyReferenceTests.fixture("qwen2"))
        let c = model.config, hd = c.headDim, n = 96, kvHeads = (0 ..< c.layers).map { c.kvHeads(layer: $0) }
        var rng = SplitMix64(seed: 17)
        func rand() -> Float { Float(Double(rng.next() % 20001) / 10000 - 1) }
        let base = (0 ..< kvHeads[0]).map { _ in (0 ..< hd).map { _ in 2 * rand() } }
        var keys: [[Float]] = [], values: [[Float]] = []
        for p in 0 ..< n {
            keys.append(base.flatMap { KVReference.rope($0.map { $0 + 0.01 * rand() }, config: c, factors: model.ropeFrequencyFactors,
                                                         layer: 0, position: p, inverse: false) })
            // Values on their 2-bit grid (0 … 3, each group of 8 channels holding both ends), so only keys err.
            values.append((0 ..< kvHeads[0] * hd).map { i in i % 8 == 0 ? 0 : i % 8 == 1 ? 3 : Float(rng.next() % 4) })
        }
        let heads = c.heads / c.kvHeads, q = (0 ..< heads * hd).map { _ in rand() }
        let want = KVReference.attend(queries: q, heads: heads, keys: keys.map { Array($0[..<hd]) }, values: values.map { Array($0[..<hd]) },
                                      scale: 1 / Float(hd).squareRoot())
        var errors: [Double] = []
        for spec in ["kivi2:g16,r0,k2", "kivi2:g16,r0,p"] {
            let cache = try KVCacheSpec.parse(spec).makeCache(config: c, capacity: n, ropeFrequencyFactors: model.ropeFrequencyFactors)
            for l in 0 ..< c.layers { for p in 0 ..< n { cache.store(layer: l, position: p, key: keys[p], value: values[p]) } }
            let got = Self.run(cache, layer: 0, kvHead: 0, queries: q, heads: heads, headDim: hd, range: 0 ..< n)
            errors.append(zip(got, want).map { abs(Double($0) - $1) }.max()!)
        }
        #expect(errors[1] < errors[0] / 5, "after RoPE \(errors[0]), before \(errors[1])")
    }

    /// Dispatched (AVX2 where available) and portable kernels agree on every format.
    /// The rotation is H·diag(s)/√b on each block of b values (b the largest power of two dividing the size): its
    /// matrix, the images of the unit vectors, against Sylvester's H[i][j] = (−1)^popcount(i & j) in Double (1e-6),
    /// with signs of both kinds.
    @Test(arguments: [(64, 64), (24, 8), (128, 128), (8, 8), (80, 16)])
    func hadamardRotation(count: Int, block: Int) {
        let r = HadamardRotation(count: count)
        #expect(r.block == block)
        var signs: [Float] = []
        for i in 0 ..< count {
            var e = [Float](repeating: 0, count: count)
            e[i] = 1
            e.withUnsafeMutableBufferPointer { r.apply($0.baseAddress!) }
            let first = i / block * block, s = e[first] * Float(block).squareRoot()  // Sylvester's first row is all +1
            #expect(abs(abs(s) - 1) < 1e-6)
            for j in 0 ..< count {
                let sylvester: Double = ((i % block) & (j % block)).nonzeroBitCount % 2 == 0 ? 1 : -1
                let want = j / block == i / block ? Double(s) * sylvester / Double(block).squareRoot() : 0
                #expect(abs(Double(e[j]) - want) < 1e-6, "\(count): column \(i) row \(j)")
            }
            signs.append(s)
        }
        #expect(signs.contains { $0 > 0 } && signs.contains { $0 < 0 })
    }

    @Test func dispatchedMatchesPortable() {
        var rng = SplitMix64(seed: 3)
        func rand() -> Float { Float(Double(rng.next() % 20001) / 10000 - 1) }
        let hd = 64, group = 32, n = 29, heads = 3
        let q = (0 ..< heads * hd).map { _ in rand() }
        for fmt: Int32 in [Int32(SQ_KV_F32), Int32(SQ_KV_F16), Int32(SQ_KV_Q8), Int32(SQ_KV_U4), Int32(SQ_KV_U2)] {
            let rb = sq_kv_row_bytes(fmt, Int64(hd), Int64(group))
            var rows = [UInt8](repeating: 0, count: n * rb)
            for j in 0 ..< n {
                let x = (0 ..< hd).map { _ in rand() }
                rows.withUnsafeMutableBytes { sq_kv_quantize_row(fmt, x, Int64(hd), Int64(group), $0.baseAddress! + j * rb) }
            }
            var s1 = [Float](repeating: 0, count: heads * n), s2 = s1
            sq_kv_scores(fmt, q, Int64(heads), Int64(hd), Int64(group), rows, Int64(rb), Int64(n), 0.125, &s1, Int64(n))
            sq_kv_scores_portable(fmt, q, Int64(heads), Int64(hd), Int64(group), rows, Int64(rb), Int64(n), 0.125, &s2, Int64(n))
            #expect(zip(s1, s2).allSatisfy { abs($0 - $1) <= 1e-5 * (1 + abs($1)) }, "scores, format \(fmt)")
            var p1 = s1, p2 = s1
            sq_softmax_rows(&p1, Int64(heads), Int64(n), Int64(n))
            sq_softmax_rows_portable(&p2, Int64(heads), Int64(n), Int64(n))
            #expect(zip(p1, p2).allSatisfy { abs($0 - $1) <= 1e-6 }, "softmax")
            var o1 = [Float](repeating: 0, count: heads * hd), o2 = o1
            sq_kv_accumulate(fmt, p1, Int64(heads), Int64(n), rows, Int64(rb), Int64(n), Int64(hd), Int64(group), &o1)
            sq_kv_accumulate_portable(fmt, p1, Int64(heads), Int64(n), rows, Int64(rb), Int64(n), Int64(hd), Int64(group), &o2)
            #expect(zip(o1, o2).allSatisfy { abs($0 - $1) <= 1e-5 }, "values, format \(fmt)")
        }
        for bits: Int32 in [4, 2] {
            let keys = (0 ..< 32 * hd).map { _ in rand() }
            var block = [UInt8](repeating: 0, count: sq_kv_channel_block_bytes(bits, Int64(hd), 32))
            sq_kv_quantize_channels(bits, keys, Int64(hd), 32, Int64(hd), &block)
            var s1 = [Float](repeating: 0, count: heads * 20), s2 = s1
            sq_kv_channel_scores(bits, q, Int64(heads), Int64(hd), block, 5, 25, 0.125, &s1, 20)
            sq_kv_channel_scores_portable(bits, q, Int64(heads), Int64(hd), block, 5, 25, 0.125, &s2, 20)
            #expect(zip(s1, s2).allSatisfy { abs($0 - $1) <= 1e-5 * (1 + abs($1)) }, "channel scores, \(bits) bits")
        }
    }
}

/// `--kv` specifications: presets, parameters, canonical text, and typed errors that name the bad spec.
@Suite struct KVCacheSpecTests {
    @Test func parses() throws {
        #expect(try KVCacheSpec.parse("f32") == .f32)
        #expect(try KVCacheSpec.parse("F16").precision == .f16)
        #expect(try KVCacheSpec.parse("q8").precision == .q8)
        #expect(try KVCacheSpec.parse("kivi4").precision == .kivi(bits: 4, group: 32, residual: 128))
        #expect(try KVCacheSpec.parse("kivi2:g32,r64").precision == .kivi(bits: 2, group: 32, residual: 64))
        #expect(try KVCacheSpec.parse("kivi2:r0").precision == .kivi(bits: 2, group: 32, residual: 0))
        #expect(try KVCacheSpec.parse("kivi2:s4").precision == .kivi(bits: 2, group: 32, residual: 128, sink: 4))
        #expect(try KVCacheSpec.parse("kivi2:k4").precision == .kivi(bits: 2, group: 32, residual: 128, keyBits: 4))
        #expect(try KVCacheSpec.parse("kivi2:k2") == KVCacheSpec.parse("kivi2"))
        #expect(try KVCacheSpec.parse("kivi2:h,s4").precision == .kivi(bits: 2, group: 32, residual: 128, sink: 4, rotate: true))
        #expect(try KVCacheSpec.parse("kivi2:a,p,s4").precision
            == .kivi(bits: 2, group: 32, residual: 128, sink: 4, preRoPE: true, allocate: true))
        #expect(try KVCacheSpec.parse("kivi2:v,a,p,s4").precision
            == .kivi(bits: 2, group: 32, residual: 128, sink: 4, preRoPE: true, allocate: true, rotateValues: true))
        for s in ["f32", "f16", "q8", "kivi4:g32,r128", "kivi2:g16,r8", "kivi2:g32,r128,s4", "kivi2:g32,r32,s4,k4", "kivi2:g32,r128,s4,h",
                  "kivi2:g32,r128,s4,p,a", "kivi4:g32,r128,h,p", "kivi2:g32,r128,a", "kivi2:g32,r128,s4,p,a,v", "kivi4:g32,r128,v"] { #expect(try KVCacheSpec.parse(s).description == s) }
    }

    @Test(arguments: ["", "f8", "q4", "f16:g32", "kivi4:", "kivi4:g12", "kivi4:g0", "kivi2:g512", "kivi2:x3", "kivi2:g32,g32",
                      "kivi2:r-1", "kivi3", "kivi2:g32,,r4", "kivi2:s4,s4", "kivi2:s-1", "kivi2:k3", "kivi2:k8", "kivi2:h,h", "kivi2:h1", "q8:h", "kivi2:p,p", "kivi2:a2", "f16:p", "kivi2:v,v", "q8:v", "kivi2:v1",
                      "snapkv:25%+kivi2:p"])
    func rejects(spec: String) {
        #expect(throws: ModelError.self) { try KVCacheSpec.parse(spec) }
        do { _ = try KVCacheSpec.parse(spec) } catch { #expect("\(error)".contains("'\(spec)'"), "\(error)") }
    }

    @Test func refusesShapesTheKernelsCannotTake() throws {
        let s = try KVCacheSpec.parse("kivi2")
        #expect(throws: ModelError.self) { try KIVIKVCache(bits: 2, group: 32, residual: 0, kvHeads: [1], capacity: 8, headDim: 12, spec: s) }
        #expect(throws: ModelError.self) { try QuantizedKVCache(format: .q8, kvHeads: [1], capacity: 8, headDim: 1024, spec: s) }
    }
}

/// KIVI's policy written plainly for the tests: f32 positions in order; when the window is full its oldest group is
/// replaced by its quantize-dequantize (the Swift grids above), and attention is the f32 kernel over those values.
/// The first `sink` positions stay f32, and the key grid of their group is fitted to the group's other positions.
final class ReferenceKIVICache: KVCache {
    let capacity: Int, bits: Int, keyBits: Int, group: Int, residual: Int, sink: Int, headDim: Int
    let kvHeads: [Int]
    /// Keys are stored rotated and queries rotated before scoring (the rotation is checked on its own above); with
    /// `preRoPE` (the model's configuration) keys are quantized turned back to before RoPE (and then rotated), and
    /// turned forward again; `allocate`: per-channel widths (KVReference.allocatedChannels).
    let rotation: HadamardRotation?
    let preRoPE: (config: ModelConfig, factors: [Float]?)?, allocate: Bool
    /// [layer][KV head][channel] weights of the allocation (nil: all 1).
    let weights: [[[Float]]]?
    /// Values quantized rotated (KIVIKVCache's value seed) and held turned back.
    let valueRotation: HadamardRotation?
    var keys: [[[Float]]], values: [[[Float]]]  // [layer][position][kvHeads × headDim]
    var quantized: [Int]

    init(bits: Int, keyBits: Int? = nil, group: Int, residual: Int, sink: Int = 0, rotate: Bool = false, preRoPE: (config: ModelConfig, factors: [Float]?)? = nil,
         allocate: Bool = false, weights: [[[Float]]]? = nil, rotateValues: Bool = false, kvHeads: [Int], capacity: Int, headDim: Int) {
        (self.bits, self.keyBits, self.group, self.residual, self.sink) = (bits, keyBits ?? bits, group, residual, sink)
        (self.preRoPE, self.allocate, self.weights) = (preRoPE, allocate, weights)
        (self.kvHeads, self.capacity, self.headDim) = (kvHeads, capacity, headDim)
        rotation = rotate ? HadamardRotation(count: headDim) : nil
        valueRotation = rotateValues ? HadamardRotation(count: headDim, seed: KIVIKVCache.valueRotationSeed) : nil
        keys = kvHeads.map { _ in [] }
        values = keys
        quantized = kvHeads.map { _ in 0 }
    }

    func store(layer l: Int, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        precondition(position == keys[l].count)
        let d = kvHeads[l] * headDim
        var k = Array(UnsafeBufferPointer(start: key, count: d))
        if let rotation, preRoPE == nil {
            for h in 0 ..< kvHeads[l] { k.withUnsafeMutableBufferPointer { rotation.apply($0.baseAddress! + h * headDim) } }
        }
        keys[l].append(k)
        values[l].append(Array(UnsafeBufferPointer(start: value, count: d)))
        let window = min(residual + group, capacity)
        guard keys[l].count - quantized[l] >= window, quantized[l] + group <= capacity else { return }
        let q0 = quantized[l], vg = headDim % 32 == 0 ? 32 : headDim
        for h in 0 ..< kvHeads[l] {
            let cols = h * headDim ..< (h + 1) * headDim
            let fitted = (q0 ..< q0 + group).map { $0 < sink && sink < q0 + group ? sink : $0 }
            var rows = fitted.map { Array(keys[l][$0][cols]) }
            if let c = preRoPE {
                rows = zip(fitted, rows).map { p, x in
                    var y = KVReference.rope(x, config: c.config, factors: c.factors, layer: l, position: p, inverse: true)
                    if let rotation { y.withUnsafeMutableBufferPointer { rotation.apply($0.baseAddress!) } }
                    return y
                }
            }
            var k = allocate ? KVReference.allocatedChannels(rows, bits: keyBits, weights: weights?[l][h]).keys
                : KVReference.channels(rows, bits: keyBits)
            if let c = preRoPE {
                for t in k.indices {
                    if let rotation { k[t].withUnsafeMutableBufferPointer { rotation.invert($0.baseAddress!) } }
                    k[t] = KVReference.rope(k[t], config: c.config, factors: c.factors, layer: l, position: q0 + t, inverse: false)
                }
            }
            for t in 0 ..< group where q0 + t >= sink {
                keys[l][q0 + t].replaceSubrange(cols, with: k[t])
                values[l][q0 + t].replaceSubrange(cols, with: KVReference.row(bits == 4 ? .u4 : .u2, Array(values[l][q0 + t][cols]), group: vg,
                                                                               rotation: valueRotation))
            }
        }
        quantized[l] = q0 + group
    }

    func attend(layer: Int, kvHead: Int, queries: UnsafePointer<Float>, heads: Int, headDim: Int, positions: Range<Int>,
                scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
        let stride = kvHeads[layer] * headDim
        let k = positions.flatMap { keys[layer][$0] }, v = positions.flatMap { values[layer][$0] }
        var q = Array(UnsafeBufferPointer(start: queries, count: heads * headDim))
        if let rotation, preRoPE == nil {
            for r in 0 ..< heads { q.withUnsafeMutableBufferPointer { rotation.apply($0.baseAddress! + r * headDim) } }
        }
        k.withUnsafeBufferPointer { k in
            v.withUnsafeBufferPointer { v in
                VectorOps.attentionHeads(query: q, heads: heads, keys: k.baseAddress! + kvHead * headDim, values: v.baseAddress! + kvHead * headDim,
                                         stride: stride, count: positions.count, headDim: headDim, scale: scale, scores: scores, output: output)
            }
        }
    }

    func truncate(to count: Int) {
        for l in keys.indices where count < keys[l].count {
            keys[l].removeSubrange(count...)
            values[l].removeSubrange(count...)
            quantized[l] = min(quantized[l], count / group * group)
        }
    }

    func copy(prefix count: Int) throws -> KVCache {
        let c = ReferenceKIVICache(bits: bits, keyBits: keyBits, group: group, residual: residual, sink: sink, rotate: rotation != nil,
                                   preRoPE: preRoPE, allocate: allocate, weights: weights, rotateValues: valueRotation != nil, kvHeads: kvHeads,
                                   capacity: capacity, headDim: headDim)
        (c.keys, c.values, c.quantized) = (keys, values, quantized)
        c.truncate(to: count)
        return c
    }

    func bytes(positions count: Int) -> Int { 0 }
}

/// The compressed caches inside the forward pass of every tiny family (Tests/Fixtures/tiny-models; Gemma 3's
/// sliding-window layers included), against the same model with the f32 cache, f32 activations.
@Suite("Compressed KV caches on the tiny families")
struct KVCacheFamilyTests {
    static func logits(_ model: TransformerModel, _ tokens: [Int], cache: KVCache? = nil, kv: KVCacheSpec = .f32, stepwise: Bool = false) throws -> [Float] {
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 64, cache: cache, kv: kv, exactActivations: true)
        if !stepwise { return try session.forward(tokens, logitsFor: tokens.count) }
        var out: [Float] = []
        for t in tokens { out += try session.forward([t]) }
        return out
    }

    static func worst(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max()! }

    /// Largest |Δlogit| over the 40 positions relative to the largest |logit| (measured, worst family: f16 7.8e-4,
    /// q8 1.6e-2, kivi4 0.21, kivi2 0.84 — random weights, head sizes 16 and 24, so one quantization group per head;
    /// bounds about twice that, and each precision must stay ordered: more bits, closer). KIVI with g8,r8 so that
    /// most positions are quantized on these short inputs; its exact behaviour is checked against the plain policy below.
    @Test(arguments: FamilyReferenceTests.families)
    func compressedCachesStayCloseToF32(family: String) throws {
        let ref = try FamilyReferenceTests.reference(family)
        let model = try TransformerModel(hfDirectory: FamilyReferenceTests.fixture(family))
        let f32 = try Self.logits(model, ref.tokens)
        let scale = f32.map(abs).max()!
        var errors: [Float] = []
        for (spec, bound) in [("f16", Float(2e-3)), ("q8", 4e-2), ("kivi4:g8,r8", 0.4), ("kivi2:g8,r8", 1.6)] {
            let got = try Self.logits(model, ref.tokens, kv: try KVCacheSpec.parse(spec))
            let rel = Self.worst(got, f32) / scale
            print("\(family) \(spec): max |Δlogit| / max |logit| = \(rel)")
            #expect(rel > 0 && rel <= bound, "\(family) \(spec): \(rel)")
            errors.append(rel)
        }
        #expect(errors == errors.sorted(), "\(family): errors not ordered by precision: \(errors)")
    }

    /// Decoding one token at a time through the f16 and q8 caches gives the batch's logits (both quantize each position
    /// as it is stored), within 1e-4 of the logits' scale.
    @Test(arguments: FamilyReferenceTests.families)
    func rowCachesDecodeAsTheyPrefill(family: String) throws {
        let ref = try FamilyReferenceTests.reference(family)
        let model = try TransformerModel(hfDirectory: FamilyReferenceTests.fixture(family))
        for spec in ["f16", "q8"] {
            let kv = try KVCacheSpec.parse(spec)
            let batch = try Self.logits(model, ref.tokens, kv: kv), steps = try Self.logits(model, ref.tokens, kv: kv, stepwise: true)
            #expect(Self.worst(batch, steps) <= 1e-4 * batch.map(abs).max()!, "\(family) \(spec)")
        }
    }

    /// KIVI, in a batch and decoding one token at a time, against the plain Swift policy above (same positions quantized
    /// at the same moments): logits within 1e-3 of their scale (float rounding of the two attention paths; a key code
    /// flipping between them would show as a far larger error).
    @Test(arguments: FamilyReferenceTests.families)
    func kiviMatchesReferencePolicy(family: String) throws {
        let ref = try FamilyReferenceTests.reference(family)
        let model = try TransformerModel(hfDirectory: FamilyReferenceTests.fixture(family))
        let c = model.config
        for (bits, sink, keyBits, rotate, preRoPE, allocate, rotateValues) in [
            (4, 0, 4, false, false, false, false), (2, 0, 2, false, false, false, false), (2, 3, 2, false, false, false, false),
            (4, 11, 4, false, false, false, false), (2, 3, 4, false, false, false, false), (4, 0, 2, false, false, false, false),
            (2, 3, 2, true, false, false, false), (4, 0, 4, true, false, false, false), (2, 3, 2, false, true, false, false),
            (2, 0, 2, false, false, true, false), (2, 3, 2, false, true, true, false), (2, 3, 2, true, true, true, false),
            (4, 0, 2, true, false, true, false), (2, 0, 2, false, false, false, true), (2, 3, 2, false, true, true, true),
            (4, 11, 2, true, false, false, true),
        ] {
            let kv = try KVCacheSpec.parse("kivi\(bits):g8,r8,s\(sink),k\(keyBits)" + (rotate ? ",h" : "") + (preRoPE ? ",p" : "")
                + (allocate ? ",a" : "") + (rotateValues ? ",v" : ""))
            for stepwise in [false, true] {
                let reference = ReferenceKIVICache(bits: bits, keyBits: keyBits, group: 8, residual: 8, sink: sink, rotate: rotate,
                                                   preRoPE: preRoPE ? (c, model.ropeFrequencyFactors) : nil, allocate: allocate,
                                                   weights: allocate && !rotate ? try model.queryEnergies(pool: WorkerPool(threads: 2)) : nil,
                                                   rotateValues: rotateValues, kvHeads: (0 ..< c.layers).map { c.kvHeads(layer: $0) }, capacity: 64, headDim: c.headDim)
                let want = try Self.logits(model, ref.tokens, cache: reference, stepwise: stepwise)
                let got = try Self.logits(model, ref.tokens, kv: kv, stepwise: stepwise)
                let rel = Self.worst(got, want) / want.map(abs).max()!
                #expect(rel <= 1e-3, "\(family) \(kv) \(stepwise ? "decoding" : "batch"): \(rel)")
            }
        }
    }
}

/// Test caches that serve forward passes only: nothing to truncate, copy or count.
protocol OnePassReferenceCache: KVCache {}

extension OnePassReferenceCache {
    func truncate(to count: Int) {}
    func copy(prefix count: Int) throws -> KVCache { self }
    func bytes(positions count: Int) -> Int { 0 }
}

/// StreamingLLM written plainly: every position kept in f32, each query attending to the sinks and its most recent
/// `window` positions gathered into one array; with `windows` ([layer][KV head]), a window of its own for each head.
final class ReferenceStreamingCache: OnePassReferenceCache {
    let capacity: Int, sink: Int, headDim: Int
    let windows: [[Int]]
    let kvHeads: [Int]
    var keys: [[Int: [Float]]], values: [[Int: [Float]]]  // [layer][position] → [kvHeads × headDim]

    convenience init(sink: Int, window: Int, kvHeads: [Int], capacity: Int, headDim: Int) {
        self.init(sink: sink, windows: kvHeads.map { [Int](repeating: window, count: $0) }, kvHeads: kvHeads, capacity: capacity,
                  headDim: headDim)
    }

    init(sink: Int, windows: [[Int]], kvHeads: [Int], capacity: Int, headDim: Int) {
        (self.sink, self.windows, self.kvHeads, self.capacity, self.headDim) = (sink, windows, kvHeads, capacity, headDim)
        keys = kvHeads.map { _ in [:] }
        values = keys
    }

    func store(layer l: Int, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        keys[l][position] = Array(UnsafeBufferPointer(start: key, count: kvHeads[l] * headDim))
        values[l][position] = Array(UnsafeBufferPointer(start: value, count: kvHeads[l] * headDim))
    }

    func attend(layer: Int, kvHead: Int, queries: UnsafePointer<Float>, heads: Int, headDim: Int, positions: Range<Int>,
                scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
        let last = positions.upperBound - 1
        let kept = positions.filter { $0 < sink || $0 > last - windows[layer][kvHead] }
        let cols = kvHead * headDim ..< (kvHead + 1) * headDim
        let k = kept.flatMap { keys[layer][$0]![cols] }, v = kept.flatMap { values[layer][$0]![cols] }
        VectorOps.attentionHeads(query: queries, heads: heads, keys: k, values: v, stride: headDim, count: kept.count, headDim: headDim,
                                 scale: scale, scores: scores, output: output)
    }

}

@Suite("StreamingLLM cache")
struct StreamingKVCacheTests {
    @Test func parses() throws {
        #expect(try KVCacheSpec.parse("streaming").selection == .streaming(sink: 4, window: .tokens(1020)))
        #expect(try KVCacheSpec.parse("streaming:sink2,window30").selection == .streaming(sink: 2, window: .tokens(30)))
        #expect(try KVCacheSpec.parse("streaming:25%").selection == .streaming(sink: 4, window: .fraction(0.25)))
        for s in ["streaming:sink4,window1020", "streaming:sink0,25%", "streaming:sink4,12.5%", "streaming:sink4,25%+q8"] {
            #expect(try KVCacheSpec.parse(s).description == s)
        }
        for s in ["streaming:sink", "streaming:window0", "streaming:150%", "streaming:25%+kivi4", "streaming+streaming", "kivi2+streaming", "q8+f16",
                  "streaming:sink2,sink3", "f32+"] {
            #expect(throws: ModelError.self, "\(s)") { try KVCacheSpec.parse(s) }
        }
    }

    /// A window that covers every position changes nothing (logits within 1e-5 of the f32 cache's); a small one
    /// matches the plain version above, in one batch, in batches of 7 and decoding one token at a time (the ring's
    /// slack keeps what a batch's first tokens still see), within 1e-4 of the logits' scale. Gemma 3's own
    /// sliding-window layers intersect with the cache's window.
    @Test(arguments: FamilyReferenceTests.families)
    func matchesThePlainPolicy(family: String) throws {
        let ref = try FamilyReferenceTests.reference(family)
        let model = try TransformerModel(hfDirectory: FamilyReferenceTests.fixture(family))
        let c = model.config
        let f32 = try KVCacheFamilyTests.logits(model, ref.tokens)
        let scale = f32.map(abs).max()!
        let wide = try KVCacheFamilyTests.logits(model, ref.tokens, kv: try KVCacheSpec.parse("streaming:sink4,window64"))
        #expect(KVCacheFamilyTests.worst(wide, f32) <= 1e-5 * scale, "\(family) wide window")
        let kvHeads = (0 ..< c.layers).map { c.kvHeads(layer: $0) }
        for batch in [64, 7, 1] {
            let session = try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 64, maxBatch: batch,
                                           kv: try KVCacheSpec.parse("streaming:sink2,window9"), exactActivations: true)
            let reference = try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 64, maxBatch: batch,
                                             cache: ReferenceStreamingCache(sink: 2, window: 9, kvHeads: kvHeads, capacity: 64, headDim: c.headDim),
                                             exactActivations: true)
            let got = try session.forward(ref.tokens, logitsFor: ref.tokens.count)
            let want = try reference.forward(ref.tokens, logitsFor: ref.tokens.count)
            #expect(KVCacheFamilyTests.worst(got, want) <= 1e-4 * scale, "\(family) batch \(batch)")
            #expect(KVCacheFamilyTests.worst(got, f32) > 1e-3 * scale, "\(family): evicting changed nothing")
            // Slots: 2 sinks + a ring of window + batch − 1 (at most the positions left).
            #expect(session.cache.bytes(positions: 64) == 2 * 4 * kvHeads.reduce(0, +) * c.headDim * (2 + min(9 + batch - 1, 62)))
        }
        // f16 and 8-bit rows: a window that covers everything gives the plain f16 and q8 caches' logits; a small one
        // the f32 window's within the rows' rounding.
        for precision in ["f16", "q8"] {
            let plain = try KVCacheFamilyTests.logits(model, ref.tokens, kv: try KVCacheSpec.parse(precision))
            let covered = try KVCacheFamilyTests.logits(model, ref.tokens, kv: try KVCacheSpec.parse("streaming:sink4,window64+" + precision))
            #expect(KVCacheFamilyTests.worst(covered, plain) <= 1e-4 * scale, "\(family) \(precision)")
        }
        let small = try KVCacheFamilyTests.logits(model, ref.tokens, kv: try KVCacheSpec.parse("streaming:sink2,window9"))
        let smallQ8 = try KVCacheFamilyTests.logits(model, ref.tokens, kv: try KVCacheSpec.parse("streaming:sink2,window9+q8"))
        #expect(KVCacheFamilyTests.worst(smallQ8, small) <= 4e-2 * scale, "\(family) small window q8")
    }
}
