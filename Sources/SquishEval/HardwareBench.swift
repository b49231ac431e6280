import CSquishKernels
import Foundation
import SquishCore
import SquishFormats
import SquishKernels

/// Median of a non-empty sample.
func median(_ v: [Double]) -> Double {
    guard !v.isEmpty else { return 0 }
    let s = v.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

@inline(__always) func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

// MARK: - DRAM read bandwidth

public struct MemoryBandwidthResult: Codable, Sendable {
    public struct Entry: Codable, Sendable {
        public let threads: Int
        /// Median over the repetitions, 10^9 bytes per second.
        public let gigabytesPerSecond: Double
        public let samples: [Double]
        enum CodingKeys: String, CodingKey { case threads, gigabytesPerSecond = "gigabytes_per_second", samples }
    }
    public let bufferBytes: Int
    public let repetitions: Int
    public let usesAVX2: Bool
    public let results: [Entry]
    enum CodingKeys: String, CodingKey { case bufferBytes = "buffer_bytes", repetitions, usesAVX2 = "uses_avx2", results }

    /// The best median over the thread counts (what a memory-bound kernel can hope for).
    public var best: Double { results.map(\.gigabytesPerSecond).max() ?? 0 }
}

/// Reads a buffer far larger than the caches with every thread of a worker pool (each its own contiguous part,
/// 32-byte loads summed so that none can be skipped): one warm-up pass, then `repetitions` timed passes per thread
/// count; the median is reported. The buffer is allocated like the repacked weights (huge pages where the system
/// grants them), so the figure is the one decoding can reach.
public enum MemoryBench {
    public static func run(bytes: Int = 512 << 20, threadCounts: [Int], repetitions: Int = 7,
                           progress: ProgressBar? = nil) -> MemoryBandwidthResult {
        let n = max(bytes / 4096, 1) * 4096
        // [n bytes], in the huge-page memory the repacked weights use.
        let owner = PackedWeights(bytes: n)
        defer { withExtendedLifetime(owner) {} }
        let buffer = owner.base
        // Touch every page (and give the words values) so that the timed passes read real, resident memory.
        let words = buffer.bindMemory(to: UInt64.self, capacity: n / 8)
        for i in 0 ..< n / 8 { words[i] = UInt64(i) }
        var entries: [MemoryBandwidthResult.Entry] = []
        var sink: UInt64 = 0
        for t in threadCounts {
            let pool = WorkerPool(threads: t)
            let parts = pool.threadCount
            let chunk = n / parts / 128 * 128
            let sums = UnsafeMutablePointer<UInt64>.allocate(capacity: parts)
            defer { sums.deallocate() }
            sums.initialize(repeating: 0, count: parts)
            var samples: [Double] = []
            for rep in 0 ... repetitions {  // rep 0 is the warm-up
                let t0 = now()
                pool.run { w in
                    guard w < parts else { return }
                    sums[w] = sq_read_sum(buffer + w * chunk, chunk)
                }
                let dt = Double(now() - t0) / 1e9
                for w in 0 ..< parts { sink &+= sums[w] }
                if rep > 0 { samples.append(Double(chunk * parts) / dt / 1e9) }
                progress?.advance()
            }
            entries.append(.init(threads: parts, gigabytesPerSecond: median(samples), samples: samples))
        }
        if sink == 42 { FileHandle.standardError.write(Data()) }  // keeps the sums observable
        return MemoryBandwidthResult(bufferBytes: n, repetitions: repetitions, usesAVX2: VectorOps.usesAVX2, results: entries)
    }
}

// MARK: - Int8 multiply-add peak

public struct Int8PeakResult: Codable, Sendable {
    public let threads: Int
    /// The instructions measured, those the int8 matmuls use here: "avx512-vnni" (vpdpbusd), "avx2" (maddubs, madd,
    /// add) or "portable".
    public let path: String
    /// Median over the repetitions, 10^9 int8 operations per second (a multiply-add counts two, as in GFLOP/s).
    public let gigaOpsPerSecond: Double
    public let samples: [Double]
    enum CodingKeys: String, CodingKey { case threads, path, gigaOpsPerSecond = "giga_ops_per_second", samples }
}

/// The machine's int8 multiply-add peak: every worker of the pool runs independent chains of the instructions the
/// int8 matmuls are built from, operands in registers (no memory traffic), for about `sampleSeconds` per sample;
/// one warm-up sample, then the median of `repetitions`. The ceiling a GEMM's GFLOP/s is compared with.
public enum Int8Peak {
    public static func run(pool: WorkerPool, repetitions: Int = 5, sampleSeconds: Double = 0.05) -> Int8PeakResult {
        let path: Int32 = VectorOps.usesVNNI ? 2 : VectorOps.usesAVX2 ? 1 : 0
        let x = (0 ..< 32).map { Int8($0 % 7 - 3) }, w = (0 ..< 32).map { UInt8($0 * 5 % 16) }
        let perStep = Double(sq_int8_peak_products_per_step(path))
        let parts = pool.threadCount
        let sums = UnsafeMutablePointer<Int64>.allocate(capacity: parts)
        defer { sums.deallocate() }
        sums.initialize(repeating: 0, count: parts)
        var sink: Int64 = 0
        // Steps per sample from a one-thread estimate.
        var t0 = now()
        sink &+= sq_int8_peak(path, 100_000, x, w)
        let perSecond = 100_000 / max(Double(now() - t0) / 1e9, 1e-6)
        let steps = Int64(max(1000, perSecond * sampleSeconds))
        var samples: [Double] = []
        for rep in 0 ... repetitions {  // rep 0 is the warm-up
            t0 = now()
            pool.run { i in
                guard i < parts else { return }
                sums[i] = sq_int8_peak(path, steps, x, w)
            }
            let dt = Double(now() - t0) / 1e9
            for i in 0 ..< parts { sink &+= sums[i] }
            if rep > 0 { samples.append(2 * perStep * Double(steps) * Double(parts) / dt / 1e9) }
        }
        if sink == 42 { FileHandle.standardError.write(Data()) }  // keeps the sums observable
        return Int8PeakResult(threads: parts, path: ["portable", "avx2", "avx512-vnni"][Int(path)],
                              gigaOpsPerSecond: median(samples), samples: samples)
    }
}

// MARK: - Matmul throughput per block type

/// One weight shape: `rows` output channels × `columns` inputs, named after the model matrix it stands for.
public struct KernelShape: Codable, Sendable, Equatable {
    public let name: String
    public let rows: Int
    public let columns: Int
    public init(name: String, rows: Int, columns: Int) {
        self.name = name
        self.rows = rows
        self.columns = columns
    }

    /// SmolLM2-135M (the default model): dim 576, FFN 1536, vocab 49152.
    public static let smollm2: [KernelShape] = [
        .init(name: "135M attn_q/o", rows: 576, columns: 576), .init(name: "135M ffn_gate/up", rows: 1536, columns: 576),
        .init(name: "135M ffn_down", rows: 576, columns: 1536), .init(name: "135M output", rows: 49152, columns: 576),
    ]
    /// TinyLlama-1.1B: dim 2048, FFN 5632, 32 heads / 4 KV heads of 64 (K/V 256 rows), vocab 32000.
    public static let tinyllama: [KernelShape] = [
        .init(name: "1.1B attn_q/o", rows: 2048, columns: 2048), .init(name: "1.1B attn_k/v", rows: 256, columns: 2048),
        .init(name: "1.1B ffn_gate/up", rows: 5632, columns: 2048), .init(name: "1.1B ffn_down", rows: 2048, columns: 5632),
        .init(name: "1.1B output", rows: 32000, columns: 2048),
    ]
    /// Gemma-3-270M: dim 640, 4 heads and 1 KV head of 256 (Q 1024 rows, K/V 256), FFN 2048, vocab 262144 (the tied
    /// embedding is the output matrix). Its Q4_K_M file stores Q5_0, Q8_0, Q4_K and Q6_K matrices.
    public static let gemma3: [KernelShape] = [
        .init(name: "270M attn_q", rows: 1024, columns: 640), .init(name: "270M attn_k/v", rows: 256, columns: 640),
        .init(name: "270M attn_output", rows: 640, columns: 1024), .init(name: "270M ffn_gate/up", rows: 2048, columns: 640),
        .init(name: "270M ffn_down", rows: 640, columns: 2048), .init(name: "270M output", rows: 262144, columns: 640),
    ]
}

public struct KernelBenchRow: Codable, Sendable {
    public let type: String
    public let shape: String
    public let rows: Int
    public let columns: Int
    public let tokens: Int
    /// Which Matmul path ran: "packed" (8-row interleaved int8), "int8", "float", "dequantize", "lut" (bit-plane
    /// lookup tables; `weight_bytes` is then the bit-plane layout's size, for converted types the converted blocks').
    public let path: String
    public let weightBytes: Int
    /// Distinct copies of the matrix cycled through, so that together they exceed the last-level cache.
    public let copies: Int
    public let secondsPerCall: Double
    public let gflops: Double
    public let weightGigabytesPerSecond: Double
    /// gflops over the measured int8 peak (KernelBenchResult.int8Peak).
    public let fractionOfInt8Peak: Double
    enum CodingKeys: String, CodingKey {
        case type, shape, rows, columns, tokens, path, copies
        case weightBytes = "weight_bytes", secondsPerCall = "seconds_per_call", gflops
        case weightGigabytesPerSecond = "weight_gigabytes_per_second", fractionOfInt8Peak = "fraction_of_int8_peak"
    }
}

public struct KernelBenchResult: Codable, Sendable {
    public let threads: Int
    public let repetitions: Int
    public let usesAVX2: Bool
    /// The packed matmuls ran on AVX512-VNNI.
    public let usesVNNI: Bool
    /// The int8 multiply-add peak with the same threads, measured before the matmuls.
    public let int8Peak: Int8PeakResult
    public let rows: [KernelBenchRow]
    /// Type × shape pairs left out because the row length is not whole blocks of the type.
    public let skipped: [String]
    enum CodingKeys: String, CodingKey { case threads, repetitions, usesAVX2 = "uses_avx2", usesVNNI = "uses_vnni", int8Peak = "int8_peak", rows, skipped }
}

/// GEMV (1 token) and GEMM (`tokens` tokens) through `Matmul`, the same call the model makes, on weights laid out
/// the way the model holds them (Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/IQ4_NL and the K-quants Q3_K-Q6_K repacked into 8 interleaved
/// rows, unless `repack` is false).
/// Each measurement: one warm-up call, then `repetitions` samples of enough calls for ~`sampleSeconds`; the median
/// time per call gives GFLOP/s (2 · rows · columns · tokens), its fraction of the int8 peak (Int8Peak, measured first
/// on the same pool) and weight GB/s (stored matrix bytes per call).
public enum KernelBench {
    public static let defaultTypes: [GGMLType] = [
        .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .iq4_NL, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .tq1_0, .tq2_0, .sq2_G64, .sq3_G32,
        .sq3_G64, .sq4_G64,
    ]

    /// Median seconds per call of y = X Wᵀ for `tokens` rows of X, cycling through `matrices` (cold caches).
    static func measure(_ matmul: Matmul, _ matrices: [WeightMatrix], tokens nt: Int, type: GGMLType, shape: KernelShape,
                        path: String, bytes: Int, repetitions: Int, sampleSeconds: Double, peak: Double) throws -> KernelBenchRow {
        var rng = SplitMix(seed: 7)
        let x = (0 ..< nt * shape.columns).map { _ in rng.gaussian() }  // [nt × columns]
        var y = [Float](repeating: 0, count: nt * shape.rows)  // [nt × rows]
        var next = 0
        func call() throws {
            try x.withUnsafeBufferPointer { xb in
                try y.withUnsafeMutableBufferPointer { yb in
                    try matmul(matrices[next], xb.baseAddress!, tokens: nt, yb.baseAddress!)
                }
            }
            next = (next + 1) % matrices.count
        }
        var t0 = now()
        try call()  // warm-up, and a first estimate of the time per call
        let estimate = max(Double(now() - t0) / 1e9, 1e-7)
        let calls = max(1, Int(sampleSeconds / estimate))
        var samples: [Double] = []
        for _ in 0 ..< repetitions {
            t0 = now()
            for _ in 0 ..< calls { try call() }
            samples.append(Double(now() - t0) / 1e9 / Double(calls))
        }
        let s = median(samples)
        let gflops = 2 * Double(shape.rows * shape.columns * nt) / s / 1e9
        return KernelBenchRow(
            type: type.name, shape: shape.name, rows: shape.rows, columns: shape.columns, tokens: nt, path: path,
            weightBytes: bytes, copies: matrices.count, secondsPerCall: s,
            gflops: gflops, weightGigabytesPerSecond: Double(bytes) / s / 1e9, fractionOfInt8Peak: gflops / peak)
    }

    public static func run(types: [GGMLType], shapes: [KernelShape], tokens: [Int] = [1, 64], pool: WorkerPool,
                           repetitions: Int = 5, sampleSeconds: Double = 0.05, coldBytes: Int = 64 << 20,
                           repack: Bool = true,
                           progress: ((String) -> Void)? = nil) throws -> KernelBenchResult {
        let int8Peak = Int8Peak.run(pool: pool, repetitions: repetitions, sampleSeconds: sampleSeconds)
        let peak = int8Peak.gigaOpsPerSecond
        let matmul = Matmul(pool: pool)
        matmul.lookupTableMaxTokens = 0
        let lutMatmul = Matmul(pool: pool)
        lutMatmul.lookupTableMaxTokens = Int.max
        var rows: [KernelBenchRow] = []
        var skipped: [String] = []
        for type in types {
            for shape in shapes {
                guard let rowBytes = type.rowBytes(elements: shape.columns), RandomWeights.supports(type) else {
                    skipped.append("\(type.name) \(shape.rows)x\(shape.columns)")
                    continue
                }
                progress?("\(type.name) \(shape.name) \(shape.rows)x\(shape.columns)")
                let bytes = rowBytes * shape.rows
                let base = try RandomWeights.bytes(type: type, rows: shape.rows, columns: shape.columns,
                                                   seed: UInt64(type.rawValue) &* 1_000_003 &+ UInt64(shape.rows * shape.columns))
                let copies = max(1, min(256, (coldBytes + bytes - 1) / bytes))
                // The copies' storage: one buffer per copy ([rows × rowBytes] each), or repacked copies of one.
                var buffers: [UnsafeMutableRawPointer] = []
                defer { for b in buffers { b.deallocate() } }
                var matrices: [WeightMatrix] = []
                let copy = { () -> UnsafeMutableRawPointer in
                    let p = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                    base.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
                    buffers.append(p)
                    return p
                }
                // As the model holds it: Squish affine types converted to Q4_1/Q5_1 for the int8 kernels.
                let first = try WeightMatrix(name: "bench", type: type, data: UnsafeRawBufferPointer(start: copy(), count: bytes),
                                             rows: shape.rows, columns: shape.columns).convertedForKernels()
                let converted = first.converted != nil
                if repack && first.canRepack {
                    for _ in 0 ..< copies { matrices.append(first.repacked()) }
                } else {
                    matrices.append(first)
                    for _ in 1 ..< copies {
                        let m = try WeightMatrix(name: "bench", type: type, data: UnsafeRawBufferPointer(start: copy(), count: bytes),
                                                 rows: shape.rows, columns: shape.columns)
                        matrices.append(converted ? m.convertedForKernels() : m)
                    }
                }
                let path = matrices[0].packed != nil ? "packed" : matrices[0].usesQ8Kernel ? "int8"
                    : (type == .f32 || type == .f16) ? "float" : "dequantize"
                // Bytes the kernel reads per call: the converted blocks where the type was converted.
                let readBytes = converted ? (first.type.rowBytes(elements: shape.columns) ?? rowBytes) * shape.rows : bytes
                for nt in tokens {
                    rows.append(try measure(matmul, matrices, tokens: nt, type: type, shape: shape, path: path, bytes: readBytes,
                                            repetitions: repetitions, sampleSeconds: sampleSeconds, peak: peak))
                }
                // The lookup-table kernel on the same weights, for every token count (the model uses it for decoding).
                let raw = try WeightMatrix(name: "bench", type: type, data: UnsafeRawBufferPointer(start: buffers[0], count: bytes),
                                           rows: shape.rows, columns: shape.columns)
                if raw.canUseLookupTable {
                    matrices = []  // frees the int8 copies first
                    let one = raw.withLookupTable()
                    let lutBytes = one.lut!.bytes
                    let lutCopies = max(1, min(256, (coldBytes + lutBytes - 1) / lutBytes))
                    matrices = [one] + (1 ..< lutCopies).map { _ in raw.withLookupTable() }
                    for nt in tokens {
                        rows.append(try measure(lutMatmul, matrices, tokens: nt, type: type, shape: shape, path: "lut", bytes: lutBytes,
                                                repetitions: repetitions, sampleSeconds: sampleSeconds, peak: peak))
                    }
                }
            }
        }
        return KernelBenchResult(threads: pool.threadCount, repetitions: repetitions, usesAVX2: VectorOps.usesAVX2,
                                 usesVNNI: VectorOps.usesVNNI, int8Peak: int8Peak, rows: rows, skipped: skipped)
    }
}
