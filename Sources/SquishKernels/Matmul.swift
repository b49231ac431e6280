import CSquishKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SquishCore
import SquishFormats

/// A weight matrix as stored in the model file: `rows` output channels, each a row of `columns` weights in block
/// type `type` (ggml order: a GGUF tensor of shape [columns, rows]). The bytes stay where they are (usually the mmap).
public struct WeightMatrix: @unchecked Sendable {
    public let name: String
    public let type: GGMLType
    public let data: UnsafeRawPointer  // [rows × rowBytes]
    public let rows: Int
    public let columns: Int
    public let rowBytes: Int
    /// The same weights repacked into groups of 8 interleaved rows (see repack.c), used by the int8 kernels in place
    /// of `data` when present; `data` stays valid for row look-ups (embeddings) and writers.
    public private(set) var packed: PackedWeights?
    /// Owner of `data` when the weights were converted at load (see `convertedForKernels`); nil when `data` is the
    /// model file's mapping.
    public private(set) var converted: PackedWeights?

    public init(name: String, type: GGMLType, data: UnsafeRawBufferPointer, rows: Int, columns: Int) throws {
        guard let rb = type.rowBytes(elements: columns), let total = Checked.mul(rb, rows), total == data.count else {
            throw FormatError.shapeMismatch(path: "<model>", tensor: name, expected: "\(rows) rows of \(columns) \(type.name) weights",
                                            found: "\(data.count) bytes")
        }
        self.name = name
        self.type = type
        self.data = data.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!
        self.rows = rows
        self.columns = columns
        rowBytes = rb
    }

    /// True when `repacked()` would give a row-interleaved copy: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q3_K with a multiple of 8 rows.
    public var canRepack: Bool { sq_repack_supported(Int32(type.rawValue)) != 0 && rows % 8 == 0 && rows > 0 && columns % 32 == 0 }

    /// This matrix with its weights also in the row-interleaved layout (a new anonymous allocation of the same size; 146/110 of it for Q3_K).
    /// `releaseSource` then tells the kernel the original pages (a read-only file mapping) are no longer needed, so
    /// that only one layout stays resident; they are read back from the file if a row is looked up later.
    public func repacked(releaseSource: Bool = false) -> WeightMatrix {
        guard canRepack, packed == nil else { return self }
        var m = self
        // [rows / 8 groups × columns / 32 blocks × group bytes]; as large as the original except for Q3_K (146 / 110).
        let p = PackedWeights(bytes: rows / 8 * (columns / 32) * sq_repack_group_bytes(Int32(type.rawValue)))
        sq_repack_rows8(Int32(type.rawValue), data, rowBytes, Int64(rows), Int64(columns / 32), p.base)
        m.packed = p
        if releaseSource { PackedWeights.releasePages(data, count: rows * rowBytes) }
        return m
    }

    /// Squish affine types of 2-5 bits re-encoded losslessly as Q4_1/Q5_1 (see `SquishAffineConversion`) so that
    /// the int8 kernels (and the repacking) apply; any other matrix is returned unchanged.
    public func convertedForKernels() -> WeightMatrix {
        guard let native = SquishAffineConversion.nativeEquivalent(of: type), let rb = native.rowBytes(elements: columns)
        else { return self }
        let owner = PackedWeights(bytes: rows * rb)
        for r in 0 ..< rows {
            SquishAffineConversion.convert(type, data + r * rowBytes, into: owner.base + r * rb, count: columns)
        }
        // Sizes match by construction (whole groups of 32 or 64 per row).
        var m = try! WeightMatrix(name: name, type: native, data: UnsafeRawBufferPointer(start: owner.base, count: rows * rb),
                                  rows: rows, columns: columns)
        m.converted = owner
        return m
    }

    /// True when the integer (int8-activation) kernels handle this type.
    public var usesQ8Kernel: Bool { sq_type_has_q8_kernel(Int32(type.rawValue)) != 0 }
}

