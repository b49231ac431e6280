import Foundation
import Testing
import SquishCore
import SquishFormats

/// A small GGUF with every metadata value type, nested arrays and tensors of several types.
func sampleWriter(version: UInt32 = 3, alignment: UInt32? = nil) -> GGUFWriter {
    var w = GGUFWriter(version: version)
    w.set("general.architecture", .string("llama"))
    if let alignment { w.set("general.alignment", .uint32(alignment)) }
    w.set("u8", .uint8(200)); w.set("i8", .int8(-100)); w.set("u16", .uint16(60000)); w.set("i16", .int16(-30000))
    w.set("u32", .uint32(4_000_000_000)); w.set("i32", .int32(-2_000_000_000)); w.set("f32", .float32(3.5))
    w.set("bool", .bool(true)); w.set("str", .string("naïve café 🙂")); w.set("u64", .uint64(UInt64.max))
    w.set("i64", .int64(Int64.min)); w.set("f64", .float64(-1e300))
    w.set("strings", .array(elementType: .string, values: [.string("a"), .string(""), .string("ü")]))
    w.set("empty", .array(elementType: .float32, values: []))
    w.set("nested", .array(elementType: .array, values: [
        .array(elementType: .int32, values: [.int32(1), .int32(2)]),
        .array(elementType: .string, values: [.string("x")]),
    ]))
    w.addTensor(name: "a", shape: [32, 2], type: .q8_0, source: .bytes([UInt8](repeating: 1, count: 68)))
    w.addTensor(name: "b", shape: [3], type: .f32, source: .bytes([UInt8](repeating: 2, count: 12)))
    w.addTensor(name: "c", shape: [64], type: .q4_1, source: .bytes((0 ..< 40).map { UInt8($0) }))
    return w
}

func writtenBytes(_ w: GGUFWriter) throws -> [UInt8] {
    let dir = try TestSupport.scratchDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try w.write(to: dir + "/x.gguf")
    return [UInt8](FileManager.default.contents(atPath: dir + "/x.gguf")!)
}

func parse(_ bytes: [UInt8], path: String = "mem.gguf") throws -> GGUFFile {
    try GGUFFile(file: MappedFile(data: bytes, path: path))
}

/// Overwrites bytes at `offset` with a little-endian integer.
func patch<T: FixedWidthInteger>(_ bytes: [UInt8], at offset: Int, _ value: T) -> [UInt8] {
    var b = bytes
    withUnsafeBytes(of: value.littleEndian) { for (i, x) in $0.enumerated() { b[offset + i] = x } }
    return b
}

@Suite struct GGUFReadWriteTests {
    @Test(arguments: [UInt32(2), 3])
    func roundTripEveryValueType(version: UInt32) throws {
        let w = sampleWriter(version: version)
        let bytes = try writtenBytes(w)
        let f = try parse(bytes)
        #expect(f.version == version)
        #expect(f.metadata.count == w.metadata.count)
        for (a, b) in zip(f.metadata, w.metadata) {
            #expect(a.key == b.key)
            #expect(a.value == b.value)
        }
        #expect(f["nested"]?.array?[1].stringArray == ["x"])
        #expect(f.tensors.map(\.name) == ["a", "b", "c"])
        #expect(f.tensor(named: "a")?.shape == [32, 2])
        // a at 0 (68 bytes, padded to 96), b at 96 (12 bytes, padded to 128), c at 128.
        #expect(f.tensors.map(\.offset) == [0, 96, 128])
        #expect(Array(f.data(for: f.tensor(named: "c")!)) == (0 ..< 40).map { UInt8($0) })
        #expect(f.dataOffset % 32 == 0)
        // Writing what was read reproduces the file.
        #expect(try writtenBytes(GGUFWriter(copying: f)) == bytes)
    }

    @Test func customAlignment() throws {
        let f = try parse(try writtenBytes(sampleWriter(alignment: 64)))
        #expect(f.alignment == 64)
        #expect(f.dataOffset % 64 == 0)
        #expect(f.tensors.allSatisfy { $0.offset % 64 == 0 })
    }

