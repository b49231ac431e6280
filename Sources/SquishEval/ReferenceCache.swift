import Foundation
import SquishCore
import SquishKernels

/// 64-bit FNV-1a (Fowler–Noll–Vo, http://www.isthe.com/chongo/tech/comp/fnv/): cache keys and the cache files'
/// integrity check. Not cryptographic; it only has to notice truncation, corruption and a changed input.
public struct FNV1a64 {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var h = value
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        value = h
    }

    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }
    public mutating func update(_ string: String) { update(Array(string.utf8)) }

    public var hex: String { String(format: "%016llx", value) }

    /// Hash of a whole file, read in 8 MiB pieces, or of a directory's files (names and contents, in name order).
    public static func file(_ path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw EvalError.io(path: path, reason: "no such file")
        }
        if isDirectory.boolValue {
            var h = FNV1a64()
            for name in try FileManager.default.contentsOfDirectory(atPath: path).sorted() {
                h.update(name)
                h.update(try file(path + "/" + name))
            }
            return h.hex
        }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw EvalError.io(path: path, reason: "cannot open") }
        defer { try? handle.close() }
        var h = FNV1a64()
        do {
            while let data = try handle.read(upToCount: 8 << 20), !data.isEmpty { data.withUnsafeBytes { h.update($0) } }
        } catch {
            throw EvalError.io(path: path, reason: "cannot read (\(error))")
        }
        return h.hex
    }
}

/// What computed a model's logits: the running executable's bytes (the kernels, the forward pass and everything
/// else that was compiled into it), the instruction set the kernels chose at run time, and the switches that change
/// which kernels run (`SQUISH_NO_REPACK`, `SQUISH_NO_LUT`). Cached logits are keyed by it, so a rebuilt binary never
/// compares against logits that other code computed. Unlike a version number bumped by hand, it cannot go stale:
/// any change to the code changes the executable (the cost is one reference pass after each rebuild).
public enum CodeFingerprint {
    /// Computed once per process (hashing a ~25 MB executable takes a few tens of milliseconds).
    public static let current: String = {
        var h = FNV1a64()
        #if os(Linux)
        let executable = "/proc/self/exe"
        #else
        let executable = Bundle.main.executablePath ?? CommandLine.arguments[0]
        #endif
        h.update((try? FNV1a64.file(executable)) ?? "unreadable executable \(CommandLine.arguments[0])")
        h.update(VectorOps.usesAVX2 ? "avx2" : "portable")
        let env = ProcessInfo.processInfo.environment
        for flag in ["SQUISH_NO_REPACK", "SQUISH_NO_LUT"] { h.update("\(flag)=\(env[flag] ?? "")") }
        return h.hex
    }()
}

/// What the reference model said about one text, computed once and reused for every candidate: the perplexity
/// results of both protocols and, for each position that llama.cpp's protocol scores, the top-k of the
/// next-token distribution, the tail mass and the log-probability of the correct token.
public struct ReferenceLogits {
    public struct Header: Codable {
        public var version: Int
        /// `CodeFingerprint` of the program that computed the logits.
        public var codeFingerprint: String
        /// FNV-1a of the reference model file and of the text bytes.
        public var modelHash: String
        public var textHash: String
        public var context: Int
        public var k: Int
        /// Tail samples per position (see `TopKDistribution`).
        public var tailSamples: Int
        public var vocab: Int
        /// Scored positions (llama.cpp protocol).
        public var positions: Int
        public var llamacpp: PerplexityResult
        public var windows: PerplexityResult
        /// Top-1 token of the reference at each position equals the correct token (fraction).
        public var top1Accuracy: Double

        public init(version: Int, modelHash: String, textHash: String, context: Int, k: Int, tailSamples: Int, vocab: Int, positions: Int,
                    llamacpp: PerplexityResult, windows: PerplexityResult, top1Accuracy: Double,
                    codeFingerprint: String = CodeFingerprint.current) {
            self.version = version
            self.codeFingerprint = codeFingerprint
            self.modelHash = modelHash
            self.textHash = textHash
            self.context = context
            self.k = k
            self.tailSamples = tailSamples
            self.vocab = vocab
            self.positions = positions
            self.llamacpp = llamacpp
            self.windows = windows
            self.top1Accuracy = top1Accuracy
        }
    }

    public var header: Header
    public var targets: [Int32]  // [positions]: the correct next token
    public var targetLogProbs: [Float]  // [positions]: reference log p(correct token)
    public var tailMass: [Double]  // [positions]
    public var ids: [Int32]  // [positions × k], row-major, most likely first
    public var logProbs: [Float]  // [positions × k]
    public var tailIDs: [Int32]  // [positions × tailSamples]
    public var tailLogProbs: [Float]  // [positions × tailSamples]

    public init(header: Header, targets: [Int32], targetLogProbs: [Float], tailMass: [Double], ids: [Int32], logProbs: [Float],
                tailIDs: [Int32], tailLogProbs: [Float]) {
        self.header = header
        self.targets = targets
        self.targetLogProbs = targetLogProbs
        self.tailMass = tailMass
        self.ids = ids
        self.logProbs = logProbs
        self.tailIDs = tailIDs
        self.tailLogProbs = tailLogProbs
    }

