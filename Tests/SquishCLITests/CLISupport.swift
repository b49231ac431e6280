#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import SquishCore
import SquishData
import SquishEval
import SquishFormats

/// What one run of the `squish` binary did.
struct CLIResult: CustomStringConvertible {
    /// Exit status, or nil when a signal ended the process.
    let status: Int32?
    /// The signal that ended the process, if one did.
    let signal: Int32?
    let stdout: String
    let stderr: String
    /// Peak resident memory of the process in kilobytes, when the run measured it (`CLI.run(measureMemory:)`).
    var maxRSSKilobytes: Int?

    var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }
    var description: String { "status \(status.map(String.init) ?? "-") signal \(signal.map(String.init) ?? "-")\nstdout: \(stdout.prefix(2000))\nstderr: \(stderr.prefix(2000))" }

    /// The parsed JSON on stdout (an object).
    func json() throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any] else {
            throw CLISetupError("stdout is not a JSON object: \(stdout.prefix(300))")
        }
        return object
    }
}

struct CLISetupError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Runs the built `squish` executable and builds the small inputs the tests give it.
enum CLI {
    /// The `squish` executable next to the test bundle (both are built by `swift build --build-tests`), else the
    /// package's `.build/release` or `.build/debug`; `SQUISH_BINARY` overrides.
    static let binary: String = {
        if let b = ProcessInfo.processInfo.environment["SQUISH_BINARY"] { return b }
        var candidates: [String] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
            // The runner may sit inside the .xctest bundle directory.
            for _ in 0 ..< 3 {
                candidates.append(dir.appendingPathComponent("squish").path)
                dir = dir.deletingLastPathComponent()
            }
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates += [".build/release/squish", ".build/debug/squish"].map { root.appendingPathComponent($0).path }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates.last!
    }()

    /// Runs `squish args` with stdin from `stdin` (default: empty), extra environment `env`; waits for it.
    @discardableResult
    static func run(_ args: [String], stdin: String = "", stdinBytes: [UInt8]? = nil, env: [String: String] = [:],
                    timeout: Double = 120) throws -> CLIResult {
        let p = try start(args, stdin: stdinBytes ?? Array(stdin.utf8), env: env)
        return try p.wait(timeout: timeout)
    }

