import Foundation
import SquishCore

/// A model file with its tensors entropy-coded losslessly (`squish pack`), decoded at load into the exact bytes of
/// the original file, which `GGUFFile(path:)` then opens like any GGUF.
///
/// Each tensor is split into byte streams by position within its block (ggml-common.h's block structs): an f16
/// scale becomes its low and high byte, codes stay together, so each stream has one kind of content. BF16 and F32
/// values first move their 8 exponent bits into one byte and sign + top mantissa bits into another (DFloat11, Zhang
/// et al. 2025, §3: the exponent carries ~2.6 bits of entropy, the mantissa is near uniform). Every stream is coded
/// with its own order-0 byte distribution by rANS (`RANSByteTable`, 14-bit scale, 4 interleaved states, segments of
/// 2^20 bytes decoded in parallel), or stored raw when that is not smaller. Everything outside the tensors (header,
/// metadata, padding) is deflated. The container records the original's size, SHA-256 (checked by `squish unpack`)
/// and a CRC-32 per tensor and of the rest (checked on every decode).
///
/// Layout (little-endian): "SQPK", u32 version 1, u64 original size, [32] original SHA-256, u32 tensor count,
/// u64 rest size, u64 deflated rest size, u32 rest CRC-32, deflated rest; then per tensor (in file order):
/// u64 offset in the original, u64 bytes, u32 ggml type, u32 CRC-32, u8 transform, u32 block bytes, u32 streams;
/// per stream: u32 positions, u16 each (byte positions within the block, in stream order), u8 method (0 raw,
/// 1 rANS); rANS: 256 frequencies as LEB128, u32 segments, u64 coded bytes each; then the stream's data.
public enum PackedModel {
    public static let magic: [UInt8] = Array("SQPK".utf8)
    public static let version: UInt32 = 1
    static let scaleBits = 14
    static let ways = 4
    static let segmentBytes = 1 << 20

    /// True when `bytes` starts like a packed model.
    public static func isPacked(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 4 && Array(bytes.prefix(4)) == magic
    }

    /// A byte transform applied to each element before the split (undone after the merge).
    enum Transform: UInt8 {
        case none = 0
        /// BF16 (and the top half of F32): (lo, hi) → (sign | mantissa 7 bits, exponent 8 bits).
        case bfloat16 = 1
        case float32 = 2

        var elementBytes: Int { self == .float32 ? 4 : 2 }
    }

