#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Writes a file atomically: bytes go to a temporary file next to the destination, which is
/// renamed over the destination only by `commit()`. If the writer is dropped without `commit()`
/// (an error, a full disk), the temporary file is removed and the destination is untouched; if the process is
/// interrupted by a signal, `TemporaryFiles` removes it. The temporary file is `.NAME.tmp-PID-XXXXXX` beside the
/// destination; ones left by a process that no longer runs (killed, or a machine that lost power) are swept when
/// the same destination is written again (see `sweepStaleTemporaryFiles`).
public final class AtomicFileWriter {
    public let destination: String
    public let temporaryPath: String
    private var fd: Int32
    private var committed = false
    public private(set) var bytesWritten: Int = 0

    public init(destination: String) throws {
        self.destination = destination
        let dir = (destination as NSString).deletingLastPathComponent
        let directory = dir.isEmpty ? "." : dir
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw CoreError.missingDirectory(path: directory)
        }
        let name = (destination as NSString).lastPathComponent
        Self.sweepStaleTemporaryFiles(directory: directory, name: name)
        var template = Array("\(directory)/.\(name).tmp-\(getpid())-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw CoreError.writeFailed(path: destination, reason: String(cString: strerror(errno))) }
        self.fd = fd
        self.temporaryPath = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        TemporaryFiles.register(file: temporaryPath)
        fchmod(fd, 0o644)
    }

    /// How old a temporary file of a process that is gone must be before it is swept (a process in another PID
    /// namespace or on another machine sharing the folder is invisible to `kill(pid, 0)`, but it writes as it goes).
    public static let staleAfterSeconds: Double = 600
    /// Temporary files without a process id (the naming of earlier versions) are swept after this long.
    public static let legacyStaleAfterSeconds: Double = 3600

    /// Removes temporary files of this writer's own naming for `directory/name` that no running process owns:
    /// `.NAME.tmp-PID-XXXXXX` whose PID is not a live process and that were last modified at least
    /// `staleAfterSeconds` ago, and `.NAME.tmp-XXXXXX` (earlier versions) older than `legacyStaleAfterSeconds`.
    /// Only regular files of the current user beside this destination are considered. Returns the removed paths.
    @discardableResult
    public static func sweepStaleTemporaryFiles(directory: String, name: String, now: Date = Date()) -> [String] {
        let prefix = ".\(name).tmp-"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var removed: [String] = []
        func isStemChar(_ c: Character) -> Bool { c.isASCII && (c.isLetter || c.isNumber) }
        for entry in entries where entry.hasPrefix(prefix) {
            let rest = entry.dropFirst(prefix.count)
            let parts = rest.split(separator: "-", omittingEmptySubsequences: false)
            var pid: pid_t?
            if parts.count == 2, let p = pid_t(parts[0]), p > 0, parts[1].count == 6, parts[1].allSatisfy(isStemChar) {
                pid = p
            } else if !(parts.count == 1 && rest.count == 6 && rest.allSatisfy(isStemChar)) {
                continue
            }
            let path = directory + "/" + entry
            var st = stat()
            guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == geteuid() else { continue }
            #if canImport(Glibc)
            let modified = st.st_mtim.tv_sec
            #else
            let modified = st.st_mtimespec.tv_sec
            #endif
            let age = now.timeIntervalSince1970 - Double(modified)
            if let pid {
                guard pid != getpid(), kill(pid, 0) != 0, errno == ESRCH, age >= staleAfterSeconds else { continue }
            } else {
                guard age >= legacyStaleAfterSeconds else { continue }
            }
            if unlink(path) == 0 { removed.append(path) }
        }
        return removed
    }

    /// Appends bytes; throws (naming the destination) on a short write, e.g. a full disk.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = Glibc_write(fd, p, left)
            if n < 0 {
                if errno == EINTR { continue }
                throw CoreError.writeFailed(path: destination, reason: String(cString: strerror(errno)))
            }
            if n == 0 { throw CoreError.writeFailed(path: destination, reason: "no space written") }
            p += n
            left -= n
            bytesWritten += n
        }
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    public func write(_ string: String) throws {
        try write(Array(string.utf8))
    }

    /// Flushes to disk and renames the temporary file over the destination.
    public func commit() throws {
        guard !committed else { return }
        if fsync(fd) != 0 {
            throw CoreError.writeFailed(path: destination, reason: String(cString: strerror(errno)))
        }
        close(fd)
        fd = -1
        guard rename(temporaryPath, destination) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporaryPath)
            TemporaryFiles.unregister(temporaryPath)
            throw CoreError.writeFailed(path: destination, reason: reason)
        }
        committed = true
        TemporaryFiles.unregister(temporaryPath)
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !committed {
            unlink(temporaryPath)
            TemporaryFiles.unregister(temporaryPath)
        }
    }

    /// Writes `bytes` to `path` atomically in one call.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        let writer = try AtomicFileWriter(destination: path)
        try writer.write(bytes)
        try writer.commit()
    }
}

@inline(__always)
private func Glibc_write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}

/// True when `a` and `b` name the same file: the same path once symbolic links are resolved, or (both existing) the
/// same device and inode. Writers use it so that an output never replaces its own input.
public func isSameFile(_ a: String, _ b: String) -> Bool {
    let pa = URL(fileURLWithPath: a).resolvingSymlinksInPath().standardizedFileURL.path
    let pb = URL(fileURLWithPath: b).resolvingSymlinksInPath().standardizedFileURL.path
    if pa == pb { return true }
    guard let x = try? FileManager.default.attributesOfItem(atPath: a), let y = try? FileManager.default.attributesOfItem(atPath: b),
          let nx = x[.systemFileNumber] as? Int, let ny = y[.systemFileNumber] as? Int,
          let dx = x[.systemNumber] as? Int, let dy = y[.systemNumber] as? Int else { return false }
    return nx == ny && dx == dy
}

extension FileManager {
    /// Whether `path` names a directory (following symbolic links).
    public func isDirectory(_ path: String) -> Bool {
        var d: ObjCBool = false
        return fileExists(atPath: path, isDirectory: &d) && d.boolValue
    }
}
