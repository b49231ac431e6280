import Foundation
import Testing
import SquishCore
import SquishFormats

/// A safetensors file from a header string and data bytes (the header is used exactly as given, unpadded).
func safetensorsBytes(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    var out = [UInt8](repeating: 0, count: 8)
    out.withUnsafeMutableBytes { $0.storeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian, as: UInt64.self) }
    return out + h + data
}

func openSafetensors(_ bytes: [UInt8], path: String = "hostile.safetensors") throws -> SafetensorsFile {
    try SafetensorsFile(file: MappedFile(data: bytes, path: path))
}

/// Expects opening `bytes` to throw a FormatError that names the file and satisfies `matches`.
func expectRejected(_ bytes: [UInt8], _ label: String, sourceLocation: SourceLocation = #_sourceLocation,
                    _ matches: (FormatError) -> Bool) {
    let path = "hostile-\(label).safetensors"
    do {
        _ = try openSafetensors(bytes, path: path)
        Issue.record("\(label): accepted a bad file", sourceLocation: sourceLocation)
    } catch let error as FormatError {
        #expect(error.description.contains(path), "\(label): \(error)", sourceLocation: sourceLocation)
        #expect(matches(error), "\(label): unexpected error \(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("\(label): not a FormatError: \(error)", sourceLocation: sourceLocation)
    }
}

/// Random bytes for `count` elements of `dtype` (BOOL gets 0/1).
func randomBytes(_ dtype: SafetensorsDType, count: Int, rng: inout SplitMix64) -> [UInt8] {
    (0 ..< count * dtype.size).map { _ in dtype == .BOOL ? UInt8.random(in: 0 ... 1, using: &rng) : UInt8.random(in: 0 ... 255, using: &rng) }
}

func fileBytes(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path) ?? Data()) }