    /// How one block of `type` is split: the transform and each stream's byte positions within the block.
    static func layout(of type: GGMLType) -> (transform: Transform, streams: [[Int]]) {
        func half(_ o: Int) -> [[Int]] { [[o + 1], [o]] }  // high byte (sign, exponent), then low
        func bytes(_ o: Int, _ n: Int) -> [[Int]] { [Array(o ..< o + n)] }
        func each(_ n: Int) -> [[Int]] { (0 ..< n).reversed().map { [$0] } }
        switch type {
        case .f32: return (.float32, each(4))
        case .bf16: return (.bfloat16, each(2))
        case .f16, .i16: return (.none, each(2))
        case .i32: return (.none, each(4))
        case .f64, .i64: return (.none, each(8))
        case .i8: return (.none, each(1))
        case .q4_0, .iq4_NL: return (.none, half(0) + bytes(2, 16))
        case .q4_1: return (.none, half(0) + half(2) + bytes(4, 16))
        case .q5_0: return (.none, half(0) + bytes(2, 4) + bytes(6, 16))
        case .q5_1: return (.none, half(0) + half(2) + bytes(4, 4) + bytes(8, 16))
        case .q8_0: return (.none, half(0) + bytes(2, 32))
        case .q8_1: return (.none, half(0) + half(2) + bytes(4, 32))
        case .q2_K: return (.none, bytes(0, 16) + bytes(16, 64) + half(80) + half(82))
        case .q3_K: return (.none, bytes(0, 32) + bytes(32, 64) + bytes(96, 12) + half(108))
        // The 12 scale bytes: 6-bit scales, 6-bit minimums, then the low nibbles of both for sub-blocks 4-7.
        case .q4_K: return (.none, half(0) + half(2) + bytes(4, 4) + bytes(8, 4) + bytes(12, 4) + bytes(16, 128))
        case .q5_K: return (.none, half(0) + half(2) + bytes(4, 4) + bytes(8, 4) + bytes(12, 4) + bytes(16, 32) + bytes(48, 128))
        case .q6_K: return (.none, bytes(0, 128) + bytes(128, 64) + bytes(192, 16) + half(208))
        case .q8_K: return (.none, [[3], [2], [1], [0]] + bytes(4, 256) + [Array(stride(from: 261, to: 292, by: 2)), Array(stride(from: 260, to: 292, by: 2))])
        case .iq4_XS: return (.none, half(0) + [[5], [4]] + bytes(6, 4) + bytes(10, 128))
        case .tq1_0: return (.none, bytes(0, 48) + bytes(48, 4) + half(52))
        case .tq2_0: return (.none, bytes(0, 64) + half(64))
        case .mxfp4: return (.none, [[0]] + bytes(1, 16))
        case .iq1_M: return (.none, bytes(0, type.blockBytes))
        case .iq2_XXS, .iq2_XS, .iq3_XXS, .iq1_S, .iq3_S, .iq2_S: return (.none, half(0) + bytes(2, type.blockBytes - 2))
        default:
            if type.squishNonLinearGroup != nil || type.squishNonLinearXGroup != nil { return (.none, half(0) + bytes(2, type.blockBytes - 2)) }
            if let (_, _, symmetric) = type.squishBlock {
                let codes = symmetric ? 2 : 4
                return (.none, half(0) + (symmetric ? [] : half(2)) + bytes(codes, type.blockBytes - codes))
            }
            return (.none, bytes(0, type.blockBytes))
        }
    }

    /// Bytes of one tensor class in a pack, for reports.
    public struct TypeSummary: Codable, Sendable, Equatable {
        public var type: String
        public var tensors = 0
        public var originalBytes = 0
        public var packedBytes = 0
        public init(type: String) { self.type = type }
    }

    /// What `encode` did.
    public struct Summary: Codable, Sendable {
        public var originalBytes = 0
        public var packedBytes = 0
        /// Everything outside the tensors: bytes before and after deflate.
        public var restBytes = 0
        public var restPackedBytes = 0
        /// Per tensor type, in order of original bytes (largest first).
        public var types: [TypeSummary] = []
    }

    // MARK: Encoding

    /// The packed form of the GGUF `file` whose bytes have SHA-256 `sha256`, and what each tensor type saved.
    /// `progress(done, total)` sees bytes of tensors coded.
    public static func encode(_ file: GGUFFile, sha256: [UInt8], progress: (Int, Int) -> Void = { _, _ in }) throws -> (bytes: [UInt8], summary: Summary) {
        precondition(sha256.count == 32)
        let source = file.file.bytes
        let tensors = file.tensors.filter { $0.byteCount > 0 }.sorted { $0.offset < $1.offset }
        var out = ByteWriter()
        out.bytes(magic)
        out.u32(version)
        out.u64(UInt64(source.count))
        out.bytes(sha256)
        out.u32(UInt32(tensors.count))
        // The rest: every byte outside the tensors, in order.
        var rest: [UInt8] = []
        var at = 0
        for t in tensors {
            let start = file.dataOffset + t.offset
            rest.append(contentsOf: source[at ..< start])
            at = start + t.byteCount
        }
        rest.append(contentsOf: source[at...])
        let deflated = try Zlib.deflate(rest, path: file.path)
        out.u64(UInt64(rest.count))
        out.u64(UInt64(deflated.count))
        out.u32(Zlib.crc32(rest))
        out.bytes(deflated)
        var summary = Summary()
        summary.originalBytes = source.count
        summary.restBytes = rest.count
        summary.restPackedBytes = deflated.count
        var byType: [GGMLType: TypeSummary] = [:]
        let total = tensors.reduce(0) { $0 + $1.byteCount }
        var done = 0
        for t in tensors {
            let before = out.count
            try encodeTensor(t, data: file.data(for: t), offset: file.dataOffset + t.offset, into: &out)
            var s = byType[t.type] ?? TypeSummary(type: t.type.name)
            s.tensors += 1
            s.originalBytes += t.byteCount
            s.packedBytes += out.count - before
            byType[t.type] = s
            done += t.byteCount
            progress(done, total)
        }
        summary.packedBytes = out.count
        summary.types = byType.values.sorted { $0.originalBytes != $1.originalBytes ? $0.originalBytes > $1.originalBytes : $0.type < $1.type }
        return (out.data, summary)
    }

