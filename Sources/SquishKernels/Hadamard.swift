import CSquishKernels

/// A randomized Hadamard rotation of vectors of `count` values (QuaRot, QuIP#: it spreads a few large coordinates
/// over all of them, so a low-bit grid fits): x ← H·diag(s)·x / √b on each block of b consecutive values, b the
/// largest power of two that divides `count`, H the b × b Walsh–Hadamard matrix and s fixed random signs drawn from
/// `seed`. It is orthogonal, so rotating both vectors of a dot product keeps the product.
public struct HadamardRotation: Sendable, Equatable {
    public let count: Int
    /// Values per Walsh–Hadamard block.
    public let block: Int
    public let seed: UInt64
    private let signs: [Float]  // drawn from seed

    public init(count: Int, seed: UInt64 = 0x5351_4953_4841_4441) {
        precondition(count >= 1)
        self.count = count
        block = count & -count
        self.seed = seed
        var state = seed
        signs = (0 ..< count).map { _ in
            // SplitMix64: one sign per value, the same on every machine.
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return (z ^ (z >> 31)) & 1 == 0 ? 1 : -1
        }
    }

    /// The rotation of a weight matrix's input of `columns` features (`WeightMatrix.rotatingInput`): a file's
    /// rotated matrices are read with it, so it must never change.
    public static func weightInput(columns: Int) -> HadamardRotation { HadamardRotation(count: columns) }

    /// The signs follow from count and seed, so those decide equality (the matmul compares rotations on every call).
    public static func == (a: HadamardRotation, b: HadamardRotation) -> Bool { a.count == b.count && a.seed == b.seed }

    /// Rotates x[0 ..< count] in place.
    public func apply(_ x: UnsafeMutablePointer<Float>) { apply(x, into: x) }

    /// dst[0 ..< count] = src rotated (src may be dst), by the C kernel (AVX2 where available; `portable`: the
    /// plain C loops, the same bits).
    public func apply(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, portable: Bool = false) {
        signs.withUnsafeBufferPointer { s in
            (portable ? sq_hadamard_rotate_portable : sq_hadamard_rotate)(src, dst, s.baseAddress!, Int64(count), Int64(block))
        }
    }
    /// The same in double precision (calibration statistics).
    public func apply(_ x: UnsafeMutablePointer<Double>) { rotate(x) }

    /// Undoes `apply` (the transpose: H/√b is its own inverse).
    public func invert(_ x: UnsafeMutablePointer<Float>) {
        transform(x)
        signs.withUnsafeBufferPointer { s in for i in 0 ..< count { x[i] *= Float(s[i]) } }
    }

    /// Each row of x [rows × count] rotated: W → W·Rᵀ for a matrix whose rows are dotted with rotated inputs.
    public func applyToRows(_ x: inout [Float]) {
        precondition(x.count % count == 0)
        x.withUnsafeMutableBufferPointer { p in for r in 0 ..< p.count / count { apply(p.baseAddress! + r * count) } }
    }

    /// R·A·Rᵀ for a symmetric A [count × count] (second moments of inputs x become those of R x): the rows of A
    /// rotated give A·Rᵀ (A = Aᵀ), transposed and rotated again R·A·Rᵀ.
    public func conjugate(symmetric a: [Double]) -> [Double] {
        let n = count
        precondition(a.count == n * n)
        var b = a
        b.withUnsafeMutableBufferPointer { p in for r in 0 ..< n { apply(p.baseAddress! + r * n) } }
        var t = [Double](repeating: 0, count: n * n)
        for i in 0 ..< n { for j in 0 ..< n { t[j * n + i] = b[i * n + j] } }
        t.withUnsafeMutableBufferPointer { p in for r in 0 ..< n { apply(p.baseAddress! + r * n) } }
        return t
    }

    private func rotate<T: BinaryFloatingPoint>(_ x: UnsafeMutablePointer<T>) {
        signs.withUnsafeBufferPointer { s in for i in 0 ..< count { x[i] *= T(s[i]) } }
        transform(x)
    }

    /// H/√b on every block of x.
    private func transform<T: BinaryFloatingPoint>(_ x: UnsafeMutablePointer<T>) {
        let norm = 1 / T(block).squareRoot()
        var b = 0
        while b < count {
            var h = 1
            while h < block {
                var i = b
                while i < b + block {
                    for j in i ..< i + h {
                        let (u, v) = (x[j], x[j + h])
                        x[j] = u + v
                        x[j + h] = u - v
                    }
                    i += 2 * h
                }
                h *= 2
            }
            b += block
        }
        for i in 0 ..< count { x[i] *= norm }
    }
}
