import SquishFormats
import SquishKernels
import Synchronization

/// Least-squares refit of every block's continuous parameters (the f16 scale, and the minimum where the format has
/// one) with the codes held fixed, against the layer's calibration outputs.
///
/// GPTQ fixes a block's parameters from the weights as they are when the block is reached and then only chooses
/// codes; the parameters are never revisited although later error compensation moved the weights they were fitted
/// to. With the codes c fixed, a row's quantized weights are linear in its blocks' parameters θ: q = A θ, with
/// A[j, (g, scale)] = value(c_j, scale 1) and A[j, (g, minimum)] = 1 for the weights j of block g. The output error
/// of the original row w, (w − q)ᵀ (H + λI) (w − q) with H = Σ xᵀx and GPTQ's damping λ, is then minimized in closed
/// form by the normal equations Aᵀ(H + λI)A θ = Aᵀ(H + λI) w, solved per row. The refitted parameters are rounded to
/// f16 and kept only where that rounded solution lowers the row's error (it is exact in the quadratic form, so no
/// row gets worse). This is the closed-form, layer-wise case of fine-tuning the continuous parameters of a quantized
/// model (as OmniQuant and AQLM's fine-tuning learn them by gradient descent against outputs).
///
/// Where a block stores parameters shared by its sub-blocks (a K-quant's f16 d and dmin with integer sub-block scales
/// and minimums, SQ4NX's f16 d with integer multipliers), the integers stay and only d (and dmin) are refitted: the
/// sub-blocks' parameters are linear in them, so the same normal equations are solved in those fewer unknowns.
/// Ternary blocks (one magnitude, codes chosen for it) and MXFP4's power-of-two scales are left alone.
enum ParameterRefit {
    static func applies(to grid: BlockGrid) -> Bool {
        switch grid {
        case .ternary, .mxfp4: return false  // one magnitude with codes chosen for it; a power-of-two scale
        default: return true
        }
    }

