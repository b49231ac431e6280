import Crypto
import Foundation
import SquishCore

/// Running the few external tools the fetchers need (pip, apt-get, dpkg-deb, tar), and file helpers.
enum Shell {
    /// Runs `arguments[0]` (looked up on PATH) with the rest as arguments; returns combined stdout+stderr.
    @discardableResult
    static func run(_ arguments: [String], in directory: String? = nil, hint: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw DataError.commandFailed(command: arguments.joined(separator: " "), status: -1, output: "\(error)", hint: hint)
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let output = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw DataError.commandFailed(command: arguments.joined(separator: " "), status: process.terminationStatus,
                                          output: output, hint: hint)
        }
        return output
    }

    /// Lowercase hex SHA-256 of a file's contents (memory-mapped, not read into memory).
    static func sha256(of path: String) throws -> String {
        let file = try MappedFile(path: path)
        return SHA256.hash(data: file.bytes).map { String(format: "%02x", $0) }.joined()
    }

    static func sha256(of bytes: some DataProtocol) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    static func makeDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw DataError.io(path: path, reason: "cannot create directory (\(error.localizedDescription)); set SQUISH_CACHE to a writable directory")
        }
    }

    /// A fresh scratch directory next to `near` (same file system, so results can be renamed into place); removed
    /// with `remove`, or by `TemporaryFiles` if a signal interrupts the process.
    static func scratchDirectory(near directory: String) throws -> String {
        try makeDirectory(directory)
        sweepStaleScratchDirectories(in: directory)
        let path = directory + "/.partial-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))"
        try makeDirectory(path)
        TemporaryFiles.register(directory: path)
        return path
    }

    /// Removes `.partial-PID-XXXXXXXX` folders in `directory` left by a process that is gone (killed while fetching)
    /// and untouched for `AtomicFileWriter.staleAfterSeconds`; only this user's, only of this naming.
    static func sweepStaleScratchDirectories(in directory: String) {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for entry in entries where entry.hasPrefix(".partial-") {
            let parts = entry.dropFirst(".partial-".count).split(separator: "-")
            guard parts.count == 2, let pid = pid_t(parts[0]), pid > 0, pid != getpid(), parts[1].count == 8 else { continue }
            let path = directory + "/" + entry
            var st = stat()
            guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == geteuid() else { continue }
            guard kill(pid, 0) != 0, errno == ESRCH,
                  Date().timeIntervalSince1970 - Double(st.st_mtim.tv_sec) >= AtomicFileWriter.staleAfterSeconds else { continue }
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
        TemporaryFiles.unregister(path)
    }

    /// Moves `source` to `destination`, replacing nothing: if `destination` appeared meanwhile it is kept.
    static func moveIntoPlace(_ source: String, _ destination: String) throws {
        if rename(source, destination) != 0 {
            if exists(destination) { remove(source); return }
            throw DataError.io(path: destination, reason: "cannot move the fetched data into place (errno \(errno))")
        }
    }
}
