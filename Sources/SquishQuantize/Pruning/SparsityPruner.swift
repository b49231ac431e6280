import Foundation
import SquishCore
import SquishFormats
import SquishKernels

/// Which weights of a row may remain: within every 64 consecutive weights (one sparse block, `SP<b>_K<k>`), `kept`
/// of any positions, or N of every M consecutive ones (the semi-structured patterns 2:4, 4:8, ...).
public enum SparsityPattern: Sendable, Equatable, CustomStringConvertible {
    /// `kept` of every 64 weights (16, 32, 48: 75%, 50%, 25% sparsity), at any positions: unstructured within the
    /// group that the sparse block stores.
    case perGroup(kept: Int)
    /// `n` of every `m` consecutive weights (m divides 64).
    case nOfM(n: Int, m: Int)

    /// Kept weights per 64.
    public var kept: Int {
        switch self {
        case .perGroup(let k): return k
        case .nOfM(let n, let m): return 64 / m * n
        }
    }

    public var sparsity: Double { 1 - Double(kept) / 64 }

    public var description: String {
        switch self {
        case .perGroup(let k): return String(format: "%.0f%% unstructured (%d of 64)", 100 * (1 - Double(k) / 64), k)
        case .nOfM(let n, let m): return "\(n):\(m)"
        }
    }

    /// Unstructured at `sparsity` (0.25, 0.5, 0.75), or nil when no sparse block type keeps that share.
    public static func unstructured(sparsity: Double) -> SparsityPattern? {
        let k = Int((64 * (1 - sparsity)).rounded())
        guard GGMLType.sparseKept.contains(k), abs(Double(k) - 64 * (1 - sparsity)) < 1e-6 else { return nil }
        return .perGroup(kept: k)
    }

    /// "N:M" (e.g. "2:4"), when M divides 64 and the kept share is one a sparse block type stores.
    public static func parse(_ s: String) -> SparsityPattern? {
        let parts = s.split(separator: ":")
        guard parts.count == 2, let n = Int(parts[0]), let m = Int(parts[1]), n > 0, n < m, m <= 64, 64 % m == 0,
              GGMLType.sparseKept.contains(64 / m * n) else { return nil }
        return .nOfM(n: n, m: m)
    }

    /// The mask (bit j: weight j kept) of one group of 64 weights by score (larger is kept; ties keep the earlier
    /// position).
    func mask(scores s: UnsafePointer<Float>) -> UInt64 {
        func top(_ lo: Int, _ count: Int, keep: Int) -> UInt64 {
            var m: UInt64 = 0
            for _ in 0 ..< keep {
                var best = -1
                for j in lo ..< lo + count where m >> UInt64(j) & 1 == 0 {
                    if best < 0 || s[j] > s[best] || (s[best].isNaN && !s[j].isNaN) { best = j }
                }
                m |= 1 << UInt64(best)
            }
            return m
        }
        switch self {
        case .perGroup(let k): return top(0, 64, keep: k)
        case .nOfM(let n, let m):
            var mask: UInt64 = 0
            for lo in stride(from: 0, to: 64, by: m) { mask |= top(lo, m, keep: n) }
            return mask
        }
    }
}

/// How weights to remove are chosen.
public enum SparsityMethod: String, Sendable, CaseIterable, Codable {
    /// Smallest |w| (the classic baseline).
    case magnitude
    /// Wanda (Sun, Liu, Bair, Kolter 2023, "A Simple and Effective Pruning Approach for Large Language Models", §3):
    /// smallest |w_ij| · ‖x_j‖ within each output row, no weight update.
    case wanda
    /// SparseGPT (Frantar, Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot",
    /// §3-4): OBS-style pruning column by column with the remaining weights updated to compensate, the mask of each
    /// group chosen by w² / [H⁻¹]_jj² when the group is reached (adaptive mask selection), on GPTQ's machinery.
    case sparsegpt
}

