import Foundation
import Testing
import PropertyBased
import SquishCore

/// The size parser: exact on whole numbers of every unit up to 2^53 bytes, monotonic, and total — any text gives
/// a size in 1 ... 2^53 or a ParseError that states the allowed range, never a trap (1e19 used to trap on Double → Int).
@Suite("Byte sizes: properties")
struct ByteSizePropertyTests {
    static let units: [(String, Int)] = [("", 1), ("B", 1), ("K", 1000), ("KB", 1000), ("KiB", 1024), ("M", 1_000_000), ("mb", 1_000_000),
                                         ("MiB", 1 << 20), ("G", 1_000_000_000), ("GB", 1_000_000_000), ("GiB", 1 << 30)]

    @Test func wholeNumbersOfEveryUnitAreExact() async {
        await propertyCheck(count: 300, input: Gen.int(in: 1 ... ByteSize.maximum), Gen.int(in: 0 ..< Self.units.count)) { n, u in
            let (unit, factor) = Self.units[u]
            let k = max(1, n / factor)
            #expect((try? ByteSize.parse("\(k)\(unit)")) == k * factor)
            #expect((try? ByteSize.parse(" \(k) \(unit) ")) == k * factor)
        }
    }

    @Test func beyondTheMaximumIsAnErrorWithTheRange() async {
        await propertyCheck(count: 200, input: Gen.double(in: 9.1e15 ... 1e300), Gen.int(in: 0 ..< Self.units.count)) { v, u in
            let text = "\(v)\(Self.units[u].0)"
            #expect(throws: ByteSize.ParseError.self) { try ByteSize.parse(text) }
            do { _ = try ByteSize.parse(text) } catch { #expect("\(error)".contains("at most 9007199254740992 bytes")) }
        }
        for text in ["1e19", "1e300GB", "20000000000GB", "9007199254740993", "1e309"] {
            #expect(throws: ByteSize.ParseError.self) { try ByteSize.parse(text) }
        }
    }

    @Test func monotonic() async {
        await propertyCheck(count: 300, input: Gen.double(in: 0 ... 1e6), Gen.double(in: 0 ... 1e6)) { a, b in
            let (lo, hi) = (min(a, b), max(a, b))
            guard let x = try? ByteSize.parse("\(lo)MB"), let y = try? ByteSize.parse("\(hi)MB") else { return }
            #expect(x <= y)
        }
    }

    /// Arbitrary text: a size in range or a ParseError, nothing else.
    @Test func anyTextIsASizeOrAnError() async {
        let alphabet = Array("0123456789.eE+-kKmMgGiIbB xXnNaAfF\u{1B}\u{0}é")
        let character = Gen.int(in: 0 ..< alphabet.count).map { alphabet[$0] }
        await propertyCheck(count: 2000, input: character.array(of: 0 ... 12)) { chars in
            do {
                let n = try ByteSize.parse(String(chars))
                #expect(n >= 1 && n <= ByteSize.maximum)
            } catch let e as ByteSize.ParseError {
                #expect(!e.description.unicodeScalars.contains { $0.value < 0x20 })
            }
        }
        for text in ["", "MB", "-5MB", "12XB", "nan", "inf", "0", "0.5", "0x10"] {
            #expect(throws: ByteSize.ParseError.self, "\(text)") { try ByteSize.parse(text) }
        }
    }
}
