import Foundation
import Testing
import SquishFormats
import SquishKernels
import SquishModel

/// Matrices stored rotated on their input (W·Rᵀ, `WeightMatrix.rotatingInput`): every matmul path rotates the
/// activations once and multiplies the stored rows, so the product is W x.
@Suite struct RotatedMatmulTests {
    static let rows = 64, columns = 576  // 576 = 9 blocks of 64, as the default model's width

    /// Random weights W and W·Rᵀ (each row rotated), [rows × columns].
    func weights(seed: UInt64) -> (w: [Float], rotated: [Float]) {
        var rng = SplitMix64(seed: seed)
        let w = (0 ..< Self.rows * Self.columns).map { _ in Float.random(in: -1 ... 1, using: &rng) }
        var r = w
        HadamardRotation.weightInput(columns: Self.columns).applyToRows(&r)
        return (w, r)
    }

    /// A matrix of `type` holding `values` [rows × columns] (kept alive by the returned array), prepared as a model
    /// load prepares it (repacked, with lookup tables where the type has them).
    func matrix(_ type: GGMLType, _ values: [Float], keep: inout [[UInt8]]) throws -> WeightMatrix {
        let bytes = try Codecs.quantize(type, values)
        keep.append(bytes)
        let raw = try keep[keep.count - 1].withUnsafeBytes {
            try WeightMatrix(name: "w", type: type, data: UnsafeRawBufferPointer(start: $0.baseAddress!, count: $0.count),
                             rows: Self.rows, columns: Self.columns)
        }
        return KernelLayout().prepare(raw, releaseSource: false)
    }

