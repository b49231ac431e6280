import CZlib
import Foundation

/// A reader for R's lazy-load databases (`Rdata.rdx` index + `Rdata.rdb` blobs, as installed R packages ship their
/// datasets) and for the XDR serialization format inside them ("R Internals", section 1.8 "Serialization Formats").
/// It decodes what datasets need (vectors, lists, pairlists, attributes, symbols, references) without R.
public struct RLazyLoadDatabase {
    public let indexPath: String
    public let dataPath: String
    /// Variable name -> (offset, length) of its compressed blob in the .rdb file.
    public let variables: [String: (offset: Int, length: Int)]

    public init(indexPath: String, dataPath: String) throws {
        self.indexPath = indexPath
        self.dataPath = dataPath
        guard let index = FileManager.default.contents(atPath: indexPath) else {
            throw DataError.missingFile(path: indexPath, hint: "the R package data index could not be read")
        }
        // The index is written like saveRDS: a gzip (or zlib) stream of the serialized list.
        let value = try RSerialization.decode(try RSerialization.inflateStream([UInt8](index), path: indexPath), path: indexPath)
        guard case .list(let items, let names) = value, let vi = names?.firstIndex(of: "variables"),
              case .list(let entries, let entryNames?) = items[vi] else {
            throw DataError.badRData(path: indexPath, offset: 0, reason: "the index has no 'variables' list")
        }
        var variables: [String: (Int, Int)] = [:]
        for (name, entry) in zip(entryNames, entries) {
            guard case .integers(let v) = entry, v.count == 2, let o = v[0], let l = v[1], o >= 0, l > 0 else {
                throw DataError.badRData(path: indexPath, offset: 0, reason: "variable '\(name)' has no (offset, length) pair")
            }
            variables[name] = (o, l)
        }
        self.variables = variables
    }

    /// Decodes one variable.
    public func value(of name: String) throws -> RValue {
        guard let (offset, length) = variables[name] else {
            throw DataError.badRData(path: indexPath, offset: 0, reason: "no variable '\(name)'")
        }
        guard let handle = FileHandle(forReadingAtPath: dataPath) else {
            throw DataError.missingFile(path: dataPath, hint: "the R package data file could not be read")
        }
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        let blob = [UInt8](handle.readData(ofLength: length))
        guard blob.count == length else {
            throw DataError.badRData(path: dataPath, offset: offset, reason: "blob of \(length) bytes runs past the end of the file")
        }
        return try RSerialization.decode(try RSerialization.inflateBlob(blob, path: dataPath), path: dataPath)
    }
}

/// The R values the reader produces.
public indirect enum RValue {
    case null
    /// A character vector; nil elements are NA.
    case strings([String?])
    case integers([Int?])
    case doubles([Double])
    case logicals([Bool?])
    /// A generic vector or pairlist with optional element names.
    case list([RValue], names: [String]?)
    case symbol(String)
    case other(type: Int)
}

