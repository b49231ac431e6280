import Foundation
import SquishCore

/// safetensors element types.
public enum SafetensorsDType: String, CaseIterable, Sendable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL

    public var size: Int {
        switch self {
        case .F64, .I64: return 8
        case .F32, .I32: return 4
        case .F16, .BF16, .I16: return 2
        case .I8, .U8, .BOOL: return 1
        }
    }

    /// The ggml type holding the same values, where there is one.
    public var ggmlType: GGMLType? {
        switch self {
        case .F32: return .f32
        case .F16: return .f16
        case .BF16: return .bf16
        case .I8: return .i8
        case .I16: return .i16
        case .I32: return .i32
        case .I64: return .i64
        case .F64: return .f64
        default: return nil
        }
    }
}

public struct SafetensorsTensor: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    /// Row-major, outermost dimension first (PyTorch order).
    public let shape: [Int]
    /// Byte range relative to the start of the data section.
    public let begin: Int
    public let end: Int
    public var byteCount: Int { end - begin }
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A safetensors file (8-byte little-endian header length, JSON header, data), memory-mapped and validated on open:
/// header length limits, a strict JSON object, known dtypes, non-negative shapes whose byte size (overflow-checked)
/// equals the tensor's data range, ranges inside the data section, no overlaps, no holes, no duplicate names.
public final class SafetensorsFile: @unchecked Sendable {
    /// Largest header accepted (the reference implementation's limit).
    public static let maxHeaderBytes = 100_000_000

    public let file: MappedFile
    public let path: String
    public let dataOffset: Int
    /// Tensors in header order.
    public let tensors: [SafetensorsTensor]
    public let metadata: [String: String]
    private let index: [String: Int]

    public convenience init(path: String) throws {
        let mapped: MappedFile
        do { mapped = try MappedFile(path: path) } catch {
            throw FormatError.missing(path: path, what: "a readable file (\(error))")
        }
        try self.init(file: mapped)
    }

    public init(file: MappedFile) throws {
        self.file = file
        let path = file.path
        self.path = path
        var r = ByteReader(file.bytes)
        guard let n64 = r.read(UInt64.self) else { throw FormatError.truncated(path: path, offset: file.count, needed: "8-byte header length") }
        guard let n = Checked.int(n64), n <= Self.maxHeaderBytes, n <= file.count - 8 else {
            throw FormatError.implausible(path: path, offset: 0, what: "header length", value: "\(n64) (file has \(file.count) bytes)")
        }
        guard n >= 2 else { throw FormatError.invalid(path: path, offset: 8, reason: "header too short to be a JSON object") }
        let header: JSONValue
        do {
            header = try JSONValue.parse(UnsafeRawBufferPointer(rebasing: file.bytes[8 ..< 8 + n]), maxDepth: 8)
        } catch let e as JSONValue.ParseError {
            throw FormatError.invalid(path: path, offset: 8 + e.offset, reason: "header: \(e.reason)")
        }
        guard case .object(let members) = header else { throw FormatError.invalid(path: path, offset: 8, reason: "header is not a JSON object") }
        dataOffset = 8 + n
        let dataBytes = file.count - dataOffset
        var tensors: [SafetensorsTensor] = []
        var metadata: [String: String] = [:]
        for (name, value) in members {
            if name == "__metadata__" {
                guard case .object(let kv) = value else { throw FormatError.invalid(path: path, offset: nil, reason: "__metadata__ is not an object") }
                for (k, v) in kv {
                    guard let s = v.string else { throw FormatError.invalid(path: path, offset: nil, reason: "__metadata__['\(k)'] is not a string") }
                    metadata[k] = s
                }
                continue
            }
            func bad(_ r: String) -> FormatError { .invalid(path: path, offset: nil, reason: "tensor '\(name)': \(r)") }
            guard case .object = value else { throw bad("entry is not an object") }
            guard let dtypeName = value["dtype"]?.string else { throw bad("missing dtype") }
            guard let dtype = SafetensorsDType(rawValue: dtypeName) else { throw bad("unknown dtype '\(dtypeName)'") }
            guard let dims = value["shape"]?.array else { throw bad("missing shape") }
            var shape: [Int] = []
            for d in dims {
                guard let v = d.int, v >= 0, v <= Int64(file.count) * 8 else {
                    throw FormatError.implausible(path: path, offset: 8, what: "dimension of '\(name)'", value: d.serialized)
                }
                shape.append(Int(v))
            }
            guard let offsets = value["data_offsets"]?.array, offsets.count == 2, let b = offsets[0].int, let e = offsets[1].int,
                  b >= 0, e >= 0 else { throw bad("data_offsets must be two non-negative integers") }
            guard b <= e else { throw bad("data_offsets begin \(b) > end \(e)") }
            guard e <= Int64(dataBytes) else {
                throw FormatError.tensorOutOfBounds(path: path, tensor: name, offset: dataOffset + Int(min(b, Int64(Int.max / 2))),
                                                    byteCount: Int(min(e - b, Int64(Int.max / 2))), fileSize: file.count)
            }
            guard let count = Checked.product(shape), let bytes = Checked.mul(count, dtype.size) else {
                throw FormatError.implausible(path: path, offset: 8, what: "size of '\(name)'", value: "\(shape)")
            }
            guard bytes == Int(e - b) else {
                throw FormatError.shapeMismatch(path: path, tensor: name, expected: "\(bytes) bytes for \(dtypeName) \(shape)",
                                                found: "\(e - b) bytes")
            }
            tensors.append(SafetensorsTensor(name: name, dtype: dtype, shape: shape, begin: Int(b), end: Int(e)))
        }
        // No overlaps and no holes: sorted by offset, the ranges must tile the data section exactly.
        let sorted = tensors.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var cursor = 0
        var previous: SafetensorsTensor?
        for t in sorted {
            if t.begin < cursor, let p = previous { throw FormatError.overlappingTensors(path: path, first: p.name, second: t.name) }
            if t.begin > cursor {
                throw FormatError.invalid(path: path, offset: dataOffset + cursor, reason: "unused bytes before tensor '\(t.name)'")
            }
            cursor = t.end
            previous = t
        }
        if cursor != dataBytes {
            throw FormatError.invalid(path: path, offset: dataOffset + cursor, reason: "\(dataBytes - cursor) bytes after the last tensor")
        }
        self.tensors = tensors
        self.metadata = metadata
        var index: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { index[t.name] = i }
        self.index = index
    }

