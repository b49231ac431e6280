import Foundation
import SquishCore
import SquishData
import SquishFormats
import SquishModel
import Testing

enum TestSupport {
    /// The cached default model; fails the test with instructions when it is absent.
    static func defaultModelPath() throws -> String {
        let path = DefaultModel.path
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestSetupError("the default model is not cached at \(path): run `squish fetch` first")
        }
        return path
    }

    /// A fresh temporary directory, removed by the caller.
    static func scratchDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "squish-zip-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// The first `bytes` bytes of an Austen novel from the cached corpora, cut back to a line end.
    static func austen(_ novel: String, bytes: Int) throws -> [UInt8] {
        let path = Corpora.austenPath(novel)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TestSetupError("\(path) is not cached: run `squish fetch` first")
        }
        var text = [UInt8](data.prefix(bytes))
        if let nl = text.lastIndex(of: 0x0A) { text = Array(text[...nl]) }
        return text
    }
}

struct TestSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// SplitMix64, so that tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Approximately normal (sum of 4 uniforms), mean 0, standard deviation `sigma`.
    mutating func normal(_ sigma: Float) -> Float {
        var s: Float = 0
        for _ in 0 ..< 4 { s += Float(next() >> 40) / Float(1 << 24) }
        return (s - 2) * sigma * 1.732
    }
}