/// One matrix pruned to a sparse block type `SP<bits>_K<k>`: the mask chosen by `method` within `pattern`, the kept
/// weights rounded to the type's symmetric b-bit grid (one f16 scale per 64 weights, fitted to the kept values by
/// least squares weighted with the input's mean square, `SymmetricFit`).
public enum SparsityPruner {
    /// Prunes `weights` ([rows × columns], row-major, columns a multiple of 64; overwritten with the stored values,
    /// zeros where pruned) given the input statistics `hessian` (H = Σ xᵀx, [columns × columns]; only its diagonal
    /// for Wanda, unused by magnitude). Returns the packed blocks.
    public static func prune(weights w: UnsafeMutablePointer<Float>, rows: Int, columns n: Int, hessian: [Double]?,
                             method: SparsityMethod, pattern: SparsityPattern, bits: Int, options: GPTQOptions = GPTQOptions(),
                             pool: WorkerPool, name: String = "<matrix>") throws -> [UInt8] {
        guard let type = GGMLType.squishSparse(bits: bits, kept: pattern.kept) else {
            throw QuantizeError.unsupportedTarget("\(bits)-bit codes keeping \(pattern.kept) of 64 (no sparse block type)")
        }
        guard n % 64 == 0 else { throw QuantizeError.rowLength(tensor: name, rowLength: n, type: type) }
        if method != .magnitude {
            guard let h = hessian, h.count == n * n else {
                throw QuantizeError.numerical(tensor: name, reason: "\(method.rawValue) needs the \(n)×\(n) input statistics")
            }
        }
        let groups = n / 64, kept = pattern.kept
        // Input mean squares (Wanda's ‖x_j‖², the scale fit's importance); 1 for magnitude pruning.
        let diag: [Float] = hessian.map { h in (0 ..< n).map { Float(h[$0 * n + $0]) } } ?? [Float](repeating: 1, count: n)
        var masks = [UInt64](repeating: 0, count: rows * groups)
        var params = [BlockParameters](repeating: BlockParameters(scale: 0), count: rows * groups)
        var codes = [UInt8](repeating: 0, count: rows * n)
        let grid = BlockGrid.symmetric(bits: bits, group: 64)
        let top = 1 << (bits - 1)

        try masks.withUnsafeMutableBufferPointer { mp in
          try params.withUnsafeMutableBufferPointer { pp in
            try codes.withUnsafeMutableBufferPointer { cp in
              try diag.withUnsafeBufferPointer { dp in
                let (mb, pb, cb, db) = (mp.baseAddress!, pp.baseAddress!, cp.baseAddress!, dp.baseAddress!)
                switch method {
                case .magnitude, .wanda:
                    // No update: every group of every row on its own.
                    let useDiag = method == .wanda
                    pool.parallelFor(rows, granularity: 4) { range in
                        for r in range {
                            let row = w + r * n
                            for g in 0 ..< groups {
                                let j0 = g * 64
                                let mask = withUnsafeTemporaryAllocation(of: Float.self, capacity: 64) { s in
                                    for i in 0 ..< 64 { s[i] = abs(row[j0 + i]) * (useDiag ? db[j0 + i].squareRoot() : 1) }
                                    return pattern.mask(scores: s.baseAddress!)
                                }
                                let p = fitKept(row + j0, mask: mask, importance: db + j0, kept: kept, top: top)
                                mb[r * groups + g] = mask
                                pb[r * groups + g] = p
                                for i in 0 ..< 64 {
                                    if mask >> UInt64(i) & 1 != 0 {
                                        let c = grid.code(row[j0 + i], p)
                                        cb[r * n + j0 + i] = c
                                        row[j0 + i] = grid.value(c, p)
                                    } else {
                                        row[j0 + i] = 0
                                    }
                                }
                            }
                        }
                    }
                case .sparsegpt:
                    var o = options
                    o.actOrder = false  // the groups must stay contiguous in the stored row
                    let prepared = try GPTQQuantizer.prepare(hessian: hessian!, n: n, options: o, pool: pool, name: name)
                    for i in prepared.dead { for r in 0 ..< rows { w[r * n + i] = 0 } }
                    let uDiag = (0 ..< n).map { prepared.u[$0 * n + $0] }
                    uDiag.withUnsafeBufferPointer { up in
                        struct Rule: ColumnRounding {
                            let n: Int, groups: Int, kept: Int, top: Int, grid: BlockGrid, pattern: SparsityPattern
                            let u: UnsafePointer<Float>, importance: UnsafePointer<Float>
                            let masks: UnsafeMutablePointer<UInt64>, params: UnsafeMutablePointer<BlockParameters>
                            let codes: UnsafeMutablePointer<UInt8>
                            @inline(__always) func round(_ x: Float, row r: Int, column j: Int, weights row: UnsafeMutablePointer<Float>) -> Float {
                                let g = j / 64, i = j % 64
                                if i == 0 {
                                    // Adaptive mask selection (SparseGPT §3.2): the group's current weights, w² / U_jj².
                                    let mask = withUnsafeTemporaryAllocation(of: Float.self, capacity: 64) { s in
                                        for t in 0 ..< 64 { let v = row[j + t] / u[j + t]; s[t] = v * v }
                                        return pattern.mask(scores: s.baseAddress!)
                                    }
                                    masks[r * groups + g] = mask
                                    params[r * groups + g] = SparsityPruner.fitKept(row + j, mask: mask, importance: importance + j, kept: kept, top: top)
                                }
                                guard masks[r * groups + g] >> UInt64(i) & 1 != 0 else { return 0 }
                                let p = params[r * groups + g]
                                let c = grid.code(x, p)
                                codes[r * n + j] = c
                                return grid.value(c, p)
                            }
                        }
                        let rule = Rule(n: n, groups: groups, kept: kept, top: top, grid: grid, pattern: pattern, u: up.baseAddress!,
                                        importance: db, masks: mb, params: pb, codes: cb)
                        GPTQQuantizer.compensate(w, rows: rows, prepared: prepared, blockSize: o.blockSize, pool: pool, rule: rule)
                    }
                }
              }
            }
          }
        }

        // Pack: per block the mask, the scale and the kept codes in position order.
        let bb = type.blockBytes
        var out = [UInt8](repeating: 0, count: rows * groups * bb)
        out.withUnsafeMutableBytes { ob in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { kc in
                for r in 0 ..< rows {
                    for g in 0 ..< groups {
                        let mask = masks[r * groups + g]
                        var i = 0
                        for j in 0 ..< 64 where mask >> UInt64(j) & 1 != 0 { kc[i] = codes[r * n + g * 64 + j]; i += 1 }
                        while i < kept { kc[i] = UInt8(top); i += 1 }  // code of 0 (unused)
                        SquishSparsePacking.pack(mask: mask, scale: params[r * groups + g].scale, codes: kc.baseAddress!, bits: bits,
                                                 kept: kept, into: ob.baseAddress! + (r * groups + g) * bb)
                    }
                }
            }
        }
        return out
    }

    /// The scale of one group's kept weights (`SymmetricFit` over them, weighted by `importance`).
    static func fitKept(_ x: UnsafePointer<Float>, mask: UInt64, importance: UnsafePointer<Float>, kept: Int, top: Int) -> BlockParameters {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 128) { buffer in
            let v = buffer.baseAddress!, imp = v + 64
            var i = 0
            for j in 0 ..< 64 where mask >> UInt64(j) & 1 != 0 { v[i] = x[j]; imp[i] = max(importance[j], 1e-12); i += 1 }
            guard i > 0 else { return BlockParameters(scale: 0) }
            return SymmetricFit.search(v, count: i, top: top, importance: imp)
        }
    }
}
