import CSquishKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SquishCore
import Synchronization
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
    /// Set when the stored rows are W·Rᵀ for a Hadamard rotation R of the input (`rotatingInput`): the matmul rotates
    /// x before multiplying, since (W Rᵀ)(R x) = W x, and `dequantizeRow` gives W's rows back.
    public private(set) var inputRotation: HadamardRotation?

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

    /// True when `repacked()` would give a row-interleaved copy: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q3_K, Q4_K, Q5_K, Q6_K
    /// with a multiple of 8 rows.
    public var canRepack: Bool { sq_repack_supported(Int32(type.rawValue)) != 0 && rows % 8 == 0 && rows > 0 && columns % 32 == 0 }

    /// This matrix with its weights also in the row-interleaved layout (a new anonymous allocation of the same size; for
    /// the K-quants 146/110 of it for Q3_K, 148/144 for Q4_K, 180/176 for Q5_K).
    /// `releaseSource` then tells the kernel the original pages (a read-only file mapping) are no longer needed, so
    /// that only one layout stays resident; they are read back from the file if a row is looked up later.
    public func repacked(releaseSource: Bool = false) -> WeightMatrix {
        guard canRepack, packed == nil else { return self }
        var m = self
        // [rows / 8 groups × columns / 32 blocks × group bytes]; as large as the original except for Q3_K, Q4_K, Q5_K.
        let p = PackedWeights(bytes: rows / 8 * (columns / 32) * sq_repack_group_bytes(Int32(type.rawValue)))
        sq_repack_rows8(Int32(type.rawValue), data, rowBytes, Int64(rows), Int64(columns / 32), p.base)
        m.packed = p
        if releaseSource { PackedWeights.releasePages(data, count: rows * rowBytes) }
        return m
    }

    /// Squish affine types of 2-5 bits re-encoded losslessly as Q4_1/Q5_1, MXFP4 as Q8_0 (see `SquishAffineConversion`)
    /// so that the int8 kernels (and the repacking) apply; any other matrix is returned unchanged.
    public func convertedForKernels() -> WeightMatrix {
        guard let native = SquishAffineConversion.nativeEquivalent(of: type), let rb = native.rowBytes(elements: columns),
              SquishAffineConversion.convertible(type, data, count: rows * columns)
        else { return self }
        let owner = PackedWeights(bytes: rows * rb)
        for r in 0 ..< rows {
            SquishAffineConversion.convert(type, data + r * rowBytes, into: owner.base + r * rb, count: columns)
        }
        // Sizes match by construction (whole groups of 32 or 64 per row).
        var m = try! WeightMatrix(name: name, type: native, data: UnsafeRawBufferPointer(start: owner.base, count: rows * rb),
                                  rows: rows, columns: columns)
        m.converted = owner
        m.inputRotation = inputRotation
        return m
    }

    /// This matrix marked as stored rotated (rows W·Rᵀ, R = `HadamardRotation.weightInput(columns:)`).
    public func rotatingInput() -> WeightMatrix {
        var m = self
        m.inputRotation = HadamardRotation.weightInput(columns: columns)
        return m
    }

    /// This matrix without its rotation mark (the rows as stored multiply an input already rotated).
    func withoutRotation() -> WeightMatrix {
        var m = self
        m.inputRotation = nil
        return m
    }

    /// The same weights split into bit planes for the lookup-table kernels (see lut.c), used for decoding (few tokens)
    /// when present: `lutBits` planes, d and m per row and group of `lutGroup` columns.
    public private(set) var lut: PackedWeights?
    public private(set) var lutBits = 0
    public private(set) var lutGroup = 0

    /// True when `withLookupTable()` would add the bit-plane layout: SQ<b>_G<g> (b ≤ 4), TQ2_0, TQ1_0.
    public var canUseLookupTable: Bool {
        var bits: Int32 = 0, group: Int32 = 0
        guard sq_lut_supported(Int32(bitPattern: type.rawValue), &bits, &group) != 0, rows > 0 else { return false }
        return columns % Int(group) == 0 && (type.squishAffine != nil || columns % 256 == 0)
    }

    /// This matrix with its weights also in the bit-plane layout of the lookup-table kernels, made from `data` (which
    /// must still be in `type`: call it before `convertedForKernels`, then `adoptingLookupTable(from:)`).
    public func withLookupTable() -> WeightMatrix {
        guard canUseLookupTable, lut == nil else { return self }
        var bits: Int32 = 0, group: Int32 = 0
        _ = sq_lut_supported(Int32(bitPattern: type.rawValue), &bits, &group)
        var m = self
        // [ceil(rows / 32) blocks × columns / group groups × (128 + 4 group bits) bytes]
        let p = PackedWeights(bytes: sq_lut_packed_bytes(Int64(rows), Int64(columns), bits, group))
        guard sq_lut_repack(Int32(bitPattern: type.rawValue), data, rowBytes, Int64(rows), Int64(columns), p.base) != 0 else { return self }
        m.lut = p
        m.lutBits = Int(bits)
        m.lutGroup = Int(group)
        return m
    }

    /// This matrix (e.g. converted and repacked for the int8 kernels) with `other`'s bit-plane layout (same weights).
    public func adoptingLookupTable(from other: WeightMatrix) -> WeightMatrix {
        guard other.rows == rows, other.columns == columns, let l = other.lut else { return self }
        var m = self
        m.lut = l
        m.lutBits = other.lutBits
        m.lutGroup = other.lutGroup
        return m
    }

    /// This matrix without the bit-plane layout (comparisons).
    public func droppingLookupTable() -> WeightMatrix {
        var m = self
        m.lut = nil
        m.lutBits = 0
        m.lutGroup = 0
        return m
    }

    /// True when the integer (int8-activation) kernels handle this type.
    public var usesQ8Kernel: Bool { sq_type_has_q8_kernel(Int32(type.rawValue)) != 0 }
}