    @Test func defaultModelRewritesByteIdentical() throws {
        let path = try TestSupport.defaultModelPath()
        let f = try GGUFFile(path: path)
        #expect(f.version == 3)
        #expect(f.architecture == "llama")
        #expect(f.tensors.count == 272)
        #expect(f.arch("block_count")?.int == 30)
        #expect(f["tokenizer.ggml.tokens"]?.stringArray?.count == 49152)
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/copy.gguf"
        try GGUFWriter(copying: f).write(to: out)
        let copy = try MappedFile(path: out)
        #expect(copy.count == f.file.count)
        #expect(memcmp(copy.bytes.baseAddress!, f.file.bytes.baseAddress!, copy.count) == 0)
    }

    @Test func writerRejectsWrongDataSize() throws {
        var w = GGUFWriter()
        w.addTensor(name: "t", shape: [32], type: .q4_0, source: .bytes([1, 2, 3]))
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Existing output survives the failed write.
        try AtomicFileWriter.write([42], to: dir + "/keep.gguf")
        #expect(throws: FormatError.self) { try w.write(to: dir + "/keep.gguf") }
        #expect(FileManager.default.contents(atPath: dir + "/keep.gguf") == Data([42]))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["keep.gguf"])
    }
}

@Suite struct GGUFHostileInputTests {
    let good: [UInt8]
    init() throws { good = try writtenBytes(sampleWriter()) }

    /// Every prefix of a valid file that cuts into the header or the tensor data is rejected with a typed error.
    @Test func truncatedAnywhere() throws {
        let f = try parse(good)
        let lastDataEnd = f.dataOffset + f.tensors.map { $0.offset + $0.byteCount }.max()!
        for n in 0 ..< lastDataEnd {
            do {
                _ = try parse(Array(good[0 ..< n]), path: "cut\(n).gguf")
                Issue.record("a file cut at \(n) of \(good.count) bytes was accepted")
            } catch let e as FormatError {
                #expect(e.description.contains("cut\(n).gguf"))
            }
        }
    }

    @Test func badMagicAndVersion() {
        #expect(throws: FormatError.badMagic(path: "m", found: "46 55 47 47")) { try parse(patch(good, at: 0, UInt32(0x4655_4747).byteSwapped), path: "m") }
        #expect(throws: FormatError.unsupportedVersion(path: "m", version: 1)) { try parse(patch(good, at: 4, UInt32(1)), path: "m") }
        #expect(throws: FormatError.unsupportedVersion(path: "m", version: 4)) { try parse(patch(good, at: 4, UInt32(4)), path: "m") }
        #expect(throws: FormatError.self) { try parse([], path: "empty") }
    }

    @Test func absurdCounts() {
        for value in [UInt64(1) << 63, UInt64.max, 1 << 40, 100_000] {
            #expect(throws: FormatError.self) { try parse(patch(good, at: 8, value)) }  // tensor count
            #expect(throws: FormatError.self) { try parse(patch(good, at: 16, value)) }  // metadata count
            #expect(throws: FormatError.self) { try parse(patch(good, at: 24, value)) }  // first key length
        }
    }

    /// Offsets of fields inside the sample, found by scanning for known byte patterns.
    func offset(of needle: [UInt8], last: Bool = false) -> Int {
        let range = Array(0 ... (good.count - needle.count))
        for i in last ? range.reversed() : range where Array(good[i ..< i + needle.count]) == needle { return i }
        Issue.record("pattern not found")
        return 0
    }

    /// Offset of a tensor's dimension count: its info is the last place where the one-letter name (u64 length 1)
    /// is followed by the dimension count.
    func tensorInfo(_ name: String) -> Int {
        let dims: UInt8 = name == "a" ? 2 : 1
        return offset(of: [1, 0, 0, 0, 0, 0, 0, 0, name.utf8.first!, dims, 0, 0, 0], last: true) + 9
    }

