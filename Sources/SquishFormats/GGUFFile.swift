import Foundation
import SquishCore

/// One tensor's entry in a GGUF file's tensor-info table.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// ggml order: `shape[0]` is the row length (ne0), the fastest-varying dimension.
    public let shape: [Int]
    public let type: GGMLType
    /// Offset of the tensor's data relative to the start of the data section.
    public let offset: Int
    /// Bytes of data: rowBytes(shape[0]) × shape[1...].
    public let byteCount: Int

    public init(name: String, shape: [Int], type: GGMLType, offset: Int, byteCount: Int) {
        self.name = name
        self.shape = shape
        self.type = type
        self.offset = offset
        self.byteCount = byteCount
    }

    public var elementCount: Int { shape.reduce(1, *) }
    /// Rows of a 2-D view: every dimension but the first.
    public var rowCount: Int { shape.dropFirst().reduce(1, *) }
}

/// A GGUF model file (versions 2 and 3, see ggml's docs/gguf.md), memory-mapped and fully validated on open:
/// every count, length, offset and size is checked against the file with overflow-safe arithmetic before use,
/// so a truncated or hostile file gives a `FormatError` naming the file and the problem.
public final class GGUFFile: @unchecked Sendable {
    public static let magic: UInt32 = 0x4655_4747  // "GGUF" read as little-endian u32
    public static let defaultAlignment = 32
    /// Deepest nesting of arrays accepted (real files use 1; the limit keeps recursion bounded).
    public static let maxArrayDepth = 8
    /// ggml's GGML_MAX_DIMS.
    public static let maxDimensions = 4

    public let file: MappedFile
    public let path: String
    public let version: UInt32
    public let alignment: Int
    /// Absolute offset of the data section (tensor offsets are relative to it).
    public let dataOffset: Int
    /// Metadata in file order.
    public let metadata: [(key: String, value: GGUFValue)]
    /// Tensors in file order.
    public let tensors: [GGUFTensorInfo]
    private let metadataIndex: [String: Int]
    private let tensorIndex: [String: Int]

    /// Opens the GGUF file at `path`, or a packed one (`PackedModel`, from `squish pack`), decoded into memory.
    public convenience init(path: String) throws {
        let mapped: MappedFile
        do {
            mapped = try MappedFile(path: path)
        } catch {
            throw FormatError.missing(path: path, what: "a readable file (\(error))")
        }
        if PackedModel.isPacked(mapped.bytes) {
            try self.init(file: try PackedModel.decode(mapped.bytes, path: path))
        } else {
            try self.init(file: mapped)
        }
    }

    public init(file: MappedFile) throws {
        self.file = file
        let path = file.path
        self.path = path
        var parser = Parser(bytes: file.bytes, path: path)

        let magic = try parser.u32("magic")
        guard magic == Self.magic else {
            let shown = file.bytes.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw FormatError.badMagic(path: path, found: shown.isEmpty ? "<empty file>" : shown)
        }
        let version = try parser.u32("version")
        guard version == 2 || version == 3 else { throw FormatError.unsupportedVersion(path: path, version: version) }
        self.version = version

        // Every tensor info takes at least 8 (name length) + 4 (dims) + 4 (type) + 8 (offset) bytes, every
        // key/value pair at least 8 (key length) + 4 (type) + 1 bytes: counts beyond what the file can hold are rejected
        // before anything is allocated.
        let tensorCount = try parser.count("tensor count", minimumBytesEach: 24)
        let kvCount = try parser.count("metadata count", minimumBytesEach: 13)

        var metadata: [(key: String, value: GGUFValue)] = []
        metadata.reserveCapacity(kvCount)
        var metadataIndex: [String: Int] = [:]
        for _ in 0 ..< kvCount {
            let keyOffset = parser.reader.offset
            let key = try parser.string("metadata key", strictUTF8: true)
            let typeOffset = parser.reader.offset
            let rawType = try parser.u32("type of '\(key)'")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw FormatError.invalid(path: path, offset: typeOffset, reason: "metadata '\(key)' has unknown value type \(rawType)")
            }
            let value = try parser.value(type, depth: 0, what: key)
            guard metadataIndex[key] == nil else { throw FormatError.duplicateName(path: path, name: key) }
            _ = keyOffset
            metadataIndex[key] = metadata.count
            metadata.append((key, value))
        }
        self.metadata = metadata
        self.metadataIndex = metadataIndex

        var alignment = Self.defaultAlignment
        if let i = metadataIndex["general.alignment"] {
            let v = metadata[i].value
            guard case .uint32(let a) = v, a > 0, a & (a - 1) == 0, a <= 1 << 20 else {
                throw FormatError.invalid(path: path, offset: nil,
                                          reason: "general.alignment must be a u32 power of two, found \(v)")
            }
            alignment = Int(a)
        }
        self.alignment = alignment

