import Foundation
import SquishCore

/// Writes GGUF files (version 3 by default) atomically: header, metadata, tensor infos, then each tensor's data
/// padded to the alignment, as ggml lays them out. Reading a file and writing it back with the same metadata and
/// tensors in the same order reproduces it byte for byte.
public struct GGUFWriter {
    /// Where a tensor's bytes come from when the file is written.
    public enum Source {
        case bytes([UInt8])
        /// Bytes inside memory that `owner` keeps alive (e.g. another mapped GGUF file).
        case mapped(UnsafeRawBufferPointer, owner: AnyObject)
        /// Produced on demand, so large outputs need not sit in memory all at once.
        case producer(() throws -> [UInt8])
    }

    public struct Tensor {
        public let name: String
        public let shape: [Int]  // ggml order, shape[0] = row length
        public let type: GGMLType
        public let source: Source
    }

    public var version: UInt32
    public private(set) var metadata: [(key: String, value: GGUFValue)] = []
    public private(set) var tensors: [Tensor] = []

    public init(version: UInt32 = 3) {
        self.version = version
    }

    /// A writer holding a file's metadata and tensors (the tensors' bytes stay in the file's mapping).
    public init(copying file: GGUFFile) {
        version = file.version
        metadata = file.metadata  // arrays keep referring to the file's bytes
        for t in file.tensors {
            tensors.append(Tensor(name: t.name, shape: t.shape, type: t.type, source: .mapped(file.data(for: t), owner: file)))
        }
    }

    /// Sets a metadata value, replacing an existing one in place (order is kept).
    public mutating func set(_ key: String, _ value: GGUFValue) {
        if let i = metadata.firstIndex(where: { $0.key == key }) {
            metadata[i].value = value
        } else {
            metadata.append((key, value))
        }
    }

    public mutating func remove(_ key: String) { metadata.removeAll { $0.key == key } }

    public mutating func addTensor(name: String, shape: [Int], type: GGMLType, source: Source) {
        tensors.append(Tensor(name: name, shape: shape, type: type, source: source))
    }

    /// Replaces the tensor called `name` (keeping its position), e.g. with a requantized version.
    public mutating func replaceTensor(name: String, shape: [Int], type: GGMLType, source: Source) {
        let t = Tensor(name: name, shape: shape, type: type, source: source)
        if let i = tensors.firstIndex(where: { $0.name == name }) { tensors[i] = t } else { tensors.append(t) }
    }

    public var alignment: Int {
        if let i = metadata.firstIndex(where: { $0.key == "general.alignment" }), case .uint32(let a) = metadata[i].value,
           a > 0, a & (a - 1) == 0 {
            return Int(a)
        }
        return GGUFFile.defaultAlignment
    }

    /// Bytes of each tensor, validated against its shape and type.
    func byteCount(_ t: Tensor, path: String) throws -> Int {
        guard !t.shape.isEmpty, t.shape.count <= GGUFFile.maxDimensions, t.shape.allSatisfy({ $0 >= 0 }),
              let row = t.type.rowBytes(elements: t.shape[0]), let n = Checked.product([row] + t.shape.dropFirst())
        else {
            throw FormatError.shapeMismatch(path: path, tensor: t.name, expected: "1-4 dimensions, row a multiple of \(t.type.blockElements)",
                                            found: "\(t.shape)")
        }
        return n
    }

    /// The header (metadata and tensor table, padded to the alignment) and each tensor's byte count.
    private func layout(path: String) throws -> (header: [UInt8], sizes: [Int], dataBytes: Int) {
        let align = alignment
        var names = Set<String>()
        var sizes: [Int] = []
        var offsets: [Int] = []
        var offset = 0
        for t in tensors {
            guard names.insert(t.name).inserted else { throw FormatError.duplicateName(path: path, name: t.name) }
            let n = try byteCount(t, path: path)
            sizes.append(n)
            offsets.append(offset)
            offset = Checked.alignUp(offset + n, align)!
        }
        var header = ByteSink()
        header.u32(GGUFFile.magic)
        header.u32(version)
        header.u64(UInt64(tensors.count))
        header.u64(UInt64(metadata.count))
        for (key, value) in metadata {
            header.string(key)
            header.u32(value.type.rawValue)
            header.value(value)
        }
        for (i, t) in tensors.enumerated() {
            header.string(t.name)
            header.u32(UInt32(t.shape.count))
            for d in t.shape { header.u64(UInt64(d)) }
            header.u32(t.type.rawValue)
            header.u64(UInt64(offsets[i]))
        }
        header.pad(to: align)
        return (header.bytes, sizes, offset)
    }

    /// The exact size in bytes of the file `write` would produce (nothing is produced or written).
    public func fileSize() throws -> Int {
        let l = try layout(path: "<size>")
        return l.header.count + l.dataBytes
    }

    /// Writes the file atomically: `path` is replaced only once everything has been written.
    public func write(to path: String) throws {
        let align = alignment
        let (header, sizes, _) = try layout(path: path)
        let out = try AtomicFileWriter(destination: path)
        try out.write(header)
        let zeros = [UInt8](repeating: 0, count: align)
        for (i, t) in tensors.enumerated() {
            let written: Int
            switch t.source {
            case .bytes(let b):
                try out.write(b)
                written = b.count
            case .mapped(let b, let owner):
                try withExtendedLifetime(owner) { try out.write(b) }
                written = b.count
            case .producer(let make):
                let b = try make()
                try out.write(b)
                written = b.count
            }
            guard written == sizes[i] else {
                throw FormatError.shapeMismatch(path: path, tensor: t.name, expected: "\(sizes[i]) bytes of data", found: "\(written)")
            }
            let padding = Checked.alignUp(written, align)! - written
            if padding > 0 { try zeros.withUnsafeBytes { try out.write(UnsafeRawBufferPointer(rebasing: $0[0 ..< padding])) } }
        }
        try out.commit()
    }
}

/// Little-endian serialization of GGUF primitives.
struct ByteSink {
    var bytes: [UInt8] = []

    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func int<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        u64(UInt64(utf8.count))
        bytes.append(contentsOf: utf8)
    }
    mutating func pad(to alignment: Int) {
        let n = Checked.alignUp(bytes.count, alignment)! - bytes.count
        bytes.append(contentsOf: repeatElement(0, count: n))
    }

    mutating func value(_ v: GGUFValue) {
        switch v {
        case .uint8(let x): int(x)
        case .int8(let x): int(x)
        case .uint16(let x): int(x)
        case .int16(let x): int(x)
        case .uint32(let x): int(x)
        case .int32(let x): int(x)
        case .uint64(let x): int(x)
        case .int64(let x): int(x)
        case .float32(let x): u32(x.bitPattern)
        case .float64(let x): u64(x.bitPattern)
        case .bool(let b): bytes.append(b ? 1 : 0)
        case .string(let s): string(s)
        case .array(let a):
            u32(a.elementType.rawValue)
            u64(UInt64(a.count))
            withExtendedLifetime(a.storage) { bytes.append(contentsOf: a.encodedBytes) }
        }
    }
}
