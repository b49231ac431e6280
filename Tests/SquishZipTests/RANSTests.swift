import Foundation
import SquishCore
import Testing

@Suite struct RANSTests {
    /// Random symbols from a skewed distribution over 0 ..< 2^12 slots round-trip through the generic coder, and the
    /// stream costs within 0.1% + the 8-byte state of the distribution's ideal size.
    @Test(arguments: [1, 3])
    func genericRoundTrip(ways: Int) throws {
        let bits = 12
        let freq: [UInt32] = [2000, 1000, 600, 300, 100, 50, 20, 10, 5, 5, 1, 5]  // sums to 4096
        #expect(freq.reduce(0, +) == 4096)
        let start = freq.indices.map { i in freq[..<i].reduce(0, +) }
        var rng = SplitMix64(seed: 1)
        let symbols = (0 ..< 20000).map { _ -> Int in
            let slot = UInt32(rng.next() % 4096)
            return start.lastIndex { $0 <= slot }!
        }
        let bytes = RANS.encode(count: symbols.count, ways: ways, scaleBits: bits) { (start[symbols[$0]], freq[symbols[$0]]) }
        let ideal = symbols.reduce(0.0) { $0 + Double(bits) - log2(Double(freq[$1])) } / 8
        #expect(Double(bytes.count) < ideal * 1.001 + Double(8 * ways) + 4)
        try bytes.withUnsafeBytes { raw in
            var d = try #require(RANSDecoder(raw, ways: ways, scaleBits: bits))
            for expected in symbols {
                let slot = d.slot()
                let s = start.lastIndex { $0 <= slot }!
                #expect(s == expected)
                if s != expected { return }
                let advanced = d.advance(start: start[s], freq: freq[s])
                #expect(advanced)
            }
            #expect(d.isComplete)
        }
    }

    /// The byte-table coder: round trip with 1 and 4 states, an empty input, and a damaged stream is reported.
    @Test func byteTableRoundTripAndDamage() throws {
        var rng = SplitMix64(seed: 2)
        let data = (0 ..< 50000).map { _ in UInt8(truncatingIfNeeded: Int(rng.normal(6)) + 128) }
        var counts = [Int](repeating: 0, count: 256)
        for b in data { counts[Int(b)] += 1 }
        let table = RANSByteTable(counts: counts, scaleBits: 14)
        #expect(table.freq.reduce(0, +) == 1 << 14)
        for (b, c) in counts.enumerated() { #expect((c > 0) == (table.freq[b] > 0)) }
        let slots = table.slotTable()
        for ways in [1, 4] {
            var coded = data.withUnsafeBufferPointer { table.encode($0, ways: ways) }
            var out = [UInt8](repeating: 0, count: data.count)
            let ok = coded.withUnsafeBytes { s in out.withUnsafeMutableBufferPointer { table.decode(s, ways: ways, slots: slots, into: $0) } }
            #expect(ok && out == data)
            // Entropy of the data against the coded size.
            #expect(Double(coded.count) < table.cost(of: counts) / 8 * 1.001 + 64)
            coded[coded.count / 2] ^= 0x10
            let damaged = coded.withUnsafeBytes { s in out.withUnsafeMutableBufferPointer { table.decode(s, ways: ways, slots: slots, into: $0) } }
            #expect(!damaged)
            let short = coded.dropLast(4).withUnsafeBytes { s in out.withUnsafeMutableBufferPointer { table.decode(s, ways: ways, slots: slots, into: $0) } }
            #expect(!short)
        }
        let empty = [UInt8]().withUnsafeBufferPointer { table.encode($0, ways: 4) }
        #expect(empty.count == 32)
        var none: [UInt8] = []
        #expect(empty.withUnsafeBytes { s in none.withUnsafeMutableBufferPointer { table.decode(s, ways: 4, slots: slots, into: $0) } })
    }

    /// Frequencies must sum to the scale: anything else is refused.
    @Test func invalidTableRefused() {
        var f = [UInt32](repeating: 0, count: 256)
        f[0] = 1 << 13
        #expect(RANSByteTable(frequencies: f, scaleBits: 14) == nil)
        f[1] = 1 << 13
        #expect(RANSByteTable(frequencies: f, scaleBits: 14) != nil)
    }
}
