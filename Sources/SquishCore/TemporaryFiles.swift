#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Files and folders that must not outlive an interrupted run: `AtomicFileWriter`'s temporary files and scratch
/// folders register here while they exist. Once a program calls `removeOnSignals()`, SIGINT, SIGTERM and SIGHUP first
/// remove everything registered, then end the process by the same signal (so a shell still sees 130 for Ctrl-C).
public enum TemporaryFiles {
    /// The registry (paths and folders); every access holds `lock`.
    private final class Registry: @unchecked Sendable {  // every member is read and written under `lock`
        let lock = NSLock()
        var files = Set<String>()
        var directories = Set<String>()
    }
    private static let registry = Registry()

    /// Registers a temporary file to remove if the process is interrupted.
    public static func register(file path: String) {
        registry.lock.lock(); defer { registry.lock.unlock() }
        registry.files.insert(path)
    }

    /// Registers a scratch folder to remove (with its contents) if the process is interrupted.
    public static func register(directory path: String) {
        registry.lock.lock(); defer { registry.lock.unlock() }
        registry.directories.insert(path)
    }

    /// Forgets a file or folder (it was committed, renamed or removed by its owner).
    public static func unregister(_ path: String) {
        registry.lock.lock(); defer { registry.lock.unlock() }
        registry.files.remove(path)
        registry.directories.remove(path)
    }

    /// What is registered now (for tests).
    public static var registered: [String] {
        registry.lock.lock(); defer { registry.lock.unlock() }
        return (registry.files.union(registry.directories)).sorted()
    }

    /// Removes everything registered. The lock is held throughout, so no writer can register (or commit) meanwhile.
    public static func removeAll() {
        registry.lock.lock()
        defer { registry.lock.unlock() }
        for f in registry.files { unlink(f) }
        for d in registry.directories { try? FileManager.default.removeItem(atPath: d) }
        registry.files.removeAll()
        registry.directories.removeAll()
    }

    /// Installs the handlers for SIGINT, SIGTERM and SIGHUP (once; later calls do nothing; a signal that is ignored
    /// when the program starts stays ignored). The handler itself only
    /// writes the signal's number to a pipe (all a signal handler may safely do); a thread reading the pipe removes
    /// the registered files, restores the default action and raises the signal again.
    public static func removeOnSignals() {
        registry.lock.lock()
        defer { registry.lock.unlock() }
        guard signalPipeWriteEnd < 0 else { return }
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return }
        signalPipeWriteEnd = fds[1]
        let readEnd = fds[0]
        let thread = Thread {
            var byte: UInt8 = 0
            while true {
                let n = read(readEnd, &byte, 1)
                if n < 0 && errno == EINTR { continue }
                guard n == 1 else { return }
                let sig = Int32(byte)
                removeAll()
                // Die of the same signal: default action, unblocked here, sent to the process.
                signal(sig, SIG_DFL)
                var set = sigset_t()
                sigemptyset(&set)
                sigaddset(&set, sig)
                pthread_sigmask(SIG_UNBLOCK, &set, nil)
                kill(getpid(), sig)
                usleep(100_000)
                _exit(128 + sig)  // only if every thread blocks the signal
            }
        }
        thread.stackSize = 1 << 18
        thread.start()
        for sig in handledSignals {
            // A signal the parent set to be ignored (nohup, background jobs of a script) stays ignored.
            let previous = signal(sig, temporaryFilesSignalHandler)
            if let previous, unsafeBitCast(previous, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) { signal(sig, SIG_IGN) }
        }
    }

    static let handledSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP]
}

/// Write end of the pipe the signal handler reports to (-1 until `TemporaryFiles.removeOnSignals()`); set once,
/// before any handler is installed, and only read afterwards.
nonisolated(unsafe) private var signalPipeWriteEnd: Int32 = -1

/// The signal handler: async-signal-safe (one `write` of one byte).
private func temporaryFilesSignalHandler(_ sig: Int32) {
    var byte = UInt8(truncatingIfNeeded: sig)
    let saved = errno
    _ = write(signalPipeWriteEnd, &byte, 1)
    errno = saved
}