    @Test func rotationIsUndone() {
        var rng = SplitMix64(seed: 1)
        for count in [576, 1536, 64, 24] {
            let r = HadamardRotation.weightInput(columns: count)
            let x = (0 ..< count).map { _ in Float.random(in: -1 ... 1, using: &rng) }
            var y = x
            y.withUnsafeMutableBufferPointer { r.apply($0.baseAddress!); r.invert($0.baseAddress!) }
            for i in 0 ..< count { #expect(abs(y[i] - x[i]) < 1e-5) }
            // The double-precision rotation (used on calibration statistics) is the same map.
            var d = x.map(Double.init)
            var f = x
            d.withUnsafeMutableBufferPointer { r.apply($0.baseAddress!) }
            f.withUnsafeMutableBufferPointer { r.apply($0.baseAddress!) }
            for i in 0 ..< count { #expect(abs(d[i] - Double(f[i])) < 1e-5) }
        }
    }

    /// The C kernel (AVX2 and portable) gives the bits of the plain definition, for block sizes below, at and above
    /// one register of 8 and several blocks per vector.
    @Test(arguments: [576, 1536, 64, 8, 24, 12, 7])
    func kernelMatchesTheDefinition(count: Int) {
        var rng = SplitMix64(seed: UInt64(count))
        let x = (0 ..< count).map { _ in Float.random(in: -4 ... 4, using: &rng) }
        let r = HadamardRotation(count: count)
        // The definition, as the Double path computes it (every step exact in Double but the final rounding is
        // not; so compare it to the f32 result at f32 precision, and the two f32 kernels bit for bit).
        var d = x.map(Double.init)
        d.withUnsafeMutableBufferPointer { r.apply($0.baseAddress!) }
        var fast = [Float](repeating: 0, count: count), portable = fast
        x.withUnsafeBufferPointer { xp in
            fast.withUnsafeMutableBufferPointer { r.apply(xp.baseAddress!, into: $0.baseAddress!) }
            portable.withUnsafeMutableBufferPointer { r.apply(xp.baseAddress!, into: $0.baseAddress!, portable: true) }
        }
        #expect(fast == portable)
        for i in 0 ..< count { #expect(abs(Double(fast[i]) - d[i]) <= 1e-5 * max(1, abs(d[i])), "\(count): \(i)") }
    }

    /// R·H·Rᵀ for H = XᵀX is the second moment of the rotated inputs (X Rᵀ)ᵀ(X Rᵀ), computed directly in Double.
    @Test func conjugationGivesTheRotatedInputsStatistics() {
        let n = 192, tokens = 50  // blocks of 64
        var rng = SplitMix64(seed: 5)
        var x = (0 ..< tokens * n).map { i in Float.random(in: -1 ... 1, using: &rng) * (i % 7 == 0 ? 8 : 1) }
        func moments(_ x: [Float]) -> [Double] {
            var h = [Double](repeating: 0, count: n * n)
            for t in 0 ..< tokens { for i in 0 ..< n { for j in 0 ..< n { h[i * n + j] += Double(x[t * n + i]) * Double(x[t * n + j]) } } }
            return h
        }
        let r = HadamardRotation.weightInput(columns: n)
        let conjugated = r.conjugate(symmetric: moments(x))
        r.applyToRows(&x)
        let direct = moments(x)
        for i in 0 ..< n * n { #expect(abs(conjugated[i] - direct[i]) < 1e-3 * max(1, abs(direct[i]))) }
    }

    /// f32 rows W·Rᵀ marked rotated multiply to W x (1e-4 relative: one rotation in f32); the rows read back are W's.
    @Test(arguments: [1, 7])
    func rotatedF32RowsGiveTheOriginalProduct(tokens: Int) throws {
        let (w, rotated) = weights(seed: 2)
        var keep: [[UInt8]] = []
        let m = try matrix(.f32, rotated, keep: &keep).rotatingInput()
        var rng = SplitMix64(seed: 3)
        let x = (0 ..< tokens * Self.columns).map { _ in Float.random(in: -1 ... 1, using: &rng) }
        var y = [Float](repeating: 0, count: tokens * Self.rows)
        let matmul = Matmul(pool: WorkerPool(threads: 2))
        try x.withUnsafeBufferPointer { xp in try y.withUnsafeMutableBufferPointer { try matmul(m, xp.baseAddress!, tokens: tokens, $0.baseAddress!) } }
        for t in 0 ..< tokens {
            for r in 0 ..< Self.rows {
                var want = 0.0
                for j in 0 ..< Self.columns { want += Double(w[r * Self.columns + j]) * Double(x[t * Self.columns + j]) }
                #expect(abs(Double(y[t * Self.rows + r]) - want) <= 1e-4 * max(1, abs(want)), "token \(t) row \(r)")
            }
        }
        var row = [Float](repeating: 0, count: Self.columns)
        for r in [0, 17, Self.rows - 1] {
            try row.withUnsafeMutableBufferPointer { try m.dequantizeRow(r, into: $0.baseAddress!) }
            for j in 0 ..< Self.columns { #expect(abs(row[j] - w[r * Self.columns + j]) < 1e-5) }
        }
    }

    /// For block types on every kernel path (packed int8, lookup tables for one token, converted Squish types), plain
    /// and fused: a rotated matrix times x is bit for bit the same stored matrix, unmarked, times R x.
    @Test(arguments: [GGMLType.q4_0, .sq3_G64, .sq4_G64], [1, 5])
    func rotatedBlocksMultiplyTheRotatedInput(type: GGMLType, tokens: Int) throws {
        var keep: [[UInt8]] = []
        let plain = try (0 ..< 3).map { try matrix(type, weights(seed: 10 + UInt64($0)).rotated, keep: &keep) }
        let marked = plain.map { $0.rotatingInput() }
        var rng = SplitMix64(seed: 4)
        let x = (0 ..< tokens * Self.columns).map { _ in Float.random(in: -1 ... 1, using: &rng) }
        var xr = x
        HadamardRotation.weightInput(columns: Self.columns).applyToRows(&xr)
        let matmul = Matmul(pool: WorkerPool(threads: 2))
        let n = tokens * Self.rows
        func product(_ m: WeightMatrix, _ input: [Float]) throws -> [Float] {
            var y = [Float](repeating: 0, count: n)
            try input.withUnsafeBufferPointer { xp in try y.withUnsafeMutableBufferPointer { try matmul(m, xp.baseAddress!, tokens: tokens, $0.baseAddress!) } }
            return y
        }
        let want = try plain.map { try product($0, xr) }
        for i in 0 ..< 3 { #expect(try product(marked[i], x) == want[i], "\(type.name) matrix \(i)") }

        // Fused: all three rotated (one rotation of the input), and a mix with an unrotated matrix (one call each).
        var ya = [Float](repeating: 0, count: n), yb = ya, yc = ya
        try x.withUnsafeBufferPointer { xp in
            try ya.withUnsafeMutableBufferPointer { a in
                try yb.withUnsafeMutableBufferPointer { b in
                    try yc.withUnsafeMutableBufferPointer { c in
                        try matmul.fused(marked[0], a.baseAddress!, marked[1], b.baseAddress!, marked[2], c.baseAddress!,
                                         input: xp.baseAddress!, tokens: tokens)
                    }
                }
            }
        }
        #expect(ya == want[0] && yb == want[1] && yc == want[2], "\(type.name) fused")
        let unrotated = try product(plain[1], x)
        try x.withUnsafeBufferPointer { xp in
            try ya.withUnsafeMutableBufferPointer { a in
                try yb.withUnsafeMutableBufferPointer { b in
                    try matmul.fused(marked[0], a.baseAddress!, plain[1], b.baseAddress!, input: xp.baseAddress!, tokens: tokens) { _ in }
                }
            }
        }
        #expect(ya == want[0] && yb == unrotated, "\(type.name) fused, mixed")
    }
}
