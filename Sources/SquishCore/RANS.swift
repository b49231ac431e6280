#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Range asymmetric numeral systems (rANS, Duda 2013, "Asymmetric numeral systems", §3; the 64-bit state with
/// 32-bit renormalization as in Giesen's rans64): an entropy coder as tight as arithmetic coding whose decoder needs
/// no division. A symbol is a sub-range [start, start + freq) of 0 ..< 2^scaleBits (scaleBits ≤ 31).
///
/// The encoder takes the symbols last to first and the decoder gives them first to last. Several states may be
/// interleaved (`ways`): symbol i goes through state i mod ways, which lets the decoder's independent dependency
/// chains overlap. Stream layout: the states (each low then high 32 bits, state 0 first), then 32-bit words, all
/// little-endian; the decoder checks at the end that every state is back at its initial value and every word was
/// read, which catches most corruption.
public enum RANS {
    /// Lower end of the normalized state interval [L, 2^32 L).
    public static let lowerBound: UInt64 = 1 << 31

    /// Encodes symbols 0 ..< count (`symbol(i)` gives symbol i's start and frequency) into a stream that
    /// `RANSDecoder` with the same `ways` and `scaleBits` reads back in order.
    public static func encode(count: Int, ways: Int = 1, scaleBits: Int,
                              _ symbol: (Int) -> (start: UInt32, freq: UInt32)) -> [UInt8] {
        precondition(ways >= 1 && scaleBits >= 1 && scaleBits <= 31)
        var states = [UInt64](repeating: lowerBound, count: ways)
        var words: [UInt32] = []  // emitted last-first; reversed at the end
        words.reserveCapacity(count / 4 + 2 * ways)
        // x may stay below xMax(f) = ((L >> scaleBits) << 32) · f before coding a symbol of frequency f.
        let bound = (lowerBound >> UInt64(scaleBits)) << 32
        var i = count - 1
        while i >= 0 {
            let (start, freq) = symbol(i)
            precondition(freq > 0 && UInt64(start) + UInt64(freq) <= 1 << UInt64(scaleBits), "rANS symbol outside the scale")
            let w = i % ways
            var x = states[w]
            let f = UInt64(freq)
            if x >= bound * f {
                words.append(UInt32(truncatingIfNeeded: x))
                x >>= 32
            }
            states[w] = ((x / f) << UInt64(scaleBits)) + (x % f) + UInt64(start)
            i -= 1
        }
        var out: [UInt8] = []
        out.reserveCapacity(8 * ways + 4 * words.count)
        func put(_ v: UInt32) { for b in 0 ..< 4 { out.append(UInt8(truncatingIfNeeded: v >> UInt32(8 * b))) } }
        for x in states {
            put(UInt32(truncatingIfNeeded: x))
            put(UInt32(truncatingIfNeeded: x >> 32))
        }
        for w in words.reversed() { put(w) }
        return out
    }
}

/// Reads a stream written by `RANS.encode`: for each symbol, `slot()` gives a value in 0 ..< 2^scaleBits, the caller
/// finds the symbol whose [start, start + freq) holds it and calls `advance(start:freq:)`.
public struct RANSDecoder {
    private let bytes: UnsafeRawBufferPointer
    private var offset: Int
    private var states: [UInt64]
    private var next = 0  // state of the next symbol
    public let ways: Int
    public let scaleBits: Int

    /// Nil when `bytes` cannot hold the states or the states are outside the normalized interval.
    public init?(_ bytes: UnsafeRawBufferPointer, ways: Int = 1, scaleBits: Int) {
        precondition(ways >= 1 && scaleBits >= 1 && scaleBits <= 31)
        guard bytes.count >= 8 * ways, (bytes.count - 8 * ways) % 4 == 0 else { return nil }
        self.bytes = bytes
        self.ways = ways
        self.scaleBits = scaleBits
        states = []
        offset = 0
        for _ in 0 ..< ways {
            let lo = UInt64(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
            let hi = UInt64(bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self).littleEndian)
            let x = lo | hi << 32
            guard x >= RANS.lowerBound else { return nil }
            states.append(x)
            offset += 8
        }
    }

    /// The next symbol's slot in 0 ..< 2^scaleBits.
    @inline(__always) public func slot() -> UInt32 {
        UInt32(truncatingIfNeeded: states[next] & ((1 << UInt64(scaleBits)) - 1))
    }

    /// Consumes the symbol [start, start + freq) that holds `slot()`. False when the stream ran out of words (corrupt).
    @inline(__always) public mutating func advance(start: UInt32, freq: UInt32) -> Bool {
        var x = states[next]
        let mask = (UInt64(1) << UInt64(scaleBits)) - 1
        x = UInt64(freq) &* (x >> UInt64(scaleBits)) &+ (x & mask) &- UInt64(start)
        if x < RANS.lowerBound {
            guard offset + 4 <= bytes.count else { return false }
            x = x << 32 | UInt64(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
            offset += 4
        }
        states[next] = x
        next = next + 1 == ways ? 0 : next + 1
        return true
    }

    /// True when the stream was read exactly: every word consumed and every state back at its initial value.
    public var isComplete: Bool { offset == bytes.count && states.allSatisfy { $0 == RANS.lowerBound } }
}

/// A static distribution over byte values for rANS with 2^scaleBits slots, and the fast byte decoder that uses it.
public struct RANSByteTable: Sendable, Equatable {
    public let scaleBits: Int
    /// [256] frequencies summing to 2^scaleBits (0 for bytes that never occur).
    public let freq: [UInt32]
    /// [256] cumulative starts.
    public let start: [UInt32]