    private static func encodeTensor(_ t: GGUFTensorInfo, data: UnsafeRawBufferPointer, offset: Int, into out: inout ByteWriter) throws {
        var (transform, streams) = layout(of: t.type)
        var blockBytes = t.type.blockBytes
        if t.byteCount % blockBytes != 0 || streams.flatMap({ $0 }).sorted() != Array(0 ..< blockBytes) {
            // Not whole blocks (cannot happen for a validated GGUF) or a layout bug: one plain stream.
            (transform, streams, blockBytes) = (.none, [[0]], 1)
        }
        out.u64(UInt64(offset))
        out.u64(UInt64(t.byteCount))
        out.u32(t.type.rawValue)
        out.u32(Zlib.crc32(data))
        out.u8(transform.rawValue)
        out.u32(UInt32(blockBytes))
        out.u32(UInt32(streams.count))
        // The transformed copy (the split reads from it).
        var transformed: [UInt8]? = nil
        if transform != .none {
            var copy = [UInt8](data)
            copy.withUnsafeMutableBytes { applyTransform(transform, $0, inverse: false) }
            transformed = copy
        }
        let blocks = t.byteCount / blockBytes
        for positions in streams {
            out.u32(UInt32(positions.count))
            for p in positions { out.u16(UInt16(p)) }
            // Gather this stream: for each block, its bytes at `positions`.
            var stream = [UInt8](repeating: 0, count: blocks * positions.count)
            func gather(_ src: UnsafeRawBufferPointer) {
                stream.withUnsafeMutableBufferPointer { s in
                    let sp = s.baseAddress!, base = src.baseAddress!
                    let w = positions.count
                    if w == 1 {
                        let p = positions[0]
                        for b in 0 ..< blocks { sp[b] = base.load(fromByteOffset: b * blockBytes + p, as: UInt8.self) }
                    } else {
                        for b in 0 ..< blocks {
                            for (j, p) in positions.enumerated() { sp[b * w + j] = base.load(fromByteOffset: b * blockBytes + p, as: UInt8.self) }
                        }
                    }
                }
            }
            if let transformed { transformed.withUnsafeBytes { gather($0) } } else { gather(data) }
            try encodeStream(stream, into: &out)
        }
    }

    /// One stream: rANS-coded in segments when that is smaller than the raw bytes, else raw.
    private static func encodeStream(_ stream: [UInt8], into out: inout ByteWriter) throws {
        var counts = [Int](repeating: 0, count: 256)
        for b in stream { counts[Int(b)] += 1 }
        let segments = (stream.count + segmentBytes - 1) / segmentBytes
        if stream.count >= 64 {
            let table = RANSByteTable(counts: counts, scaleBits: scaleBits)
            var header = ByteWriter()
            for f in table.freq { header.leb128(UInt64(f)) }
            header.u32(UInt32(segments))
            let estimate = table.cost(of: counts) / 8 + Double(header.count + segments * (8 + 8 * ways))
            if estimate < Double(stream.count) * 0.995 {
                var coded = [[UInt8]](repeating: [], count: segments)
                stream.withUnsafeBufferPointer { s in
                    coded.withUnsafeMutableBufferPointer { c in
                        let c = UnsafeSendable(c)
                        DispatchQueue.concurrentPerform(iterations: segments) { k in
                            let lo = k * segmentBytes, hi = min(stream.count, lo + segmentBytes)
                            c.value[k] = table.encode(UnsafeBufferPointer(rebasing: s[lo ..< hi]), ways: ways)
                        }
                    }
                }
                let codedBytes = coded.reduce(0) { $0 + $1.count }
                if codedBytes + header.count + 8 * segments < stream.count {
                    out.u8(1)
                    out.bytes(header.data)
                    for c in coded { out.u64(UInt64(c.count)) }
                    for c in coded { out.bytes(c) }
                    return
                }
            }
        }
        out.u8(0)
        out.bytes(stream)
    }

