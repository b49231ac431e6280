import Foundation
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel

extension WeightMatrix {
    /// All weights as f32, [rows × columns] row-major.
    func dequantized() throws -> [Float] {
        var w = [Float](repeating: 0, count: rows * columns)
        try w.withUnsafeMutableBufferPointer { wp in
            for r in 0 ..< rows { try dequantizeRow(r, into: wp.baseAddress! + r * columns) }
        }
        return w
    }
}

/// Memory that pruned and re-fitted matrices live in (weight matrices and GGUF writers point into it); freed with
/// the owner.
final class OwnedBuffers: @unchecked Sendable {  // appended to by one thread; the buffers are never written after `keep`
    private var buffers: [UnsafeMutableRawBufferPointer] = []

    /// A copy of `bytes` that lives as long as this owner.
    func keep(_ bytes: [UInt8]) -> UnsafeRawBufferPointer {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        bytes.withUnsafeBytes { if $0.count > 0 { b.copyMemory(from: $0) } }
        buffers.append(b)
        return UnsafeRawBufferPointer(start: b.baseAddress, count: bytes.count)
    }

    /// A weight matrix over a kept copy of `bytes`, prepared for the kernels (repacked where the type allows).
    func matrix(_ name: String, type: GGMLType, bytes: [UInt8], rows: Int, columns: Int) throws -> WeightMatrix {
        let raw = try WeightMatrix(name: name, type: type, data: keep(bytes), rows: rows, columns: columns)
        return KernelLayout().prepare(raw, releaseSource: false)
    }

    deinit { for b in buffers { b.deallocate() } }
}

extension LinearAlgebra {
    /// Y = X Wᵀ for X [n × k] and W [m × k] (row-major f32): Y [n × m], as a linear layer computes it, through the f32
    /// matmul kernel (exact f32 products; no 8-bit rounding).
    static func multiplyByTransposed(_ x: [Float], rows n: Int, _ w: [Float], wRows m: Int, inner k: Int, pool: WorkerPool) throws -> [Float] {
        precondition(x.count == n * k && w.count == m * k)
        var y = [Float](repeating: 0, count: n * m)
        guard n > 0, m > 0, k > 0 else { return y }
        let matmul = Matmul(pool: pool)
        try w.withUnsafeBytes { wb in
            let matrix = try WeightMatrix(name: "W", type: .f32, data: wb, rows: m, columns: k)
            try x.withUnsafeBufferPointer { xp in
                try y.withUnsafeMutableBufferPointer { yp in
                    // Tiles of tokens keep the kernel's working set bounded.
                    var t0 = 0
                    while t0 < n {
                        let nt = min(512, n - t0)
                        try matmul(matrix, xp.baseAddress! + t0 * k, tokens: nt, yp.baseAddress! + t0 * m)
                        t0 += nt
                    }
                }
            }
        }
        return y
    }

    /// (G + λI)⁻¹ for a symmetric positive semi-definite G [n × n] (f64, row-major), λ = `damp` · mean diag(G)
    /// (raised tenfold until the Cholesky factorization succeeds), in f32: with U the upper factor of the inverse
    /// (G⁻¹ = UᵀU), the product UᵀU.
    static func dampedInverse(_ g: [Double], n: Int, damp: Double, pool: WorkerPool) throws -> (inverse: [Float], lambda: Double) {
        var mean = 0.0
        for i in 0 ..< n { mean += g[i * n + i] }
        mean = max(mean / Double(max(n, 1)), 1e-12)
        var lambda = damp * mean
        for _ in 0 ..< 5 {
            var h = g.map { Float($0) }
            for i in 0 ..< n { h[i * n + i] += Float(lambda) }
            if let u = h.withUnsafeBufferPointer({ upperCholeskyOfInverse($0.baseAddress!, n: n, pool: pool) }) {
                var ut = [Float](repeating: 0, count: n * n)  // Uᵀ
                for i in 0 ..< n { for j in 0 ..< n { ut[j * n + i] = u[i * n + j] } }
                // (Uᵀ)(Uᵀ)ᵀ = UᵀU.
                return (try multiplyByTransposed(ut, rows: n, ut, wRows: n, inner: n, pool: pool), lambda)
            }
            lambda *= 10
        }
        throw QuantizeError.numerical(tensor: "<least squares>", reason: "the damped statistics are not positive definite")
    }
}

/// C = Σ aᵀ b over calibration rows a [n_a features] and b [n_b features] seen together: [n_a × n_b], f64,
/// accumulated from the f32 matmul kernel one sequence at a time (as `HessianAccumulator`, without symmetry).
final class CrossAccumulator {
    let na: Int, nb: Int
    private(set) var c: [Double]  // [na × nb]

