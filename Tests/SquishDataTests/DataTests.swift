import Crypto
import Foundation
import Testing
import SquishData

/// Builds XDR-serialized R data by hand (big-endian ints, "X\n" header, serialization version 2).
struct XDR {
    var bytes: [UInt8] = Array("X\n".utf8)
    init(version: Int32 = 2) {
        int(version); int(0x040201); int(0x020300)
    }
    mutating func int(_ v: Int32) { bytes += withUnsafeBytes(of: v.bigEndian, Array.init) }
    mutating func charsxp(_ s: String?, latin1: Bool = false) {
        int(9 | (latin1 ? 4 << 12 : 0))
        guard let s else { int(-1); return }
        let b: [UInt8] = latin1 ? s.unicodeScalars.map { UInt8($0.value) } : Array(s.utf8)
        int(Int32(b.count)); bytes += b
    }
}

@Suite struct RSerializationTests {
    @Test func characterVectorWithNAAndLatin1() throws {
        var x = XDR()
        x.int(16); x.int(3)
        x.charsxp("It is a truth"); x.charsxp(nil); x.charsxp("café", latin1: true)
        guard case .strings(let s) = try RSerialization.decode(x.bytes, path: "t.rds") else { Issue.record("not strings"); return }
        #expect(s == ["It is a truth", nil, "café"])
    }

    @Test func namedListAndReferences() throws {
        var x = XDR(version: 3)
        // version 3 adds the native encoding
        x.bytes.removeLast(0)
        var y = XDR(version: 3)
        y.int(5); y.bytes += Array("UTF-8".utf8)
        // list(a = 1:2) with a names attribute: VECSXP with attribute flag
        y.int(19 | 1 << 9); y.int(1)
        y.int(13); y.int(2); y.int(1); y.int(Int32.min)
        // attributes pairlist: tag "names" (SYMSXP), value STRSXP("a")
        y.int(2 | 1 << 10); y.int(1); y.charsxp("names"); y.int(16); y.int(1); y.charsxp("a"); y.int(254)
        guard case .list(let items, let names) = try RSerialization.decode(y.bytes, path: "t.rds") else { Issue.record("not a list"); return }
        #expect(names == ["a"])
        guard case .integers(let v) = items[0] else { Issue.record("not integers"); return }
        #expect(v == [1, nil])
        _ = x
    }

    @Test func hostileInputsThrow() {
        var huge = XDR(); huge.int(16); huge.int(Int32.max)
        var negative = XDR(); negative.int(16); negative.int(-5)
        var unknown = XDR(); unknown.int(77)
        var badString = XDR(); badString.int(16); badString.int(1); badString.int(9); badString.int(1_000_000)
        var badRef = XDR(); badRef.int(255 | 9 << 8)
        for (name, bytes) in [("empty", [UInt8]()), ("not-xdr", Array("A\n".utf8)), ("huge", huge.bytes), ("negative", negative.bytes),
                              ("unknown", unknown.bytes), ("bad-string", badString.bytes), ("bad-ref", badRef.bytes),
                              ("truncated", Array(XDR().bytes.prefix(7)))] {
            #expect(throws: DataError.self, "\(name)") { try RSerialization.decode(bytes, path: name) }
        }
        #expect(throws: DataError.self) { try RSerialization.inflateBlob([0, 0, 0, 9, 1, 2, 3], path: "blob") }
        #expect(throws: DataError.self) { try RSerialization.inflateBlob([0xFF, 0xFF, 0xFF, 0xFF, 1], path: "blob") }
        #expect(throws: DataError.self) { try RSerialization.inflateStream([0x1f, 0x8b, 8, 0], path: "gz") }
    }

    /// The fetched Austen corpus matches the known digest of the start of "Pride and Prejudice".
    @Test func fetchedAustenMatchesKnownDigest() throws {
        let path = Corpora.austenPath("prideprejudice")
        guard let data = FileManager.default.contents(atPath: path) else {
            Issue.record("\(path) missing: run `squish fetch`")
            return
        }
        let digest = Insecure.MD5.hash(data: data.prefix(60_000)).map { String(format: "%02x", $0) }.joined()
        #expect(digest == "8e7339774f85643027b3f01696861418")
        #expect(String(decoding: data.prefix(40), as: UTF8.self).hasPrefix("PRIDE AND PREJUDICE"))
        #expect(try Corpora.verify(directory: Corpora.austenDirectory).isEmpty)
        #expect(try Corpora.allTextFiles().count >= 6 + 80)
    }
}