    /// BF16 pairs (lo, hi) ↔ (sign | mantissa, exponent) in place; F32 does the same to its top two bytes.
    static func applyTransform(_ transform: Transform, _ data: UnsafeMutableRawBufferPointer, inverse: Bool) {
        guard transform != .none, let base = data.baseAddress else { return }
        let size = transform.elementBytes, first = size - 2
        let p = base.assumingMemoryBound(to: UInt8.self)
        var i = first
        let n = data.count
        if inverse {
            while i + 1 < n {
                let sm = p[i], e = p[i + 1]
                p[i + 1] = (sm & 0x80) | (e >> 1)
                p[i] = (e << 7) | (sm & 0x7F)
                i += size
            }
        } else {
            while i + 1 < n {
                let lo = p[i], hi = p[i + 1]
                p[i] = (hi & 0x80) | (lo & 0x7F)
                p[i + 1] = (hi << 1) | (lo >> 7)
                i += size
            }
        }
    }

    // MARK: Decoding

    /// The header of a packed file: what it restores.
    public struct Header: Sendable {
        public let originalBytes: Int
        public let sha256: [UInt8]
        public let tensorCount: Int
    }

    public static func header(_ bytes: UnsafeRawBufferPointer, path: String) throws -> Header {
        var r = PackReader(bytes, path: path)
        return try readHeader(&r)
    }

    private static func readHeader(_ r: inout PackReader) throws -> Header {
        guard try r.bytes(4, "magic") == magic else { throw FormatError.badMagic(path: r.path, found: "not SQPK") }
        let v = try r.u32("version")
        guard v == version else {
            throw FormatError.invalid(path: r.path, offset: 4, reason: "packed model version \(v) is not supported (this build reads version \(version))")
        }
        let size = try r.int("original size", limit: 1 << 46)
        let sha = try r.bytes(32, "SHA-256")
        let countAt = r.offset
        let count = Int(try r.u32("tensor count"))
        guard count <= r.remaining / 33 else {
            throw FormatError.implausible(path: r.path, offset: countAt, what: "tensor count", value: String(count))
        }
        return Header(originalBytes: size, sha256: sha, tensorCount: count)
    }

    /// One stream of a tensor as the container describes it.
    private struct StreamRecord {
        var positions: [Int]
        /// Raw bytes, or nil when coded.
        var raw: Range<Int>?
        var table: RANSByteTable?
        var segments: [Range<Int>] = []  // coded bytes of each segment, in the packed file
    }

    private struct TensorRecord {
        var at: Int  // offset of the record in the packed file
        var index: Int
        var offset: Int, count: Int, typeID: UInt32, crc: UInt32
        var transform: Transform
        var blockBytes: Int
        var streams: [StreamRecord] = []
    }