    public func distribution(at i: Int) -> TopKDistribution {
        let k = header.k, m = header.tailSamples
        return TopKDistribution(ids: Array(ids[i * k ..< (i + 1) * k]), logProbs: Array(logProbs[i * k ..< (i + 1) * k]),
                                tailMass: tailMass[i], tailIDs: Array(tailIDs[i * m ..< (i + 1) * m]),
                                tailLogProbs: Array(tailLogProbs[i * m ..< (i + 1) * m]))
    }

    static let magic: [UInt8] = Array("SQREFLG3".utf8)
    /// 4: the header records the code fingerprint, which is also part of the file name.
    public static let version = 4

    /// The cache file name for a model/text/settings combination computed by the code `codeFingerprint`.
    public static func fileName(modelHash: String, textHash: String, context: Int, k: Int, tailSamples: Int,
                                codeFingerprint: String = CodeFingerprint.current) -> String {
        "reference-\(modelHash)-\(textHash)-\(codeFingerprint)-c\(context)-k\(k)-t\(tailSamples).bin"
    }

    public static var defaultDirectory: String { squishCacheDirectory() + "/eval" }

    /// Layout: magic (8) | header length UInt64 LE | header JSON | targets Int32 | targetLogProbs Float32 |
    /// tailMass Float64 | ids Int32 | logProbs Float32 | tailIDs Int32 | tailLogProbs Float32 |
    /// FNV-1a 64 of everything before, UInt64 LE.
    public func write(to path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let writer = try AtomicFileWriter(destination: path)
        var hash = FNV1a64()
        func put(_ bytes: UnsafeRawBufferPointer) throws {
            hash.update(bytes)
            try writer.write(bytes)
        }
        let json = try JSONEncoder().encode(header)
        try Self.magic.withUnsafeBytes(put)
        try withUnsafeBytes(of: UInt64(json.count).littleEndian, put)
        try json.withUnsafeBytes(put)
        try targets.withUnsafeBytes(put)
        try targetLogProbs.withUnsafeBytes(put)
        try tailMass.withUnsafeBytes(put)
        try ids.withUnsafeBytes(put)
        try logProbs.withUnsafeBytes(put)
        try tailIDs.withUnsafeBytes(put)
        try tailLogProbs.withUnsafeBytes(put)
        try withUnsafeBytes(of: hash.value.littleEndian) { try writer.write($0) }
        try writer.commit()
    }

    /// Reads and verifies a cache file; throws `EvalError.corruptCache` when it is truncated, altered or of
    /// another version.
    public static func read(from path: String) throws -> ReferenceLogits {
        guard let data = FileManager.default.contents(atPath: path) else { throw EvalError.io(path: path, reason: "cannot read") }
        return try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> ReferenceLogits in
            func corrupt(_ reason: String) -> EvalError { .corruptCache(path: path, reason: reason) }
            guard raw.count >= 24 else { throw corrupt("\(raw.count) bytes is shorter than any cache file") }
            guard Array(raw[0 ..< 8]) == magic else { throw corrupt("not a Squish reference-logits file (bad magic)") }
            let body = UnsafeRawBufferPointer(rebasing: raw[0 ..< raw.count - 8])
            var h = FNV1a64()
            h.update(body)
            let stored = raw.loadUnaligned(fromByteOffset: raw.count - 8, as: UInt64.self).littleEndian
            guard stored == h.value else {
                throw corrupt("checksum mismatch (stored \(String(format: "%016llx", stored)), computed \(h.hex)): truncated or altered")
            }
            let headerLength = Int(raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian)
            guard headerLength > 0, 16 + headerLength <= body.count else { throw corrupt("header length \(headerLength) out of range") }
            let header: Header
            do {
                header = try JSONDecoder().decode(Header.self, from: Data(raw[16 ..< 16 + headerLength]))
            } catch {
                throw corrupt("unreadable header: \(error)")
            }
            guard header.version == version else { throw corrupt("version \(header.version), expected \(version)") }
            let n = header.positions, k = header.k, m = header.tailSamples
            let expected = 16 + headerLength + n * (4 + 4 + 8) + n * k * (4 + 4) + n * m * (4 + 4)
            guard n >= 0, k > 0, m >= 0, expected == body.count else {
                throw corrupt("size \(body.count) bytes does not match \(n) positions × (top-\(k) + \(m) tail samples) (\(expected) bytes)")
            }
            var offset = 16 + headerLength
            func array<T>(_ count: Int, _ type: T.Type) -> [T] {
                let size = MemoryLayout<T>.stride * count
                let out = [T](unsafeUninitializedCapacity: count) { buffer, initialized in
                    UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[offset ..< offset + size]))
                    initialized = count
                }
                offset += size
                return out
            }
            return ReferenceLogits(header: header, targets: array(n, Int32.self), targetLogProbs: array(n, Float.self),
                                   tailMass: array(n, Double.self), ids: array(n * k, Int32.self),
                                   logProbs: array(n * k, Float.self), tailIDs: array(n * m, Int32.self),
                                   tailLogProbs: array(n * m, Float.self))
        }
    }
}