    /// Nil unless the frequencies sum to exactly 2^scaleBits.
    public init?(frequencies: [UInt32], scaleBits: Int) {
        guard frequencies.count == 256, scaleBits >= 1, scaleBits <= 16,
              frequencies.reduce(0, { $0 + UInt64($1) }) == UInt64(1) << UInt64(scaleBits) else { return nil }
        self.scaleBits = scaleBits
        freq = frequencies
        var s: [UInt32] = []
        var acc: UInt32 = 0
        for f in frequencies { s.append(acc); acc += f }
        start = s
    }

    /// Frequencies for byte counts [256] (not all zero): every byte that occurs gets at least 1, the rest in proportion,
    /// the rounding difference taken from or given to the most frequent bytes.
    public init(counts: [Int], scaleBits: Int) {
        precondition(counts.count == 256 && scaleBits >= 9 && scaleBits <= 16)
        let total = counts.reduce(0, +)
        precondition(total > 0)
        let m = 1 << scaleBits
        var f = counts.map { c -> Int in c == 0 ? 0 : max(1, Int((Double(c) * Double(m) / Double(total)).rounded())) }
        var diff = m - f.reduce(0, +)
        // Adjust the largest entries first (their relative change costs least); keep every used byte at ≥ 1.
        let order = (0 ..< 256).sorted { f[$0] != f[$1] ? f[$0] > f[$1] : $0 < $1 }
        while diff != 0 {
            var changed = false
            for s in order where diff != 0 {
                if diff > 0 { f[s] += 1; diff -= 1; changed = true } else if f[s] > 1 { f[s] -= 1; diff += 1; changed = true }
            }
            precondition(changed)
        }
        self.init(frequencies: f.map { UInt32($0) }, scaleBits: scaleBits)!
    }

    /// Bits `counts` cost under this table (without the stream's fixed overhead).
    public func cost(of counts: [Int]) -> Double {
        var bits = 0.0
        for s in 0 ..< 256 where counts[s] > 0 {
            bits += Double(counts[s]) * (Double(scaleBits) - log2(Double(freq[s])))
        }
        return bits
    }

    /// Encodes `symbols` with `ways` interleaved states.
    public func encode(_ symbols: UnsafeBufferPointer<UInt8>, ways: Int) -> [UInt8] {
        let (f, s) = (freq, start)
        return RANS.encode(count: symbols.count, ways: ways, scaleBits: scaleBits) { i in
            let b = Int(symbols[i])
            return (s[b], f[b])
        }
    }

    /// [2^scaleBits] slot → byte.
    public func slotTable() -> [UInt8] {
        var symbolOf = [UInt8](repeating: 0, count: 1 << scaleBits)
        for b in 0 ..< 256 where freq[b] > 0 {
            for k in Int(start[b]) ..< Int(start[b] + freq[b]) { symbolOf[k] = UInt8(b) }
        }
        return symbolOf
    }

    /// Decodes `out.count` bytes from `stream` (written by `encode` with the same `ways`), with `slots` from
    /// `slotTable()`. False when the stream is corrupt (too short or too long, a state not back at its start). The
    /// table is complete (it sums to 2^scaleBits), so every slot belongs to a byte that occurs.
    public func decode(_ stream: UnsafeRawBufferPointer, ways: Int, slots: [UInt8], into out: UnsafeMutableBufferPointer<UInt8>) -> Bool {
        precondition(ways >= 1 && slots.count == 1 << scaleBits)
        guard stream.count >= 8 * ways, (stream.count - 8 * ways) % 4 == 0 else { return false }
        let bits = UInt64(scaleBits), mask = (UInt64(1) << bits) - 1
        return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: ways) { st -> Bool in
            var offset = 0
            for w in 0 ..< ways {
                let lo = UInt64(stream.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
                let hi = UInt64(stream.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self).littleEndian)
                st[w] = lo | hi << 32
                guard st[w] >= RANS.lowerBound else { return false }
                offset += 8
            }
            let end = stream.count, n = out.count
            if n > 0 {
                let ok = slots.withUnsafeBufferPointer { table -> Bool in
                    freq.withUnsafeBufferPointer { fr -> Bool in
                        start.withUnsafeBufferPointer { sr -> Bool in
                            let (tb, fp, sp, o, src) = (table.baseAddress!, fr.baseAddress!, sr.baseAddress!, out.baseAddress!, stream.baseAddress!)
                            var i = 0, w = 0
                            while i < n {
                                var s = st[w]
                                let slot = s & mask
                                let b = Int(tb[Int(slot)])
                                s = UInt64(fp[b]) &* (s >> bits) &+ slot &- UInt64(sp[b])
                                if s < RANS.lowerBound {
                                    guard offset + 4 <= end else { return false }
                                    s = s << 32 | UInt64(src.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
                                    offset += 4
                                }
                                st[w] = s
                                o[i] = UInt8(truncatingIfNeeded: b)
                                i += 1
                                w += 1
                                if w == ways { w = 0 }
                            }
                            return true
                        }
                    }
                }
                guard ok else { return false }
            }
            return offset == end && (0 ..< ways).allSatisfy { st[$0] == RANS.lowerBound }
        }
    }
}