        struct RawInfo { let name: String; let shape: [Int]; let typeID: UInt32; let offset: UInt64; let at: Int }
        var raw: [RawInfo] = []
        raw.reserveCapacity(tensorCount)
        for _ in 0 ..< tensorCount {
            let at = parser.reader.offset
            let name = try parser.string("tensor name", strictUTF8: true)
            let dimsAt = parser.reader.offset
            let nDims = try parser.u32("dimension count of '\(name)'")
            guard nDims >= 1, nDims <= UInt32(Self.maxDimensions) else {
                throw FormatError.implausible(path: path, offset: dimsAt, what: "dimension count of '\(name)'", value: String(nDims))
            }
            var shape: [Int] = []
            for d in 0 ..< Int(nDims) {
                let dimAt = parser.reader.offset
                let n = try parser.u64("dimension \(d) of '\(name)'")
                // A dimension cannot exceed the number of bits in the file (the smallest block type stores
                // more than one bit per element), which also keeps the product below overflow.
                guard let v = Checked.int(n), v <= Checked.mul(file.count, 8) ?? Int.max else {
                    throw FormatError.implausible(path: path, offset: dimAt, what: "dimension \(d) of '\(name)'", value: String(n))
                }
                shape.append(v)
            }
            let typeID = try parser.u32("type of '\(name)'")
            let offset = try parser.u64("data offset of '\(name)'")
            raw.append(RawInfo(name: name, shape: shape, typeID: typeID, offset: offset, at: at))
        }
        guard let dataOffset = Checked.alignUp(parser.reader.offset, alignment) else {
            throw FormatError.implausible(path: path, offset: parser.reader.offset, what: "data offset", value: "overflow")
        }
        self.dataOffset = dataOffset
        let dataBytes = file.count - min(dataOffset, file.count)
        if tensorCount > 0 && dataOffset > file.count {
            throw FormatError.truncated(path: path, offset: file.count, needed: "data section at byte \(dataOffset)")
        }

        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(raw.count)
        var tensorIndex: [String: Int] = [:]
        for r in raw {
            guard let type = GGMLType(rawValue: r.typeID) else {
                throw FormatError.unknownTensorType(path: path, tensor: r.name, typeID: r.typeID)
            }
            guard tensorIndex[r.name] == nil else { throw FormatError.duplicateName(path: path, name: r.name) }
            guard let rowBytes = type.rowBytes(elements: r.shape[0]) else {
                throw FormatError.shapeMismatch(path: path, tensor: r.name,
                                                expected: "row length a multiple of \(type.blockElements) for \(type.name)",
                                                found: "\(r.shape[0])")
            }
            guard let byteCount = Checked.product([rowBytes] + r.shape.dropFirst()) else {
                throw FormatError.implausible(path: path, offset: r.at, what: "size of '\(r.name)'", value: "\(r.shape)")
            }
            guard let offset = Checked.int(r.offset) else {
                throw FormatError.tensorOutOfBounds(path: path, tensor: r.name, offset: Int.max, byteCount: byteCount, fileSize: file.count)
            }
            guard offset % alignment == 0 else {
                throw FormatError.misalignedTensor(path: path, tensor: r.name, offset: offset, alignment: alignment)
            }
            guard let end = Checked.add(offset, byteCount), end <= dataBytes else {
                throw FormatError.tensorOutOfBounds(path: path, tensor: r.name, offset: dataOffset &+ offset,
                                                    byteCount: byteCount, fileSize: file.count)
            }
            tensorIndex[r.name] = tensors.count
            tensors.append(GGUFTensorInfo(name: r.name, shape: r.shape, type: type, offset: offset, byteCount: byteCount))
        }
        // No two tensors may share bytes.
        let byOffset = tensors.filter { $0.byteCount > 0 }.sorted { $0.offset < $1.offset }
        for (a, b) in zip(byOffset, byOffset.dropFirst()) where a.offset + a.byteCount > b.offset {
            throw FormatError.overlappingTensors(path: path, first: a.name, second: b.name)
        }
        self.tensors = tensors
        self.tensorIndex = tensorIndex
    }

    public subscript(key: String) -> GGUFValue? { metadataIndex[key].map { metadata[$0].value } }

    public func tensor(named name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// The tensor's bytes inside the mapping (bounds were validated on open).
    public func data(for tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        let start = dataOffset + tensor.offset
        return UnsafeRawBufferPointer(rebasing: file.bytes[start ..< start + tensor.byteCount])
    }

    /// `general.architecture`, e.g. "llama".
    public var architecture: String? { self["general.architecture"]?.string }

    /// A metadata value under the architecture's prefix, e.g. `arch("block_count")` = `llama.block_count`.
    public func arch(_ suffix: String) -> GGUFValue? {
        guard let a = architecture else { return nil }
        return self["\(a).\(suffix)"]
    }
}

