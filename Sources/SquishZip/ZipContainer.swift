import SquishFormats

/// What `squish zip` writes: everything the decoder must reproduce exactly (model, tokenizer, schedule, probability
/// model, kernel path) and the rANS payload.
///
/// Layout (little-endian): "SQZT", u16 version 1, u64 original bytes, [32] original SHA-256, [32] model SHA-256 (of
/// the GGUF bytes; a packed model counts as the GGUF it decodes to; a checkpoint directory as
/// `TextCoder.checkpointIdentity` says), u64 model bytes, string model name,
/// [32] tokenizer SHA-256 (of every token's bytes), u32 vocabulary, u32 start token, u32 escape token (2^32 − 1:
/// none), u32 lanes, u32 chunk tokens,
/// u64 tokens, u8 probability bits, u16 logit steps per nat, u16 logit cap in steps, string kernel path,
/// u8 layout flags (1 repacked, 2 lookup tables), u64 payload bytes, payload, u32 CRC-32 of all bytes before it.
/// Strings are u16 length + UTF-8.
public struct ZipContainer: Equatable, Sendable {
    public static let magic: [UInt8] = Array("SQZT".utf8)
    public static let version: UInt16 = 1

    public var originalBytes: Int
    public var originalSHA256: [UInt8]
    public var modelSHA256: [UInt8]
    public var modelBytes: Int
    public var modelName: String
    public var tokenizerSHA256: [UInt8]
    public var vocabulary: Int
    public var startToken: Int
    /// The token after which a byte is coded directly (`TokenStream`).
    public var escapeToken: Int?
    public var lanes: Int
    public var chunkTokens: Int
    public var tokenCount: Int
    public var probabilityBits = QuantizedSoftmax.precisionBits
    public var stepsPerNat = Int(QuantizedSoftmax.stepsPerNat)
    public var maxSteps = QuantizedSoftmax.maxSteps
    /// "avx2" or "portable": which C kernels computed the logits.
    public var kernels: String
    public var repacked: Bool
    public var lookupTables: Bool
    public var payload: [UInt8]

    public func serialized() -> [UInt8] {
        var w = Writer()
        w.bytes(Self.magic)
        w.u16(Self.version)
        w.u64(UInt64(originalBytes))
        w.bytes(originalSHA256)
        w.bytes(modelSHA256)
        w.u64(UInt64(modelBytes))
        w.string(modelName)
        w.bytes(tokenizerSHA256)
        w.u32(UInt32(vocabulary))
        w.u32(UInt32(startToken))
        w.u32(escapeToken.map { UInt32($0) } ?? UInt32.max)
        w.u32(UInt32(lanes))
        w.u32(UInt32(chunkTokens))
        w.u64(UInt64(tokenCount))
        w.u8(UInt8(probabilityBits))
        w.u16(UInt16(stepsPerNat))
        w.u16(UInt16(maxSteps))
        w.string(kernels)
        w.u8((repacked ? 1 : 0) | (lookupTables ? 2 : 0))
        w.u64(UInt64(payload.count))
        w.bytes(payload)
        w.u32(Zlib.crc32(w.data))
        return w.data
    }