/// Owner of a repacked weight buffer (64-byte aligned). The memory comes from huge-page slabs (see `HugePageSlab`):
/// decoding streams every weight byte once per token, and with 4 KB pages that costs a TLB miss per page and stops
/// the hardware prefetchers at every page boundary.
public final class PackedWeights: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let bytes: Int
    /// The slab `base` points into (kept alive as long as these weights are).
    private let slab: HugePageSlab

    /// `bytes` of uninitialized memory (also used by the memory-bandwidth benchmark, so that it reads the kind of memory
    /// the weights live in).
    public init(bytes: Int) {
        self.bytes = bytes
        (slab, base) = HugePageSlab.allocate(max(bytes, 1))
    }
    /// Drops the whole pages inside [p, p + count) from this process (they come back from the file on access).
    static func releasePages(_ p: UnsafeRawPointer, count: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: p) + page - 1) / page * page, end = (Int(bitPattern: p) + count) / page * page
        guard end > start, let sp = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(sp, end - start, MADV_DONTNEED)
    }
}

/// 2 MB-aligned memory that the kernel is asked to back with transparent huge pages (madvise MADV_HUGEPAGE; where
/// the system does not do it, ordinary pages). Small requests share a slab of `slabBytes` (bump allocation, 64-byte
/// aligned); a slab is freed when the last weights in it are, and the allocator only holds the current one weakly.
/// Thread-safe: concurrent model loads allocate under a lock.
final class HugePageSlab: @unchecked Sendable {  // immutable after init; the memory is handed out once per request
    static let hugePage = 2 << 20
    static let slabBytes = 32 << 20
    let base: UnsafeMutableRawPointer
    let bytes: Int

    private init(bytes: Int) {
        let n = (bytes + Self.hugePage - 1) / Self.hugePage * Self.hugePage
        self.bytes = n
        base = .allocate(byteCount: n, alignment: Self.hugePage)
        #if os(Linux)
        _ = madvise(base, n, MADV_HUGEPAGE)
        #endif
    }
    deinit { base.deallocate() }

    private struct State {
        weak var current: HugePageSlab?
        var used = 0
    }
    private static let state = Mutex(State())

    /// `bytes` of 64-byte aligned memory and the slab that owns it.
    static func allocate(_ bytes: Int) -> (HugePageSlab, UnsafeMutableRawPointer) {
        if bytes > slabBytes / 4 {
            let s = HugePageSlab(bytes: bytes)
            return (s, s.base)
        }
        return state.withLock { st in
            let size = (bytes + 63) / 64 * 64
            if let s = st.current, st.used + size <= s.bytes {
                defer { st.used += size }
                return (s, s.base + st.used)
            }
            let s = HugePageSlab(bytes: slabBytes)
            st.current = s
            st.used = size
            return (s, s.base)
        }
    }
}