/// Bounds-checked reading of GGUF's primitive encodings, with errors naming the file and offset.
struct Parser {
    var reader: ByteReader
    let path: String

    init(bytes: UnsafeRawBufferPointer, path: String) {
        reader = ByteReader(bytes)
        self.path = path
    }

    func truncated(_ what: String) -> FormatError {
        .truncated(path: path, offset: reader.bytes.count, needed: "\(what) at byte \(reader.offset)")
    }

    mutating func u32(_ what: String) throws -> UInt32 {
        guard let v = reader.read(UInt32.self) else { throw truncated(what) }
        return v
    }

    mutating func u64(_ what: String) throws -> UInt64 {
        guard let v = reader.read(UInt64.self) else { throw truncated(what) }
        return v
    }

    /// A u64 count whose elements each need at least `minimumBytesEach` bytes of the rest of the file.
    mutating func count(_ what: String, minimumBytesEach: Int) throws -> Int {
        let at = reader.offset
        let n = try u64(what)
        guard let v = Checked.int(n), let need = Checked.mul(v, minimumBytesEach), need <= reader.remaining else {
            throw FormatError.implausible(path: path, offset: at, what: what, value: String(n))
        }
        return v
    }

    mutating func string(_ what: String, strictUTF8: Bool) throws -> String {
        let at = reader.offset
        let n = try u64("length of \(what)")
        guard let length = Checked.int(n), length <= reader.remaining else {
            if n > UInt64(reader.remaining) && Checked.int(n).map({ $0 <= reader.bytes.count }) == true {
                throw truncated("\(what) of \(n) bytes")
            }
            throw FormatError.implausible(path: path, offset: at, what: "length of \(what)", value: String(n))
        }
        let bytes = reader.readBytes(length)!
        if strictUTF8 {
            guard let s = String(validating: bytes, as: UTF8.self) else {
                throw FormatError.invalid(path: path, offset: at, reason: "\(what) is not valid UTF-8")
            }
            return s
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    mutating func value(_ type: GGUFValueType, depth: Int, what: String) throws -> GGUFValue {
        func need<T: FixedWidthInteger>(_: T.Type) throws -> T {
            guard let v = reader.read(T.self) else { throw truncated("value of '\(what)'") }
            return v
        }
        switch type {
        case .uint8: return .uint8(try need(UInt8.self))
        case .int8: return .int8(try need(Int8.self))
        case .uint16: return .uint16(try need(UInt16.self))
        case .int16: return .int16(try need(Int16.self))
        case .uint32: return .uint32(try need(UInt32.self))
        case .int32: return .int32(try need(Int32.self))
        case .uint64: return .uint64(try need(UInt64.self))
        case .int64: return .int64(try need(Int64.self))
        case .float32: return .float32(Float(bitPattern: try need(UInt32.self)))
        case .float64: return .float64(Double(bitPattern: try need(UInt64.self)))
        case .bool:
            let at = reader.offset
            let b = try need(UInt8.self)
            guard b <= 1 else { throw FormatError.invalid(path: path, offset: at, reason: "bool '\(what)' has byte \(b)") }
            return .bool(b == 1)
        case .string: return .string(try string("string '\(what)'", strictUTF8: false))
        case .array:
            let at = reader.offset
            guard depth < GGUFFile.maxArrayDepth else {
                throw FormatError.implausible(path: path, offset: at, what: "array nesting of '\(what)'", value: String(depth + 1))
            }
            let rawType = try u32("array element type of '\(what)'")
            guard let elementType = GGUFValueType(rawValue: rawType) else {
                throw FormatError.invalid(path: path, offset: at, reason: "array '\(what)' has unknown element type \(rawType)")
            }
            let minimum: Int
            switch elementType {
            case .uint8, .int8, .bool: minimum = 1
            case .uint16, .int16: minimum = 2
            case .uint32, .int32, .float32: minimum = 4
            case .uint64, .int64, .float64, .string: minimum = 8
            case .array: minimum = 12
            }
            let n = try count("element count of array '\(what)'", minimumBytesEach: minimum)
            var values: [GGUFValue] = []
            values.reserveCapacity(n)
            for _ in 0 ..< n { values.append(try value(elementType, depth: depth + 1, what: what)) }
            return .array(elementType: elementType, values: values)
        }
    }
}
