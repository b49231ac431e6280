import Foundation
import SquishCore
import SquishData
import SquishEval
import SquishFormats
import SquishModel

/// Helpers every test target shares: cached data, scratch directories, the Python reference scripts, a seeded
/// generator and tiny models. Each target's TestSupport.swift re-exports this module and adds its own helpers.
public enum TestSupport {
    /// The cached default model; fails the test with instructions when it is absent.
    public static func defaultModelPath() throws -> String {
        let path = DefaultModel.path
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestSetupError("the default model is not cached at \(path): run `squish fetch` first")
        }
        return path
    }

    /// An Austen novel from the cached corpora; fails the test with instructions when it is absent.
    public static func austenPath(_ novel: String) throws -> String {
        let path = Corpora.austenPath(novel)
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestSetupError("the corpora are not cached at \(path): run `squish fetch` first")
        }
        return path
    }

    /// The first `bytes` bytes of an Austen novel, cut back to a line end.
    public static func austen(_ novel: String, bytes: Int) throws -> [UInt8] {
        let path = try austenPath(novel)
        guard let data = FileManager.default.contents(atPath: path) else { throw TestSetupError("\(path): cannot read the file") }
        var text = [UInt8](data.prefix(bytes))
        if let nl = text.lastIndex(of: 0x0A) { text = Array(text[...nl]) }
        return text
    }

    /// A fresh temporary directory, removed by the caller.
    public static func scratchDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "squish-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Tests/Python/<name>, located from this source file.
    public static func pythonScript(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Python").appendingPathComponent(name).path
    }

    /// Runs `python3 script args...`, returns stdout; throws with stderr on failure.
    @discardableResult
    public static func runPython(_ script: String, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", pythonScript(script)] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw TestSetupError("python3 \(script) failed (\(p.terminationStatus)): \(String(decoding: e, as: UTF8.self))")
        }
        return String(decoding: o, as: UTF8.self)
    }
}

/// Something a test needs is missing (a cached file, a Python package); the message says how to get it.
public struct TestSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// The seeded generator the library uses (SquishEval's SplitMix64), so tests are reproducible.
public typealias SplitMix64 = SplitMix

extension SplitMix {
    /// Approximately normal (sum of 4 uniforms), mean 0, standard deviation `sigma`.
    public mutating func normal(_ sigma: Float) -> Float {
        var s: Float = 0
        for _ in 0 ..< 4 { s += Float(next() >> 40) / Float(1 << 24) }
        return (s - 2) * sigma * 1.732
    }
}
