import Foundation
import SquishCore

/// An element type of the safetensors format (huggingface/safetensors, docs "Format"), listed in the order of the
/// reference implementation's `Dtype` enum, which its writer uses to order tensors (larger first).
public enum SafetensorsDType: String, Sendable, CaseIterable, Equatable {
    case BOOL
    case U8, I8
    case F8_E5M2, F8_E4M3
    case I16, U16, F16, BF16
    case I32, U32, F32
    case F64, I64, U64

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .BOOL, .U8, .I8, .F8_E5M2, .F8_E4M3: return 1
        case .I16, .U16, .F16, .BF16: return 2
        case .I32, .U32, .F32: return 4
        case .F64, .I64, .U64: return 8
        }
    }

    /// The name written in headers, e.g. "BF16".
    public var name: String { rawValue }

    /// Whether `floats(for:)` converts this type (F32, F16, BF16, F64).
    public var convertsToFloat: Bool { self == .F32 || self == .F16 || self == .BF16 || self == .F64 }

    /// The ggml type with the same bits per element, where there is one.
    public var ggmlType: GGMLType? {
        switch self {
        case .F32: return .f32
        case .F16: return .f16
        case .BF16: return .bf16
        case .F64: return .f64
        case .I8: return .i8
        case .I16: return .i16
        case .I32: return .i32
        case .I64: return .i64
        default: return nil
        }
    }

    public init?(ggmlType: GGMLType) {
        guard let t = Self.allCases.first(where: { $0.ggmlType == ggmlType }) else { return nil }
        self = t
    }

    /// Position in the reference's `Dtype` enum (its writer puts higher ranks first).
    var referenceRank: Int { Self.allCases.firstIndex(of: self)! }

    /// Converts `dst.count` elements of this type from `src` (little-endian, any alignment) to Float.
    /// F32/F16/BF16 are exact; F64 rounds to nearest. Other types are not floats: the caller checks `convertsToFloat`.
    public func decodeFloats(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableBufferPointer<Float>) {
        precondition(convertsToFloat && src.count == dst.count * size, "decodeFloats: \(name) or size mismatch")
        let n = dst.count
        switch self {
        case .F32:
            for i in 0 ..< n { dst[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        case .F16:
            for i in 0 ..< n { dst[i] = HalfFloat.toFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .BF16:
            for i in 0 ..< n { dst[i] = HalfFloat.bf16ToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .F64:
            for i in 0 ..< n { dst[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
        default:
            break
        }
    }

    /// Converts floats to this type's little-endian bytes (F16/BF16 round to nearest even). Nil for non-float types.
    public func encodeFloats(_ src: UnsafeBufferPointer<Float>) -> [UInt8]? {
        guard convertsToFloat else { return nil }
        var out = [UInt8](repeating: 0, count: src.count * size)
        out.withUnsafeMutableBytes { dst in
            switch self {
            case .F32:
                for (i, v) in src.enumerated() { dst.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
            case .F16:
                for (i, v) in src.enumerated() { dst.storeBytes(of: HalfFloat.fromFloat(v).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            case .BF16:
                for (i, v) in src.enumerated() { dst.storeBytes(of: HalfFloat.bf16FromFloat(v).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            case .F64:
                for (i, v) in src.enumerated() { dst.storeBytes(of: Double(v).bitPattern.littleEndian, toByteOffset: 8 * i, as: UInt64.self) }
            default:
                break
            }
        }
        return out
    }
}

/// One tensor's entry in a safetensors header.
public struct SafetensorsTensor: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    /// Row-major (PyTorch order): `shape.last` is the fastest-varying dimension; `[]` is a scalar (one element).
    /// A linear weight is `[outFeatures, inFeatures]`, i.e. the reverse of ggml's `[ne0, ne1]`.
    public let shape: [Int]
    /// Byte range [begin, end) relative to the data section (the byte after the header).
    public let begin: Int
    public let end: Int

    public init(name: String, dtype: SafetensorsDType, shape: [Int], begin: Int, end: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.begin = begin
        self.end = end
    }

    /// Bytes of data: product(shape) × dtype.size.
    public var byteCount: Int { end - begin }
    public var elementCount: Int { byteCount / dtype.size }
}

/// A safetensors file (huggingface/safetensors, docs "Format"): an 8-byte little-endian header length N, N bytes of
/// UTF-8 JSON mapping tensor names to `{"dtype", "shape", "data_offsets": [begin, end]}` plus an optional
/// `"__metadata__"` string map, then the data section. Memory-mapped and fully validated on open, with the rules of
/// the reference implementation: a header of at most 100 MB starting with `{`, known dtypes, sizes that match
/// shapes, and tensors that tile the data section exactly (no overlap, no hole, no trailing bytes). A hostile file
/// gives a `FormatError` naming the file; nothing is allocated beyond what the header's size justifies.
public final class SafetensorsFile: @unchecked Sendable {
    /// The reference implementation's limit on the header (MAX_HEADER_SIZE).
    public static let maxHeaderBytes = 100_000_000
    public static let metadataKey = "__metadata__"

    public let file: MappedFile
    public let path: String
    /// N, the header's length in bytes (including trailing padding spaces).
    public let headerByteCount: Int
    /// Absolute offset of the data section: 8 + N.
    public let dataOffset: Int
    /// The `__metadata__` map (empty when absent).
    public let metadata: [String: String]
    /// Tensors in header order (for files from the reference writer, also data order).
    public let tensors: [SafetensorsTensor]
    private let tensorIndex: [String: Int]

    public convenience init(path: String) throws {
        let mapped: MappedFile
        do {
            mapped = try MappedFile(path: path)
        } catch {
            throw FormatError.missing(path: path, what: "a readable file (\(error))")
        }
        try self.init(file: mapped)
    }

    public init(file: MappedFile) throws {
        self.file = file
        let path = file.path
        self.path = path
        var reader = ByteReader(file.bytes)
        guard let rawLength = reader.read(UInt64.self) else {
            throw FormatError.truncated(path: path, offset: file.count, needed: "8-byte header length at byte 0")
        }
        guard let n = Checked.int(rawLength), n <= Self.maxHeaderBytes, n >= 2 else {
            throw FormatError.implausible(path: path, offset: 0, what: "header length", value: String(rawLength))
        }
        guard n <= file.count - 8 else {
            throw FormatError.truncated(path: path, offset: file.count, needed: "header of \(n) bytes at byte 8")
        }
        headerByteCount = n
        dataOffset = 8 + n
        let dataLength = file.count - dataOffset
        let header = UnsafeRawBufferPointer(rebasing: file.bytes[8 ..< 8 + n])
        guard header[0] == UInt8(ascii: "{") else {
            throw FormatError.invalid(path: path, offset: 8, reason: "header does not start with '{'")
        }
        let json = try JSONValue.parseReportingFormatError(header, path: path, baseOffset: 8, maxDepth: 8)
        guard let members = json.object else {
            throw FormatError.invalid(path: path, offset: 8, reason: "header is not a JSON object")
        }

        var metadata: [String: String] = [:]
        var tensors: [SafetensorsTensor] = []
        tensors.reserveCapacity(members.count)
        for (name, entry) in members {
            if name == Self.metadataKey {
                guard let items = entry.object else {
                    throw FormatError.invalid(path: path, offset: nil, reason: "\(Self.metadataKey) is \(entry.kindName), not an object")
                }
                for (k, v) in items {
                    guard let s = v.string else {
                        throw FormatError.invalid(path: path, offset: nil,
                                                  reason: "\(Self.metadataKey) value '\(k)' is \(v.kindName), not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            tensors.append(try Self.tensorInfo(name: name, entry: entry, path: path, dataOffset: dataOffset,
                                               dataLength: dataLength, fileSize: file.count))
        }

        // The tensors must tile [0, dataLength) exactly, as the reference's validation demands.
        var end = 0
        var previous: String?
        for t in tensors.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
            if t.begin < end, let previous {
                throw FormatError.overlappingTensors(path: path, first: previous, second: t.name)
            }
            if t.begin > end {
                throw FormatError.invalid(path: path, offset: dataOffset + end,
                                          reason: "data bytes [\(end), \(t.begin)) before tensor '\(t.name)' belong to no tensor (holes are not allowed)")
            }
            end = t.end
            previous = t.name
        }
        guard end == dataLength else {
            throw FormatError.invalid(path: path, offset: dataOffset + end,
                                      reason: "\(dataLength - end) bytes after the last tensor belong to no tensor")
        }

        var index: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { index[t.name] = i }
        self.metadata = metadata
        self.tensors = tensors
        self.tensorIndex = index
    }

    /// Validates one header entry.
    private static func tensorInfo(name: String, entry: JSONValue, path: String, dataOffset: Int, dataLength: Int,
                                   fileSize: Int) throws -> SafetensorsTensor {
        func invalid(_ reason: String) -> FormatError { .invalid(path: path, offset: nil, reason: "tensor '\(name)': \(reason)") }
        guard let fields = entry.object else { throw invalid("entry is \(entry.kindName), not an object") }
        func field(_ key: String) throws -> JSONValue {
            guard let v = fields.first(where: { $0.key == key })?.value else {
                throw FormatError.missing(path: path, what: "field '\(key)' of tensor '\(name)'")
            }
            return v
        }
        func integer(_ v: JSONValue, _ what: String) throws -> Int {
            switch v.nonNegativeInteger {
            case .value(let i): return i
            case .notAnInteger: throw invalid("\(what) is \(v.kindName), not a non-negative integer")
            case .tooLarge:
                throw FormatError.implausible(path: path, offset: 8, what: "\(what) of tensor '\(name)' (above 2^53)", value: v.serialized)
            }
        }

        let dtypeValue = try field("dtype")
        guard let dtypeName = dtypeValue.string else { throw invalid("dtype is \(dtypeValue.kindName), not a string") }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else { throw invalid("unknown dtype \"\(dtypeName)\"") }

        let shapeValue = try field("shape")
        guard let dims = shapeValue.array else { throw invalid("shape is \(shapeValue.kindName), not an array") }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        for (i, d) in dims.enumerated() { shape.append(try integer(d, "shape[\(i)]")) }
        guard let elements = Checked.product(shape), let byteCount = Checked.mul(elements, dtype.size) else {
            throw FormatError.implausible(path: path, offset: 8, what: "size of tensor '\(name)'", value: "shape \(shape)")
        }

        let offsetsValue = try field("data_offsets")
        guard let offsets = offsetsValue.array, offsets.count == 2 else {
            throw invalid("data_offsets must be an array of two integers")
        }
        let begin = try integer(offsets[0], "data_offsets[0]")
        let end = try integer(offsets[1], "data_offsets[1]")
        guard begin <= end else { throw invalid("data_offsets [\(begin), \(end)] begin after end") }
        guard end <= dataLength else {
            throw FormatError.tensorOutOfBounds(path: path, tensor: name, offset: UInt64(dataOffset + begin), byteCount: end - begin,
                                                fileSize: fileSize)
        }
        guard end - begin == byteCount else {
            throw FormatError.shapeMismatch(path: path, tensor: name,
                                            expected: "\(byteCount) bytes (\(dtype.name) \(shape))", found: "\(end - begin) bytes")
        }
        return SafetensorsTensor(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    public func tensor(named name: String) -> SafetensorsTensor? { tensorIndex[name].map { tensors[$0] } }

    /// The tensor's bytes inside the mapping (bounds were validated on open). Valid while this object lives.
    public func data(for tensor: SafetensorsTensor) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[dataOffset + tensor.begin ..< dataOffset + tensor.end])
    }

    /// The tensor converted to Float (F32, F16, BF16 exactly; F64 rounded), row-major like its shape.
    public func floats(for tensor: SafetensorsTensor) throws -> [Float] {
        guard tensor.dtype.convertsToFloat else {
            throw FormatError.invalid(path: path, offset: dataOffset + tensor.begin,
                                      reason: "tensor '\(tensor.name)' has dtype \(tensor.dtype.name), which does not convert to floats")
        }
        let count = tensor.elementCount
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            tensor.dtype.decodeFloats(data(for: tensor), into: UnsafeMutableBufferPointer(rebasing: buffer[0 ..< count]))
            initialized = count
        }
    }

    /// The named tensor converted to Float; throws `missing` if there is none.
    public func floats(named name: String) throws -> [Float] {
        guard let t = tensor(named: name) else { throw FormatError.missing(path: path, what: "tensor '\(name)'") }
        return try floats(for: t)
    }
}

/// A Hugging Face checkpoint stored as safetensors: one `model.safetensors`, or shards listed by
/// `model.safetensors.index.json` (`{"metadata": {...}, "weight_map": {tensor: shard file}}`). Shards are opened
/// (mapped and validated) on first use and kept open; all methods are thread-safe.
public final class SafetensorsCheckpoint: @unchecked Sendable {
    public static let indexFileName = "model.safetensors.index.json"
    public static let singleFileName = "model.safetensors"
    /// Largest index file accepted (real ones are well under 1 MB).
    public static let maxIndexBytes = 100_000_000

    /// The folder holding the shards.
    public let directory: String
    /// The index file, nil for a single-file checkpoint.
    public let indexPath: String?
    /// `metadata.total_size` from the index, if present.
    public let totalSize: Int?
    /// Every tensor name, sorted.
    public let tensorNames: [String]
    /// Shard file names (within `directory`), sorted.
    public let shardNames: [String]
    private let weightMap: [String: String]
    private let lock = NSLock()
    private var openShards: [String: SafetensorsFile] = [:]

    /// `path` is a checkpoint folder (with an index or a single `model.safetensors`), an index file, or one
    /// `.safetensors` file.
    public convenience init(path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw FormatError.missing(path: path, what: "a safetensors checkpoint (no such file or folder)")
        }
        if isDirectory.boolValue {
            let index = (path as NSString).appendingPathComponent(Self.indexFileName)
            let single = (path as NSString).appendingPathComponent(Self.singleFileName)
            if FileManager.default.fileExists(atPath: index) {
                try self.init(indexPath: index)
            } else if FileManager.default.fileExists(atPath: single) {
                try self.init(file: SafetensorsFile(path: single))
            } else {
                throw FormatError.missing(path: path, what: "\(Self.indexFileName) or \(Self.singleFileName)")
            }
        } else if path.hasSuffix(".json") {
            try self.init(indexPath: path)
        } else {
            try self.init(file: SafetensorsFile(path: path))
        }
    }

    /// A checkpoint of one already opened file.
    public init(file: SafetensorsFile) {
        let name = (file.path as NSString).lastPathComponent
        let dir = (file.path as NSString).deletingLastPathComponent
        directory = dir.isEmpty ? "." : dir
        indexPath = nil
        totalSize = nil
        tensorNames = file.tensors.map(\.name).sorted()
        shardNames = [name]
        weightMap = Dictionary(uniqueKeysWithValues: file.tensors.map { ($0.name, name) })
        openShards[name] = file
    }

    /// Reads an index file; shards are opened later, on first use.
    public init(indexPath: String) throws {
        let mapped: MappedFile
        do {
            mapped = try MappedFile(path: indexPath)
        } catch {
            throw FormatError.missing(path: indexPath, what: "a readable index file (\(error))")
        }
        guard mapped.count <= Self.maxIndexBytes else {
            throw FormatError.implausible(path: indexPath, offset: 0, what: "index file size", value: String(mapped.count))
        }
        let json = try JSONValue.parseReportingFormatError(mapped.bytes, path: indexPath, baseOffset: 0, maxDepth: 8)
        guard let members = json.object else {
            throw FormatError.invalid(path: indexPath, offset: 0, reason: "index is not a JSON object")
        }
        guard let mapValue = members.first(where: { $0.key == "weight_map" })?.value else {
            throw FormatError.missing(path: indexPath, what: "field 'weight_map'")
        }
        guard let entries = mapValue.object else {
            throw FormatError.invalid(path: indexPath, offset: nil, reason: "weight_map is \(mapValue.kindName), not an object")
        }
        var map: [String: String] = [:]
        for (tensor, fileValue) in entries {
            guard let shard = fileValue.string else {
                throw FormatError.invalid(path: indexPath, offset: nil, reason: "weight_map['\(tensor)'] is \(fileValue.kindName), not a string")
            }
            // Shards are plain file names beside the index: nothing may point outside the checkpoint folder.
            guard !shard.isEmpty, shard != ".", shard != "..", !shard.contains("/"), !shard.contains("\\"), !shard.contains("\0") else {
                throw FormatError.invalid(path: indexPath, offset: nil,
                                          reason: "weight_map['\(tensor)'] = \"\(shard)\" is not a file name in the checkpoint folder")
            }
            map[tensor] = shard
        }
        var totalSize: Int?
        if let meta = members.first(where: { $0.key == "metadata" })?.value.object,
           let total = meta.first(where: { $0.key == "total_size" })?.value, case .value(let v) = total.nonNegativeInteger {
            totalSize = v
        }
        let dir = (indexPath as NSString).deletingLastPathComponent
        directory = dir.isEmpty ? "." : dir
        self.indexPath = indexPath
        self.totalSize = totalSize
        weightMap = map
        tensorNames = map.keys.sorted()
        shardNames = Set(map.values).sorted()
    }

    /// The shard file name holding `tensor`, per the index.
    public func shardName(for tensor: String) -> String? { weightMap[tensor] }

    /// The shard called `name`, opened and validated on first use.
    public func shard(_ name: String) throws -> SafetensorsFile {
        lock.lock()
        defer { lock.unlock() }
        if let f = openShards[name] { return f }
        guard shardNames.contains(name) else {
            throw FormatError.missing(path: indexPath ?? directory, what: "shard '\(name)'")
        }
        let f = try SafetensorsFile(path: (directory as NSString).appendingPathComponent(name))
        openShards[name] = f
        return f
    }

    /// The file holding `name` and its entry there; throws if the index names it but the shard lacks it.
    public func tensor(named name: String) throws -> (file: SafetensorsFile, info: SafetensorsTensor) {
        guard let shardName = weightMap[name] else {
            throw FormatError.missing(path: indexPath ?? directory, what: "tensor '\(name)'")
        }
        let file = try shard(shardName)
        guard let info = file.tensor(named: name) else {
            throw FormatError.missing(path: file.path, what: "tensor '\(name)' (listed in \(Self.indexFileName))")
        }
        return (file, info)
    }

    /// The named tensor as Float (see `SafetensorsFile.floats(for:)`).
    public func floats(named name: String) throws -> [Float] {
        let (file, info) = try tensor(named: name)
        return try file.floats(for: info)
    }

    /// Opens every shard and checks that each holds exactly the tensors the index assigns to it.
    public func validateAll() throws {
        for shardName in shardNames {
            let file = try shard(shardName)
            let expected = Set(weightMap.filter { $0.value == shardName }.keys)
            let found = Set(file.tensors.map(\.name))
            if let absent = expected.subtracting(found).sorted().first {
                throw FormatError.missing(path: file.path, what: "tensor '\(absent)' (listed in \(Self.indexFileName))")
            }
            if let extra = found.subtracting(expected).sorted().first {
                throw FormatError.invalid(path: file.path, offset: nil,
                                          reason: "tensor '\(extra)' is not assigned to this shard by \(Self.indexFileName)")
            }
        }
    }
}

extension JSONValue {
    /// Parses untrusted JSON, reporting errors as `FormatError`s that name `path` and the absolute byte offset.
    static func parseReportingFormatError(_ bytes: UnsafeRawBufferPointer, path: String, baseOffset: Int,
                                          maxDepth: Int) throws -> JSONValue {
        do {
            return try parse(bytes, maxDepth: maxDepth)
        } catch let e as ParseError {
            throw FormatError.invalid(path: path, offset: baseOffset + e.offset, reason: "invalid JSON: \(e.reason)")
        }
    }

    /// Result of reading a value as a non-negative integer.
    enum IntegerReading: Equatable {
        case value(Int)
        /// Not an integer (a fraction, a string, ...) or negative.
        case notAnInteger
        /// Above 2^53, the largest integer every JSON implementation represents exactly.
        case tooLarge
    }

    var nonNegativeInteger: IntegerReading {
        guard case .int(let v) = self, v >= 0 else { return .notAnInteger }
        return v <= 1 << 53 ? .value(Int(v)) : .tooLarge
    }

    /// A short description of the value for error messages.
    var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "the number \(serialized)"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}