    /// Reads every tensor record (skipping the data, checking every range) after the rest's fields.
    private static func records(_ r: inout PackReader, count: Int, size: Int) throws -> [TensorRecord] {
        let path = r.path
        var out: [TensorRecord] = []
        var end = 0  // end of the previous tensor in the original
        for index in 0 ..< count {
            let at = r.offset
            let offset = try r.int("offset of tensor \(index)", limit: size)
            let count = try r.int("size of tensor \(index)", limit: size - offset)
            let typeID = try r.u32("type of tensor \(index)")
            let crc = try r.u32("CRC-32 of tensor \(index)")
            guard let transform = Transform(rawValue: try r.u8("transform of tensor \(index)")) else {
                throw FormatError.invalid(path: path, offset: at, reason: "tensor \(index) has an unknown transform (corrupt file)")
            }
            let blockBytes = try r.int32("block size of tensor \(index)", limit: 1 << 16)
            let streamCount = try r.int32("stream count of tensor \(index)", limit: 1 << 16)
            guard offset >= end, blockBytes > 0, count % blockBytes == 0,
                  transform == .none || blockBytes == transform.elementBytes else {
                throw FormatError.invalid(path: path, offset: at, reason: "tensor \(index): range, block size or transform is inconsistent (corrupt file)")
            }
            end = offset + count
            var t = TensorRecord(at: at, index: index, offset: offset, count: count, typeID: typeID, crc: crc,
                                 transform: transform, blockBytes: blockBytes)
            let blocks = count / blockBytes
            var covered = [Bool](repeating: false, count: blockBytes)
            for s in 0 ..< streamCount {
                let width = try r.int32("positions of tensor \(index) stream \(s)", limit: blockBytes)
                var positions: [Int] = []
                for _ in 0 ..< width {
                    let p = Int(try r.u16("position"))
                    guard p < blockBytes, !covered[p] else {
                        throw FormatError.invalid(path: path, offset: r.offset, reason: "tensor \(index) stream \(s): byte position \(p) is repeated or outside the block (corrupt file)")
                    }
                    covered[p] = true
                    positions.append(p)
                }
                let length = blocks * width
                var stream = StreamRecord(positions: positions)
                let method = try r.u8("method")
                switch method {
                case 0:
                    let start = r.offset
                    _ = try r.slice(length, "raw stream of tensor \(index)")
                    stream.raw = start ..< start + length
                case 1:
                    var freq: [UInt32] = []
                    for _ in 0 ..< 256 { freq.append(UInt32(try r.leb128("frequency", limit: 1 << scaleBits))) }
                    guard let table = RANSByteTable(frequencies: freq, scaleBits: scaleBits) else {
                        throw FormatError.invalid(path: path, offset: r.offset, reason: "tensor \(index) stream \(s): frequencies do not sum to 2^\(scaleBits) (corrupt file)")
                    }
                    stream.table = table
                    let segments = try r.int32("segment count", limit: 1 << 30)
                    guard segments == (length + segmentBytes - 1) / segmentBytes else {
                        throw FormatError.invalid(path: path, offset: r.offset, reason: "tensor \(index) stream \(s): \(segments) segments for \(length) bytes (corrupt file)")
                    }
                    var lengths: [Int] = []
                    for _ in 0 ..< segments { lengths.append(try r.int("segment size", limit: r.remaining)) }
                    for l in lengths {
                        let start = r.offset
                        _ = try r.slice(l, "coded segment of tensor \(index)")
                        stream.segments.append(start ..< start + l)
                    }
                default:
                    throw FormatError.invalid(path: path, offset: r.offset - 1, reason: "tensor \(index) stream \(s): unknown method \(method) (corrupt file)")
                }
                t.streams.append(stream)
            }
            guard covered.allSatisfy({ $0 }) else {
                throw FormatError.invalid(path: path, offset: at, reason: "tensor \(index): the streams do not cover every byte of its blocks (corrupt file)")
            }
            out.append(t)
        }
        guard r.remaining == 0 else {
            throw FormatError.invalid(path: path, offset: r.offset, reason: "\(r.remaining) bytes after the last tensor (corrupt file)")
        }
        return out
    }

