import CZlib
import SquishCore

/// zlib's CRC-32 and deflate/inflate of whole buffers.
public enum Zlib {
    public static func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: uLong = CZlib.crc32(0, nil, 0)
        var p = bytes.baseAddress?.assumingMemoryBound(to: Bytef.self)
        var left = bytes.count
        while left > 0, let q = p {
            let n = min(left, 1 << 30)
            crc = CZlib.crc32(crc, q, uInt(n))
            p = q + n
            left -= n
        }
        return UInt32(truncatingIfNeeded: crc)
    }

    public static func crc32(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { crc32($0) } }

    public static func deflate(_ bytes: [UInt8], path: String) throws -> [UInt8] {
        var length = compressBound(uLong(bytes.count))
        var out = [UInt8](repeating: 0, count: Int(length))
        let status = out.withUnsafeMutableBufferPointer { o in
            bytes.withUnsafeBufferPointer { i in compress2(o.baseAddress!, &length, i.baseAddress ?? UnsafePointer(o.baseAddress!), uLong(i.count), 9) }
        }
        guard status == Z_OK else { throw FormatError.invalid(path: path, offset: nil, reason: "zlib deflate failed (status \(status))") }
        return Array(out.prefix(Int(length)))
    }

    public static func inflate(_ bytes: UnsafeRawBufferPointer, expected: Int, path: String, offset: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(expected, 1))
        var length = uLong(max(expected, 1))
        let status = out.withUnsafeMutableBufferPointer { o in
            uncompress(o.baseAddress!, &length, bytes.baseAddress?.assumingMemoryBound(to: Bytef.self) ?? UnsafePointer(o.baseAddress!), uLong(bytes.count))
        }
        guard status == Z_OK, Int(length) == expected else {
            throw FormatError.invalid(path: path, offset: offset, reason: "deflated data is corrupt (zlib status \(status), \(length) of \(expected) bytes)")
        }
        return Array(out.prefix(expected))
    }
}
