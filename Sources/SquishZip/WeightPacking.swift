import Crypto
import Foundation
import SquishCore
import SquishFormats

/// `squish pack` and `squish unpack`: files in, files out (written atomically, never over the input), around the
/// `PackedModel` format that every loader reads.
public enum WeightPacking {
    public struct PackSummary: Codable, Sendable {
        public var input: String
        public var output: String
        public var originalBytes: Int
        public var packedBytes: Int
        /// packed / original.
        public var ratio: Double
        public var sha256: String
        /// Bytes outside the tensors (header, metadata, padding), before and after deflate.
        public var restBytes: Int
        public var restPackedBytes: Int
        public var types: [PackedModel.TypeSummary]
        public var seconds: Double
        /// Time to decode the packed bytes back (checked against the SHA-256 before the file is written).
        public var decodeSeconds: Double
    }

    public struct UnpackSummary: Codable, Sendable {
        public var input: String
        public var output: String
        public var packedBytes: Int
        public var originalBytes: Int
        public var sha256: String
        public var seconds: Double
    }

    /// Packs the GGUF file `input` into `output`, after checking that the packed bytes decode to the input exactly.
    /// `progress(done, total)` sees tensor bytes coded.
    public static func pack(input: String, output: String, progress: (Int, Int) -> Void = { _, _ in }) throws -> PackSummary {
        try checkOutput(output, input: input)
        let began = Date()
        let mapped: MappedFile
        do { mapped = try MappedFile(path: input) } catch { throw ZipError.badInput(path: input, reason: "cannot read (\(error))") }
        guard !PackedModel.isPacked(mapped.bytes) else {
            throw ZipError.badInput(path: input, reason: "already packed (unpack it first)")
        }
        let file = try GGUFFile(file: mapped)
        let sha = Array(SHA256.hash(data: mapped.bytes))
        let (bytes, summary) = try PackedModel.encode(file, sha256: sha, progress: progress)
        let decodeBegan = Date()
        let decoded = try bytes.withUnsafeBytes { try PackedModel.decode($0, path: output) }
        let decodeSeconds = Date().timeIntervalSince(decodeBegan)
        guard decoded.count == mapped.count, Array(SHA256.hash(data: decoded.bytes)) == sha else {
            throw ZipError.decodedMismatch(path: input, reason: "the packed form did not decode to the same bytes; nothing was written")
        }
        try AtomicFileWriter.write(bytes, to: output)
        return PackSummary(input: input, output: output, originalBytes: mapped.count, packedBytes: bytes.count,
                           ratio: Double(bytes.count) / Double(max(mapped.count, 1)), sha256: hex(sha),
                           restBytes: summary.restBytes, restPackedBytes: summary.restPackedBytes, types: summary.types,
                           seconds: Date().timeIntervalSince(began), decodeSeconds: decodeSeconds)
    }

    /// Restores the original file of the packed `input` into `output`, byte for byte (its SHA-256 checked).
    public static func unpack(input: String, output: String) throws -> UnpackSummary {
        try checkOutput(output, input: input)
        let began = Date()
        let mapped: MappedFile
        do { mapped = try MappedFile(path: input) } catch { throw ZipError.badInput(path: input, reason: "cannot read (\(error))") }
        guard PackedModel.isPacked(mapped.bytes) else {
            throw ZipError.notAContainer(path: input, reason: "not a packed model (no SQPK signature)")
        }
        let header = try PackedModel.header(mapped.bytes, path: input)
        let decoded = try PackedModel.decode(mapped.bytes, path: input)
        let sha = Array(SHA256.hash(data: decoded.bytes))
        guard sha == header.sha256 else {
            throw ZipError.decodedMismatch(path: input, reason: "the decoded file has sha256 \(hex(sha)), the original had \(hex(header.sha256))")
        }
        let writer = try AtomicFileWriter(destination: output)
        try writer.write(decoded.bytes)
        try writer.commit()
        return UnpackSummary(input: input, output: output, packedBytes: mapped.count, originalBytes: decoded.count,
                             sha256: hex(sha), seconds: Date().timeIntervalSince(began))
    }

    /// Rejects an output that is the input itself or a directory, before any work.
    public static func checkOutput(_ output: String, input: String) throws {
        guard !isSameFile(output, input) else {
            throw ZipError.badOutput(path: output, reason: "the output is the input file; choose another path")
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ZipError.badOutput(path: output, reason: "is a directory")
        }
    }
}
