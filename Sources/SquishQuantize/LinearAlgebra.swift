import SquishKernels

/// Dense symmetric-matrix helpers for GPTQ, in f32 on row-major n × n buffers (as gptq.py works in float32), and an
/// f64 solver for the small normal equations of `ParameterRefit`.
enum LinearAlgebra {
    /// The upper-triangular U with H⁻¹ = Uᵀ U, for symmetric positive-definite H (GPTQ's "Cholesky of H⁻¹", upper).
    ///
    /// Computed without forming H⁻¹: with J the reversal permutation and M the lower Cholesky factor of J H J
    /// (J H J = M Mᵀ), H = V Vᵀ with V = J M J upper triangular, so H⁻¹ = V⁻ᵀ V⁻¹ and U = V⁻¹ = J M⁻¹ J.
    /// That is one Cholesky and one triangular inverse (2n³/3 flops) instead of Cholesky, inverse and Cholesky again.
    /// Returns nil when H is not numerically positive definite.
    static func upperCholeskyOfInverse(_ h: UnsafePointer<Float>, n: Int, pool: WorkerPool) -> [Float]? {
        // P = J H J.
        var m = [Float](repeating: 0, count: n * n)
        m.withUnsafeMutableBufferPointer { p in
            for i in 0 ..< n { for j in 0 ..< n { p[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)] } }
        }
        guard cholesky(&m, n: n) else { return nil }
        // X = M⁻¹ (lower), column by column: M x = e_j by forward substitution; columns are independent.
        // Column j of X is stored as row j of Y = Xᵀ (upper), so the dot products run over contiguous memory.
        var y = [Float](repeating: 0, count: n * n)
        m.withUnsafeBufferPointer { mp in
            y.withUnsafeMutableBufferPointer { yp in
                let mb = mp.baseAddress!, yb = yp.baseAddress!
                pool.parallelFor(n) { columns in
                    for j in columns {
                        let x = yb + j * n  // x[i] = X[i][j], nonzero for i ≥ j
                        x[j] = 1 / mb[j * n + j]
                        var i = j + 1
                        while i < n {
                            let s = VectorOps.dot(mb + i * n + j, x + j, i - j)
                            x[i] = -s / mb[i * n + i]
                            i += 1
                        }
                    }
                }
            }
        }
        // U[a][b] = X[n-1-a][n-1-b] = Y[n-1-b][n-1-a], nonzero for a ≤ b.
        var u = [Float](repeating: 0, count: n * n)
        y.withUnsafeBufferPointer { yp in
            u.withUnsafeMutableBufferPointer { up in
                for a in 0 ..< n { for b in a ..< n { up[a * n + b] = yp[(n - 1 - b) * n + (n - 1 - a)] } }
            }
        }
        return u
    }

    /// In-place lower Cholesky factor (row by row, Cholesky–Banachiewicz); the strict upper triangle is zeroed.
    static func cholesky(_ a: inout [Float], n: Int) -> Bool {
        a.withUnsafeMutableBufferPointer { p in
            let b = p.baseAddress!
            for i in 0 ..< n {
                let ri = b + i * n
                for j in 0 ... i {
                    let rj = b + j * n
                    let s = ri[j] - (j > 0 ? VectorOps.dot(ri, rj, j) : 0)
                    if i == j {
                        guard s > 0, s.isFinite else { return false }
                        ri[i] = s.squareRoot()
                    } else {
                        ri[j] = s / rj[j]
                    }
                }
                for j in i + 1 ..< n { ri[j] = 0 }
            }
            return true
        }
    }

    /// x with S x = b for symmetric positive-definite S ([m × m], row-major), by Cholesky; nil if S is not.
    static func solveSymmetric(_ s: [Double], _ b: [Double], _ m: Int) -> [Double]? {
        var l = [Double](repeating: 0, count: m * m)
        for i in 0 ..< m {
            for j in 0 ... i {
                var v = s[i * m + j]
                for q in 0 ..< j { v -= l[i * m + q] * l[j * m + q] }
                if i == j {
                    guard v > 0, v.isFinite else { return nil }
                    l[i * m + i] = v.squareRoot()
                } else {
                    l[i * m + j] = v / l[j * m + j]
                }
            }
        }
        var z = b
        for i in 0 ..< m {
            for q in 0 ..< i { z[i] -= l[i * m + q] * z[q] }
            z[i] /= l[i * m + i]
        }
        for i in stride(from: m - 1, through: 0, by: -1) {
            for q in i + 1 ..< m { z[i] -= l[q * m + i] * z[q] }
            z[i] /= l[i * m + i]
        }
        return z
    }
}