    /// Refits `params` ([rows × n / codeGroupSize], one per code group) and, for grids with super-block parameters,
    /// `superBlocks` ([rows × n / groupSize]) in place for the codes `codes` ([rows × n]) of the original weights
    /// `original` ([rows × n]), with `hessian` ([n × n], symmetric) and damping `damp`; rewrites `quantized`
    /// ([rows × n]) with the values the refitted blocks decode to. Returns the number of rows whose error went down.
    @discardableResult
    static func refit(original: UnsafePointer<Float>, quantized: UnsafeMutablePointer<Float>, codes: UnsafePointer<UInt8>,
                      params: UnsafeMutablePointer<BlockParameters>, superBlocks: UnsafeMutablePointer<KQuantParameters>?,
                      rows: Int, n: Int, grid: BlockGrid, hessian: UnsafePointer<Float>, damp: Float, pool: WorkerPool) -> Int {
        precondition(applies(to: grid) && n % grid.groupSize == 0 && (superBlocks != nil) == grid.hasSuperBlockParameters)
        // Unknowns per code group (sub-block): its scale, and its minimum where the format has one.
        let gs = grid.codeGroupSize, groups = n / gs
        let k = grid.hasMinimum ? 2 : 1, count = k * groups
        let blocks = n / grid.groupSize
        // s_h = (H + λI) 1_h: the columns of (H + λI) A for the minimums, the same for every row.
        var ones = [Float](repeating: 0, count: k == 2 ? groups * n : 0)
        if k == 2 {
            ones.withUnsafeMutableBufferPointer { sp in
                for h in 0 ..< groups {
                    let s = sp.baseAddress! + h * n
                    for j in h * gs ..< (h + 1) * gs { VectorOps.axpy(1, hessian + j * n, s, n); s[j] += damp }
                }
            }
        }
        let improved = Atomic<Int>(0)
        ones.withUnsafeBufferPointer { sp in
            let onesBase = sp.baseAddress
            pool.parallelFor(rows) { range in
                let t = UnsafeMutablePointer<Float>.allocate(capacity: groups * n)  // (H + λI) A's scale columns
                let y = UnsafeMutablePointer<Float>.allocate(capacity: n)  // (H + λI) w
                let a = UnsafeMutablePointer<Float>.allocate(capacity: n)  // value(c_j, scale 1)
                defer { t.deallocate(); y.deallocate(); a.deallocate() }
                var normal = [Double](repeating: 0, count: count * count), rhs = [Double](repeating: 0, count: count)
                var local = 0
                for r in range {
                    let w = original + r * n, c = codes + r * n, p = params + r * groups
                    for j in 0 ..< n { a[j] = grid.value(c[j], BlockParameters(scale: 1)) }
                    t.initialize(repeating: 0, count: groups * n)
                    y.initialize(repeating: 0, count: n)
                    for j in 0 ..< n {
                        let hj = hessian + j * n
                        if w[j] != 0 { VectorOps.axpy(w[j], hj, y, n) }
                        if a[j] != 0 { VectorOps.axpy(a[j], hj, t + (j / gs) * n, n) }
                    }
                    for j in 0 ..< n { y[j] += damp * w[j]; t[(j / gs) * n + j] += damp * a[j] }
                    // Normal equations, in Double: N = Aᵀ(H + λI)A, b = Aᵀ(H + λI)w.
                    for g in 0 ..< groups {
                        let lo = g * gs
                        var b0 = 0.0, b1 = 0.0
                        for j in lo ..< lo + gs { b0 += Double(a[j]) * Double(y[j]); b1 += Double(y[j]) }
                        rhs[g * k] = b0
                        if k == 2 { rhs[g * k + 1] = b1 }
                        for h in 0 ..< groups {
                            let th = t + h * n, sh = onesBase.map { $0 + h * n }
                            var aa = 0.0, ba = 0.0, ab = 0.0, bb = 0.0
                            for j in lo ..< lo + gs {
                                aa += Double(a[j]) * Double(th[j])
                                if let sh {
                                    ba += Double(th[j])
                                    ab += Double(a[j]) * Double(sh[j])
                                    bb += Double(sh[j])
                                }
                            }
                            normal[(g * k) * count + h * k] = aa
                            if k == 2 {
                                normal[(g * k + 1) * count + h * k] = ba
                                normal[(g * k) * count + h * k + 1] = ab
                                normal[(g * k + 1) * count + h * k + 1] = bb
                            }
                        }
                    }
                    var old = [Double](repeating: 0, count: count)
                    for g in 0 ..< groups {
                        old[g * k] = Double(p[g].scale)
                        if k == 2 { old[g * k + 1] = Double(p[g].minimum) }
                    }
                    let theta: [Double]
                    var stored: [KQuantParameters] = []
                    if let superBlocks {
                        guard let fit = refitStored(superBlocks + r * blocks, blocks: blocks, grid: grid, normal: normal, rhs: rhs)
                        else { continue }
                        (stored, theta) = fit
                    } else {
                        guard var t = ridgeSolve(normal, rhs, current: old, count) else { continue }
                        for i in 0 ..< count { t[i] = Double(f16(Float(t[i]))) }
                        theta = t
                    }
                    // Error up to the constant wᵀ(H + λI)w: θᵀNθ − 2θᵀb.
                    func error(_ x: [Double]) -> Double {
                        var e = 0.0
                        for i in 0 ..< count {
                            var s = 0.0
                            for j in 0 ..< count { s += normal[i * count + j] * x[j] }
                            e += x[i] * (s - 2 * rhs[i])
                        }
                        return e
                    }
                    guard theta.allSatisfy(\.isFinite), error(theta) < error(old) else { continue }
                    for (g, q) in stored.enumerated() { superBlocks![r * blocks + g] = q }
                    for g in 0 ..< groups {
                        p[g] = BlockParameters(scale: Float(theta[g * k]), minimum: k == 2 ? Float(theta[g * k + 1]) : 0)
                        for j in g * gs ..< (g + 1) * gs { quantized[r * n + j] = grid.value(c[j], p[g]) }
                    }
                    local += 1
                }
                improved.add(local, ordering: .relaxed)
            }
        }
        return improved.load(ordering: .relaxed)
    }