    /// Runs `squish args` under GNU time (`/usr/bin/time`, Debian's `time` package) and returns its peak resident
    /// memory too. wait4's rusage cannot tell it here: posix_spawn starts the child in the parent's address space
    /// (CLONE_VM), and Linux carries that address space's high-water mark into the child's.
    static func runMeasuringMemory(_ args: [String]) throws -> CLIResult {
        let marker = "squish-test-max-rss-kb"
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/time") else {
            throw CLISetupError("/usr/bin/time is missing (apt-get install time)")
        }
        var r = try start(["-f", "\(marker) %M", binary] + args, executable: "/usr/bin/time").wait()
        let lines = r.stderrLines
        guard let last = lines.last, last.hasPrefix(marker), let kb = Int(last.dropFirst(marker.count + 1)) else {
            throw CLISetupError("no memory figure from /usr/bin/time: \(r)")
        }
        r = CLIResult(status: r.status, signal: r.signal, stdout: r.stdout,
                      stderr: lines.dropLast().map { $0 + "\n" }.joined(), maxRSSKilobytes: kb)
        return r
    }

    /// A started process, with its output going to files.
    final class Running {
        let pid: pid_t
        let dir: String

        init(pid: pid_t, dir: String) {
            self.pid = pid
            self.dir = dir
        }

        func signal(_ sig: Int32) { kill(pid, sig) }

        /// Waits for the process (killing it after `timeout` seconds) and collects its output.
        func wait(timeout: Double = 120) throws -> CLIResult {
            defer { try? FileManager.default.removeItem(atPath: dir) }
            var status: Int32 = 0
            var usage = rusage()
            let deadline = Date().addingTimeInterval(timeout)
            while true {
                let r = wait4(pid, &status, WNOHANG, &usage)
                if r == pid { break }
                if r < 0 && errno != EINTR { throw CLISetupError("wait4 failed: \(errno)") }
                if Date() > deadline {
                    kill(pid, SIGKILL)
                    _ = wait4(pid, &status, 0, &usage)
                    throw CLISetupError("squish did not finish within \(timeout) s")
                }
                usleep(5000)
            }
            let out = String(decoding: FileManager.default.contents(atPath: dir + "/stdout") ?? Data(), as: UTF8.self)
            let err = String(decoding: FileManager.default.contents(atPath: dir + "/stderr") ?? Data(), as: UTF8.self)
            // <sys/wait.h>: exited when the low 7 bits are 0 (status in bits 8-15), else killed by that signal.
            let low = status & 0x7F
            return CLIResult(status: low == 0 ? (status >> 8) & 0xFF : nil, signal: low == 0 ? nil : low, stdout: out,
                             stderr: err, maxRSSKilobytes: nil)
        }
    }

    static func start(_ args: [String], stdin: [UInt8] = [], env: [String: String] = [:], executable: String = binary) throws -> Running {
        let dir = NSTemporaryDirectory() + "squish-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data(stdin).write(to: URL(fileURLWithPath: dir + "/stdin"))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, dir + "/stdin", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, dir + "/stdout", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, dir + "/stderr", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var environment = ProcessInfo.processInfo.environment
        for (k, v) in env { environment[k] = v }
        let argv = ([executable] + args).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        // The child starts with no signal blocked and the default actions (the test runner's threads may block or
        // ignore some, and a child inherits both).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), defaults = sigset_t()
        sigemptyset(&none)
        sigemptyset(&defaults)
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGPIPE] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let r = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard r == 0 else { throw CLISetupError("cannot start \(executable): \(String(cString: strerror(r)))") }
        return Running(pid: pid, dir: dir)
    }

    // MARK: Fixtures

    /// A fresh temporary directory, removed by the caller.
    static func scratch() throws -> String {
        let dir = NSTemporaryDirectory() + "squish-cli-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// The cached default model (its tokenizer is copied into the small models).
    static func defaultModel() throws -> String {
        guard FileManager.default.fileExists(atPath: DefaultModel.path) else {
            throw CLISetupError("the default model is not cached at \(DefaultModel.path): run `squish fetch` first")
        }
        return DefaultModel.path
    }

    /// Shape of the small model: 2 layers of width 64, a trained context of 1024.
    static let tinyShape = SyntheticModelShape(name: "tiny", dim: 64, hiddenDim: 128, layers: 2, heads: 4, kvHeads: 2,
                                               contextLength: 1024)

    /// Where the fixtures shared by the tests live (removed when the test process exits).
    static let fixtureDirectory = NSTemporaryDirectory() + "squish-cli-fixtures-\(getpid())"

    /// A small Llama GGUF with random Q8_0 weights and the default model's tokenizer (written once per process).
    static let tinyModel: Result<String, Error> = Result {
        let dir = fixtureDirectory
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: CLI.fixtureDirectory) }
        let path = dir + "/tiny.gguf"
        if !FileManager.default.fileExists(atPath: path) {
            _ = try SyntheticModel.write(shape: tinyShape, type: .q8_0, tokenizerFrom: GGUFFile(path: try defaultModel()), to: path, seed: 7)
        }
        return path
    }

    static func tiny() throws -> String { try tinyModel.get() }

    /// The small model with `tensor`'s values replaced by NaN (an f32 tensor), written to `path`.
    static func poisoned(_ path: String, tensor: String = "output_norm.weight") throws {
        let source = try GGUFFile(path: try tiny())
        var w = GGUFWriter(copying: source)
        guard let t = source.tensor(named: tensor) else { throw CLISetupError("no tensor \(tensor)") }
        let nan = [Float](repeating: .nan, count: t.elementCount).withUnsafeBytes { Array($0) }
        w.replaceTensor(name: tensor, shape: t.shape, type: .f32, source: .bytes(nan))
        try w.write(to: path)
    }

    /// About `bytes` of English text (Pride and Prejudice from the cache when there, else a fixed paragraph).
    static func text(_ path: String, bytes: Int = 6000) throws {
        var s = (try? String(contentsOfFile: Corpora.austenPath("prideprejudice"), encoding: .utf8)) ?? ""
        if s.isEmpty {
            let paragraph = "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. "
            s = String(repeating: paragraph, count: bytes / paragraph.utf8.count + 1)
        }
        try String(decoding: Array(s.utf8.prefix(bytes)), as: UTF8.self).write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// A GGUF file from raw parts: header, then each key with a type and encoded value (for hostile files).
    static func rawGGUF(tensorCount: UInt64 = 0, metadata: [(key: [UInt8], type: UInt32, value: [UInt8])]) -> [UInt8] {
        var b = Array("GGUF".utf8) + le(UInt32(3)) + le(tensorCount) + le(UInt64(metadata.count))
        for m in metadata { b += le(UInt64(m.key.count)) + m.key + le(m.type) + m.value }
        return b
    }

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    /// A sparse file of `size` bytes that starts with `prefix` (the rest reads as zeros and takes no disk).
    static func sparse(_ path: String, prefix: [UInt8], size: Int) throws {
        _ = FileManager.default.createFile(atPath: path, contents: Data(prefix))
        guard truncate(path, off_t(size)) == 0 else { throw CLISetupError("cannot extend \(path)") }
    }
}

extension CLIResult {
    /// A runtime error: exit status 1, and the last stderr line is the only one that starts with "Error: " (other
    /// lines are progress notes), with no raw control characters.
    func expectError(_ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(status == 1, "\(self)", sourceLocation: sourceLocation)
        let errors = stderrLines.filter { $0.hasPrefix("Error: ") }
        #expect(errors.count == 1 && stderrLines.last?.hasPrefix("Error: ") == true, "\(self)", sourceLocation: sourceLocation)
        #expect(errors.first?.contains(fragment) == true, "expected '\(fragment)' in: \(stderr)", sourceLocation: sourceLocation)
        #expect(!stderr.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" }, "raw control characters in: \(stderr.debugDescription)",
                sourceLocation: sourceLocation)
    }

    /// A usage error: exit status 64 and a first stderr line "Error: ..." containing `fragment`.
    func expectUsageError(_ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(status == 64, "\(self)", sourceLocation: sourceLocation)
        #expect(stderrLines.first?.hasPrefix("Error: ") == true, "\(self)", sourceLocation: sourceLocation)
        #expect(stderrLines.first?.contains(fragment) == true, "expected '\(fragment)' in: \(stderr)", sourceLocation: sourceLocation)
    }

    func expectSuccess(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(status == 0, "\(self)", sourceLocation: sourceLocation)
    }
}

/// The keys of a JSON object, for shape checks.
func keys(_ object: Any?) -> Set<String> { Set((object as? [String: Any])?.keys.map { $0 } ?? []) }