/// Owner of a repacked weight buffer (64-byte aligned).
public final class PackedWeights: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let bytes: Int
    init(bytes: Int) {
        self.bytes = bytes
        base = .allocate(byteCount: max(bytes, 1), alignment: 64)
    }
    deinit { base.deallocate() }

    /// Drops the whole pages inside [p, p + count) from this process (they come back from the file on access).
    static func releasePages(_ p: UnsafeRawPointer, count: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: p) + page - 1) / page * page, end = (Int(bitPattern: p) + count) / page * page
        guard end > start, let sp = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(sp, end - start, MADV_DONTNEED)
    }
}

public enum MatmulError: Error, CustomStringConvertible {
    case unsupported(tensor: String, type: GGMLType)
    public var description: String {
        switch self {
        case .unsupported(let tensor, let type): return "tensor '\(tensor)': no matmul kernel for \(type.name) yet"
        }
    }
}

/// Computes Y = X Wᵀ for a batch of activation rows, on the pool. Holds the scratch space for quantized activations.
public final class Matmul {
    public let pool: WorkerPool
    private var q8: UnsafeMutablePointer<sq_block_q8>
    private var q8Capacity: Int
    /// When true, block-type weights are multiplied with f32 activations (slow reference path) instead of
    /// activations rounded to 8 bits per block of 32 (the fast path, as llama.cpp does).
    public var exactActivations = false
    /// Use the portable C kernels even where AVX2 is available (tests compare both).
    public var portable = false
    /// Tokens per cache tile in the matrix × matrix path.
    public static let tokenTile = 64

    public init(pool: WorkerPool) {
        self.pool = pool
        q8Capacity = 1024
        q8 = .allocate(capacity: q8Capacity)
    }

    deinit { q8.deallocate() }

    /// x [tokens × columns] rounded to 8 bits per block of 32 into the scratch space: [tokens × columns / 32] blocks.
    func quantizedActivations(_ x: UnsafePointer<Float>, columns: Int, tokens: Int) -> UnsafeMutablePointer<sq_block_q8> {
        let nb = columns / 32
        let needed = nb * tokens
        if needed > q8Capacity {
            q8.deallocate()
            q8Capacity = needed
            q8 = .allocate(capacity: needed)
        }
        let q8 = self.q8
        let portable = self.portable
        pool.parallelFor(tokens) { range in
            for t in range {
                if portable {
                    sq_quantize_q8_portable(x + t * columns, q8 + t * nb, Int64(columns))
                } else {
                    sq_quantize_q8(x + t * columns, q8 + t * nb, Int64(columns))
                }
            }
        }
        return q8
    }

    /// Every type a codec can dequantize: the int8 kernels, f32/f16, and a dequantize-row-then-f32 path for the rest.
    public static func supports(_ type: GGMLType) -> Bool { Codecs.canDequantize(type) }