    /// Decodes a packed file into the original file's bytes, checking every CRC-32. Errors name `path`.
    public static func decode(_ packed: UnsafeRawBufferPointer, path: String) throws -> MappedFile {
        var r = PackReader(packed, path: path)
        let header = try readHeader(&r)
        let size = header.originalBytes
        let restSize = try r.int("rest size", limit: size)
        let restPacked = try r.int("deflated rest size", limit: r.remaining)
        let restCRC = try r.u32("rest CRC-32")
        let restAt = r.offset
        let restData = try r.slice(restPacked, "deflated rest")
        let tensors = try records(&r, count: header.tensorCount, size: size)
        // Everything is accounted for before anything as large as the original is allocated.
        let tensorBytes = tensors.reduce(0) { $0 + $1.count }
        guard restSize + tensorBytes == size else {
            throw FormatError.invalid(path: path, offset: nil, reason: "\(restSize) bytes of header and metadata and \(tensorBytes) of tensors do not make the \(size) recorded (corrupt file)")
        }
        // deflate cannot shrink data more than 1032:1 (RFC 1951: a 258-byte match per 2 bits at best).
        guard restSize <= restPacked * 1032 + 64 else {
            throw FormatError.implausible(path: path, offset: restAt - 20, what: "size of the header and metadata", value: String(restSize))
        }
        let rest = try Zlib.inflate(restData, expected: restSize, path: path, offset: restAt)
        guard Zlib.crc32(rest) == restCRC else {
            throw FormatError.invalid(path: path, offset: restAt, reason: "the header and metadata do not match their CRC-32 (corrupt file)")
        }
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 64)
        var adopted = false
        defer { if !adopted { output.deallocate() } }
        var restUsed = 0  // bytes of `rest` placed
        var at = 0  // next byte of the output
        var scratch: [UInt8] = []
        for t in tensors {
            // The bytes before this tensor come from the rest (the totals were checked above).
            let gap = t.offset - at
            copy(rest, from: restUsed, count: gap, to: output.baseAddress! + at)
            restUsed += gap
            let blocks = t.count / t.blockBytes
            let target = UnsafeMutableRawBufferPointer(rebasing: output[t.offset ..< t.offset + t.count])
            for (s, stream) in t.streams.enumerated() {
                let length = blocks * stream.positions.count
                if let raw = stream.raw {
                    scatter(UnsafeRawBufferPointer(rebasing: packed[raw]), positions: stream.positions, blockBytes: t.blockBytes, blocks: blocks, into: target)
                    continue
                }
                guard let table = stream.table else { continue }
                if scratch.count < length { scratch = [UInt8](repeating: 0, count: length) }
                let slots = table.slotTable()
                let segments = stream.segments
                let ok = scratch.withUnsafeMutableBufferPointer { sc -> Bool in
                    let failed = AtomicFlag()
                    let sc = UnsafeSendable(sc)
                    DispatchQueue.concurrentPerform(iterations: segments.count) { k in
                        let lo = k * segmentBytes, hi = min(length, lo + segmentBytes)
                        let seg = UnsafeRawBufferPointer(rebasing: packed[segments[k]])
                        if !table.decode(seg, ways: ways, slots: slots, into: UnsafeMutableBufferPointer(rebasing: sc.value[lo ..< hi])) {
                            failed.set()
                        }
                    }
                    return !failed.isSet
                }
                guard ok else {
                    throw FormatError.invalid(path: path, offset: segments.first?.lowerBound, reason: "tensor \(t.index) stream \(s): the coded data is corrupt")
                }
                scratch.withUnsafeBytes {
                    scatter(UnsafeRawBufferPointer(rebasing: $0[0 ..< length]), positions: stream.positions, blockBytes: t.blockBytes, blocks: blocks, into: target)
                }
            }
            applyTransform(t.transform, target, inverse: true)
            guard Zlib.crc32(UnsafeRawBufferPointer(target)) == t.crc else {
                let name = GGMLType(rawValue: t.typeID)?.name ?? "type \(t.typeID)"
                throw FormatError.invalid(path: path, offset: t.at, reason: "tensor \(t.index) (\(name), \(t.count) bytes at \(t.offset)) does not match its CRC-32 (corrupt file)")
            }
            at = t.offset + t.count
        }
        copy(rest, from: restUsed, count: size - at, to: output.baseAddress! + at)
        adopted = true
        return MappedFile(adopting: output, count: size, path: path)
    }

    private static func copy(_ bytes: [UInt8], from start: Int, count: Int, to target: UnsafeMutableRawPointer) {
        guard count > 0 else { return }
        bytes.withUnsafeBytes { target.copyMemory(from: $0.baseAddress! + start, byteCount: count) }
    }

    /// Writes a stream's bytes back to their positions in each block.
    private static func scatter(_ stream: UnsafeRawBufferPointer, positions: [Int], blockBytes: Int, blocks: Int,
                                into target: UnsafeMutableRawBufferPointer) {
        guard blocks > 0 else { return }
        let src = stream.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let dst = target.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let w = positions.count
        if w == blockBytes && positions == Array(0 ..< blockBytes) {
            dst.update(from: src, count: blocks * w)
        } else if w == 1 {
            let p = positions[0]
            for b in 0 ..< blocks { dst[b * blockBytes + p] = src[b] }
        } else if positions == Array(positions[0] ..< positions[0] + w) {
            let p = positions[0]
            for b in 0 ..< blocks { (dst + b * blockBytes + p).update(from: src + b * w, count: w) }
        } else {
            positions.withUnsafeBufferPointer { ps in
                for b in 0 ..< blocks {
                    for j in 0 ..< w { dst[b * blockBytes + ps[j]] = src[b * w + j] }
                }
            }
        }
    }
}