    @Test func hostileStringsAndArrays() {
        // The "strings" array: element type string (8), count 3.
        let arr = offset(of: Array("strings".utf8)) + 7 + 4  // after key, after value type → element type
        #expect(throws: FormatError.self) { try parse(patch(good, at: arr + 4, UInt64(1) << 63)) }
        #expect(throws: FormatError.self) { try parse(patch(good, at: arr + 12, UInt64.max)) }  // first element length
        #expect(throws: FormatError.self) { try parse(patch(good, at: arr, UInt32(99))) }  // unknown element type
        let boolAt = offset(of: Array("bool".utf8)) + 4 + 4
        #expect(throws: FormatError.self) { try parse(patch(good, at: boolAt, UInt8(7))) }
        let u8At = offset(of: Array("u8".utf8)) + 2
        #expect(throws: FormatError.self) { try parse(patch(good, at: u8At, UInt32(13))) }  // unknown value type
    }

    @Test func hostileTensorInfos() {
        let a = tensorInfo("a")  // → n_dims
        #expect(throws: FormatError.self) { try parse(patch(good, at: a, UInt32(5))) }
        #expect(throws: FormatError.self) { try parse(patch(good, at: a, UInt32(0))) }
        #expect(throws: FormatError.self) { try parse(patch(good, at: a + 4, UInt64(1) << 62)) }  // ne0
        #expect(throws: FormatError.self) { try parse(patch(good, at: a + 12, UInt64(1) << 40)) }  // ne1: out of bounds
        #expect(throws: FormatError.self) { try parse(patch(good, at: a + 4, UInt64(33))) }  // not whole blocks
        let typeAt = a + 4 + 16
        #expect(throws: FormatError.unknownTensorType(path: "mem.gguf", tensor: "a", typeID: 77)) { try parse(patch(good, at: typeAt, UInt32(77))) }
        let offsetAt = typeAt + 4
        #expect(throws: FormatError.misalignedTensor(path: "mem.gguf", tensor: "a", offset: 3, alignment: 32)) {
            try parse(patch(good, at: offsetAt, UInt64(3)))
        }
        #expect(throws: FormatError.self) { try parse(patch(good, at: offsetAt, UInt64(1) << 63)) }
        #expect(throws: FormatError.self) { try parse(patch(good, at: offsetAt, UInt64.max - 31)) }
        // b at 96 moved onto a (0..<68) → overlap.
        let b = tensorInfo("b")
        #expect(throws: FormatError.overlappingTensors(path: "mem.gguf", first: "a", second: "b")) {
            try parse(patch(good, at: b + 4 + 8 + 4, UInt64(32)))
        }
        // duplicate tensor name: rename c to b.
        let c = tensorInfo("c")
        var dup = good
        dup[c - 1] = UInt8(ascii: "b")
        #expect(throws: FormatError.duplicateName(path: "mem.gguf", name: "b")) { try parse(dup) }
    }

    @Test func badAlignment() throws {
        for a: UInt32 in [0, 3, 48] {
            var w = sampleWriter()
            w.set("general.alignment", .uint32(a))
            // The writer itself falls back to 32 for invalid values; the reader must reject the metadata.
            #expect(throws: FormatError.self) { try parse(try writtenBytes(w)) }
        }
    }

    /// Mutated copies of the default model's header (the bytes before its tensor data): byte flips, extreme
    /// 32/64-bit values, truncations and insertions. Every input must parse or throw a FormatError.
    @Test func fuzzDefaultModelHeader() throws {
        let path = try TestSupport.defaultModelPath()
        let model = try GGUFFile(path: path)
        // The default model's header (all its metadata, 49152-token vocabulary included, and its 272 tensor infos)
        // over one block of data per tensor, so that mutated inputs can also parse successfully.
        var mini = GGUFWriter(version: model.version)
        for (k, v) in model.metadata { mini.set(k, v) }
        for t in model.tensors {
            mini.addTensor(name: t.name, shape: [t.type.blockElements], type: t.type,
                           source: .bytes([UInt8](repeating: 0x11, count: t.type.blockBytes)))
        }
        let header = try writtenBytes(mini)
        let miniFile = try parse(header)
        #expect(miniFile.tensors.count == 272)
        let iterations = Int(ProcessInfo.processInfo.environment["SQUISH_FUZZ_ITERATIONS"] ?? "") ?? 200
        var rng = SplitMix64(seed: 0x5EED)
        let extremes: [UInt64] = [0, 1, 0xFF, 0xFFFF_FFFF, 1 << 31, 1 << 32, 1 << 62, 1 << 63, UInt64.max, UInt64.max - 7]
        var accepted = 0
        // Mutations go to the start (counts, first keys and values) and to the tensor infos before the data.
        let tensorInfoStart = max(0, miniFile.dataOffset - 272 * 60)
        for i in 0 ..< iterations {
            var b = header
            for _ in 0 ..< Int.random(in: 1 ... 4, using: &rng) {
                let region = Bool.random(using: &rng) ? 0 ..< min(4096, b.count - 8) : min(tensorInfoStart, b.count - 9) ..< b.count - 8
                let at = Int.random(in: region, using: &rng)
                switch Int.random(in: 0 ..< 5, using: &rng) {
                case 0: b[at] ^= UInt8(1 << Int.random(in: 0 ..< 8, using: &rng))
                case 1: b = patch(b, at: at, extremes.randomElement(using: &rng)!)
                case 2: b = patch(b, at: at, UInt32(truncatingIfNeeded: extremes.randomElement(using: &rng)!))
                case 3: b.removeSubrange(at ..< min(b.count, at + Int.random(in: 1 ... 64, using: &rng)))
                default: b.insert(contentsOf: (0 ..< Int.random(in: 1 ... 16, using: &rng)).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }, at: at)
                }
                if b.count < 16 { break }
            }
            if Int.random(in: 0 ..< 8, using: &rng) == 0 { b = Array(b.prefix(Int.random(in: 0 ... b.count, using: &rng))) }
            do {
                _ = try parse(b, path: "fuzz\(i).gguf")
                accepted += 1
            } catch is FormatError {
            }
        }
        // Some mutations only change values and still parse; the rest must be rejected; none may crash.
        print("GGUF header fuzz: \(iterations) mutated inputs, \(accepted) parsed, \(iterations - accepted) rejected with FormatError")
        #expect(accepted < iterations)
    }
}