    /// Parses and checks a container read from `path` (named in errors).
    public init(bytes: [UInt8], path: String) throws {
        guard bytes.count >= 6, Array(bytes.prefix(4)) == Self.magic else {
            throw ZipError.notAContainer(path: path, reason: "not a file written by `squish zip` (no SQZT signature)")
        }
        guard bytes.count >= 10 else { throw ZipError.corrupt(path: path, reason: "file truncated at \(bytes.count) bytes") }
        let stored = bytes.suffix(4).enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
        let crc = bytes.withUnsafeBytes { Zlib.crc32(UnsafeRawBufferPointer(rebasing: $0[0 ..< bytes.count - 4])) }
        var r = Reader(bytes: Array(bytes.dropLast(4)), path: path)
        r.offset = 4
        let version = try r.u16()
        guard crc == stored else {
            throw ZipError.corrupt(path: path, reason: "the CRC-32 does not match (the file was damaged or truncated)")
        }
        guard version == Self.version else {
            throw ZipError.notAContainer(path: path, reason: "container version \(version) is not supported (this build reads version \(Self.version))")
        }
        originalBytes = try r.int()
        originalSHA256 = try r.bytes(32)
        modelSHA256 = try r.bytes(32)
        modelBytes = try r.int()
        modelName = try r.string()
        tokenizerSHA256 = try r.bytes(32)
        vocabulary = Int(try r.u32())
        startToken = Int(try r.u32())
        let escape = try r.u32()
        escapeToken = escape == UInt32.max ? nil : Int(escape)
        lanes = Int(try r.u32())
        chunkTokens = Int(try r.u32())
        tokenCount = try r.int()
        probabilityBits = Int(try r.u8())
        stepsPerNat = Int(try r.u16())
        maxSteps = Int(try r.u16())
        kernels = try r.string()
        let flags = try r.u8()
        repacked = flags & 1 != 0
        lookupTables = flags & 2 != 0
        let n = try r.int()
        payload = try r.bytes(n)
        guard r.offset == r.bytes.count else { throw ZipError.corrupt(path: path, reason: "\(r.bytes.count - r.offset) unexpected bytes after the payload") }
        guard lanes >= 1, (tokenCount == 0) == (chunkTokens == 0), startToken < vocabulary, tokenCount <= originalBytes, (escapeToken ?? 0) < vocabulary,
              flags & ~3 == 0 else {
            throw ZipError.corrupt(path: path, reason: "inconsistent settings (lanes \(lanes), chunk \(chunkTokens) tokens, \(tokenCount) tokens for \(originalBytes) bytes)")
        }
    }

    public init(originalBytes: Int, originalSHA256: [UInt8], modelSHA256: [UInt8], modelBytes: Int, modelName: String,
                tokenizerSHA256: [UInt8], vocabulary: Int, startToken: Int, escapeToken: Int?, lanes: Int, chunkTokens: Int, tokenCount: Int,
                kernels: String, repacked: Bool, lookupTables: Bool, payload: [UInt8]) {
        self.originalBytes = originalBytes
        self.originalSHA256 = originalSHA256
        self.modelSHA256 = modelSHA256
        self.modelBytes = modelBytes
        self.modelName = modelName
        self.tokenizerSHA256 = tokenizerSHA256
        self.vocabulary = vocabulary
        self.startToken = startToken
        self.escapeToken = escapeToken
        self.lanes = lanes
        self.chunkTokens = chunkTokens
        self.tokenCount = tokenCount
        self.kernels = kernels
        self.repacked = repacked
        self.lookupTables = lookupTables
        self.payload = payload
    }

    private struct Writer {
        var data: [UInt8] = []
        mutating func u8(_ v: UInt8) { data.append(v) }
        mutating func u16(_ v: UInt16) { for i in 0 ..< 2 { data.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
        mutating func u32(_ v: UInt32) { for i in 0 ..< 4 { data.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
        mutating func u64(_ v: UInt64) { for i in 0 ..< 8 { data.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
        mutating func bytes(_ b: [UInt8]) { data.append(contentsOf: b) }
        mutating func string(_ s: String) {
            let b = Array(s.utf8.prefix(Int(UInt16.max)))
            u16(UInt16(b.count))
            bytes(b)
        }
    }

    private struct Reader {
        let bytes: [UInt8]
        let path: String
        var offset = 0
        mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard n >= 0, n <= bytes.count - offset else {
                throw ZipError.corrupt(path: path, reason: "truncated: \(n) bytes needed at byte \(offset), \(bytes.count - offset) left")
            }
            defer { offset += n }
            return bytes[offset ..< offset + n]
        }
        mutating func little(_ n: Int) throws -> UInt64 {
            try take(n).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }
        mutating func u8() throws -> UInt8 { UInt8(try little(1)) }
        mutating func u16() throws -> UInt16 { UInt16(try little(2)) }
        mutating func u32() throws -> UInt32 { UInt32(try little(4)) }
        mutating func int() throws -> Int {
            let v = try little(8)
            guard v < 1 << 48 else { throw ZipError.corrupt(path: path, reason: "implausible size \(v) at byte \(offset - 8)") }
            return Int(v)
        }
        mutating func bytes(_ n: Int) throws -> [UInt8] { Array(try take(n)) }
        mutating func string() throws -> String { String(decoding: try take(Int(try u16())), as: UTF8.self) }
    }
}
