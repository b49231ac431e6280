#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Writes a file atomically: bytes go to a temporary file next to the destination, which is
/// renamed over the destination only by `commit()`. If the writer is dropped without `commit()`
/// (an error, a full disk), the temporary file is removed and the destination is untouched.
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
        var template = Array("\(directory)/.\(name).tmp-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw CoreError.writeFailed(path: destination, reason: String(cString: strerror(errno))) }
        self.fd = fd
        self.temporaryPath = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        fchmod(fd, 0o644)
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
            throw CoreError.writeFailed(path: destination, reason: reason)
        }
        committed = true
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !committed { unlink(temporaryPath) }
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