@Suite struct SafetensorsRoundTripTests {
    @Test func everyDtypeRoundTrips() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SplitMix64(seed: 7)
        var w = SafetensorsWriter(metadata: ["format": "pt", "note": "naïve \"quoted\"\n\u{01} 🙂"])
        var expected: [String: (SafetensorsDType, [Int], [UInt8])] = [:]
        let shapes: [[Int]] = [[3, 5], [7], [], [2, 0, 4], [1, 1, 3]]
        for (i, dtype) in SafetensorsDType.allCases.enumerated() {
            let shape = shapes[i % shapes.count]
            let bytes = randomBytes(dtype, count: shape.reduce(1, *), rng: &rng)
            let name = "layers.\(i).\(dtype.name.lowercased())"
            w.add(name, dtype: dtype, shape: shape, source: .bytes(bytes))
            expected[name] = (dtype, shape, bytes)
        }
        let first = dir + "/a.safetensors", second = dir + "/b.safetensors"
        try w.write(to: first)
        let f = try SafetensorsFile(path: first)
        #expect(f.metadata == w.metadata)
        #expect(f.tensors.count == SafetensorsDType.allCases.count)
        #expect(f.dataOffset % 8 == 0)
        #expect(f.tensors.map(\.name) == w.entries.map(\.name))  // data order = order added
        for t in f.tensors {
            let (dtype, shape, bytes) = try #require(expected[t.name])
            #expect(t.dtype == dtype)
            #expect(t.shape == shape)
            #expect(Array(f.data(for: t)) == bytes)
        }
        // read -> write -> read: same bytes on disk, same tensors.
        try SafetensorsWriter(copying: f).write(to: second)
        #expect(fileBytes(first) == fileBytes(second))
        let g = try SafetensorsFile(path: second)
        #expect(g.tensors == f.tensors)
        #expect(g.metadata == f.metadata)
    }

    @Test func floatConversion() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let values: [Float] = [0, -0.0, 1, -2.5, 65504, 1e-8, .infinity, -.infinity, 3.14159, 1e30, -7e-3, 0.1]
        var w = SafetensorsWriter()
        for dtype in [SafetensorsDType.F32, .F16, .BF16, .F64] {
            try w.add(dtype.name, shape: [3, 4], floats: values, as: dtype)
        }
        w.add("int", dtype: .I8, shape: [2], source: .bytes([1, 255]))
        #expect(throws: FormatError.self) { try w.add("x", shape: [1], floats: [1], as: .I32) }
        try w.write(to: dir + "/f.safetensors")
        let f = try SafetensorsFile(path: dir + "/f.safetensors")
        #expect(try f.floats(named: "F32").map(\.bitPattern) == values.map(\.bitPattern))
        #expect(try f.floats(named: "F64").map(\.bitPattern) == values.map(\.bitPattern))
        #expect(try f.floats(named: "F16").map(\.bitPattern) == values.map { HalfFloat.toFloat(HalfFloat.fromFloat($0)).bitPattern })
        #expect(try f.floats(named: "BF16").map(\.bitPattern) == values.map { HalfFloat.bf16ToFloat(HalfFloat.bf16FromFloat($0)).bitPattern })
        #expect(try f.floats(named: "F16")[4] == 65504)
        #expect(throws: FormatError.self) { try f.floats(named: "int") }
        #expect(throws: FormatError.self) { try f.floats(named: "absent") }
        // ggml type mapping for export to GGUF.
        #expect(SafetensorsDType.BF16.ggmlType == .bf16)
        #expect(SafetensorsDType(ggmlType: .q4_0) == nil)
        #expect(SafetensorsDType.U8.ggmlType == nil)
    }

    @Test func writerRejectsBadInput() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/bad.safetensors"
        var w = SafetensorsWriter()
        w.add("a", dtype: .F32, shape: [2], source: .bytes([0, 0, 0, 0]))  // 4 bytes, needs 8
        #expect(throws: FormatError.self) { try w.write(to: path) }
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)  // no temporary file left
        var d = SafetensorsWriter()
        d.add("a", dtype: .U8, shape: [1], source: .bytes([0]))
        d.add("a", dtype: .U8, shape: [1], source: .bytes([0]))
        #expect(throws: FormatError.self) { try d.write(to: path) }
        var m = SafetensorsWriter()
        m.add("__metadata__", dtype: .U8, shape: [1], source: .bytes([0]))
        #expect(throws: FormatError.self) { try m.write(to: path) }
        var n = SafetensorsWriter()
        n.add("a", dtype: .U8, shape: [-1], source: .bytes([]))
        #expect(throws: FormatError.self) { try n.write(to: path) }
    }

    /// A header the size of a large sharded model's (20,000 tensors, ~1.4 MB of JSON) parses, every entry in place.
    @Test func manyTensors() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var w = SafetensorsWriter()
        for i in 0 ..< 20000 {
            w.add("model.layers.\(i / 10).mlp.experts.\(i % 10).down_proj.weight", dtype: .BF16, shape: [1, 2],
                        source: .bytes([UInt8(i & 255), 0, 1, 2]))
        }
        try w.write(to: dir + "/many.safetensors")
        let f = try SafetensorsFile(path: dir + "/many.safetensors")
        #expect(f.tensors.count == 20000)
        #expect(f.headerByteCount > 1_000_000)
        #expect(Array(f.data(for: f.tensors[12345])) == [UInt8(12345 & 255), 0, 1, 2])
        #expect(f.tensor(named: "model.layers.1999.mlp.experts.9.down_proj.weight").map { Array(f.data(for: $0)) } == [UInt8(19999 & 255), 0, 1, 2])
    }

    @Test func headerLayoutMatchesReference() throws {
        // The reference writes compact JSON, __metadata__ first, and pads with spaces to a multiple of 8.
        var w = SafetensorsWriter(metadata: ["k": "v"])
        w.add("b", dtype: .U8, shape: [3], source: .bytes([1, 2, 3]))
        w.add("a", dtype: .F32, shape: [1], source: .bytes([0, 0, 128, 63]))
        let asAdded = try w.headerBytes()
        let json = #"{"__metadata__":{"k":"v"},"b":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"a":{"dtype":"F32","shape":[1],"data_offsets":[3,7]}}"#
        #expect(asAdded.count % 8 == 0)
        #expect(String(decoding: asAdded[8...], as: UTF8.self) == json + String(repeating: " ", count: (8 - json.utf8.count % 8) % 8))
        w.order = .reference  // F32 before U8
        #expect(w.orderedEntries.map(\.name) == ["a", "b"])
    }
}