    public func tensor(named name: String) -> SafetensorsTensor? { index[name].map { tensors[$0] } }

    public func data(for t: SafetensorsTensor) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[dataOffset + t.begin ..< dataOffset + t.end])
    }

    /// F32/F16/BF16 data as f32.
    public func floats(for t: SafetensorsTensor) throws -> [Float] {
        guard let g = t.dtype.ggmlType, g == .f32 || g == .f16 || g == .bf16 else {
            throw FormatError.unsupportedType(t.dtype.ggmlType ?? .i8, operation: "conversion of \(t.dtype.rawValue) to f32")
        }
        return try Codecs.dequantize(g, data(for: t), count: t.elementCount)
    }
}

/// Writes safetensors files atomically: header keys in the order given (metadata first), header padded with
/// spaces to a multiple of 8, tensor data contiguous in the same order.
public struct SafetensorsWriter {
    public struct Entry {
        public let name: String
        public let dtype: SafetensorsDType
        public let shape: [Int]
        public let bytes: [UInt8]
        public init(name: String, dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }
    }

    public var metadata: [String: String] = [:]
    public private(set) var entries: [Entry] = []

    public init() {}

    public mutating func add(_ name: String, dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) {
        entries.append(Entry(name: name, dtype: dtype, shape: shape, bytes: bytes))
    }

    public func write(to path: String) throws {
        var members: [(key: String, value: JSONValue)] = []
        if !metadata.isEmpty {
            members.append(("__metadata__", .object(metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
        }
        var offset = 0
        var names = Set<String>()
        for e in entries {
            guard names.insert(e.name).inserted, e.name != "__metadata__" else { throw FormatError.duplicateName(path: path, name: e.name) }
            guard let n = Checked.product(e.shape), n * e.dtype.size == e.bytes.count else {
                throw FormatError.shapeMismatch(path: path, tensor: e.name, expected: "\(e.dtype.rawValue) \(e.shape)", found: "\(e.bytes.count) bytes")
            }
            members.append((e.name, .object([
                ("dtype", .string(e.dtype.rawValue)),
                ("shape", .array(e.shape.map { .int(Int64($0)) })),
                ("data_offsets", .array([.int(Int64(offset)), .int(Int64(offset + e.bytes.count))])),
            ])))
            offset += e.bytes.count
        }
        var header = Array(JSONValue.object(members).serialized.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        let out = try AtomicFileWriter(destination: path)
        var length = UInt64(header.count).littleEndian
        try withUnsafeBytes(of: &length) { try out.write($0) }
        try out.write(header)
        for e in entries { try out.write(e.bytes) }
        try out.commit()
    }
}