/// Metadata is validated at open but decoded on demand: arrays keep their encoding (nothing is allocated per declared
/// element), typed accessors read it directly, strings decode leniently; tensor sizes use checked arithmetic.
@Suite struct GGUFLazyMetadataTests {
    func raw(_ entries: [(String, UInt32, [UInt8])], tensors: UInt64 = 0) -> [UInt8] {
        var b = Array("GGUF".utf8) + le(UInt32(3)) + le(tensors) + le(UInt64(entries.count))
        for (k, t, v) in entries { b += le(UInt64(k.utf8.count)) + Array(k.utf8) + le(t) + v }
        return b
    }
    func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    @Test func typedAccessorsReadTheEncoding() throws {
        var w = GGUFWriter()
        w.set("u64", .array(elementType: .uint64, values: [.uint64(7), .uint64(UInt64.max)]))
        w.set("i16", .array(elementType: .int16, values: [.int16(-3), .int16(300)]))
        w.set("f64", .array(elementType: .float64, values: [.float64(0.5), .float64(-2)]))
        w.set("bools", .array(elementType: .bool, values: [.bool(true), .bool(false)]))
        w.set("nested", .array(elementType: .array, values: [.array(elementType: .uint8, values: [.uint8(1)]),
                                                             .array(elementType: .string, values: [.string("z")])]))
        let f = try parse(try writtenBytes(w))
        #expect(f["u64"]?.intArray == nil)  // UInt64.max does not fit an Int
        #expect(f["u64"]?.arrayValue.map { Array($0) } == [.uint64(7), .uint64(UInt64.max)])
        #expect(f["i16"]?.intArray == [-3, 300] && f["i16"]?.floatArray == [-3, 300])
        #expect(f["f64"]?.floatArray == [0.5, -2] && f["f64"]?.intArray == nil && f["f64"]?.stringArray == nil)
        #expect(f["bools"]?.intArray == [1, 0])
        let nested = try #require(f["nested"]?.array)
        #expect(nested.count == 2 && nested[0].intArray == [1] && nested[1].stringArray == ["z"])
        #expect(f.entry("nested")?.preview() == "[[1], [z]]")
        #expect(f["nested"] == w.metadata.first { $0.key == "nested" }?.value)
    }