    /// For grids whose sub-block parameters come from a block's stored d (and dmin) times integers (K-quants, SQ4NX):
    /// the normal equations `normal`, `rhs` in the sub-block parameters θ, taken to the stored ones by θ = M φ (sub-block
    /// s of block g has scale d_g · sc_s and minimum −dmin_g · m_s) and solved there. Returns the refitted stored
    /// parameters of the row's `blocks` blocks `stored` and the sub-block parameters they decode to, or nil.
    static func refitStored(_ stored: UnsafePointer<KQuantParameters>, blocks: Int, grid: BlockGrid, normal: [Double],
                            rhs: [Double]) -> (stored: [KQuantParameters], theta: [Double])? {
        let k = grid.hasMinimum ? 2 : 1, perBlock = grid.groupSize / grid.codeGroupSize
        let count = rhs.count, reduced = k * blocks
        var m = [Double](repeating: 0, count: count * reduced)
        var current = [Double](repeating: 0, count: reduced)
        for g in 0 ..< blocks {
            current[g * k] = Double(stored[g].d)
            if k == 2 { current[g * k + 1] = Double(stored[g].dmin) }
            for s in 0 ..< perBlock {
                let i = g * perBlock + s
                m[(i * k) * reduced + g * k] = Double(stored[g].scales[s])
                if k == 2 { m[(i * k + 1) * reduced + g * k + 1] = -Double(stored[g].mins[s]) }
            }
        }
        // Mᵀ N M and Mᵀ b.
        var nm = [Double](repeating: 0, count: count * reduced)
        for i in 0 ..< count {
            for j in 0 ..< count where normal[i * count + j] != 0 {
                for q in 0 ..< reduced { nm[i * reduced + q] += normal[i * count + j] * m[j * reduced + q] }
            }
        }
        var rn = [Double](repeating: 0, count: reduced * reduced), rb = [Double](repeating: 0, count: reduced)
        for i in 0 ..< count {
            for a in 0 ..< reduced where m[i * reduced + a] != 0 {
                rb[a] += m[i * reduced + a] * rhs[i]
                for q in 0 ..< reduced { rn[a * reduced + q] += m[i * reduced + a] * nm[i * reduced + q] }
            }
        }
        guard let phi = ridgeSolve(rn, rb, current: current, reduced) else { return nil }
        let refitted = (0 ..< blocks).map { g in
            var q = stored[g]
            q.d = f16(Float(phi[g * k]))
            if k == 2 { q.dmin = f16(Float(phi[g * k + 1])) }
            return q
        }
        var theta = [Double](repeating: 0, count: count)
        for i in 0 ..< count / k {
            let sub = grid.subBlockParameters(refitted[i / perBlock], i % perBlock)
            theta[i * k] = Double(sub.scale)
            if k == 2 { theta[i * k + 1] = Double(sub.minimum) }
        }
        return (refitted, theta)
    }

    /// The solution of N θ = b, with a tiny ridge towards `current`: a parameter no weight depends on (a block of
    /// zero codes) makes N singular, and the ridge keeps it solvable and leaves such parameters where they were.
    static func ridgeSolve(_ normal: [Double], _ rhs: [Double], current: [Double], _ count: Int) -> [Double]? {
        var trace = 0.0
        for i in 0 ..< count { trace += normal[i * count + i] }
        let ridge = max(1e-9 * trace / Double(count), Double.leastNormalMagnitude)
        var system = normal, target = rhs
        for i in 0 ..< count { system[i * count + i] += ridge; target[i] += ridge * current[i] }
        return LinearAlgebra.solveSymmetric(system, target, count)
    }
}