    init(na: Int, nb: Int) {
        self.na = na
        self.nb = nb
        c = [Double](repeating: 0, count: na * nb)
    }

    func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, tokens t: Int, matmul: Matmul) throws {
        let (na, nb) = (self.na, self.nb)
        let at = UnsafeMutablePointer<Float>.allocate(capacity: na * t)  // Aᵀ [na × t]
        let bt = UnsafeMutablePointer<Float>.allocate(capacity: nb * t)  // Bᵀ [nb × t]
        let y = UnsafeMutablePointer<Float>.allocate(capacity: na * nb)  // [nb × na]: y[m, r] = C[r, m]
        defer { at.deallocate(); bt.deallocate(); y.deallocate() }
        for s in 0 ..< t {
            for i in 0 ..< na { at[i * t + s] = a[s * na + i] }
            for i in 0 ..< nb { bt[i * t + s] = b[s * nb + i] }
        }
        let w = try WeightMatrix(name: "AᵀB", type: .f32, data: UnsafeRawBufferPointer(start: at, count: na * t * 4), rows: na, columns: t)
        try matmul(w, bt, tokens: nb, y)
        c.withUnsafeMutableBufferPointer { cp in
            for m in 0 ..< nb { for r in 0 ..< na { cp[r * nb + m] += Double(y[m * na + r]) } }
        }
    }
}

/// Σ x² per feature over calibration rows (the diagonal of H = XᵀX without the rest).
final class SquareSumAccumulator {
    private(set) var sums: [Double]
    init(n: Int) { sums = [Double](repeating: 0, count: n) }
    func add(_ x: UnsafePointer<Float>, tokens t: Int) {
        let n = sums.count
        sums.withUnsafeMutableBufferPointer { s in
            for r in 0 ..< t { for i in 0 ..< n { let v = Double(x[r * n + i]); s[i] += v * v } }
        }
    }
}

/// ShortGPT's Block Influence (Men et al. 2024, "ShortGPT: Layers in Large Language Models are More Redundant Than
/// You Expect", eq. 1): 1 − cos(x_in, x_out) of the residual stream around a block, per token.
enum BlockInfluence {
    /// Σ over `tokens` rows of 1 − cos(before_t, after_t), rows of `dim`.
    static func sum(before: UnsafePointer<Float>, after: UnsafePointer<Float>, tokens: Int, dim: Int) -> Double {
        var total = 0.0
        for t in 0 ..< tokens {
            let a = before + t * dim, b = after + t * dim
            var ab = 0.0, aa = 0.0, bb = 0.0
            for i in 0 ..< dim { ab += Double(a[i] * b[i]); aa += Double(a[i] * a[i]); bb += Double(b[i] * b[i]) }
            total += 1 - ab / max((aa * bb).squareRoot(), 1e-30)
        }
        return total
    }
}

extension GGMLType {
    /// The block grid a matrix stored in this type is re-encoded with after pruning changed it (its own grid), nil
    /// for float types (written as they are) and types Squish cannot encode.
    var pruningGrid: BlockGrid? { BlockGrid(self) }
}

/// Encoding changed f32 weights [rows × columns] back into `type` (the matrix's stored type): GPTQ with the input
/// statistics `hessian` where given, importance-weighted rounding with `importance` otherwise, the codec for float
/// types. Throws naming the tensor when the type has no encoder or the row does not fit its blocks.
enum PrunedEncoding {
    static func encode(_ w: inout [Float], rows: Int, columns: Int, type: GGMLType, hessian: [Double]?, importance: [Float]?,
                       gptq: GPTQOptions, pool: WorkerPool, name: String) throws -> [UInt8] {
        if type == .f32 || type == .f16 || type == .bf16 { return try Codecs.quantize(type, w) }
        guard let grid = type.pruningGrid else {
            throw QuantizeError.unsupportedTarget("\(name): re-encoding a pruned \(type.name) matrix")
        }
        guard columns % grid.groupSize == 0 else { throw QuantizeError.rowLength(tensor: name, rowLength: columns, type: type) }
        if let hessian {
            return try w.withUnsafeMutableBufferPointer {
                try GPTQQuantizer.quantize(weights: $0.baseAddress!, rows: rows, columns: columns, hessian: hessian, grid: grid,
                                           options: gptq, pool: pool, name: name)
            }
        }
        let imp = importance ?? [Float](repeating: 1, count: columns)
        let bytes = w.withUnsafeBufferPointer { wp in
            imp.withUnsafeBufferPointer { RTNQuantizer.quantize(weights: wp.baseAddress!, rows: rows, columns: columns, grid: grid,
                                                                 importance: $0.baseAddress!, pool: pool) }
        }
        w = try bytes.withUnsafeBytes { try Codecs.dequantize(type, $0, count: rows * columns) }
        return bytes
    }
}
