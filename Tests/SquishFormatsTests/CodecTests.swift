import Foundation
import Testing
import SquishFormats

/// One reference case from Tests/Python/codec_reference.py: `bytes` are blocks as gguf-py encodes them
/// (from `input`, when present) and `output` is gguf-py's dequantization of `bytes`.
struct ReferenceCase: Sendable {
    let name: String
    let type: GGMLType
    let count: Int
    let input: [Float]?  // [count] f32, only for quantization cases
    let bytes: [UInt8]   // [count / blockElements * blockBytes], ggml blocks back to back
    let output: [Float]  // [count] f32
}

enum CodecReference {
    /// Generated once per test process and shared by the tests below.
    static let synthetic = Result { try generate(["synthetic"]) }
    static let model = Result { try generate(["model", try TestSupport.defaultModelPath()]) }

    private struct Entry: Decodable {
        let name: String, type: String, count: Int, input: String?, bytes: String, output: String
    }

    /// Runs Tests/Python/codec_reference.py into a scratch directory, loads every case, removes the directory.
    static func generate(_ arguments: [String]) throws -> [ReferenceCase] {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try TestSupport.runPython("codec_reference.py", arguments + [dir])
        let manifest = try JSONDecoder().decode(
            [Entry].self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.json")))
        func read(_ file: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: dir + "/" + file)) }
        func floats(_ file: String) throws -> [Float] {
            let data = try read(file)
            return data.withUnsafeBytes { raw in
                (0 ..< data.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
            }
        }
        return try manifest.map { e in
            guard let type = GGMLType(name: e.type) else { throw TestSetupError("\(e.name): unknown type \(e.type)") }
            return ReferenceCase(name: e.name, type: type, count: e.count, input: try e.input.map(floats),
                                 bytes: [UInt8](try read(e.bytes)), output: try floats(e.output))
        }
    }
}