@Suite struct SafetensorsPythonTests {
    static func requireSafetensors() throws {
        do {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["python3", "-c", "import safetensors, numpy"]
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw TestSetupError("import failed") }
        } catch {
            throw TestSetupError("python3 lacks the safetensors package: pip install -r Tests/Python/requirements.txt (\(error))")
        }
    }

    struct Described {
        var metadata: [String: String]
        var tensors: [String: (dtype: String, shape: [Int], bytes: [UInt8])]
    }

    static func describe(_ json: String) throws -> Described {
        let root = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let metadata = try #require(root["metadata"] as? [String: String])
        let tensors = try #require(root["tensors"] as? [String: [String: Any]])
        var out = Described(metadata: metadata, tensors: [:])
        for (name, t) in tensors {
            let hex = Array((t["hex"] as? String ?? "").utf8)
            let bytes = stride(from: 0, to: hex.count, by: 2).map { UInt8(String(decoding: hex[$0 ..< $0 + 2], as: UTF8.self), radix: 16)! }
            out.tensors[name] = (t["dtype"] as! String, t["shape"] as! [Int], bytes)
        }
        return out
    }

    @Test func pythonWritesSwiftReadsAndRewritesIdentically() throws {
        try Self.requireSafetensors()
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/py.safetensors"
        let expected = try Self.describe(try TestSupport.runPython("safetensors_reference.py", ["write", path]))
        let f = try SafetensorsFile(path: path)
        #expect(f.metadata == expected.metadata)
        #expect(f.tensors.count == expected.tensors.count)
        for t in f.tensors {
            let e = try #require(expected.tensors[t.name])
            #expect(t.dtype.name == e.dtype, "\(t.name)")
            #expect(t.shape == e.shape, "\(t.name)")
            #expect(Array(f.data(for: t)) == e.bytes, "\(t.name)")
        }
        // Written again in the reference's order, the file is byte-identical to the reference's.
        var w = SafetensorsWriter(copying: f)
        w.order = .reference
        try w.write(to: dir + "/swift.safetensors")
        #expect(fileBytes(dir + "/swift.safetensors") == fileBytes(path))
    }

    @Test func swiftWritesPythonReads() throws {
        try Self.requireSafetensors()
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SplitMix64(seed: 99)
        var w = SafetensorsWriter(metadata: ["format": "pt", "squish": "1", "quote": "a\"b\\c"])
        // numpy has no bfloat16 or float8, so the reference's numpy loader cannot take those.
        let dtypes = SafetensorsDType.allCases.filter { ![.BF16, .F8_E4M3, .F8_E5M2].contains($0) }
        var sent: [String: (dtype: String, shape: [Int], bytes: [UInt8])] = [:]
        for (i, dtype) in dtypes.enumerated() {
            let shape = [[2, 3], [5], [], [0, 2]][i % 4]
            let bytes = randomBytes(dtype, count: shape.reduce(1, *), rng: &rng)
            let name = "t\(i).\(dtype.name)"
            w.add(name, dtype: dtype, shape: shape, source: .bytes(bytes))
            sent[name] = (dtype.name, shape, bytes)
        }
        let path = dir + "/swift.safetensors"
        try w.write(to: path)
        let got = try Self.describe(try TestSupport.runPython("safetensors_reference.py", ["read", path]))
        #expect(got.metadata == w.metadata)
        #expect(Set(got.tensors.keys) == Set(sent.keys))
        for (name, e) in sent {
            let g = try #require(got.tensors[name])
            #expect(g.dtype == e.dtype, "\(name)")
            #expect(g.shape == e.shape, "\(name)")
            #expect(g.bytes == e.bytes, "\(name)")
        }
    }
}

@Suite struct SafetensorsHostileTests {
    static let f32x2 = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#