public enum MatmulError: Error, CustomStringConvertible {
    case unsupported(tensor: String, type: GGMLType)
    /// The message with non-printing characters escaped (names and values in it may come from a hostile file).
    public var description: String { TerminalText.escape(message) }

    /// The message as composed, before escaping.
    var message: String {
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
    /// Let the packed matmuls use AVX512-VNNI where the CPU has it (false: AVX2 at most; comparisons and tests, the
    /// results are bit-identical).
    public var allowVNNI = true

    /// The packed-layout kernel these settings select.
    var packedKernel: @convention(c) (Int32, UnsafeRawPointer?, Int64, Int64, UnsafePointer<sq_block_q8>?, Int64, Int64,
                                      UnsafeMutablePointer<Float>?, Int64) -> Void {
        portable ? sq_matmul_packed_portable : allowVNNI ? sq_matmul_packed : sq_matmul_packed_avx2
    }
    /// Tokens per cache tile in the matrix × matrix path.
    public static let tokenTile = 64

    /// Matrices with a bit-plane layout use the lookup-table kernels for at most this many tokens (decoding; see
    /// `WeightMatrix.lut`), the int8 kernels above it. Measured on AVX2 (bench --kernels): see README "Lookup tables".
    public var lookupTableMaxTokens = 1
    private var tables: UnsafeMutableRawPointer
    private var tablesCapacity: Int
    private var rotatedInput: UnsafeMutablePointer<Float>
    private var rotatedCapacity = 0

    public init(pool: WorkerPool) {
        self.pool = pool
        q8Capacity = 1024
        q8 = .allocate(capacity: q8Capacity)
        tablesCapacity = 1 << 16
        tables = .allocate(byteCount: tablesCapacity, alignment: 64)
        rotatedInput = .allocate(capacity: 0)
    }

    deinit {
        q8.deallocate()
        tables.deallocate()
        rotatedInput.deallocate()
    }

    /// x [tokens × rotation.count] rotated, in the scratch space (valid until the next rotation).
    func rotated(_ x: UnsafePointer<Float>, _ rotation: HadamardRotation, tokens: Int) -> UnsafePointer<Float> {
        let n = rotation.count
        if n * tokens > rotatedCapacity {
            rotatedInput.deallocate()
            rotatedCapacity = n * tokens
            rotatedInput = .allocate(capacity: rotatedCapacity)
        }
        let out = rotatedInput, portable = self.portable
        pool.parallelFor(tokens) { range in
            for t in range { rotation.apply(x + t * n, into: out + t * n, portable: portable) }
        }
        return UnsafePointer(out)
    }

    /// True when `w` is multiplied through its lookup tables for `tokens` tokens.
    @inline(__always) func usesLookupTable(_ w: WeightMatrix, tokens: Int) -> Bool {
        w.lut != nil && !exactActivations && tokens <= lookupTableMaxTokens
    }

    /// The tables of x [tokens × columns] for groups of `group` into the scratch space: [tokens × stride] bytes.
    /// Allocates only when a larger size than ever before is needed.
    func lookupTables(_ x: UnsafePointer<Float>, columns: Int, group: Int, tokens: Int) -> (UnsafeMutableRawPointer, Int) {
        let stride = sq_lut_table_bytes(Int64(columns), Int32(group))
        if stride * tokens > tablesCapacity {
            tables.deallocate()
            tablesCapacity = stride * tokens
            tables = .allocate(byteCount: tablesCapacity, alignment: 64)
        }
        let tables = self.tables
        let build = portable ? sq_lut_build_tables_portable : sq_lut_build_tables
        if tokens == 1 {
            build(x, Int64(columns), Int32(group), tables)
        } else {
            pool.parallelFor(tokens) { range in
                for t in range { build(x + t * columns, Int64(columns), Int32(group), tables + t * stride) }
            }
        }
        return (tables, stride)
    }

    /// Blocks [b0, b1) of 32 rows of w (bit-plane layout) for all tokens.
    @inline(__always) func lookupTableRows(_ w: WeightMatrix, _ b0: Int, _ b1: Int, tables: UnsafeRawPointer, stride: Int,
                                           tokens: Int, _ y: UnsafeMutablePointer<Float>, ldy: Int) {
        guard b0 < b1, let l = w.lut else { return }
        let kernel = portable ? sq_lut_gemv_portable : sq_lut_gemv
        kernel(l.base, Int32(w.lutBits), Int32(w.lutGroup), Int64(w.rows), Int64(w.columns), Int64(b0), Int64(b1),
               tables, stride, Int64(tokens), y, Int64(ldy))
    }

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
        if let rotation = w.inputRotation {
            return try self(w.withoutRotation(), rotated(x, rotation, tokens: tokens), tokens: tokens, y, ldy: ldy)
        }
        let ldy = ldy ?? w.rows
        let type = Int32(w.type.rawValue)
        let pool = self.pool
        if usesLookupTable(w, tokens: tokens) {
            let (tables, stride) = lookupTables(x, columns: w.columns, group: w.lutGroup, tokens: tokens)
            pool.parallelFor((w.rows + 31) / 32) { blocks in
                lookupTableRows(w, blocks.lowerBound, blocks.upperBound, tables: tables, stride: stride, tokens: tokens, y, ldy: ldy)
            }
            return
        }
        if w.type.squishSparse != nil && !exactActivations {
            // Sparse blocks (SP<b>_K<k>, see sparse.c): the mask and kept codes, expanded per block, int8 activations.
            let nb = w.columns / 32
            let q8 = quantizedActivations(x, columns: w.columns, tokens: tokens)
            let kernel = portable ? sq_matmul_sparse_portable : sq_matmul_sparse
            let tile = Self.tokenTile
            pool.parallelFor(w.rows, granularity: 8) { rows in
                var t0 = 0
                while t0 < tokens {
                    let nt = min(tile, tokens - t0)
                    kernel(type, w.data, w.rowBytes, Int64(rows.lowerBound), Int64(rows.upperBound), q8 + t0 * nb, Int64(nb),
                           Int64(nt), y + t0 * ldy, Int64(ldy))
                    t0 += nt
                }
            }
            return
        }
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
                let kernel = packedKernel
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
        if let rotation = a.inputRotation, b.inputRotation == rotation, c == nil || c!.inputRotation == rotation {
            // One rotation of the input for all of them.
            return try fused(a.withoutRotation(), ya, b.withoutRotation(), yb, c?.withoutRotation(), yc,
                             input: rotated(x, rotation, tokens: tokens), tokens: tokens, paired: paired, rowsDone)
        }
        let columns = a.columns
        if a.inputRotation == nil, b.inputRotation == nil, c?.inputRotation == nil,
           usesLookupTable(a, tokens: tokens), usesLookupTable(b, tokens: tokens), b.columns == columns, b.lutGroup == a.lutGroup,
           c == nil || (yc != nil && usesLookupTable(c!, tokens: tokens) && c!.columns == columns && c!.lutGroup == a.lutGroup),
           !paired || (a.rows == b.rows && c == nil) {
            let (tables, stride) = lookupTables(x, columns: columns, group: a.lutGroup, tokens: tokens)
            let ba = (a.rows + 31) / 32, bb = (b.rows + 31) / 32, bc = ((c?.rows ?? 0) + 31) / 32
            if paired {
                pool.parallelFor(ba) { blocks in
                    let lo = blocks.lowerBound, hi = blocks.upperBound
                    lookupTableRows(a, lo, hi, tables: tables, stride: stride, tokens: tokens, ya, ldy: a.rows)
                    lookupTableRows(b, lo, hi, tables: tables, stride: stride, tokens: tokens, yb, ldy: b.rows)
                    rowsDone(lo * 32 ..< min(hi * 32, a.rows))
                }
            } else {
                // One index space over the blocks of a, then b, then c.
                pool.parallelFor(ba + bb + bc) { blocks in
                    let lo = blocks.lowerBound, hi = blocks.upperBound
                    lookupTableRows(a, lo, min(hi, ba), tables: tables, stride: stride, tokens: tokens, ya, ldy: a.rows)
                    lookupTableRows(b, max(lo, ba) - ba, min(hi, ba + bb) - ba, tables: tables, stride: stride, tokens: tokens, yb, ldy: b.rows)
                    if let c, let yc {
                        lookupTableRows(c, max(lo, ba + bb) - ba - bb, hi - ba - bb, tables: tables, stride: stride, tokens: tokens, yc, ldy: c.rows)
                    }
                }
            }
            return
        }
        let fusable = !exactActivations && a.packed != nil && b.packed != nil && b.columns == columns
            && a.inputRotation == nil && b.inputRotation == nil && c?.inputRotation == nil
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
        let kernel = packedKernel
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
    /// The packed matmuls run on AVX512-VNNI (see Matmul.allowVNNI).
    public static var usesVNNI: Bool { sq_kernels_have_vnni() != 0 }
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
        inputRotation?.invert(out)
    }
}