/// Bit-for-bit equality of two float arrays, any NaN matching any NaN. Records one issue per case.
func expectSameFloats(_ found: [Float], _ expected: [Float], _ label: String,
                      sourceLocation: SourceLocation = #_sourceLocation) {
    guard found.count == expected.count else {
        Issue.record("\(label): \(found.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    var mismatches = 0
    var first = ""
    for i in 0 ..< found.count {
        let a = found[i], b = expected[i]
        if a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN) { continue }
        if mismatches == 0 {
            first = "first at \(i): \(a) (0x\(String(a.bitPattern, radix: 16))) vs \(b) (0x\(String(b.bitPattern, radix: 16)))"
        }
        mismatches += 1
    }
    if mismatches > 0 {
        Issue.record("\(label): \(mismatches) of \(found.count) values differ; \(first)", sourceLocation: sourceLocation)
    }
}

func expectSameBytes(_ found: [UInt8], _ expected: [UInt8], _ label: String, blockBytes: Int) {
    guard found.count == expected.count else {
        Issue.record("\(label): \(found.count) bytes, expected \(expected.count)")
        return
    }
    guard let i = found.indices.first(where: { found[$0] != expected[$0] }) else { return }
    let differing = found.indices.filter { found[$0] != expected[$0] }.count
    let block = i / blockBytes, offset = i % blockBytes
    Issue.record("\(label): \(differing) of \(found.count) bytes differ; first at byte \(i) (block \(block), offset \(offset)): \(found[i]) vs \(expected[i])")
}

@Suite struct CodecReferenceTests {
    func check(_ cases: [ReferenceCase]) throws {
        for c in cases {
            #expect(Codecs.canDequantize(c.type), "\(c.name)")
            let decoded = try c.bytes.withUnsafeBytes { try Codecs.dequantize(c.type, $0, count: c.count) }
            expectSameFloats(decoded, c.output, "\(c.name) dequantize")
            if let input = c.input {
                let encoded = try Codecs.quantize(c.type, input)
                expectSameBytes(encoded, c.bytes, "\(c.name) quantize", blockBytes: c.type.blockBytes)
            }
        }
    }

    @Test func syntheticDataMatchesGGUFPy() throws {
        let cases = try CodecReference.synthetic.get()
        #expect(cases.count > 100)
        try check(cases)
        // Every supported ggml type is covered by at least one case (gguf-py knows nothing of Squish's own types;
        // SquishQuantizeTests reads those with an independent bit-by-bit decoder).
        let covered = Set(cases.map(\.type))
        for t in GGMLType.allCases where Codecs.canDequantize(t) && t.isGGMLNative {
            #expect(covered.contains(t), "no reference case for \(t)")
        }
        // gguf-py has no K-quant encoders; KQuantEncoderTests checks ours against its decoder instead.
        for t in GGMLType.allCases where Codecs.canQuantize(t) && t.isGGMLNative && KQuantFormat(t) == nil {
            #expect(cases.contains { $0.type == t && $0.input != nil }, "no quantization case for \(t)")
        }
    }

    @Test func defaultModelTensorsMatchGGUFPy() throws {
        let cases = try CodecReference.model.get()
        #expect(Set(cases.map(\.type)).isSuperset(of: [.q4_1, .q8_0, .f32]))
        try check(cases)
    }
}

@Suite struct CodecErrorTests {
    @Test func supportedTypes() {
        let ggmlDecodable: Set<GGMLType> = [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K,
                                        .q5_K, .q6_K, .iq4_NL, .iq4_XS, .tq1_0, .tq2_0, .mxfp4]
        let squish = Set(GGMLType.allCases.filter { $0.squishBlock != nil })
        #expect(squish.count == 70)  // affine and symmetric, 2-8 bits, groups 16-256
        let sparse = Set(GGMLType.allCases.filter { $0.squishSparse != nil })
        #expect(sparse.count == 18)  // SP<b>_K<k>: 2, 3, 4, 5, 6, 8 bits; 16, 32, 48 of 64 kept
        let nonLinear = Set(GGMLType.allCases.filter { $0.squishNonLinearGroup != nil })
        #expect(nonLinear.count == 3)  // SQ4N_G64, SQ4N_G128, SQ4N_G256
        let nonLinearX = Set(GGMLType.allCases.filter { $0.squishNonLinearXGroup != nil })
        #expect(nonLinearX.count == 2)  // SQ4NX_G128, SQ4NX_G256
        let ggmlEncodable: Set<GGMLType> = [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .tq1_0, .tq2_0,
                                            .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .mxfp4]
        let encodable = ggmlEncodable.union(squish).union(sparse).union(nonLinear).union(nonLinearX)
        let decodable = ggmlDecodable.union(squish).union(sparse).union(nonLinear).union(nonLinearX)
        #expect(Set(GGMLType.allCases.filter(Codecs.canDequantize)) == decodable)
        #expect(Set(GGMLType.allCases.filter(Codecs.canQuantize)) == encodable)
    }

    @Test func unsupportedTypesThrow() {
        for t in [GGMLType.iq2_XXS, .q8_K, .iq1_S, .i32] {
            let e = #expect(throws: FormatError.self) { try Codecs.dequantize(t, UnsafeRawBufferPointer(start: nil, count: 0), count: 0) }
            guard case .unsupportedType(t, _)? = e else { Issue.record("\(t): \(String(describing: e))"); continue }
        }
        for t in [GGMLType.q8_K, .iq4_NL, .iq4_XS, .iq1_S] {
            let e = #expect(throws: FormatError.self) { try Codecs.quantize(t, [Float](repeating: 0, count: 256)) }
            guard case .unsupportedType(t, _)? = e else { Issue.record("\(t): \(String(describing: e))"); continue }
        }
    }

    func expectSizeMismatch(_ label: String, _ body: () throws -> Void) {
        let e = #expect(throws: FormatError.self, "\(label)") { try body() }
        guard case .sizeMismatch? = e else { Issue.record("\(label): \(String(describing: e))"); return }
    }

    @Test func wrongSizesThrow() {
        let bytes = [UInt8](repeating: 0, count: 144)
        bytes.withUnsafeBytes { raw in
            // Not a whole number of blocks.
            expectSizeMismatch("33 values of Q4_0") { _ = try Codecs.dequantize(.q4_0, UnsafeRawBufferPointer(rebasing: raw[0 ..< 18]), count: 33) }
            expectSizeMismatch("negative count") { _ = try Codecs.dequantize(.q8_0, raw, count: -32) }
            // Whole blocks, but the byte count disagrees.
            expectSizeMismatch("17 bytes for a Q4_0 block") { _ = try Codecs.dequantize(.q4_0, UnsafeRawBufferPointer(rebasing: raw[0 ..< 17]), count: 32) }
            expectSizeMismatch("one Q4_K block, two expected") { _ = try Codecs.dequantize(.q4_K, raw, count: 512) }
            expectSizeMismatch("trailing bytes") { _ = try Codecs.dequantize(.q4_0, UnsafeRawBufferPointer(rebasing: raw[0 ..< 19]), count: 32) }
            var out = [Float](repeating: 0, count: 100)
            expectSizeMismatch("F16 into a too-long buffer") {
                try out.withUnsafeMutableBufferPointer { try Codecs.dequantize(.f16, raw, into: $0) }
            }
        }
        expectSizeMismatch("31 values for Q8_0") { _ = try Codecs.quantize(.q8_0, [Float](repeating: 1, count: 31)) }
        expectSizeMismatch("255 values for TQ2_0") { _ = try Codecs.quantize(.tq2_0, [Float](repeating: 1, count: 255)) }
        var dst = [UInt8](repeating: 0, count: 35)
        let src = [Float](repeating: 1, count: 32)
        expectSizeMismatch("35-byte Q8_0 destination") {
            try src.withUnsafeBufferPointer { s in try dst.withUnsafeMutableBytes { try Codecs.quantize(.q8_0, s, into: $0) } }
        }
    }

    @Test func emptyInputsAreFine() throws {
        #expect(try Codecs.dequantize(.q4_K, UnsafeRawBufferPointer(start: nil, count: 0), count: 0).isEmpty)
        #expect(try Codecs.quantize(.q4_0, []).isEmpty)
    }
}