    /// y[t, r] = Σ_k W[r, k] · x[t, k] for t < tokens.  x: [tokens × W.columns], y: [tokens × ldy] with ldy ≥ W.rows.
    public func callAsFunction(_ w: WeightMatrix, _ x: UnsafePointer<Float>, tokens: Int,
                               _ y: UnsafeMutablePointer<Float>, ldy: Int? = nil) throws {
        let ldy = ldy ?? w.rows
        let type = Int32(w.type.rawValue)
        let pool = self.pool
        if w.usesQ8Kernel && exactActivations {
            // Reference path: each weight row dequantized to f32, dotted with unrounded activations.
            pool.parallelFor(w.rows, granularity: 8) { rows in
                let row = UnsafeMutablePointer<Float>.allocate(capacity: w.columns)
                defer { row.deallocate() }
                for r in rows {
                    sq_dequantize_row(type, w.data + r * w.rowBytes, row, Int64(w.columns))
                    for t in 0 ..< tokens { y[t * ldy + r] = sq_dot_f32(row, x + t * w.columns, Int64(w.columns)) }
                }
            }
        } else if w.usesQ8Kernel {
            let nb = w.columns / 32
            let q8 = quantizedActivations(x, columns: w.columns, tokens: tokens)
            let portable = self.portable
            let tile = Self.tokenTile
            if let packed = w.packed {
                let kernel = portable ? sq_matmul_packed_portable : sq_matmul_packed
                pool.parallelFor(w.rows / 8) { groups in
                    var t0 = 0
                    while t0 < tokens {
                        let nt = min(tile, tokens - t0)
                        kernel(type, packed.base, Int64(groups.lowerBound), Int64(groups.upperBound),
                               q8 + t0 * nb, Int64(nb), Int64(nt), y + t0 * ldy, Int64(ldy))
                        t0 += nt
                    }
                }
                return
            }
            pool.parallelFor(w.rows, granularity: 8) { rows in
                var t0 = 0
                while t0 < tokens {
                    let nt = min(tile, tokens - t0)
                    let kernel = portable ? sq_matmul_q8_portable : sq_matmul_q8
                    kernel(type, w.data, w.rowBytes, Int64(rows.lowerBound), Int64(rows.upperBound),
                           q8 + t0 * nb, Int64(nb), Int64(nt), y + t0 * ldy, Int64(ldy))
                    t0 += nt
                }
            }
        } else if w.type == .f32 || w.type == .f16 {
            let kernel = portable ? sq_matmul_f_portable : sq_matmul_f
            pool.parallelFor(w.rows, granularity: 8) { rows in
                kernel(type, w.data, w.rowBytes, Int64(rows.lowerBound), Int64(rows.upperBound),
                            x, Int64(w.columns), Int64(w.columns), Int64(tokens), y, Int64(ldy))
            }
        } else if Codecs.canDequantize(w.type) {
            // Generic path: each row dequantized to f32 by its codec, dotted with every token.
            pool.parallelFor(w.rows, granularity: 8) { rows in
                let row = UnsafeMutableBufferPointer<Float>.allocate(capacity: w.columns)
                defer { row.deallocate() }
                for r in rows {
                    try? Codecs.dequantize(w.type, UnsafeRawBufferPointer(start: w.data + r * w.rowBytes, count: w.rowBytes), into: row)
                    for t in 0 ..< tokens { y[t * ldy + r] = sq_dot_f32(row.baseAddress!, x + t * w.columns, Int64(w.columns)) }
                }
            }
        } else {
            throw MatmulError.unsupported(tensor: w.name, type: w.type)
        }
    }
}

extension Matmul {
    /// Several matrices applied to the same input in one parallel job, the activations quantized once:
    /// ya = X Waᵀ, yb = X Wbᵀ and, when given, yc = X Wcᵀ (each y: [tokens × W.rows]).
    /// With `rowsDone`, a and b must have the same rows: each worker computes the same row range of both and then
    /// calls rowsDone(range) for it (e.g. SwiGLU over those rows of every token) before the job ends.
    /// Falls back to one call per matrix (and one rowsDone over all rows) where the packed kernels do not apply.
    public func fused(_ a: WeightMatrix, _ ya: UnsafeMutablePointer<Float>, _ b: WeightMatrix, _ yb: UnsafeMutablePointer<Float>,
                      _ c: WeightMatrix? = nil, _ yc: UnsafeMutablePointer<Float>? = nil,
                      input x: UnsafePointer<Float>, tokens: Int) throws {
        try fused(a, ya, b, yb, c, yc, input: x, tokens: tokens, paired: false) { _ in }
    }

    /// a and b (same rows) in one job, then rowsDone(range) by the worker that computed those rows of both.
    public func fused(_ a: WeightMatrix, _ ya: UnsafeMutablePointer<Float>, _ b: WeightMatrix, _ yb: UnsafeMutablePointer<Float>,
                      input x: UnsafePointer<Float>, tokens: Int, rowsDone: (Range<Int>) -> Void) throws {
        try fused(a, ya, b, yb, nil, nil, input: x, tokens: tokens, paired: true, rowsDone)
    }