extension VectorOps {
    /// Attention of `heads` query heads that share one KV head (multi-query / grouped-query attention) over the same
    /// `count` positions: output + h·headDim = softmax(scale · K q_h) · V with q_h = query + h·headDim. Keys and values
    /// are read once per four heads (a lone head takes a one-head kernel). heads = 1 is plain attention. K/V rows
    /// are `stride` floats apart. scores: heads · count floats scratch.
    @inline(__always) public static func attentionHeads(query: UnsafePointer<Float>, heads: Int, keys: UnsafePointer<Float>,
                                                        values: UnsafePointer<Float>, stride: Int, count: Int, headDim: Int,
                                                        scale: Float, scores: UnsafeMutablePointer<Float>,
                                                        output: UnsafeMutablePointer<Float>) {
        sq_attention_heads(query, Int64(heads), keys, values, Int64(stride), Int64(count), Int64(headDim), scale, scores, output)
    }

    /// Causal attention for a tile of `tokens` consecutive query tokens whose `heads` heads share one KV head (the
    /// prefill path; one token is decoding): token i's head h, query at query + i·queryStride + h·headDim, gets
    /// output + i·outputStride + h·headDim = softmax(scale · K q) · V over positions lower[i] ..< upper[i] (non-empty)
    /// of keys/values (rows `stride` floats apart). Keys and values are read in blocks once per tile; each row's result
    /// is independent of the tile it is in and equals attentionHeads' for groups of two to four heads.
    /// scratch: attentionTileScratch(rows: tokens · heads, headDim:, positions: max upper − min lower) floats.
    @inline(__always) public static func attentionTile(query: UnsafePointer<Float>, queryStride: Int, tokens: Int, heads: Int,
                                                       keys: UnsafePointer<Float>, values: UnsafePointer<Float>, stride: Int,
                                                       lower: UnsafePointer<Int64>, upper: UnsafePointer<Int64>, headDim: Int,
                                                       scale: Float, scratch: UnsafeMutablePointer<Float>,
                                                       output: UnsafeMutablePointer<Float>, outputStride: Int) {
        sq_attention_tile(query, Int64(queryStride), Int64(tokens), Int64(heads), keys, values, Int64(stride), lower, upper,
                          Int64(headDim), scale, scratch, output, Int64(outputStride))
    }

