import Foundation
import SquishCore
import SquishFormats
import SquishKernels

/// Block-diagonal second moment of a linear layer's inputs: for each group of `g` consecutive input channels (one
/// weight block's worth), H_b = Σ_t x_t,b x_t,bᵀ [g × g], summed over every calibration token. That is all the
/// output error of one weight block needs: rounding the block changes output t by x_t,b · e with e the block's
/// rounding error, so Σ_t (x_t,b · e)² = eᵀ H_b e.
public final class GroupGram {
    public let n: Int
    public let g: Int
    public private(set) var h: [Double]  // [(n / g) × g × g]
    public private(set) var tokens = 0

    public init(n: Int, g: Int) {
        precondition(g > 0 && n % g == 0)
        self.n = n
        self.g = g
        h = [Double](repeating: 0, count: n * g)
    }

    /// Adds the outer products of `tokens` rows x [tokens × n].
    public func add(_ x: UnsafePointer<Float>, tokens t: Int, pool: WorkerPool) {
        let (n, g) = (self.n, self.g)
        h.withUnsafeMutableBufferPointer { hp in
            let base = hp.baseAddress!
            pool.parallelFor(n / g) { range in
                let acc = UnsafeMutablePointer<Float>.allocate(capacity: g * g)  // one sequence's sum, in f32 [g × g]
                defer { acc.deallocate() }
                for b in range {
                    acc.initialize(repeating: 0, count: g * g)
                    for s in 0 ..< t {
                        let row = x + s * n + b * g
                        for i in 0 ..< g {
                            let xi = row[i]
                            let a = acc + i * g
                            for j in 0 ..< g { a[j] += xi * row[j] }
                        }
                    }
                    let hb = base + b * g * g
                    for k in 0 ..< g * g { hb[k] += Double(acc[k]) }
                }
            }
        }
        tokens += t
    }

    /// The Gram matrices of the scaled inputs x / s (AWQ's scales multiply the weights' columns, so the layer's input
    /// is divided by them), averaged over tokens, in f32 [(n / g) × g × g].
    public func scaled(_ s: [Float]?) -> [Float] {
        var out = [Float](repeating: 0, count: n * g)
        let norm = 1 / Double(max(tokens, 1))
        for b in 0 ..< n / g {
            for i in 0 ..< g {
                for j in 0 ..< g {
                    let si = Double(s?[b * g + i] ?? 1), sj = Double(s?[b * g + j] ?? 1)
                    out[(b * g + i) * g + j] = Float(h[(b * g + i) * g + j] * norm / (si * sj))
                }
            }
        }
        return out
    }
}

/// AWQ's weight clipping (Lin et al. 2023, §3.3 and the reference implementation's `auto_clip`): after the scales,
/// each weight block's range is searched for the one that minimises the block's *output* error on calibration
/// inputs, eᵀ H_b e (see `GroupGram`), rather than the weight error. Candidates per block:
/// - the block format's own parameters (`BlockGrid.parameters`; for the Squish affine types already a least-squares
///   fit in weight space, see `AffineFit`);
/// - as in the reference implementation, the weights clipped to ±r · max |w| for r = 1, 1 − 1/N, ... down to
///   `minRatio`, the block's parameters then taken from the clipped range (min/max for types with a minimum, the
///   scale times r for the symmetric ones);
/// and, for types with a minimum, a final refit of (d, m) by H-weighted least squares for the winner's codes
/// (minimising (d q + m − w)ᵀ H_b (d q + m − w), a 2 × 2 system), kept only if it lowers the error after f16
/// rounding and re-deriving the codes.
public enum AWQClip {
    public struct Stats {
        /// Σ over blocks of the output error with the format's own parameters, and with the chosen ones.
        public var plainError = 0.0
        public var clippedError = 0.0
    }