    private func fused(_ a: WeightMatrix, _ ya: UnsafeMutablePointer<Float>, _ b: WeightMatrix, _ yb: UnsafeMutablePointer<Float>,
                       _ c: WeightMatrix?, _ yc: UnsafeMutablePointer<Float>?,
                       input x: UnsafePointer<Float>, tokens: Int, paired: Bool, _ rowsDone: (Range<Int>) -> Void) throws {
        let columns = a.columns
        let fusable = !exactActivations && a.packed != nil && b.packed != nil && b.columns == columns
            && (c == nil || (c!.packed != nil && c!.columns == columns && yc != nil))
            && (!paired || (a.rows == b.rows && c == nil))
        guard fusable else {
            try self(a, x, tokens: tokens, ya)
            try self(b, x, tokens: tokens, yb)
            if let c, let yc { try self(c, x, tokens: tokens, yc) }
            if paired { rowsDone(0 ..< a.rows) }
            return
        }
        let nb = columns / 32
        let q8 = quantizedActivations(x, columns: columns, tokens: tokens)
        let tile = Self.tokenTile
        let kernel = portable ? sq_matmul_packed_portable : sq_matmul_packed
        // Groups [g0, g1) of one matrix, all tokens in tiles.
        func run(_ w: WeightMatrix, _ y: UnsafeMutablePointer<Float>, _ g0: Int, _ g1: Int) {
            guard g0 < g1, let packed = w.packed else { return }
            var t0 = 0
            while t0 < tokens {
                let nt = min(tile, tokens - t0)
                kernel(Int32(w.type.rawValue), packed.base, Int64(g0), Int64(g1), q8 + t0 * nb, Int64(nb), Int64(nt),
                       y + t0 * w.rows, Int64(w.rows))
                t0 += nt
            }
        }
        let ga = a.rows / 8, gb = b.rows / 8, gc = (c?.rows ?? 0) / 8
        if paired {
            pool.parallelFor(ga) { groups in
                run(a, ya, groups.lowerBound, groups.upperBound)
                run(b, yb, groups.lowerBound, groups.upperBound)
                rowsDone(groups.lowerBound * 8 ..< groups.upperBound * 8)
            }
        } else {
            // One index space over the groups of a, then b, then c.
            pool.parallelFor(ga + gb + gc) { groups in
                let lo = groups.lowerBound, hi = groups.upperBound
                run(a, ya, lo, min(hi, ga))
                run(b, yb, max(lo, ga) - ga, min(hi, ga + gb) - ga)
                if let c, let yc { run(c, yc, max(lo, ga + gb) - ga - gb, hi - ga - gb) }
            }
        }
    }
}

/// Small vector helpers used by the model code.
public enum VectorOps {
    @inline(__always) public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        sq_dot_f32(a, b, Int64(n))
    }

    @inline(__always) public static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        sq_axpy_f32(alpha, x, y, Int64(n))
    }

    public static var usesAVX2: Bool { sq_kernels_have_avx2() != 0 }
}

extension WeightMatrix {
    /// Row `r` as f32 into `out` (columns values).
    public func dequantizeRow(_ r: Int, into out: UnsafeMutablePointer<Float>) throws {
        guard r >= 0 && r < rows else { throw MatmulError.unsupported(tensor: name, type: type) }
        if usesQ8Kernel || type == .f32 || type == .f16 {
            sq_dequantize_row(Int32(type.rawValue), data + r * rowBytes, out, Int64(columns))
        } else {
            try Codecs.dequantize(type, UnsafeRawBufferPointer(start: data + r * rowBytes, count: rowBytes),
                                  into: UnsafeMutableBufferPointer(start: out, count: columns))
        }
    }
}

extension VectorOps {
    /// out = softmax(scale · K q) · V over n positions; K/V rows are `stride` floats apart. scores: n floats scratch.
    @inline(__always) public static func attentionHead(query: UnsafePointer<Float>, keys: UnsafePointer<Float>,
                                                       values: UnsafePointer<Float>, stride: Int, count: Int, headDim: Int,
                                                       scale: Float, scores: UnsafeMutablePointer<Float>,
                                                       output: UnsafeMutablePointer<Float>) {
        sq_attention_head(query, keys, values, Int64(stride), Int64(count), Int64(headDim), scale, scores, output)
    }
}
