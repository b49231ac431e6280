import Foundation
import Testing
import SquishCore
import SquishFormats
import SquishKernels
import SquishQuantize

/// Squish's own block types (affine SQ<bits>_G<group>, symmetric SQ<bits>S_G<group>) and the ternary grids.
@Suite("Squish block types and ternary weights")
struct SquishTypesTests {
    static let squishTypes = GGMLType.allCases.filter { $0.squishBlock != nil }
    static let sparseTypes = GGMLType.allCases.filter { $0.squishSparse != nil }
    static let nonLinearTypes = GGMLType.allCases.filter { $0.squishNonLinearGroup != nil }
    static let nonLinearXTypes = GGMLType.allCases.filter { $0.squishNonLinearXGroup != nil }

    /// Independent reading of the documented layouts, one bit at a time: d f16 @0, (affine) m f16 @2, then code j in
    /// bits [j·b, j·b + b) of the byte stream (bit i is bit i mod 8 of byte i / 8); w = d·q + m or d·(q − 2^(b−1)).
    func referenceDecode(_ block: [UInt8], bits: Int, group: Int, symmetric: Bool) -> [Float] {
        let d = HalfFloat.toFloat(UInt16(block[0]) | UInt16(block[1]) << 8)
        let m = symmetric ? 0 : HalfFloat.toFloat(UInt16(block[2]) | UInt16(block[3]) << 8)
        let header = symmetric ? 2 : 4
        return (0 ..< group).map { j in
            var q = 0
            for k in 0 ..< bits {
                let bit = j * bits + k
                q |= Int(block[header + bit / 8] >> UInt8(bit % 8) & 1) << k
            }
            return symmetric ? d * Float(q - (1 << (bits - 1))) : d * Float(q) + m
        }
    }

    @Test func theFamilyIsComplete() {
        #expect(Self.squishTypes.count == 70)
        for bits in 2 ... 8 {
            for group in [16, 32, 64, 128, 256] {
                let a = GGMLType.squishAffine(bits: bits, group: group), s = GGMLType.squishSymmetric(bits: bits, group: group)
                #expect(a?.name == "SQ\(bits)_G\(group)" && a?.squishAffine?.bits == bits && a?.squishAffine?.group == group)
                #expect(s?.name == "SQ\(bits)S_G\(group)" && s?.squishSymmetric?.bits == bits && s?.squishSymmetric?.group == group)
                #expect(a?.squishSymmetric == nil && s?.squishAffine == nil)
                #expect(a.map { Codecs.canQuantize($0) } == true && s.map { Codecs.canQuantize($0) } == true)
            }
        }
        // Ids written before the family grew are unchanged.
        #expect(GGMLType.sq3_G32.rawValue == 0x5351_0320 && GGMLType.sq8_G64.rawValue == 0x5351_0840)
        #expect(GGMLType.sq4_G256.rawValue == 0x5351_0400 && GGMLType.sq3s_G64.rawValue == 0x5351_8340)
        #expect(GGMLType.squishAffine(bits: 1, group: 32) == nil && GGMLType.squishAffine(bits: 4, group: 48) == nil)
    }

    @Test(arguments: squishTypes)
    func decoderReadsTheDocumentedLayout(type: GGMLType) throws {
        let (bits, group, symmetric) = type.squishBlock!
        #expect(type.blockElements == group && type.blockBytes == (symmetric ? 2 : 4) + group * bits / 8)
        #expect(GGMLType(name: type.name) == type && type.name == "SQ\(bits)\(symmetric ? "S" : "")_G\(group)" && !type.isGGMLNative)
        var rng = SplitMix64(seed: UInt64(type.rawValue))
        for _ in 0 ..< 20 {
            var block = (0 ..< type.blockBytes).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            let d = HalfFloat.fromFloat(Float.random(in: 0.001 ... 0.1, using: &rng))
            let m = HalfFloat.fromFloat(Float.random(in: -1 ... 0, using: &rng))
            block[0] = UInt8(d & 0xff); block[1] = UInt8(d >> 8)
            if !symmetric { block[2] = UInt8(m & 0xff); block[3] = UInt8(m >> 8) }
            let decoded = try block.withUnsafeBytes { try Codecs.dequantize(type, $0, count: group) }
            #expect(decoded == referenceDecode(block, bits: bits, group: group, symmetric: symmetric))
        }
    }

