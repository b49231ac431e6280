import Foundation
import Testing
import SquishCore

@Suite struct HalfFloatTests {
    @Test func knownF16Values() {
        #expect(HalfFloat.toFloat(0x3C00) == 1.0)
        #expect(HalfFloat.toFloat(0xC000) == -2.0)
        #expect(HalfFloat.toFloat(0x7BFF) == 65504.0)
        #expect(HalfFloat.toFloat(0x0001) == Float(bitPattern: 0x3380_0000))  // smallest subnormal 2^-24
        #expect(HalfFloat.toFloat(0x7C00) == .infinity)
        #expect(HalfFloat.toFloat(0x7E00).isNaN)
    }

    @Test func f16RoundTripsEveryNonNaNValue() {
        for bits in 0 ... UInt16.max {
            let f = HalfFloat.toFloat(bits)
            if f.isNaN { continue }
            #expect(HalfFloat.fromFloat(f) == bits)
        }
    }

    @Test func f16RoundsToNearestEven() {
        // 1 + 2^-11 lies exactly between 1.0 (0x3C00) and the next f16 (0x3C01): ties go to even.
        #expect(HalfFloat.fromFloat(1 + 0x1p-11) == 0x3C00)
        #expect(HalfFloat.fromFloat(1 + 3 * 0x1p-11) == 0x3C02)
        #expect(HalfFloat.fromFloat(70000) == 0x7C00)  // overflow to +inf
    }

    @Test func bf16() {
        #expect(HalfFloat.bf16ToFloat(0x3F80) == 1.0)
        #expect(HalfFloat.bf16FromFloat(1.0) == 0x3F80)
        #expect(HalfFloat.bf16FromFloat(Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie to even
        #expect(HalfFloat.bf16FromFloat(Float(bitPattern: 0x3F81_8000)) == 0x3F82)
    }
}

@Suite struct CheckedTests {
    @Test func overflowIsNil() {
        #expect(Checked.add(Int.max, 1) == nil)
        #expect(Checked.mul(Int.max / 2 + 1, 2) == nil)
        #expect(Checked.product([1 << 32, 1 << 32]) == nil)
        #expect(Checked.product([3, 4, 5]) == 60)
        #expect(Checked.alignUp(33, 32) == 64)
        #expect(Checked.alignUp(Int.max - 3, 32) == nil)
        #expect(Checked.int(UInt64.max) == nil)
        #expect(Checked.int(42) == 42)
    }
}

@Suite struct FileTests {
    func scratch() -> String {
        let dir = NSTemporaryDirectory() + "squish-core-tests-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func atomicWriteReplacesOnlyOnCommit() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/out.bin"
        try AtomicFileWriter.write([1, 2, 3], to: path)
        do {
            let w = try AtomicFileWriter(destination: path)
            try w.write([9, 9])
            // dropped without commit: the original stays, the temp file is gone
        }
        #expect(FileManager.default.contents(atPath: path) == Data([1, 2, 3]))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["out.bin"])
        let w = try AtomicFileWriter(destination: path)
        try w.write([7])
        try w.commit()
        #expect(FileManager.default.contents(atPath: path) == Data([7]))
    }

    @Test func mappedFileSeesBytes() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.bin"
        try AtomicFileWriter.write(Array(0 ..< 200), to: path)
        let m = try MappedFile(path: path)
        #expect(m.count == 200)
        #expect(m.bytes[199] == 199)
        #expect(throws: (any Error).self) { try MappedFile(path: dir + "/absent") }
    }

    @Test func byteReaderStopsAtEnd() {
        let bytes: [UInt8] = [1, 0, 0, 0, 2]
        bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            #expect(r.read(UInt32.self) == 1)
            #expect(r.read(UInt32.self) == nil)
            #expect(r.read(UInt8.self) == 2)
            #expect(r.readBytes(1) == nil)
        }
    }
}

@Suite struct SameFileTests {
    /// The same file by path, through a symbolic link and through a hard link; different files are not.
    @Test func identifiesOneFile() throws {
        let dir = NSTemporaryDirectory() + "squish-samefile-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try AtomicFileWriter.write([1, 2, 3], to: dir + "/a")
        try AtomicFileWriter.write([1, 2, 3], to: dir + "/b")
        try FileManager.default.createSymbolicLink(atPath: dir + "/s", withDestinationPath: dir + "/a")
        try FileManager.default.linkItem(atPath: dir + "/a", toPath: dir + "/h")
        #expect(isSameFile(dir + "/a", dir + "/./a"))
        #expect(isSameFile(dir + "/s", dir + "/a"))
        #expect(isSameFile(dir + "/h", dir + "/a"))
        #expect(!isSameFile(dir + "/a", dir + "/b"))
        #expect(!isSameFile(dir + "/a", dir + "/missing"))
    }
}
