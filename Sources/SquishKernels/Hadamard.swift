/// A randomized Hadamard rotation of vectors of `count` values (QuaRot, QuIP#: it spreads a few large coordinates
/// over all of them, so a low-bit grid fits): x ← H·diag(s)·x / √b on each block of b consecutive values, b the
/// largest power of two that divides `count`, H the b × b Walsh–Hadamard matrix and s fixed random signs drawn from
/// `seed`. It is orthogonal, so rotating both vectors of a dot product keeps the product.
public struct HadamardRotation: Sendable, Equatable {
    public let count: Int
    /// Values per Walsh–Hadamard block.
    public let block: Int
    private let signs: [Float]

    public init(count: Int, seed: UInt64 = 0x5351_4953_4841_4441) {
        precondition(count >= 1)
        self.count = count
        block = count & -count
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

    /// Rotates x[0 ..< count] in place.
    public func apply(_ x: UnsafeMutablePointer<Float>) {
        let norm = 1 / Float(block).squareRoot()
        for i in 0 ..< count { x[i] *= signs[i] }
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
