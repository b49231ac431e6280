import Foundation
import Testing
import SquishFormats

/// Inputs for the K-quant encoder tests, deterministic.
enum KQuantInputs {
    static let kTypes: [GGMLType] = [.q2_K, .q3_K, .q4_K, .q5_K, .q6_K]

    static func gaussian(_ n: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0 ..< n).map { _ in
            // Box-Muller
            let u1 = max(Double(rng.next() >> 11) / Double(1 << 53), 1e-300), u2 = Double(rng.next() >> 11) / Double(1 << 53)
            return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
        }
    }

    /// Gaussian weights of scale 0.02 with 1% outliers of 10-30x (the shape of LLM weight rows).
    static func withOutliers(_ n: Int, seed: UInt64) -> [Float] {
        var x = gaussian(n, seed: seed).map { $0 * 0.02 }
        var rng = SplitMix64(seed: seed ^ 0xABCD)
        for _ in 0 ..< n / 100 {
            let i = Int(rng.next() % UInt64(n))
            x[i] *= Float(10 + rng.next() % 21)
        }
        return x
    }
}

/// One encoded case and what gguf-py and the naive reference make of it.
struct KQuantCase {
    let name: String, type: GGMLType, input: [Float], bytes: [UInt8]
    var ggufOutput: [Float] = [], naiveOutput: [Float] = []
}

enum KQuantReference {
    static let cases = Result { try run(build()) }

    static func build() throws -> [KQuantCase] {
        var out: [KQuantCase] = []
        let n = 256 * 64
        let inputs: [(String, [Float])] = [
            ("outliers", KQuantInputs.withOutliers(n, seed: 1)),
            ("gaussian", KQuantInputs.gaussian(n, seed: 2)),
            ("uniform", KQuantInputs.gaussian(n, seed: 3).map { sin($0 * 10) }),
            ("positive", KQuantInputs.gaussian(n, seed: 4).map { abs($0) + 0.5 }),
        ]
        for t in KQuantInputs.kTypes {
            for (name, x) in inputs {
                out.append(KQuantCase(name: "\(t.name)-\(name)", type: t, input: x, bytes: try Codecs.quantize(t, x)))
            }
        }
        return out
    }

    /// Writes the cases, runs Tests/Python/kquant_reference.py over them, reads its outputs back.
    static func run(_ cases: [KQuantCase]) throws -> [KQuantCase] {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var manifest: [[String: Any]] = []
        for c in cases {
            try c.input.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: dir + "/\(c.name).in.f32")) }
            try Data(c.bytes).write(to: URL(fileURLWithPath: dir + "/\(c.name).bytes"))
            manifest.append(["name": c.name, "type": c.type.name, "count": c.input.count,
                             "input": "\(c.name).in.f32", "bytes": "\(c.name).bytes"])
        }
        try JSONSerialization.data(withJSONObject: manifest).write(to: URL(fileURLWithPath: dir + "/manifest.json"))
        try TestSupport.runPython("kquant_reference.py", [dir])
        func floats(_ file: String) throws -> [Float] {
            let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + file))
            return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        return try cases.map { c in
            var c = c
            c.ggufOutput = try floats("\(c.name).gguf.f32")
            c.naiveOutput = try floats("\(c.name).naive.f32")
            return c
        }
    }
}

func rmse(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var s = 0.0
    for i in a.indices { let d = Double(a[i]) - Double(b[i]); s += d * d }
    return (s / Double(a.count)).squareRoot()
}

@Suite struct KQuantEncoderTests {
    @Test func decodesIdenticallyWithGGUFPy() throws {
        for c in try KQuantReference.cases.get() {
            let ours = try c.bytes.withUnsafeBytes { try Codecs.dequantize(c.type, $0, count: c.input.count) }
            expectSameFloats(ours, c.ggufOutput, "\(c.name) decoded by gguf-py")
            #expect(ours.allSatisfy { $0.isFinite }, "\(c.name)")
        }
    }

    @Test func beatsNaiveReference() throws {
        var byType: [GGMLType: Double] = [:]
        for c in try KQuantReference.cases.get() {
            let ours = try c.bytes.withUnsafeBytes { try Codecs.dequantize(c.type, $0, count: c.input.count) }
            let e = rmse(ours, c.input), naive = rmse(c.naiveOutput, c.input)
            #expect(e <= naive, "\(c.name): RMSE \(e) vs naive \(naive)")
            if c.name.hasSuffix("-outliers") { byType[c.type] = e }
        }
        let ladder = KQuantInputs.kTypes.map { byType[$0]! }
        for i in 1 ..< ladder.count {
            #expect(ladder[i] < ladder[i - 1], "RMSE \(KQuantInputs.kTypes[i]) \(ladder[i]) vs \(KQuantInputs.kTypes[i - 1]) \(ladder[i - 1])")
        }
    }

