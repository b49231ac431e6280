#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A read-only view of a whole file's bytes, memory-mapped (or, for in-memory data, owned).
/// Readers take `bytes` and never read outside it.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    /// The file's bytes: [count], read-only.
    public let bytes: UnsafeRawBufferPointer
    private let isMapped: Bool

    /// Maps the file at `path` read-only.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw CoreError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw CoreError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw CoreError.cannotOpen(path: path, reason: "not a regular file") }
        let size = Int(st.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            isMapped = false
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw CoreError.cannotMap(path: path, reason: String(cString: strerror(errno))) }
        bytes = UnsafeRawBufferPointer(start: p, count: size)
        isMapped = true
    }

    /// Wraps a copy of `data` (for tests and for bytes that are not on disk); `path` names it in errors.
    public init(data: some Collection<UInt8>, path: String = "<memory>") {
        self.path = path
        let count = data.count
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 64)
        // One copy for contiguous data (arrays, Data), element by element otherwise.
        let copied: Bool? = data.withContiguousStorageIfAvailable { source in
            if let base = source.baseAddress, count > 0 { buffer.baseAddress!.copyMemory(from: base, byteCount: count) }
            return true
        }
        if copied == nil { _ = buffer.initializeMemory(as: UInt8.self, from: data) }
        bytes = UnsafeRawBufferPointer(start: buffer.baseAddress, count: count)
        isMapped = false
    }

    /// Takes ownership of the first `count` bytes of `buffer` (from `UnsafeMutableRawBufferPointer.allocate`; freed
    /// with this object), e.g. a file decoded into memory; `path` names it in errors.
    public init(adopting buffer: UnsafeMutableRawBufferPointer, count: Int, path: String) {
        precondition(count >= 0 && count <= buffer.count)
        self.path = path
        bytes = UnsafeRawBufferPointer(start: buffer.baseAddress, count: count)
        isMapped = false
    }

    public var count: Int { bytes.count }

    /// Releases the resident pages inside `range` (the whole pages it covers): they are read back from the file when
    /// touched again, so a reader that walks a large file once keeps only a window of it in memory. Does nothing
    /// for in-memory data.
    public func dropPages(_ range: Range<Int>) {
        guard isMapped, let base = bytes.baseAddress, range.lowerBound >= 0, range.upperBound <= bytes.count else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = (range.lowerBound + page - 1) / page * page
        let hi = range.upperBound / page * page
        guard hi > lo else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + lo), hi - lo, MADV_DONTNEED)
    }
    /// True when `bytes` is a read-only file mapping (pages can be dropped and are read back from the file).
    public var isMemoryMapped: Bool { isMapped }

    deinit {
        guard let base = bytes.baseAddress else { return }
        if isMapped {
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        } else {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }
}