    @Test func stringsDecodeLenientlyAndPreviewsAreEscapedAndShort() throws {
        let bad: [UInt8] = [0x61, 0xFF, 0x1B, 0x5B, 0x32, 0x4A, 0x62]
        let long = [UInt8](repeating: 0x78, count: 10_000)
        let bytes = raw([("s", 8, le(UInt64(bad.count)) + bad), ("long", 8, le(UInt64(long.count)) + long),
                         ("a", 9, le(UInt32(8)) + le(UInt64(1)) + le(UInt64(bad.count)) + bad)])
        let f = try parse(bytes)
        #expect(f["s"]?.string == "a\u{FFFD}\u{1B}[2Jb")
        #expect(f.entry("s")?.preview() == "a\\xFF\\e[2Jb")
        #expect(f.entry("long")?.preview() == String(repeating: "x", count: 80) + "...")
        #expect(f["a"]?.stringArray == ["a\u{FFFD}\u{1B}[2Jb"])
        #expect(f.entry("a")?.preview() == "[a\\xFF\\e[2Jb]")
    }

    @Test func hostileArraysAreRejectedWithoutAllocating() throws {
        // A bool array with a byte that is not 0 or 1, named with its offset.
        let bools = raw([("b", 9, le(UInt32(7)) + le(UInt64(3)) + [1, 0, 2])])
        #expect(throws: FormatError.invalid(path: "mem.gguf", offset: bools.count - 1, reason: "bool element of 'b' has byte 2")) {
            try parse(bools)
        }
        // A string element whose length runs past the end; an array count beyond what the file can hold.
        let strings = raw([("s", 9, le(UInt32(8)) + le(UInt64(2)) + le(UInt64(1)) + [0x41] + le(UInt64(1 << 40)))])
        #expect(throws: FormatError.self) { try parse(strings) }
        let counts = raw([("c", 9, le(UInt32(4)) + le(UInt64(1) << 61))])
        #expect(throws: FormatError.implausible(path: "mem.gguf", offset: 41, what: "element count of array 'c'", value: "2305843009213693952")) {
            try parse(counts)
        }
    }

    /// Dimensions [3.2e9, 3.2e9, 0] of a block type: zero bytes but 1e19 elements (an Int64 overflow before); an
    /// offset of 2^63 is named as the number in the file. A sparse file is large enough for the dimensions.
    @Test func tensorArithmeticIsChecked() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func file(_ dims: [UInt64], offset: UInt64, size: Int) throws -> String {
            var b = raw([("general.architecture", 8, le(UInt64(5)) + Array("llama".utf8))], tensors: 1)
            b += le(UInt64(1)) + Array("w".utf8) + le(UInt32(dims.count))
            for d in dims { b += le(d) }
            b += le(UInt32(GGMLType.q4_0.rawValue)) + le(offset)
            let path = dir + "/\(dims.count)-\(offset).gguf"
            _ = FileManager.default.createFile(atPath: path, contents: Data(b))
            #expect(truncate(path, off_t(size)) == 0)
            return path
        }
        let dims = try file([3_200_000_000, 3_200_000_000, 0], offset: 0, size: 1 << 30)
        do {
            _ = try GGUFFile(path: dims)
            Issue.record("accepted 1e19 elements")
        } catch let e as FormatError {
            #expect(e.description.contains("element count of 'w'"), "\(e)")
        }
        let offset = try file([32], offset: 1 << 63, size: 4096)
        do {
            _ = try GGUFFile(path: offset)
            Issue.record("accepted an offset of 2^63")
        } catch let FormatError.tensorOutOfBounds(_, tensor, at, _, _) {
            #expect(tensor == "w" && at >= 1 << 63)
        }
        let info = GGUFTensorInfo(name: "x", shape: [2, 3_200_000_000, 3_200_000_000], type: .q4_0, offset: 0, byteCount: 0)
        #expect(info.elementCount == Int.max && info.rowCount == Int.max)  // hand-made infos saturate, never trap
    }
}