public enum RSerialization {
    /// A lazy-load blob: 4-byte big-endian uncompressed length, then a zlib stream.
    public static func inflateBlob(_ blob: [UInt8], path: String) throws -> [UInt8] {
        guard blob.count > 4 else { throw DataError.badRData(path: path, offset: 0, reason: "blob too short") }
        let expected = Int(blob[0]) << 24 | Int(blob[1]) << 16 | Int(blob[2]) << 8 | Int(blob[3])
        // Datasets are small; refuse anything that claims to be absurdly large rather than allocate it.
        guard expected > 0, expected <= 1 << 30 else {
            throw DataError.badRData(path: path, offset: 0, reason: "implausible uncompressed length \(expected)")
        }
        var out = [UInt8](repeating: 0, count: expected)
        var outLength = uLongf(expected)
        let status = blob.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                uncompress(dst.baseAddress, &outLength, src.baseAddress! + 4, uLong(blob.count - 4))
            }
        }
        guard status == Z_OK, Int(outLength) == expected else {
            throw DataError.badRData(path: path, offset: 0, reason: "zlib inflate failed (status \(status), \(outLength) of \(expected) bytes)")
        }
        return out
    }

    /// A whole gzip or zlib stream (header auto-detected), inflated up to `limit` bytes.
    public static func inflateStream(_ input: [UInt8], path: String, limit: Int = 1 << 30) throws -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DataError.badRData(path: path, offset: 0, reason: "zlib initialization failed")
        }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var status: Int32 = Z_OK
        try input.withUnsafeBufferPointer { src in
            stream.next_in = UnsafeMutablePointer(mutating: src.baseAddress)
            stream.avail_in = uInt(src.count)
            repeat {
                let produced: Int = chunk.withUnsafeMutableBufferPointer { dst in
                    stream.next_out = dst.baseAddress
                    stream.avail_out = uInt(dst.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    return dst.count - Int(stream.avail_out)
                }
                guard status == Z_OK || status == Z_STREAM_END else {
                    throw DataError.badRData(path: path, offset: 0, reason: "zlib inflate failed (status \(status))")
                }
                output.append(contentsOf: chunk[0 ..< produced])
                guard output.count <= limit else { throw DataError.badRData(path: path, offset: 0, reason: "inflates beyond \(limit) bytes") }
                if produced == 0 && stream.avail_in == 0 && status != Z_STREAM_END {
                    throw DataError.badRData(path: path, offset: 0, reason: "compressed stream is truncated")
                }
            } while status != Z_STREAM_END
        }
        return output
    }

    /// Decodes one XDR-serialized R object (after decompression).
    public static func decode(_ bytes: [UInt8], path: String) throws -> RValue {
        var d = Decoder(bytes: bytes, path: path)
        return try d.decodeStream()
    }

    /// XDR (big-endian) decoding of R's serialization format, versions 2 and 3.
    struct Decoder {
        let bytes: [UInt8]
        let path: String
        var offset = 0
        /// Reference table: symbols and environments in the order they were first read.
        var references: [RValue] = []
        var depth = 0

        init(bytes: [UInt8], path: String) {
            self.bytes = bytes
            self.path = path
        }

        func fail(_ reason: String) -> DataError { .badRData(path: path, offset: offset, reason: reason) }

        mutating func int() throws -> Int32 {
            guard offset + 4 <= bytes.count else { throw fail("unexpected end of data") }
            let v = UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
            offset += 4
            return Int32(bitPattern: v)
        }

        mutating func double() throws -> Double {
            let hi = UInt64(UInt32(bitPattern: try int())), lo = UInt64(UInt32(bitPattern: try int()))
            return Double(bitPattern: hi << 32 | lo)
        }

        mutating func length() throws -> Int {
            let n = try int()
            if n >= 0 { return Int(n) }
            guard n == -1 else { throw fail("negative length \(n)") }
            let hi = Int(try int()), lo = Int(UInt32(bitPattern: try int()))
            return hi << 32 | lo
        }

        /// A length whose elements take at least `each` bytes of what remains.
        mutating func checkedLength(each: Int) throws -> Int {
            let n = try length()
            guard n <= (bytes.count - offset) / max(each, 1) else { throw fail("length \(n) exceeds the data") }
            return n
        }

        mutating func decodeStream() throws -> RValue {
            guard bytes.count >= 2, bytes[0] == UInt8(ascii: "X"), bytes[1] == UInt8(ascii: "\n") else {
                throw fail("not XDR serialization (expected \"X\\n\")")
            }
            offset = 2
            let version = try int()
            _ = try int()  // writer's R version
            _ = try int()  // minimal reader version
            switch version {
            case 2: break
            case 3:
                let n = Int(try int())
                guard n >= 0, n <= 64, offset + n <= bytes.count else { throw fail("bad native encoding length") }
                offset += n
            default: throw fail("unsupported serialization version \(version)")
            }
            return try item()
        }

        /// CHARSXP contents: nil for NA_STRING. Latin-1 strings are converted to UTF-8.
        mutating func charsxp(flags: Int32) throws -> String? {
            let n = try int()
            if n == -1 { return nil }
            guard n >= 0, offset + Int(n) <= bytes.count else { throw fail("bad string length \(n)") }
            let raw = bytes[offset ..< offset + Int(n)]
            offset += Int(n)
            let levels = flags >> 12
            if levels & 4 != 0 {  // LATIN1_MASK
                return String(String.UnicodeScalarView(raw.map { Unicode.Scalar($0) }))
            }
            return String(decoding: raw, as: UTF8.self)
        }

        mutating func item() throws -> RValue {
            depth += 1
            defer { depth -= 1 }
            guard depth < 10_000 else { throw fail("nesting too deep") }
            let flags = try int()
            let type = Int(flags & 0xFF)
            let hasAttributes = flags & (1 << 9) != 0
            let hasTag = flags & (1 << 10) != 0
            switch type {
            case 254, 242, 253, 241, 251, 252: return .null  // NILVALUE, EMPTYENV, GLOBALENV, BASEENV, MISSINGARG, UNBOUNDVALUE
            case 255:  // REFSXP: index packed in the flags, or in the next int
                var index = Int(flags >> 8)
                if index == 0 { index = Int(try int()) }
                guard index >= 1, index <= references.count else { throw fail("bad reference \(index)") }
                return references[index - 1]
            case 1:  // SYMSXP
                let name = try item()
                let symbol: RValue
                if case .strings(let s) = name, let first = s.first, let text = first { symbol = .symbol(text) } else { symbol = .symbol("") }
                references.append(symbol)
                return symbol
            case 9:  // CHARSXP appearing as an item
                return .strings([try charsxp(flags: flags)])
            case 2, 6, 239, 240:  // LISTSXP, LANGSXP, ATTRLISTSXP, ATTRLANGSXP: pairlists, read iteratively along CDR
                var values: [RValue] = []
                var names: [String] = []
                var currentFlags = flags
                while true {
                    if currentFlags & (1 << 9) != 0 { _ = try item() }
                    var tag = ""
                    if currentFlags & (1 << 10) != 0, case .symbol(let s) = try item() { tag = s }
                    values.append(try item())
                    names.append(tag)
                    let next = try int()
                    let nextType = Int(next & 0xFF)
                    if nextType == 254 { break }
                    guard [2, 6, 239, 240].contains(nextType) else {
                        offset -= 4
                        _ = try item()
                        break
                    }
                    currentFlags = next
                }
                return .list(values, names: names)
            case 16:  // STRSXP
                let n = try checkedLength(each: 4)
                var out: [String?] = []
                out.reserveCapacity(n)
                for _ in 0 ..< n {
                    let f = try int()
                    guard f & 0xFF == 9 else { throw fail("string vector element is not a CHARSXP (type \(f & 0xFF))") }
                    out.append(try charsxp(flags: f))
                }
                return try withAttributes(.strings(out), hasAttributes)
            case 13, 10:  // INTSXP, LGLSXP
                let n = try checkedLength(each: 4)
                var ints: [Int?] = []
                ints.reserveCapacity(n)
                for _ in 0 ..< n {
                    let v = try int()
                    ints.append(v == Int32.min ? nil : Int(v))
                }
                let value: RValue = type == 13 ? .integers(ints) : .logicals(ints.map { $0.map { $0 != 0 } })
                return try withAttributes(value, hasAttributes)
            case 14:  // REALSXP
                let n = try checkedLength(each: 8)
                var out: [Double] = []
                out.reserveCapacity(n)
                for _ in 0 ..< n { out.append(try double()) }
                return try withAttributes(.doubles(out), hasAttributes)
            case 19, 20:  // VECSXP, EXPRSXP
                let n = try checkedLength(each: 4)
                var out: [RValue] = []
                out.reserveCapacity(n)
                for _ in 0 ..< n { out.append(try item()) }
                return try withAttributes(.list(out, names: nil), hasAttributes)
            case 238:  // ALTREP_SXP: class info, state, attributes; wrappers keep the payload first in the state
                let info = try item()
                let state = try item()
                let attributes = try item()
                _ = info
                var payload = state
                if case .list(let parts, _) = state, let first = parts.first { payload = first }
                return attach(attributes, to: payload)
            default:
                _ = hasTag
                throw fail("unsupported R type \(type)")
            }
        }

        mutating func withAttributes(_ value: RValue, _ has: Bool) throws -> RValue {
            guard has else { return value }
            return attach(try item(), to: value)
        }

        /// Applies a `names` attribute to a list; other attributes are dropped.
        func attach(_ attributes: RValue, to value: RValue) -> RValue {
            guard case .list(let values, let names?) = attributes, let i = names.firstIndex(of: "names"),
                  case .strings(let elementNames) = values[i], case .list(let items, _) = value else { return value }
            return .list(items, names: elementNames.map { $0 ?? "" })
        }
    }
}