    /// Quantizes `rows` rows of `n` weights (row-major, f32) into `dst` (`grid.type` rows), choosing each block's
    /// parameters by output error under `gram` ([(n / g) × g × g], g = grid.groupSize).
    public static func quantize(_ w: UnsafePointer<Float>, rows: Int, n: Int, grid: BlockGrid, gram: [Float], steps: Int,
                                minRatio: Float, into dst: UnsafeMutableRawPointer, pool: WorkerPool) -> Stats {
        let g = grid.groupSize, rowBytes = grid.type.rowBytes(elements: n)!
        let ratios = (0 ..< max(1, steps)).map { 1 - Float($0) * (1 - minRatio) / Float(max(1, steps)) }
        let lock = NSLock()
        var total = Stats()
        gram.withUnsafeBufferPointer { hp in
            let h = hp.baseAddress!
            pool.parallelFor(rows, granularity: 4) { range in
                var local = Stats()
                withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * g) { scratch in
                    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: g) { codes in
                        for r in range {
                            for b in 0 ..< n / g {
                                let (p, plain, best) = search(w + r * n + b * g, grid: grid, h: h + b * g * g,
                                                              ratios: ratios, scratch: scratch.baseAddress!)
                                local.plainError += Double(plain)
                                local.clippedError += Double(best)
                                let x = w + r * n + b * g
                                for j in 0 ..< g { codes[j] = grid.code(x[j], p) }
                                grid.pack(codes.baseAddress!, p, into: dst + r * rowBytes + b * grid.blockBytes)
                            }
                        }
                    }
                }
                lock.lock()
                total.plainError += local.plainError
                total.clippedError += local.clippedError
                lock.unlock()
            }
        }
        return total
    }

    /// The chosen parameters of one block `x` [g] under `h` [g × g], with the error of the format's own parameters
    /// and of the chosen ones. `scratch`: 2g floats.
    static func search(_ x: UnsafePointer<Float>, grid: BlockGrid, h: UnsafePointer<Float>, ratios: [Float],
                       scratch: UnsafeMutablePointer<Float>) -> (BlockParameters, Float, Float) {
        let g = grid.groupSize
        let e = scratch, q = scratch + g
        let vectorized = g % 32 == 0
        func error(_ p: BlockParameters) -> Float {
            for i in 0 ..< g { e[i] = grid.round(x[i], p) - x[i] }
            if vectorized {
                // eᵀ H e = Σ_j Σ_k e_j H_jk e_k in four SIMD8 partial sums (f32 sums are not reassociated by the compiler).
                let ev = UnsafeRawPointer(e)
                var v0 = SIMD8<Float>(), v1 = SIMD8<Float>(), v2 = SIMD8<Float>(), v3 = SIMD8<Float>()
                for j in 0 ..< g {
                    let row = UnsafeRawPointer(h + j * g), ej = e[j]
                    var k = 0
                    while k < g * 4 {
                        v0 += ej * row.loadUnaligned(fromByteOffset: k, as: SIMD8<Float>.self) * ev.loadUnaligned(fromByteOffset: k, as: SIMD8<Float>.self)
                        v1 += ej * row.loadUnaligned(fromByteOffset: k + 32, as: SIMD8<Float>.self) * ev.loadUnaligned(fromByteOffset: k + 32, as: SIMD8<Float>.self)
                        v2 += ej * row.loadUnaligned(fromByteOffset: k + 64, as: SIMD8<Float>.self) * ev.loadUnaligned(fromByteOffset: k + 64, as: SIMD8<Float>.self)
                        v3 += ej * row.loadUnaligned(fromByteOffset: k + 96, as: SIMD8<Float>.self) * ev.loadUnaligned(fromByteOffset: k + 96, as: SIMD8<Float>.self)
                        k += 128
                    }
                }
                return ((v0 + v1) + (v2 + v3)).sum()
            }
            var total: Float = 0
            for i in 0 ..< g {
                let hi = h + i * g
                var s: Float = 0
                for j in 0 ..< g { s += hi[j] * e[j] }
                total += e[i] * s
            }
            return total
        }
        let own = grid.parameters(x)
        let plain = error(own)
        if case .ternary = grid { return (own, plain, plain) }
        var best = own, bestError = plain
        var lo = x[0], hi = x[0]
        for i in 1 ..< g { lo = min(lo, x[i]); hi = max(hi, x[i]) }
        let amax = max(abs(lo), abs(hi))
        let levels = Float((1 << grid.bits) - 1)
        for r in ratios {
            let p: BlockParameters
            if grid.hasMinimum {
                let a = max(lo, -amax * r), b = min(hi, amax * r)
                guard b > a else { continue }
                p = BlockParameters(scale: f16((b - a) / levels), minimum: f16(a))
            } else {
                p = BlockParameters(scale: f16(own.scale * r))
            }
            guard p.scale != 0 else { continue }
            let err = error(p)
            if err < bestError { best = p; bestError = err }
        }
        if grid.hasMinimum, best.scale > 0 {
            // H-weighted least squares for (d, m) given the winner's codes.
            for i in 0 ..< g { q[i] = Float(grid.code(x[i], best)) }
            var a: Double = 0, b: Double = 0, c: Double = 0, u: Double = 0, v: Double = 0
            for i in 0 ..< g {
                var hq: Float = 0, h1: Float = 0, hx: Float = 0
                let hi = h + i * g
                for j in 0 ..< g { hq += hi[j] * q[j]; h1 += hi[j]; hx += hi[j] * x[j] }
                a += Double(q[i] * hq); b += Double(h1 * q[i]); c += Double(h1); u += Double(q[i] * hx); v += Double(hx)
            }
            let det = a * c - b * b
            if det > 0 {
                let d = Float((c * u - b * v) / det), m = Float((a * v - b * u) / det)
                if d > 0, d.isFinite, m.isFinite {
                    let p = BlockParameters(scale: f16(d), minimum: f16(m))
                    let err = error(p)
                    if err < bestError { best = p; bestError = err }
                }
            }
        }
        return (best, plain, bestError)
    }
}