    @Test func validMinimalFiles() throws {
        let f = try openSafetensors(safetensorsBytes(header: Self.f32x2, data: [UInt8](repeating: 0, count: 8)))
        #expect(f.tensors.count == 1)
        #expect(try openSafetensors(safetensorsBytes(header: "{}")).tensors.isEmpty)
        // Whitespace padding after the object is allowed (the reference pads with spaces).
        #expect(try openSafetensors(safetensorsBytes(header: "{}      ")).tensors.isEmpty)
        // Unknown fields inside an entry are ignored, as serde does.
        let extra = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":[1,{"y":null}]}}"#
        #expect(try openSafetensors(safetensorsBytes(header: extra, data: [9])).tensor(named: "a")?.byteCount == 1)
    }

    @Test func truncatedFiles() {
        expectRejected([], "empty") { if case .truncated = $0 { return true }; return false }
        expectRejected([10, 0, 0], "short-length") { if case .truncated = $0 { return true }; return false }
        let good = safetensorsBytes(header: Self.f32x2, data: [UInt8](repeating: 0, count: 8))
        expectRejected(Array(good.prefix(8)), "no-header") { if case .truncated = $0 { return true }; return false }
        expectRejected(Array(good.prefix(20)), "inside-header") { if case .truncated = $0 { return true }; return false }
        // Cut inside the data section: the tensor ends past the file.
        expectRejected(Array(good.dropLast(3)), "inside-data") { if case .tensorOutOfBounds = $0 { return true }; return false }
    }

    @Test func implausibleHeaderLengths() {
        expectRejected(safetensorsBytes(header: "{}", declaredLength: 1 << 63), "2^63") {
            if case .implausible = $0 { return true }; return false
        }
        expectRejected(safetensorsBytes(header: "{}", declaredLength: UInt64.max), "u64max") {
            if case .implausible = $0 { return true }; return false
        }
        expectRejected(safetensorsBytes(header: "{}", declaredLength: 200_000_000), "over-100MB") {
            if case .implausible = $0 { return true }; return false
        }
        expectRejected(safetensorsBytes(header: "{}", declaredLength: 1000), "past-eof") {
            if case .truncated = $0 { return true }; return false
        }
        expectRejected(safetensorsBytes(header: "", declaredLength: 0), "zero") { if case .implausible = $0 { return true }; return false }
    }

