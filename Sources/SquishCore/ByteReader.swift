/// A little-endian cursor over untrusted bytes (inlinable: parsers in other modules call it per element, and a
/// generic call that is not specialized costs a metadata lookup each time). Every read is bounds-checked and returns nil
/// past the end instead of reading out of bounds; callers turn nil into a typed error.
public struct ByteReader {
    public let bytes: UnsafeRawBufferPointer
    public var offset: Int

    @inlinable
    public init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    @inlinable public var remaining: Int { bytes.count - offset }

    @inlinable @inline(__always)
    public mutating func read<T: FixedWidthInteger>(_: T.Type) -> T? {
        let size = MemoryLayout<T>.size
        guard offset >= 0, size <= bytes.count - offset else { return nil }
        let v = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += size
        return T(littleEndian: v)
    }

    @inlinable @inline(__always)
    public mutating func readFloat() -> Float? { read(UInt32.self).map { Float(bitPattern: $0) } }

    @inlinable @inline(__always)
    public mutating func readDouble() -> Double? { read(UInt64.self).map { Double(bitPattern: $0) } }

    /// `count` raw bytes, nil if they are not all inside the buffer.
    @inlinable
    public mutating func readBytes(_ count: Int) -> UnsafeRawBufferPointer? {
        guard count >= 0, offset >= 0, count <= bytes.count - offset else { return nil }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + count])
        offset += count
        return slice
    }
}
