import SquishCore

/// GGUF metadata value types (gguf.md `gguf_metadata_value_type`).
public enum GGUFValueType: UInt32, Sendable, Codable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6
    case bool = 7, string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Bytes of one value of this type; nil for strings and arrays, whose length is stored with them.
    public var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64: return 8
        case .string, .array: return nil
        }
    }

    /// The fewest bytes one value of this type takes in a file (a string's length, an array's type and count).
    var minimumSize: Int { fixedSize ?? (self == .string ? 8 : 12) }
}

/// One GGUF metadata value. Arrays keep their declared element type and their elements' encoding, so that a file
/// read and written again is byte-identical, including empty and nested arrays.
public enum GGUFValue: Equatable, Sendable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String), uint64(UInt64), int64(Int64), float64(Double)
    case array(GGUFArray)

    /// An array of `values`, each of which must be of `elementType` (a programming error otherwise).
    public static func array(elementType: GGUFValueType, values: [GGUFValue]) -> GGUFValue {
        .array(GGUFArray(elementType: elementType, values: values))
    }

    public var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .float32: return .float32
        case .bool: return .bool
        case .string: return .string
        case .uint64: return .uint64
        case .int64: return .int64
        case .float64: return .float64
        case .array: return .array
        }
    }

    /// Any integer type as Int (nil if not an integer or out of range).
    public var int: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return v <= UInt64(Int.max) ? Int(v) : nil
        case .int64(let v): return Int(v)
        case .bool(let v): return v ? 1 : 0
        default: return nil
        }
    }

    /// Any numeric type as Double.
    public var double: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return int.map(Double.init)
        }
    }

    public var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var bool: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The array itself (elements decoded on demand).
    public var arrayValue: GGUFArray? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The array's elements, all decoded (allocates per element: prefer `arrayValue` or the typed accessors).
    public var array: [GGUFValue]? { arrayValue.map(Array.init) }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`), nil if the elements are not strings.
    public var stringArray: [String]? { arrayValue?.strings }

    /// An array of numbers as Float (e.g. `tokenizer.ggml.scores`), nil if the elements are not numbers.
    public var floatArray: [Float]? { arrayValue?.floats }

    /// An array of integers as Int (e.g. `tokenizer.ggml.token_type`), nil if the elements are not integers that
    /// fit an Int.
    public var intArray: [Int]? { arrayValue?.ints }
}

/// A GGUF array: its element type, count and the elements' encoding as in the file (little-endian fixed-size
/// values; for strings a u64 length and the bytes, each; for arrays a u32 type, a u64 count and the elements, each).
/// Reading a file does not decode arrays: elements are decoded when they are asked for, so a declared element costs
/// nothing until then. Arrays read from a file were validated when it was opened; their bytes stay in its mapping.
public struct GGUFArray: Sendable, Equatable, Sequence {
    public let elementType: GGUFValueType
    public let count: Int
    /// Holds the bytes: the mapped file the array was read from, or a private copy.
    let storage: MappedFile
    /// The elements' encoding within `storage.bytes`.
    let range: Range<Int>

    /// An array read from a file: `range` of `storage` holds `count` valid elements of `elementType`.
    init(elementType: GGUFValueType, count: Int, storage: MappedFile, range: Range<Int>) {
        self.elementType = elementType
        self.count = count
        self.storage = storage
        self.range = range
    }

    /// An array of `values`, each of which must be of `elementType` (a programming error otherwise).
    public init(elementType: GGUFValueType, values: [GGUFValue]) {
        var sink = ByteSink()
        for v in values {
            precondition(v.type == elementType, "GGUF array of \(elementType) given a \(v.type) element")
            sink.value(v)
        }
        self.elementType = elementType
        count = values.count
        storage = MappedFile(data: sink.bytes)
        range = 0 ..< sink.bytes.count
    }

    /// The elements' encoding (what follows the element type and count in a file).
    public var encodedBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage.bytes[range]) }

    public static func == (a: GGUFArray, b: GGUFArray) -> Bool {
        guard a.elementType == b.elementType, a.count == b.count, a.range.count == b.range.count else { return false }
        return withExtendedLifetime((a.storage, b.storage)) { a.encodedBytes.elementsEqual(b.encodedBytes) }
    }

    public struct Iterator: IteratorProtocol {
        let array: GGUFArray
        var reader: ByteReader
        var left: Int

        public mutating func next() -> GGUFValue? {
            guard left > 0 else { return nil }
            left -= 1
            return withExtendedLifetime(array.storage) {
                GGUFArray.decode(array.elementType, from: &reader, storage: array.storage)
            }
        }
    }

    public func makeIterator() -> Iterator {
        Iterator(array: self, reader: ByteReader(storage.bytes, offset: range.lowerBound), left: count)
    }

    public var underestimatedCount: Int { count }

    /// Decodes one value of `type` at the reader (bytes that were validated, or that this module encoded); nil if
    /// they end early.
    static func decode(_ type: GGUFValueType, from r: inout ByteReader, storage: MappedFile) -> GGUFValue? {
        switch type {
        case .uint8: return r.read(UInt8.self).map(GGUFValue.uint8)
        case .int8: return r.read(Int8.self).map(GGUFValue.int8)
        case .uint16: return r.read(UInt16.self).map(GGUFValue.uint16)
        case .int16: return r.read(Int16.self).map(GGUFValue.int16)
        case .uint32: return r.read(UInt32.self).map(GGUFValue.uint32)
        case .int32: return r.read(Int32.self).map(GGUFValue.int32)
        case .uint64: return r.read(UInt64.self).map(GGUFValue.uint64)
        case .int64: return r.read(Int64.self).map(GGUFValue.int64)
        case .float32: return r.readFloat().map(GGUFValue.float32)
        case .float64: return r.readDouble().map(GGUFValue.float64)
        case .bool: return r.read(UInt8.self).map { .bool($0 != 0) }
        case .string:
            guard let n = r.read(UInt64.self), let length = Checked.int(n), let bytes = r.readBytes(length) else { return nil }
            return .string(String(decoding: bytes, as: UTF8.self))
        case .array:
            guard let raw = r.read(UInt32.self), let elementType = GGUFValueType(rawValue: raw), let n = r.read(UInt64.self),
                  let count = Checked.int(n) else { return nil }
            let start = r.offset
            for _ in 0 ..< count { guard skip(elementType, in: &r) else { return nil } }
            return .array(GGUFArray(elementType: elementType, count: count, storage: storage, range: start ..< r.offset))
        }
    }

    /// Moves the reader past one encoded value of `type`; false if the bytes end early.
    static func skip(_ type: GGUFValueType, in r: inout ByteReader) -> Bool {
        if let size = type.fixedSize { return r.readBytes(size) != nil }
        if type == .string {
            guard let n = r.read(UInt64.self), let length = Checked.int(n) else { return false }
            return r.readBytes(length) != nil
        }
        guard let raw = r.read(UInt32.self), let elementType = GGUFValueType(rawValue: raw), let n = r.read(UInt64.self),
              let count = Checked.int(n) else { return false }
        if let size = elementType.fixedSize {
            guard let total = Checked.mul(size, count) else { return false }
            return r.readBytes(total) != nil
        }
        for _ in 0 ..< count { guard skip(elementType, in: &r) else { return false } }
        return true
    }

    /// The elements as strings (invalid UTF-8 replaced by U+FFFD), nil unless the element type is string.
    public var strings: [String]? {
        guard elementType == .string else { return nil }
        return withExtendedLifetime(storage) {
            var r = ByteReader(storage.bytes, offset: range.lowerBound)
            var out: [String] = []
            out.reserveCapacity(count)
            for _ in 0 ..< count {
                guard let n = r.read(UInt64.self), let length = Checked.int(n), let bytes = r.readBytes(length) else { return nil }
                out.append(String(decoding: bytes, as: UTF8.self))
            }
            return out
        }
    }

    /// Integer (or bool) elements as Int; nil for other element types or a u64 above Int.max.
    public var ints: [Int]? {
        guard let size = elementType.fixedSize, elementType != .float32, elementType != .float64 else { return nil }
        return withExtendedLifetime(storage) {
            let b = encodedBytes
            var out = [Int](repeating: 0, count: count)
            for i in 0 ..< count {
                let o = i * size
                switch elementType {
                case .uint8, .bool: out[i] = Int(b[o])
                case .int8: out[i] = Int(Int8(bitPattern: b[o]))
                case .uint16: out[i] = Int(UInt16(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt16.self)))
                case .int16: out[i] = Int(Int16(littleEndian: b.loadUnaligned(fromByteOffset: o, as: Int16.self)))
                case .uint32: out[i] = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt32.self)))
                case .int32: out[i] = Int(Int32(littleEndian: b.loadUnaligned(fromByteOffset: o, as: Int32.self)))
                case .int64: out[i] = Int(Int64(littleEndian: b.loadUnaligned(fromByteOffset: o, as: Int64.self)))
                default:
                    guard let v = Checked.int(UInt64(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt64.self))) else { return nil }
                    out[i] = v
                }
            }
            return out
        }
    }

    /// Numeric (or bool) elements as Float; nil for strings and arrays.
    public var floats: [Float]? {
        guard let size = elementType.fixedSize else { return nil }
        if elementType == .float32 {
            return withExtendedLifetime(storage) {
                let b = encodedBytes
                return (0 ..< count).map { Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
            }
        }
        if elementType == .float64 {
            return withExtendedLifetime(storage) {
                let b = encodedBytes
                return (0 ..< count).map { Float(Double(bitPattern: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))) }
            }
        }
        _ = size
        // Integers: as Double first, the way `GGUFValue.double` converts them (a u64 above Int.max is not a number here).
        return ints?.map { Float(Double($0)) }
    }
}