/// A value handed to `concurrentPerform`'s workers, each of which touches a disjoint part of it.
private struct UnsafeSendable<T>: @unchecked Sendable {  // safe: workers write disjoint elements only
    let value: T
    init(_ value: T) { self.value = value }
}

/// A flag any worker may raise.
private final class AtomicFlag: @unchecked Sendable {  // safe: guarded by the lock
    private let lock = NSLock()
    private var raised = false
    func set() { lock.lock(); raised = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return raised }
}

/// Little-endian output.
struct ByteWriter {
    private(set) var data: [UInt8] = []
    var count: Int { data.count }
    mutating func u8(_ v: UInt8) { data.append(v) }
    mutating func u16(_ v: UInt16) { for i in 0 ..< 2 { data.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
    mutating func u32(_ v: UInt32) { for i in 0 ..< 4 { data.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
    mutating func u64(_ v: UInt64) { for i in 0 ..< 8 { data.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
    mutating func bytes(_ b: [UInt8]) { data.append(contentsOf: b) }
    mutating func leb128(_ v: UInt64) {
        var v = v
        repeat {
            let b = UInt8(v & 0x7F)
            v >>= 7
            data.append(v == 0 ? b : b | 0x80)
        } while v != 0
    }
}

/// Bounds-checked little-endian input with errors naming the file and offset.
struct PackReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    private(set) var offset = 0
    init(_ bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }
    var remaining: Int { bytes.count - offset }

    mutating func slice(_ n: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= remaining else { throw FormatError.truncated(path: path, offset: bytes.count, needed: "\(what) (\(n) bytes) at byte \(offset)") }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + n])
    }
    mutating func bytes(_ n: Int, _ what: String) throws -> [UInt8] { Array(try slice(n, what)) }
    mutating func u8(_ what: String) throws -> UInt8 { try slice(1, what)[0] }
    mutating func u16(_ what: String) throws -> UInt16 { UInt16(littleEndian: try slice(2, what).loadUnaligned(as: UInt16.self)) }
    mutating func u32(_ what: String) throws -> UInt32 { UInt32(littleEndian: try slice(4, what).loadUnaligned(as: UInt32.self)) }
    mutating func u64(_ what: String) throws -> UInt64 { UInt64(littleEndian: try slice(8, what).loadUnaligned(as: UInt64.self)) }
    /// A u64 that must be at most `limit`.
    mutating func int(_ what: String, limit: Int) throws -> Int {
        let at = offset
        let v = try u64(what)
        guard v <= UInt64(max(limit, 0)) else { throw FormatError.implausible(path: path, offset: at, what: what, value: String(v)) }
        return Int(v)
    }
    /// A u32 that must be at most `limit`.
    mutating func int32(_ what: String, limit: Int) throws -> Int {
        let at = offset
        let v = try u32(what)
        guard Int(v) <= limit else { throw FormatError.implausible(path: path, offset: at, what: what, value: String(v)) }
        return Int(v)
    }
    mutating func leb128(_ what: String, limit: UInt64) throws -> UInt64 {
        let at = offset
        var v: UInt64 = 0, shift: UInt64 = 0
        while true {
            let b = try u8(what)
            guard shift < 63 else { throw FormatError.implausible(path: path, offset: at, what: what, value: "overlong") }
            v |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { break }
            shift += 7
        }
        guard v <= limit else { throw FormatError.implausible(path: path, offset: at, what: what, value: String(v)) }
        return v
    }
}