    /// Floats of scratch attentionTile needs for `rows` query rows (tokens × heads) over at most `positions` positions.
    public static func attentionTileScratch(rows: Int, headDim: Int, positions: Int) -> Int {
        Int(sq_attention_tile_scratch(Int64(rows), Int64(headDim), Int64(positions)))
    }

    /// The activation of a gated feed-forward layer in place: gate[i] = act(gate[i]) · up[i] for i < count.
    public enum GatedActivation: Int32, Sendable { case silu = 0, geluTanh = 1 }

    @inline(__always) public static func gatedActivation(_ act: GatedActivation, gate: UnsafeMutablePointer<Float>,
                                                         up: UnsafePointer<Float>, count: Int) {
        sq_gated_activation(act.rawValue, gate, up, Int64(count))
    }

    /// y = x / √(mean(x²) + ε) · w over `count` values (y may be x).
    @inline(__always) public static func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                                 into y: UnsafeMutablePointer<Float>, count: Int, epsilon: Float) {
        sq_rms_norm(x, weight, y, Int64(count), epsilon)
    }

    /// Index of the largest of x[0 ..< count] (the first on ties; NaN never wins; 0 when none exceeds −∞), as a
    /// scalar loop over the logits would pick it.
    @inline(__always) public static func argmax(_ x: UnsafePointer<Float>, count: Int) -> Int {
        Int(sq_argmax(x, Int64(count)))
    }

    /// True when none of x[0 ..< count] is NaN or infinite.
    @inline(__always) public static func allFinite(_ x: UnsafePointer<Float>, count: Int) -> Bool {
        sq_all_finite(x, Int64(count)) != 0
    }
}
