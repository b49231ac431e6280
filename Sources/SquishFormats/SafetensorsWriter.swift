import Foundation
import SquishCore

/// Writes safetensors files atomically, laid out as the reference implementation does: compact JSON header with
/// `__metadata__` first (its keys sorted here, for determinism) and then one entry per tensor in data order, each as
/// `{"dtype":…,"shape":[…],"data_offsets":[begin,end]}`; the header padded with spaces to a multiple of 8 bytes;
/// the tensors' bytes back to back with no padding. Given the reference's tensor order (`.reference`) and at most
/// one metadata key, the bytes equal those of Python's `safetensors.numpy.save_file`.
public struct SafetensorsWriter {
    /// Where a tensor's bytes come from when the file is written.
    public enum Source {
        case bytes([UInt8])
        /// Bytes inside memory that `owner` keeps alive (e.g. another mapped file).
        case mapped(UnsafeRawBufferPointer, owner: AnyObject)
        /// Produced on demand, so large outputs need not sit in memory all at once.
        case producer(() throws -> [UInt8])
    }

    public struct Entry {
        public let name: String
        public let dtype: SafetensorsDType
        /// Row-major (PyTorch order), `[]` for a scalar.
        public let shape: [Int]
        public let source: Source

        public init(name: String, dtype: SafetensorsDType, shape: [Int], source: Source) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.source = source
        }

        public init(name: String, dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) {
            self.init(name: name, dtype: dtype, shape: shape, source: .bytes(bytes))
        }
    }

    /// How tensors are ordered in the header and the data section.
    public enum Order {
        /// The order they were added in.
        case asAdded
        /// The reference writer's order: larger dtypes first (by its enum order), then by name.
        case reference
    }

    public var metadata: [String: String]
    public private(set) var entries: [Entry] = []
    public var order: Order

    public init(metadata: [String: String] = [:], order: Order = .asAdded) {
        self.metadata = metadata
        self.order = order
    }

    /// A writer holding a file's metadata and tensors in its order (the bytes stay in the file's mapping).
    public init(copying file: SafetensorsFile) {
        metadata = file.metadata
        order = .asAdded
        for t in file.tensors {
            entries.append(Entry(name: t.name, dtype: t.dtype, shape: t.shape, source: .mapped(file.data(for: t), owner: file)))
        }
    }

    public mutating func add(_ name: String, dtype: SafetensorsDType, shape: [Int], source: Source) {
        entries.append(Entry(name: name, dtype: dtype, shape: shape, source: source))
    }

    public mutating func add(_ name: String, dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) {
        add(name, dtype: dtype, shape: shape, source: .bytes(bytes))
    }

    /// Adds floats stored as `dtype` (F32, F16, BF16 or F64; F16/BF16 round to nearest even).
    public mutating func add(_ name: String, shape: [Int], floats: [Float], as dtype: SafetensorsDType) throws {
        guard let bytes = floats.withUnsafeBufferPointer({ dtype.encodeFloats($0) }) else {
            throw FormatError.invalid(path: "<writer>", offset: nil, reason: "tensor '\(name)': cannot store floats as \(dtype.name)")
        }
        add(name, dtype: dtype, shape: shape, source: .bytes(bytes))
    }

    /// Entries in the order they will be written.
    public var orderedEntries: [Entry] {
        switch order {
        case .asAdded:
            return entries
        case .reference:
            return entries.sorted {
                $0.dtype.referenceRank != $1.dtype.referenceRank ? $0.dtype.referenceRank > $1.dtype.referenceRank : $0.name < $1.name
            }
        }
    }

    /// Checks names and shapes; returns each tensor's byte count in `orderedEntries` order.
    func byteCounts(path: String) throws -> [Int] {
        var seen = Set<String>()
        return try orderedEntries.map { t in
            guard t.name != SafetensorsFile.metadataKey else {
                throw FormatError.invalid(path: path, offset: nil, reason: "a tensor may not be called \(SafetensorsFile.metadataKey)")
            }
            guard seen.insert(t.name).inserted else { throw FormatError.duplicateName(path: path, name: t.name) }
            guard let n = Checked.product(t.shape), let bytes = Checked.mul(n, t.dtype.size) else {
                throw FormatError.shapeMismatch(path: path, tensor: t.name, expected: "non-negative dimensions", found: "\(t.shape)")
            }
            return bytes
        }
    }

    /// The 8-byte length plus the padded header for these tensors and metadata.
    public func headerBytes(path: String = "<writer>") throws -> [UInt8] {
        let counts = try byteCounts(path: path)
        var members: [(key: String, value: JSONValue)] = []
        if !metadata.isEmpty {
            members.append((SafetensorsFile.metadataKey, .object(metadata.keys.sorted().map { ($0, .string(metadata[$0]!)) })))
        }
        var offset = 0
        for (t, count) in zip(orderedEntries, counts) {
            members.append((t.name, .object([
                ("dtype", .string(t.dtype.name)),
                ("shape", .array(t.shape.map { .int(Int64($0)) })),
                ("data_offsets", .array([.int(Int64(offset)), .int(Int64(offset + count))])),
            ])))
            offset += count
        }
        let json = JSONValue.object(members).serialized
        var header = Array(json.utf8)
        // The reference pads the header with spaces so the data section starts 8-byte aligned.
        header += [UInt8](repeating: UInt8(ascii: " "), count: (8 - header.count % 8) % 8)
        guard header.count <= SafetensorsFile.maxHeaderBytes else {
            throw FormatError.implausible(path: path, offset: 0, what: "header length", value: String(header.count))
        }
        var out = [UInt8](repeating: 0, count: 8)
        out.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(header.count).littleEndian, as: UInt64.self) }
        return out + header
    }

    /// Writes the file atomically (temporary file, then rename); a source whose size does not match its
    /// shape and dtype aborts the write and leaves `path` untouched.
    public func write(to path: String) throws {
        let counts = try byteCounts(path: path)
        let header = try headerBytes(path: path)
        let writer = try AtomicFileWriter(destination: path)
        try writer.write(header)
        for (t, expected) in zip(orderedEntries, counts) {
            func check(_ n: Int) throws {
                guard n == expected else {
                    throw FormatError.shapeMismatch(path: path, tensor: t.name, expected: "\(expected) bytes (\(t.dtype.name) \(t.shape))",
                                                    found: "\(n) bytes")
                }
            }
            switch t.source {
            case .bytes(let b):
                try check(b.count)
                try writer.write(b)
            case .mapped(let buffer, let owner):
                try check(buffer.count)
                try withExtendedLifetime(owner) { try writer.write(buffer) }
            case .producer(let produce):
                let b = try produce()
                try check(b.count)
                try writer.write(b)
            }
        }
        try writer.commit()
    }
}