    @Test func invalidJSON() {
        let cases: [(String, String)] = [
            ("unterminated", #"{"a":"#), ("trailing-comma", #"{"a":1,}"#), ("garbage-after", "{} x"),
            ("bad-literal", #"{"a":tru}"#), ("bad-number", #"{"a":01}"#), ("bad-escape", #"{"a\q":1}"#),
            ("lone-surrogate", #"{"\ud800":1}"#), ("control-char", "{\"a\u{01}\":1}"), ("single-quotes", "{'a':1}"),
            ("not-object", "[1,2]"), ("string-header", #""abc""#), ("leading-space", " {}"),
            ("deep", "{\"a\":" + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "}"),
        ]
        for (label, header) in cases {
            expectRejected(safetensorsBytes(header: header), label) { if case .invalid = $0 { return true }; return false }
        }
        // Invalid UTF-8 inside a key.
        var bytes = safetensorsBytes(header: #"{"ab":1}"#)
        bytes[10] = 0xFF
        expectRejected(bytes, "bad-utf8") { if case .invalid = $0 { return true }; return false }
    }

    @Test func badEntries() {
        func entry(_ body: String, data: Int = 8, _ label: String, _ matches: @escaping (FormatError) -> Bool) {
            expectRejected(safetensorsBytes(header: "{\"w\":\(body)}", data: [UInt8](repeating: 0, count: data)), label, matches)
        }
        let invalid: (FormatError) -> Bool = { if case .invalid = $0 { return true }; return false }
        let implausible: (FormatError) -> Bool = { if case .implausible = $0 { return true }; return false }
        let missing: (FormatError) -> Bool = { if case .missing = $0 { return true }; return false }
        entry("1", "entry-number", invalid)
        entry(#"{"dtype":"F99","shape":[2],"data_offsets":[0,8]}"#, "unknown-dtype", invalid)
        entry(#"{"dtype":"f32","shape":[2],"data_offsets":[0,8]}"#, "lowercase-dtype", invalid)
        entry(#"{"dtype":4,"shape":[2],"data_offsets":[0,8]}"#, "dtype-number", invalid)
        entry(#"{"shape":[2],"data_offsets":[0,8]}"#, "no-dtype", missing)
        entry(#"{"dtype":"F32","data_offsets":[0,8]}"#, "no-shape", missing)
        entry(#"{"dtype":"F32","shape":[2]}"#, "no-offsets", missing)
        entry(#"{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}"#, "negative-dim", invalid)
        entry(#"{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}"#, "fraction-dim", invalid)
        entry(#"{"dtype":"F32","shape":[2e0],"data_offsets":[0,8]}"#, "exponent-dim", invalid)
        entry(#"{"dtype":"F32","shape":"2","data_offsets":[0,8]}"#, "shape-string", invalid)
        entry(#"{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}"#, "product-overflow", implausible)
        entry(#"{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}"#, "dim-over-2^53", implausible)
        entry(#"{"dtype":"F64","shape":[1152921504606846976],"data_offsets":[0,8]}"#, "bytes-overflow", implausible)
        entry(#"{"dtype":"F32","shape":[99999999999999999999999],"data_offsets":[0,8]}"#, "dim-over-i64", invalid)  // the JSON parser keeps integers in Int64
        entry(#"{"dtype":"F32","shape":[3],"data_offsets":[0,8]}"#, "length-mismatch") {
            if case .shapeMismatch = $0 { return true }; return false
        }
        entry(#"{"dtype":"F32","shape":[2],"data_offsets":[8,0]}"#, "begin-after-end", invalid)
        entry(#"{"dtype":"F32","shape":[2],"data_offsets":[0]}"#, "one-offset", invalid)
        entry(#"{"dtype":"F32","shape":[2],"data_offsets":[0,8,16]}"#, "three-offsets", invalid)
        entry(#"{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}"#, "negative-offset", invalid)
        entry(#"{"dtype":"F32","shape":[2],"data_offsets":[1e3,8]}"#, "float-offset", invalid)
        entry(#"{"dtype":"F32","shape":[2],"data_offsets":[8,16]}"#, "outside-data") {
            if case .tensorOutOfBounds = $0 { return true }; return false
        }
        entry(#"{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551616]}"#, "offset-huge", invalid)
        entry(#"{"dtype":"F32","shape":[2],"data_offsets":[9007199254740993,9007199254741001]}"#, "offset-2^53+1", implausible)
    }

    @Test func layoutViolations() {
        let data16 = [UInt8](repeating: 0, count: 16)
        expectRejected(safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                                        data: data16), "overlap") {
            if case .overlappingTensors(_, let a, let b) = $0 { return a == "a" && b == "b" }; return false
        }
        expectRejected(safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                                        data: data16), "same-range") {
            if case .overlappingTensors = $0 { return true }; return false
        }
        expectRejected(safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
                                        data: data16), "duplicate") {
            if case .invalid(_, _, let r) = $0 { return r.contains("duplicate key 'a'") }; return false
        }
        expectRejected(safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, data: data16), "hole-before") {
            if case .invalid(_, _, let r) = $0 { return r.contains("hole") }; return false
        }
        expectRejected(safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
                                        data: [UInt8](repeating: 0, count: 12)), "hole-between") {
            if case .invalid(_, _, let r) = $0 { return r.contains("hole") }; return false
        }
        expectRejected(safetensorsBytes(header: Self.f32x2, data: data16), "trailing-bytes") {
            if case .invalid(_, _, let r) = $0 { return r.contains("after the last tensor") }; return false
        }
        expectRejected(safetensorsBytes(header: #"{"__metadata__":{"a":1}}"#), "metadata-number") {
            if case .invalid = $0 { return true }; return false
        }
        expectRejected(safetensorsBytes(header: #"{"__metadata__":["a"]}"#), "metadata-array") {
            if case .invalid = $0 { return true }; return false
        }
        expectRejected(safetensorsBytes(header: #"{"__metadata__":{"a":"1","a":"2"}}"#), "metadata-duplicate") {
            if case .invalid(_, _, let r) = $0 { return r.contains("duplicate key") }; return false
        }
    }

    /// Cases from the first version of these tests (every one must name the file).
    @Test func hostileHeaderTable() {
        func le(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
        let cases: [(String, [UInt8])] = [
            ("length 2^63", le(1 << 63) + [0x7B, 0x7D]),
            ("length beyond file", le(100) + Array("{}".utf8)),
            ("unknown dtype", safetensorsBytes(header: #"{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}"#, data: [0])),
            ("huge dims", safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])),
            ("outside file", safetensorsBytes(header: #"{"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}}"#, data: [0])),
            ("begin after end", safetensorsBytes(header: #"{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}}"#, data: [0, 0, 0, 0])),
            ("offset 2^63-1", safetensorsBytes(header: #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[9223372036854775807,9223372036854775807]}}"#)),
            ("zero-size inside another", safetensorsBytes(header: #"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}}"#, data: [0, 0, 0, 0])),
            ("float offsets", safetensorsBytes(header: #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0.0,1]}}"#, data: [0])),
            ("deep nesting", safetensorsBytes(header: "{\"a\":" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}")),
        ]
        for (name, bytes) in cases {
            expectRejected(bytes, name) { _ in true }
        }
    }

    /// Every truncation of a valid file is rejected.
    @Test func truncatedAnywhere() throws {
        var w = SafetensorsWriter()
        w.add("x", dtype: .F32, shape: [4], bytes: [UInt8](repeating: 1, count: 16))
        w.add("y", dtype: .I16, shape: [3], bytes: [UInt8](repeating: 2, count: 6))
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try w.write(to: dir + "/t.safetensors")
        let full = fileBytes(dir + "/t.safetensors")
        #expect(try openSafetensors(full).tensors.count == 2)
        for n in 0 ..< full.count {
            expectRejected(Array(full[0 ..< n]), "cut-\(n)") { _ in true }
        }
    }

    /// Random corruptions of a valid file: each either opens (and every tensor's bytes lie inside the file) or throws
    /// a FormatError; nothing traps.
    @Test func fuzzedFilesNeverCrash() throws {
        var w = SafetensorsWriter(metadata: ["format": "pt"])
        w.add("x", dtype: .F16, shape: [3, 2], source: .bytes([UInt8](repeating: 1, count: 12)))
        w.add("y", dtype: .I64, shape: [1], source: .bytes([UInt8](repeating: 2, count: 8)))
        w.add("z", dtype: .U8, shape: [0], source: .bytes([]))
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try w.write(to: dir + "/ok.safetensors")
        let good = fileBytes(dir + "/ok.safetensors")
        var rng = SplitMix64(seed: 2024)
        var accepted = 0
        for _ in 0 ..< 3000 {
            var b = good
            switch Int.random(in: 0 ..< 3, using: &rng) {
            case 0:
                for _ in 0 ..< Int.random(in: 1 ... 4, using: &rng) {
                    b[Int.random(in: 0 ..< b.count, using: &rng)] = UInt8.random(in: 0 ... 255, using: &rng)
                }
            case 1:
                b = Array(b.prefix(Int.random(in: 0 ..< b.count, using: &rng)))
            default:
                // Mutate only digits and punctuation of the header, the interesting part.
                let i = Int.random(in: 8 ..< min(b.count, 8 + 160), using: &rng)
                b[i] = Array("0123456789[]{},:\"-.e ".utf8).randomElement(using: &rng)!
            }
            do {
                let f = try openSafetensors(b)
                for t in f.tensors { #expect(f.dataOffset + t.end <= b.count) }
                accepted += 1
            } catch is FormatError {
            } catch {
                Issue.record("not a FormatError: \(error)")
            }
        }
        #expect(accepted < 3000)
    }
}

@Suite struct SafetensorsCheckpointTests {
    /// Two shards and an index, as transformers' save_pretrained writes them.
    func writeShardedCheckpoint(_ dir: String, index: String? = nil) throws {
        var a = SafetensorsWriter(metadata: ["format": "pt"])
        try a.add("model.embed_tokens.weight", shape: [4, 2], floats: (0 ..< 8).map(Float.init), as: .BF16)
        try a.add("model.layers.0.input_layernorm.weight", shape: [2], floats: [1, 1], as: .F32)
        try a.write(to: dir + "/model-00001-of-00002.safetensors")
        var b = SafetensorsWriter(metadata: ["format": "pt"])
        try b.add("model.norm.weight", shape: [2], floats: [0.5, 2], as: .F16)
        try b.write(to: dir + "/model-00002-of-00002.safetensors")
        let json = index ?? """
        {
          "metadata": {"total_size": 26},
          "weight_map": {
            "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
            "model.layers.0.input_layernorm.weight": "model-00001-of-00002.safetensors",
            "model.norm.weight": "model-00002-of-00002.safetensors"
          }
        }
        """
        try json.write(toFile: dir + "/" + SafetensorsCheckpoint.indexFileName, atomically: true, encoding: .utf8)
    }

    @Test func shardedCheckpoint() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeShardedCheckpoint(dir)
        let c = try SafetensorsCheckpoint(path: dir)
        #expect(c.totalSize == 26)
        #expect(c.tensorNames == ["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight", "model.norm.weight"])
        #expect(c.shardNames == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        #expect(try c.floats(named: "model.norm.weight") == [0.5, 2])
        #expect(try c.floats(named: "model.embed_tokens.weight") == (0 ..< 8).map(Float.init))
        let (file, info) = try c.tensor(named: "model.embed_tokens.weight")
        #expect(info.dtype == .BF16 && info.shape == [4, 2] && file.data(for: info).count == 16)
        try c.validateAll()
        #expect(throws: FormatError.self) { try c.tensor(named: "lm_head.weight") }
        // Opening the index file directly, or a single shard, works too.
        #expect(try SafetensorsCheckpoint(path: dir + "/" + SafetensorsCheckpoint.indexFileName).tensorNames.count == 3)
        #expect(try SafetensorsCheckpoint(path: dir + "/model-00002-of-00002.safetensors").tensorNames == ["model.norm.weight"])
    }

    @Test func shardsOpenLazily() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeShardedCheckpoint(dir)
        // A corrupt second shard does not stop reading tensors from the first.
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/model-00002-of-00002.safetensors"))
        let c = try SafetensorsCheckpoint(path: dir)
        #expect(try c.floats(named: "model.layers.0.input_layernorm.weight") == [1, 1])
        do {
            _ = try c.floats(named: "model.norm.weight")
            Issue.record("read a corrupt shard")
        } catch let e as FormatError {
            #expect(e.description.contains("model-00002-of-00002.safetensors"))
        }
    }

    @Test func badIndexes() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func rejected(_ index: String, _ label: String, whenOpening tensor: String? = nil) throws {
            try writeShardedCheckpoint(dir, index: index)
            do {
                let c = try SafetensorsCheckpoint(path: dir)
                if let tensor { _ = try c.tensor(named: tensor) } else { try c.validateAll() }
                Issue.record("\(label): accepted")
            } catch let e as FormatError {
                #expect(e.description.contains(dir), "\(label): \(e)")
            }
        }
        try rejected(#"{"weight_map": {"a": "../../etc/passwd"}}"#, "escape")
        try rejected(#"{"weight_map": {"a": "/abs.safetensors"}}"#, "absolute")
        try rejected(#"{"weight_map": {"a": 3}}"#, "number")
        try rejected(#"{"metadata": {}}"#, "no-map")
        try rejected(#"{"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}}"#, "duplicate")
        try rejected(#"{"weight_map": {"absent": "model-00002-of-00002.safetensors"}}"#, "not-in-shard", whenOpening: "absent")
        try rejected(#"{"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors"}}"#, "unlisted-tensor")
        try rejected(#"{"weight_map": {"a": "missing.safetensors"}}"#, "missing-shard", whenOpening: "a")
        try rejected("[", "bad-json")
        try FileManager.default.removeItem(atPath: dir + "/" + SafetensorsCheckpoint.indexFileName)
        try FileManager.default.removeItem(atPath: dir + "/model-00001-of-00002.safetensors")
        try FileManager.default.removeItem(atPath: dir + "/model-00002-of-00002.safetensors")
        #expect(throws: FormatError.self) { try SafetensorsCheckpoint(path: dir) }
        #expect(throws: FormatError.self) { try SafetensorsCheckpoint(path: dir + "/nope") }
    }
}