    /// Every Squish type (the sparse ones too) decodes exactly as Tests/Python/squish_block_reference.py (numpy, from
    /// the documented layout) decodes the same random blocks.
    @Test func decoderMatchesNumpyReference() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try TestSupport.runPython("squish_block_reference.py", [dir])
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.json"))) as! [[String: Any]]
        #expect(manifest.count == 70 + 18 + 3 + 2)
        var covered = Set<GGMLType>()
        for c in manifest {
            let type = try #require(GGMLType(name: c["type"] as! String))
            covered.insert(type)
            let count = c["count"] as! Int
            let bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + (c["bytes"] as! String)))
            let expected = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + (c["output"] as! String)))
                .withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let decoded = try bytes.withUnsafeBytes { try Codecs.dequantize(type, $0, count: count) }
            let bad = (0 ..< count).first { decoded[$0].bitPattern != expected[$0].bitPattern }
            #expect(bad == nil, "\(type) first difference at \(bad ?? -1)")
        }
        #expect(covered == Set(Self.squishTypes + Self.sparseTypes + Self.nonLinearTypes + Self.nonLinearXTypes))
    }

    /// The format's own encoder: every value within half a step of its input (plus the f16 rounding of m; for the
    /// symmetric types a weight of the sign opposite to the largest one that lands beyond the top code is within a
    /// whole step), and the grid's parameter search never worse than it (the symmetric search `SymmetricFit` against
    /// naive max-magnitude RTN, the affine `AffineFit` against min/max RTN).
    @Test(arguments: squishTypes)
    func encoderAndSearchRoundToTheGrid(type: GGMLType) throws {
        let (bits, group, symmetric) = type.squishBlock!
        let grid = try #require(BlockGrid(type))
        #expect(grid == (symmetric ? .symmetric(bits: bits, group: group) : .affine(bits: bits, group: group)) && grid.groupSize == group)
        #expect(grid.hasMinimum == !symmetric && grid.bits == bits && grid.type == type)
        var rng = SplitMix64(seed: 21)
        var plainTotal: Float = 0, searchTotal: Float = 0
        for _ in 0 ..< 30 {
            let x = (0 ..< group).map { _ in Float.random(in: -1 ... 1, using: &rng) * Float.random(in: 0 ... 1, using: &rng) }
            let bytes = try Codecs.quantize(type, x)
            let plain = try bytes.withUnsafeBytes { try Codecs.dequantize(type, $0, count: group) }
            let step = abs(HalfFloat.toFloat(UInt16(bytes[0]) | UInt16(bytes[1]) << 8))
            let top = Float((1 << (bits - 1)) - 1)
            for i in 0 ..< group {
                let clamped = symmetric && abs(x[i] / step) > top + 0.5
                #expect(abs(plain[i] - x[i]) <= (clamped ? step : step / 2) * 1.001 + (symmetric ? 1e-6 : 2e-3), "\(type) \(i)")
            }
            var block = [UInt8](repeating: 0, count: type.blockBytes)
            var rounded = [Float](repeating: 0, count: group)
            x.withUnsafeBufferPointer { xs in
                block.withUnsafeMutableBytes { b in rounded.withUnsafeMutableBufferPointer { grid.quantizeBlock(xs.baseAddress!, into: b.baseAddress!, rounded: $0.baseAddress!) } }
            }
            #expect(try block.withUnsafeBytes { try Codecs.dequantize(type, $0, count: group) } == rounded)
            func sse(_ v: [Float]) -> Float { zip(v, x).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } }
            #expect(sse(rounded) <= sse(plain) * 1.0001 + 1e-9)
            plainTotal += sse(plain)
            searchTotal += sse(rounded)
        }
        #expect(searchTotal < plainTotal, "\(type): search \(searchTotal) vs plain \(plainTotal)")
    }

    /// Ternary (BitNet b1.58 absmean): γ = f16(mean |w|) per block, codes decode to −γ, 0 or γ, each weight to the
    /// nearest of the three; TQ1_0 and TQ2_0 (blocks of 256) and SQ2_G64 (m = −γ) all decode to the same values.
    @Test(arguments: [GGMLType.tq1_0, .tq2_0, .sq2_G32, .sq2_G64])
    func ternaryBlocks(type: GGMLType) throws {
        let grid = BlockGrid.ternary(type)
        let n = grid.groupSize
        var rng = SplitMix64(seed: 33)
        for _ in 0 ..< 50 {
            let x = (0 ..< n).map { _ in Float.random(in: -1 ... 1, using: &rng) * Float.random(in: 0 ... 1, using: &rng) }
            let gamma = HalfFloat.toFloat(HalfFloat.fromFloat(x.reduce(0) { $0 + abs($1) } / Float(n)))
            var block = [UInt8](repeating: 0, count: grid.blockBytes)
            var rounded = [Float](repeating: 0, count: n)
            x.withUnsafeBufferPointer { xs in
                block.withUnsafeMutableBytes { b in rounded.withUnsafeMutableBufferPointer { grid.quantizeBlock(xs.baseAddress!, into: b.baseAddress!, rounded: $0.baseAddress!) } }
            }
            let decoded = try block.withUnsafeBytes { try Codecs.dequantize(type, $0, count: n) }
            #expect(decoded == rounded)
            for i in 0 ..< n {
                let expected: Float = abs(x[i]) < gamma / 2 ? 0 : (x[i] < 0 ? -gamma : gamma)
                // Exactly at ±γ/2 either neighbour is nearest.
                #expect(decoded[i] == expected || abs(abs(x[i]) - gamma / 2) < 1e-6)
            }
        }
    }

    /// Squish blocks in groups that are multiples of 32 re-encoded as Q4_1/Q5_1 (affine, 2-5 bits) or Q4_0/Q5_0/Q8_0
    /// (symmetric) decode to exactly the same values; the loaded matrix runs on the int8 kernels (repacked where
    /// possible) and matches the reference within int8-activation rounding. Other types stay as they are.
    @Test func conversionToNativeTypesIsLossless() throws {
        var rng = SplitMix64(seed: 9)
        let rows = 16, columns = 256
        let w = (0 ..< rows * columns).map { _ in Float.random(in: -1 ... 1, using: &rng) }
        let x = (0 ..< 2 * columns).map { _ in Float.random(in: -1 ... 1, using: &rng) }
        for type in Self.squishTypes {
            let bytes = try Codecs.quantize(type, w)
            let values = try bytes.withUnsafeBytes { try Codecs.dequantize(type, $0, count: rows * columns) }
            // The conversion copies the weights into memory the matrix owns, so it may outlive `bytes`.
            let c = try bytes.withUnsafeBytes { try WeightMatrix(name: "w", type: type, data: $0, rows: rows, columns: columns).convertedForKernels() }
            let (bits, group, symmetric) = type.squishBlock!
            guard let native = SquishAffineConversion.nativeEquivalent(of: type) else {
                #expect(group == 16 || (!symmetric && bits > 5), "\(type)")
                #expect(c.type == type)
                continue
            }
            let expected: GGMLType = symmetric ? (bits <= 4 ? .q4_0 : bits == 5 ? .q5_0 : .q8_0) : (bits <= 4 ? .q4_1 : .q5_1)
            #expect(native == expected && group % 32 == 0 && c.type == native)
            try expectLosslessConversion(type, c, values: values, x: x, rows: rows, columns: columns)
        }
        for type in Self.nonLinearTypes + Self.nonLinearXTypes {
            let bytes = try Codecs.quantize(type, w)
            let values = try bytes.withUnsafeBytes { try Codecs.dequantize(type, $0, count: rows * columns) }
            let c = try bytes.withUnsafeBytes { try WeightMatrix(name: "w", type: type, data: $0, rows: rows, columns: columns).convertedForKernels() }
            #expect(SquishAffineConversion.nativeEquivalent(of: type) == .iq4_NL && c.type == .iq4_NL)
            try expectLosslessConversion(type, c, values: values, x: x, rows: rows, columns: columns)
        }
        // MXFP4 becomes Q8_0 (d = its power-of-two scale, q = the doubled E2M1 value) where every scale is an f16
        // value; a block whose scale is not (here 2^-40) keeps the matrix in MXFP4, decoded row by row.
        let bytes = try Codecs.quantize(.mxfp4, w)
        let values = try bytes.withUnsafeBytes { try Codecs.dequantize(.mxfp4, $0, count: rows * columns) }
        let c = try bytes.withUnsafeBytes { try WeightMatrix(name: "w", type: .mxfp4, data: $0, rows: rows, columns: columns).convertedForKernels() }
        #expect(c.type == .q8_0)
        try expectLosslessConversion(.mxfp4, c, values: values, x: x, rows: rows, columns: columns)
        var tiny = bytes
        tiny[17 * 5] = 88
        let kept = try tiny.withUnsafeBytes { try WeightMatrix(name: "w", type: .mxfp4, data: $0, rows: rows, columns: columns).convertedForKernels() }
        #expect(kept.type == .mxfp4)
    }

    /// `c` (converted from `type`) holds exactly `values` and runs on the int8 kernels (repacked) within
    /// int8-activation rounding of the f64 product with two tokens `x`.
    func expectLosslessConversion(_ type: GGMLType, _ c: WeightMatrix, values: [Float], x: [Float], rows: Int, columns: Int) throws {
        #expect(c.usesQ8Kernel)
        let back = try Codecs.dequantize(c.type, UnsafeRawBufferPointer(start: c.data, count: rows * c.rowBytes), count: rows * columns)
        let bad = (0 ..< values.count).first { back[$0] != values[$0] }
        #expect(bad == nil, "\(type) first difference at \(bad ?? -1): \(bad.map { "\(back[$0]) vs \(values[$0])" } ?? "")")
        var y = [Float](repeating: 0, count: 2 * rows)
        try x.withUnsafeBufferPointer { xs in try y.withUnsafeMutableBufferPointer { try Matmul(pool: WorkerPool(threads: 2))(c.repacked(), xs.baseAddress!, tokens: 2, $0.baseAddress!) } }
        for t in 0 ..< 2 {
            for r in 0 ..< rows {
                var ref = 0.0, scale = 0.0
                for k in 0 ..< columns { ref += Double(values[r * columns + k]) * Double(x[t * columns + k]); scale += abs(Double(values[r * columns + k])) }
                // Activations rounded to 8 bits per block of 32: error at most Σ|w| · max|x| / 254 (IQ4_NL: its
                // levels are integers up to 127 times d, the same bound).
                #expect(abs(Double(y[t * rows + r]) - ref) <= scale / 254 + 1e-4, "\(type) row \(r)")
            }
        }
    }

    /// The non-linear family: IQ4_NL's levels with one scale per 64, 128 or 256 weights (4.25, 4.125, 4.0625 bits),
    /// named and parsed like the other Squish types, not loadable by llama.cpp. The codec's encoder puts every weight
    /// on its nearest level under the stored scale, with a squared error at most that of the plain max-magnitude
    /// scale; the GPTQ grid packs what the codec decodes.
    @Test func nonLinearFamily() throws {
        #expect(Self.nonLinearTypes == [.sq4n_G64, .sq4n_G128, .sq4n_G256])
        #expect(GGMLType.squishNonLinear(group: 32) == .iq4_NL && GGMLType.squishNonLinear(group: 16) == nil)
        var rng = SplitMix64(seed: 3)
        for type in Self.nonLinearTypes {
            let g = type.squishNonLinearGroup!
            #expect(GGMLType.squishNonLinear(group: g) == type && GGMLType(name: "sq4n_g\(g)") == type && type.name == "SQ4N_G\(g)")
            #expect(type.blockElements == g && type.blockBytes == 2 + g / 2 && !type.isGGMLNative)
            let grid = try #require(BlockGrid(type))
            #expect(grid == .nonLinear(group: g) && grid.type == type && grid.groupSize == g && grid.bits == 4)
            let x = (0 ..< 4 * g).map { _ in Float.random(in: -1 ... 1, using: &rng) * Float.random(in: 0 ... 1, using: &rng) }
            let bytes = try Codecs.quantize(type, x)
            let back = try bytes.withUnsafeBytes { try Codecs.dequantize(type, $0, count: x.count) }
            for b in 0 ..< 4 {
                let block = Array(bytes[b * type.blockBytes ..< (b + 1) * type.blockBytes])
                let d = HalfFloat.toFloat(UInt16(block[0]) | UInt16(block[1]) << 8)
                let s = x[b * g ..< (b + 1) * g].max { abs($0) < abs($1) }!
                let plain = HalfFloat.toFloat(HalfFloat.fromFloat(s / -127))
                var error: Float = 0, plainError: Float = 0
                for i in b * g ..< (b + 1) * g {
                    #expect(abs(back[i] - x[i]) == IQ4NLScale.levels.map { abs(d * $0 - x[i]) }.min()!, "\(type) weight \(i)")
                    error += (back[i] - x[i]) * (back[i] - x[i])
                    let p = IQ4NLScale.levels.map { abs(plain * $0 - x[i]) }.min()!
                    plainError += p * p
                }
                #expect(error <= plainError * 1.0001)
                try expectGridMatchesCodec(grid, Array(x[b * g ..< (b + 1) * g]), block: block)
            }
        }
    }


    /// The grid (GPTQ's rounding and packing) of one block of weights `x` gives the codec's `block`, and its rounded
    /// values are what that block decodes to.
    func expectGridMatchesCodec(_ grid: BlockGrid, _ x: [Float], block: [UInt8]) throws {
        var packed = [UInt8](repeating: 0, count: grid.blockBytes)
        var rounded = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xs in
            packed.withUnsafeMutableBytes { p in rounded.withUnsafeMutableBufferPointer { grid.quantizeBlock(xs.baseAddress!, into: p.baseAddress!, rounded: $0.baseAddress!) } }
        }
        #expect(packed == block, "\(grid.type)")
        #expect(try packed.withUnsafeBytes { try Codecs.dequantize(grid.type, $0, count: x.count) } == rounded)
    }

    /// The non-linear family with sub-scales: one f16 d per 128 or 256 weights and a 6-bit multiplier m per 32
    /// (4.3125 and 4.25 bits). Every weight sits on its nearest level under its 32 weights' scale f16(d · m); the
    /// squared error is close to IQ4_NL's (one free f16 scale per 32, 4.5 bits) and well below SQ4N's of the same
    /// group; the GPTQ grid packs what the codec decodes.
    @Test func nonLinearXFamily() throws {
        #expect(Self.nonLinearXTypes == [.sq4nx_G128, .sq4nx_G256])
        #expect(GGMLType.squishNonLinearX(group: 64) == nil)
        var rng = SplitMix64(seed: 5)
        func squaredError(_ type: GGMLType, _ x: [Float]) throws -> Float {  // round to nearest by the type's grid
            let grid = try #require(BlockGrid(type))
            var block = [UInt8](repeating: 0, count: grid.blockBytes), back = x
            x.withUnsafeBufferPointer { xs in
                back.withUnsafeMutableBufferPointer { r in
                    for b in 0 ..< x.count / grid.groupSize {
                        block.withUnsafeMutableBytes { grid.quantizeBlock(xs.baseAddress! + b * grid.groupSize, into: $0.baseAddress!, rounded: r.baseAddress! + b * grid.groupSize) }
                    }
                }
            }
            return zip(back, x).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
        }
        for type in Self.nonLinearXTypes {
            let g = type.squishNonLinearXGroup!
            #expect(GGMLType.squishNonLinearX(group: g) == type && GGMLType(name: "sq4nx_g\(g)") == type && type.name == "SQ4NX_G\(g)")
            #expect(type.blockElements == g && type.blockBytes == 2 + 3 * g / 128 + g / 2 && !type.isGGMLNative)
            let grid = try #require(BlockGrid(type))
            #expect(grid == .nonLinearX(group: g) && grid.type == type && grid.groupSize == g && grid.codeGroupSize == 32 && grid.bits == 4)
            // Uneven magnitudes across the groups of 32, as in real weights.
            let x = (0 ..< 64 * g).map { i in Float.random(in: -1 ... 1, using: &rng) * Float.random(in: 0 ... 1, using: &rng) * Float(1 + (i / 32) % 5) }
            let bytes = try Codecs.quantize(type, x)
            let back = try bytes.withUnsafeBytes { try Codecs.dequantize(type, $0, count: x.count) }
            for b in 0 ..< 4 {
                let block = Array(bytes[b * type.blockBytes ..< (b + 1) * type.blockBytes])
                let d = HalfFloat.toFloat(UInt16(block[0]) | UInt16(block[1]) << 8)
                for s in 0 ..< g / 32 {
                    let m = block.withUnsafeBytes { SquishNonLinearX.multiplier($0.baseAddress!, s) }
                    #expect(IQ4NLScale.multiplierRange.contains(m))
                    let scale = HalfFloat.toFloat(HalfFloat.fromFloat(d * Float(m)))
                    for i in b * g + 32 * s ..< b * g + 32 * s + 32 {
                        #expect(abs(back[i] - x[i]) == IQ4NLScale.levels.map { abs(scale * $0 - x[i]) }.min()!, "\(type) weight \(i)")
                    }
                }
                try expectGridMatchesCodec(grid, Array(x[b * g ..< (b + 1) * g]), block: block)
            }
            let error = try squaredError(type, x), iq4 = try squaredError(.iq4_NL, x)
            let oneScale = try squaredError(GGMLType.squishNonLinear(group: g)!, x)
            print("\(type): squared error \(error), IQ4_NL \(iq4), SQ4N_G\(g) \(oneScale)")
            #expect(error <= 1.05 * iq4 && error < 0.8 * oneScale)
        }
    }
    /// The matmul on a Squish type gives what dequantize-then-f32 gives (the generic kernel path).
    @Test func matmulOnAffineWeights() throws {
        var rng = SplitMix64(seed: 5)
        let rows = 13, columns = 192, tokens = 3
        let w = (0 ..< rows * columns).map { _ in Float.random(in: -1 ... 1, using: &rng) }
        let x = (0 ..< tokens * columns).map { _ in Float.random(in: -1 ... 1, using: &rng) }
        for type in [GGMLType.sq3_G32, .sq4_G64, .sq2_G64, .sq3_G16, .sq6_G64, .sq7_G16, .sq6s_G16, .sq8_G16] {
            let bytes = try Codecs.quantize(type, w)
            let dq = try bytes.withUnsafeBytes { try Codecs.dequantize(type, $0, count: rows * columns) }
            var y = [Float](repeating: 0, count: tokens * rows)
            try bytes.withUnsafeBytes { b in
                let m = try WeightMatrix(name: "w", type: type, data: b, rows: rows, columns: columns)
                try x.withUnsafeBufferPointer { xs in try y.withUnsafeMutableBufferPointer { try Matmul(pool: WorkerPool(threads: 2))(m, xs.baseAddress!, tokens: tokens, $0.baseAddress!) } }
            }
            for t in 0 ..< tokens {
                for r in 0 ..< rows {
                    var ref = 0.0
                    for k in 0 ..< columns { ref += Double(dq[r * columns + k]) * Double(x[t * columns + k]) }
                    #expect(abs(Double(y[t * rows + r]) - ref) <= 1e-4 * max(1, abs(ref)), "\(type) row \(r) token \(t)")
                }
            }
        }
    }

    /// Whole files: --bits 3 --group 32 writes SQ3_G32 for the block's matrices; ternary into TQ2_0 falls back to
    /// SQ2_G64 for rows that are not multiples of 256; both read back through the codecs.
    @Test func filesWithSquishTypes() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SplitMix64(seed: 2)
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        for (name, columns) in [("blk.0.attn_q.weight", 256), ("blk.0.ffn_down.weight", 64)] {
            let m = (0 ..< columns * 4).map { _ in Float.random(in: -1 ... 1, using: &rng) }
            w.addTensor(name: name, shape: [columns, 4], type: .f32, source: .bytes(m.withUnsafeBytes { Array($0) }))
        }
        try w.write(to: dir + "/in.gguf")
        let pool = WorkerPool(threads: 1)
        let sq3 = QuantizeOptions(method: .rtn, target: try .resolve(type: nil, bits: 3, group: 32, symmetric: false))
        _ = try ModelQuantizer.quantize(input: dir + "/in.gguf", output: dir + "/sq3.gguf", options: sq3, pool: pool)
        let a = try GGUFFile(path: dir + "/sq3.gguf")
        #expect(a.tensors.allSatisfy { $0.type == .sq3_G32 })
        #expect(a["general.file_type"]?.int == 1024)
        let ternary = QuantizeOptions(method: .ternary, target: try .ternary(type: nil))
        let report = try ModelQuantizer.quantize(input: dir + "/in.gguf", output: dir + "/t.gguf", options: ternary, pool: pool)
        let b = try GGUFFile(path: dir + "/t.gguf")
        #expect(b.tensor(named: "blk.0.attn_q.weight")?.type == .tq2_0)
        #expect(b.tensor(named: "blk.0.ffn_down.weight")?.type == .sq2_G64)
        #expect(report.bitsPerWeight < 2.6)
        for (f, t) in a.tensors.map({ (a, $0) }) + b.tensors.map({ (b, $0) }) {
            let v = try Codecs.dequantize(t.type, f.data(for: t), count: t.elementCount)
            #expect(v.allSatisfy { $0.isFinite })
        }
        #expect(throws: QuantizeError.self) { try QuantizationTarget.ternary(type: "Q4_0") }
    }
}
