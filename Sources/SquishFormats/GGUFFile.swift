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

    /// Elements (the reader guarantees that the product fits an Int; Int.max for a hand-made info where it does not).
    public var elementCount: Int { Checked.product(shape) ?? Int.max }
    /// Rows of a 2-D view: every dimension but the first.
    public var rowCount: Int { Checked.product(Array(shape.dropFirst())) ?? Int.max }
}

/// One metadata key and its value's encoding inside the file; the value is decoded when asked for, so opening a file
/// with a huge array or string costs no memory for it.
public struct GGUFMetadataEntry: Sendable {
    public let key: String
    public let type: GGUFValueType
    /// The file the value lives in.
    let file: MappedFile
    /// The value's encoding (after its type tag): absolute byte offsets in the file.
    public let range: Range<Int>

    /// The value's bytes as stored (for a string: the u64 length, then the bytes).
    public var encodedBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: file.bytes[range]) }

    /// The decoded value (arrays stay lazy: see `GGUFArray`).
    public var value: GGUFValue {
        var r = ByteReader(file.bytes, offset: range.lowerBound)
        // The file was validated when it was opened, so the value decodes; the fallback is never taken.
        return withExtendedLifetime(file) { GGUFArray.decode(type, from: &r, storage: file) } ?? .array(GGUFArray(elementType: .uint8, values: []))
    }

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
    /// Metadata keys and where their values are, in file order.
    public let entries: [GGUFMetadataEntry]
    /// Metadata in file order, decoded (arrays stay lazy).
    public var metadata: [(key: String, value: GGUFValue)] { entries.map { ($0.key, $0.value) } }
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
        var parser = Parser(bytes: file.bytes, path: path, file: file)

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

        var entries: [GGUFMetadataEntry] = []
        entries.reserveCapacity(kvCount)
        var metadataIndex: [String: Int] = [:]
        for _ in 0 ..< kvCount {
            let key = try parser.string("metadata key", strictUTF8: true)
            let typeOffset = parser.reader.offset
            let rawType = try parser.u32("type of '\(key)'")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw FormatError.invalid(path: path, offset: typeOffset, reason: "metadata '\(key)' has unknown value type \(rawType)")
            }
            let start = parser.reader.offset
            try parser.skipValue(type, depth: 0, what: key)
            guard metadataIndex[key] == nil else { throw FormatError.duplicateName(path: path, name: key) }
            metadataIndex[key] = entries.count
            entries.append(GGUFMetadataEntry(key: key, type: type, file: file, range: start ..< parser.reader.offset))
        }
        self.entries = entries
        self.metadataIndex = metadataIndex

        var alignment = Self.defaultAlignment
        if let i = metadataIndex["general.alignment"] {
            let v = entries[i].value
            guard case .uint32(let a) = v, a > 0, a & (a - 1) == 0, a <= 1 << 20 else {
                throw FormatError.invalid(path: path, offset: entries[i].range.lowerBound,
                                          reason: "general.alignment must be a u32 power of two up to 2^20, found \(Self.describe(v))")
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
            // Both the element count and the byte count must fit: a zero dimension makes the size 0 while the other
            // dimensions' product can still overflow (ggml checks the same products).
            guard Checked.product(r.shape) != nil, let byteCount = Checked.product([rowBytes] + r.shape.dropFirst()) else {
                throw FormatError.implausible(path: path, offset: r.at, what: "element count of '\(r.name)' (shape \(r.shape))",
                                              value: "beyond 2^63")
            }
            // The absolute position of the data, for messages, without overflowing.
            let (absolute, wrapped) = UInt64(dataOffset).addingReportingOverflow(r.offset)
            guard let offset = Checked.int(r.offset) else {
                throw FormatError.tensorOutOfBounds(path: path, tensor: r.name, offset: wrapped ? r.offset : absolute,
                                                    byteCount: byteCount, fileSize: file.count)
            }
            guard offset % alignment == 0 else {
                throw FormatError.misalignedTensor(path: path, tensor: r.name, offset: offset, alignment: alignment)
            }
            guard let end = Checked.add(offset, byteCount), end <= dataBytes else {
                throw FormatError.tensorOutOfBounds(path: path, tensor: r.name, offset: wrapped ? r.offset : absolute,
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

    public subscript(key: String) -> GGUFValue? { metadataIndex[key].map { entries[$0].value } }

    /// The entry of `key`, without decoding its value.
    public func entry(_ key: String) -> GGUFMetadataEntry? { metadataIndex[key].map { entries[$0] } }

    /// A short rendering of a value for messages: scalars as they are, arrays by type and count, strings cut short.
    static func describe(_ v: GGUFValue) -> String {
        switch v {
        case .string(let s): return "the string \"\(s.prefix(40))\(s.count > 40 ? "..." : "")\""
        case .array(let a): return "an array of \(a.count) \(a.elementType)"
        case .float32(let f): return "\(f) (f32)"
        case .float64(let f): return "\(f) (f64)"
        case .bool(let b): return "\(b) (bool)"
        default: return "\(v.int.map(String.init) ?? "?") (\(v.type))"
        }
    }

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
    /// The mapping being read (for releasing pages), nil for plain bytes.
    let file: MappedFile?
    /// Pages below this offset were released.
    var released = 0

    init(bytes: UnsafeRawBufferPointer, path: String, file: MappedFile? = nil) {
        reader = ByteReader(bytes)
        self.path = path
        self.file = file
    }

    func truncated(_ what: String) -> FormatError {
        .truncated(path: path, offset: reader.bytes.count, needed: "\(what) at byte \(reader.offset)")
    }

    mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 {
        guard let v = reader.read(UInt32.self) else { throw truncated(what()) }
        return v
    }

    mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 {
        guard let v = reader.read(UInt64.self) else { throw truncated(what()) }
        return v
    }

    /// A u64 count whose elements each need at least `minimumBytesEach` bytes of the rest of the file.
    mutating func count(_ what: @autoclosure () -> String, minimumBytesEach: Int) throws -> Int {
        let at = reader.offset
        let n = try u64(what())
        guard let v = Checked.int(n), let need = Checked.mul(v, minimumBytesEach), need <= reader.remaining else {
            throw FormatError.implausible(path: path, offset: at, what: what(), value: String(n))
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

    /// Validates one value of `type` and moves past it, allocating nothing per element: strings are not decoded
    /// (values decode leniently later), fixed-size arrays are skipped whole (bools checked byte by byte), and the
    /// pages of a large array are released behind the cursor, so that a huge declared array costs neither memory
    /// nor resident file pages.
    mutating func skipValue(_ type: GGUFValueType, depth: Int, what: String) throws {
        switch type {
        case .bool:
            let at = reader.offset
            guard let b = reader.read(UInt8.self) else { throw truncated("value of '\(what)'") }
            guard b <= 1 else { throw FormatError.invalid(path: path, offset: at, reason: "bool '\(what)' has byte \(b)") }
        case .string:
            try skipString("string '\(what)'")
        case .array:
            let at = reader.offset
            guard depth < GGUFFile.maxArrayDepth else {
                throw FormatError.implausible(path: path, offset: at, what: "array nesting of '\(what)'", value: String(depth + 1))
            }
            let rawType = try u32("array element type of '\(what)'")
            guard let elementType = GGUFValueType(rawValue: rawType) else {
                throw FormatError.invalid(path: path, offset: at, reason: "array '\(what)' has unknown element type \(rawType)")
            }
            let n = try count("element count of array '\(what)'", minimumBytesEach: elementType.minimumSize)
            switch elementType {
            case .bool:
                // Checked in pieces, releasing each piece's pages once read.
                var left = n
                while left > 0 {
                    let piece = min(left, Self.releaseStep)
                    let at = reader.offset
                    let bytes = reader.readBytes(piece)!  // `count` checked that n bytes remain
                    if let bad = bytes.firstIndex(where: { $0 > 1 }) {
                        throw FormatError.invalid(path: path, offset: at + bad, reason: "bool element of '\(what)' has byte \(bytes[bad])")
                    }
                    left -= piece
                    releasePassedPages()
                }
            case .string:
                // The hot loop of a file with millions of strings: lengths checked inline, the error path (which
                // names the element) taken only for a bad one.
                let bytes = reader.bytes
                var offset = reader.offset
                for i in 0 ..< n {
                    if bytes.count - offset >= 8 {
                        let length = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                        if length <= UInt64(bytes.count - offset - 8) {
                            offset += 8 + Int(length)
                            if offset - released >= Self.releaseStep { reader.offset = offset; releasePassedPages() }
                            continue
                        }
                    }
                    reader.offset = offset
                    try skipString("string element \(i) of '\(what)'")
                }
                reader.offset = offset
                releasePassedPages()
            case .array:
                for _ in 0 ..< n {
                    try skipValue(.array, depth: depth + 1, what: what)
                    releasePassedPages()
                }
            default:
                _ = reader.readBytes(n * elementType.fixedSize!)!  // `count` checked that n × size bytes remain
            }
        default:
            guard reader.readBytes(type.fixedSize!) != nil else { throw truncated("value of '\(what)'") }
        }
    }

    /// Validates a string's length and moves past it (its bytes are not read). `what` is only built for an error
    /// (arrays of millions of strings come through here).
    mutating func skipString(_ what: @autoclosure () -> String) throws {
        let at = reader.offset
        guard let n = reader.read(UInt64.self) else { throw truncated("length of \(what())") }
        if let length = Checked.int(n), length <= reader.remaining {
            reader.offset += length
            return
        }
        let what = what()
        if n > UInt64(reader.remaining) && Checked.int(n).map({ $0 <= reader.bytes.count }) == true {
            throw truncated("\(what) of \(n) bytes")
        }
        throw FormatError.implausible(path: path, offset: at, what: "length of \(what)", value: String(n))
    }

    /// Bytes read between two releases of the pages behind the cursor.
    static let releaseStep = 16 << 20

    /// Drops the mapped pages the cursor has passed once they add up to `releaseStep` (they are read back from the
    /// file if a value there is decoded later).
    mutating func releasePassedPages() {
        guard reader.offset - released >= Self.releaseStep else { return }
        file?.dropPages(released ..< reader.offset)
        released = reader.offset
    }
}

extension GGUFMetadataEntry {
    /// A one-line, terminal-safe preview of the value that reads at most about `maxBytes` of it: scalars as they
    /// are, strings cut to `maxBytes` (non-printing characters and invalid UTF-8 escaped), arrays of up to
    /// `maxElements` elements element by element, longer ones as "[count × type]".
    public func preview(maxBytes: Int = 80, maxElements: Int = 8) -> String {
        withExtendedLifetime(file) {
            var r = ByteReader(file.bytes, offset: range.lowerBound)
            return Self.preview(type, &r, maxBytes: maxBytes, maxElements: maxElements)
        }
    }

    static func preview(_ type: GGUFValueType, _ r: inout ByteReader, maxBytes: Int, maxElements: Int) -> String {
        switch type {
        case .string:
            guard let n = r.read(UInt64.self), let length = Checked.int(n), let bytes = r.readBytes(length) else { return "?" }
            return TerminalText.escape(bytes: bytes, limit: maxBytes)
        case .array:
            guard let raw = r.read(UInt32.self), let elementType = GGUFValueType(rawValue: raw), let n = r.read(UInt64.self),
                  let count = Checked.int(n) else { return "?" }
            // A long array is not read at all (it is the last thing read from this reader).
            guard count <= maxElements else { return "[\(count) × \(elementType)]" }
            let each = max(8, maxBytes / max(count, 1))
            return "[" + (0 ..< count).map { _ in
                var element = r
                let shown = preview(elementType, &element, maxBytes: each, maxElements: 2)
                _ = GGUFArray.skip(elementType, in: &r)  // the preview may stop early inside the element
                return shown
            }.joined(separator: ", ") + "]"
        case .float32: return r.readFloat().map { String($0) } ?? "?"
        case .float64: return r.readDouble().map { String($0) } ?? "?"
        case .bool: return r.read(UInt8.self).map { String($0 != 0) } ?? "?"
        case .uint8: return r.read(UInt8.self).map { String($0) } ?? "?"
        case .int8: return r.read(Int8.self).map { String($0) } ?? "?"
        case .uint16: return r.read(UInt16.self).map { String($0) } ?? "?"
        case .int16: return r.read(Int16.self).map { String($0) } ?? "?"
        case .uint32: return r.read(UInt32.self).map { String($0) } ?? "?"
        case .int32: return r.read(Int32.self).map { String($0) } ?? "?"
        case .uint64: return r.read(UInt64.self).map { String($0) } ?? "?"
        case .int64: return r.read(Int64.self).map { String($0) } ?? "?"
        }
    }
}