    /// The encoder's own `rounded` output is exactly what the decoder produces.
    @Test func roundedValuesMatchDecoder() throws {
        let x = KQuantInputs.withOutliers(256 * 4, seed: 9)
        for t in KQuantInputs.kTypes {
            let format = try #require(KQuantFormat(t))
            var bytes = [UInt8](repeating: 0, count: 4 * t.blockBytes)
            var rounded = [Float](repeating: 0, count: x.count)
            x.withUnsafeBufferPointer { xs in
                bytes.withUnsafeMutableBytes { b in
                    rounded.withUnsafeMutableBufferPointer { r in
                        for k in 0 ..< 4 {
                            format.encode(xs.baseAddress! + 256 * k, into: b.baseAddress! + k * t.blockBytes,
                                          rounded: r.baseAddress! + 256 * k)
                        }
                    }
                }
            }
            let decoded = try bytes.withUnsafeBytes { try Codecs.dequantize(t, $0, count: x.count) }
            expectSameFloats(rounded, decoded, "\(t) rounded vs decoded")
            let direct = try Codecs.quantize(t, x)
            #expect(bytes == direct)
        }
    }

    @Test func edgeCases() throws {
        let constants: [Float] = [1.5, -2.5, 0.001, 7, -1e-3]
        for t in KQuantInputs.kTypes {
            // All zeros decode to zeros.
            let zeros = try roundTrip(t, [Float](repeating: 0, count: 512))
            #expect(zeros.allSatisfy { $0 == 0 }, "\(t) zeros")
            // Constant blocks decode within f16 and integer-scale precision.
            for c in constants {
                let out = try roundTrip(t, [Float](repeating: c, count: 256))
                #expect(out.allSatisfy { abs($0 - c) <= abs(c) * 0.02 }, "\(t) constant \(c): \(out[0])")
            }
            // Huge and tiny magnitudes: finite output; values within f16 range are still fitted.
            for scale: Float in [1e-7, 1e3, 3e4, 1e6, 1e30] {
                let x = KQuantInputs.gaussian(512, seed: 5).map { $0 * scale }
                let out = try roundTrip(t, x)
                #expect(out.allSatisfy { $0.isFinite }, "\(t) scale \(scale)")
                if scale <= 1e3 && scale >= 1e-3 {
                    #expect(rmse(out, x) < Double(scale), "\(t) scale \(scale): RMSE \(rmse(out, x))")
                }
            }
            // Mixed: a zero sub-block, a constant sub-block and noise in one super-block.
            var x = KQuantInputs.gaussian(256, seed: 6)
            for i in 0 ..< 32 { x[i] = 0; x[32 + i] = 3 }
            let out = try roundTrip(t, x)
            #expect(out.allSatisfy { $0.isFinite })
            #expect(rmse(out, x) < 0.8, "\(t) mixed: \(rmse(out, x))")
        }
    }

    /// Importance weights trade error on unimportant weights for error on important ones.
    @Test func importanceLowersWeightedError() throws {
        let x = KQuantInputs.withOutliers(256 * 32, seed: 11)
        var rng = SplitMix64(seed: 12)
        let w: [Float] = (0 ..< x.count).map { _ in rng.next() % 8 == 0 ? 50 : 0.1 }
        func weightedError(_ y: [Float]) -> Double {
            var s = 0.0
            for i in x.indices { let d = Double(y[i] - x[i]); s += Double(w[i]) * d * d }
            return s
        }
        for t in KQuantInputs.kTypes {
            let plain = try roundTrip(t, x)
            let bytes = try Codecs.quantizeKQuant(t, x, importance: w)
            let weighted = try bytes.withUnsafeBytes { try Codecs.dequantize(t, $0, count: x.count) }
            let (we, pe) = (weightedError(weighted), weightedError(plain))
            #expect(we < pe * 0.9, "\(t): \(we) vs \(pe)")
            let (a, b) = (try Codecs.quantizeKQuant(t, x, importance: nil), try Codecs.quantize(t, x))
            #expect(a == b)
        }
        #expect(throws: FormatError.self) { _ = try Codecs.quantizeKQuant(.q4_K, x, importance: [1, 2]) }
        #expect(throws: FormatError.self) { _ = try Codecs.quantizeKQuant(.q4_0, [Float](repeating: 0, count: 256), importance: nil) }
    }

    func roundTrip(_ t: GGMLType, _ x: [Float]) throws -> [Float] {
        let bytes = try Codecs.quantize(t, x)
        return try bytes.withUnsafeBytes { try Codecs.dequantize(t, $0, count: x.count) }
    }
}
