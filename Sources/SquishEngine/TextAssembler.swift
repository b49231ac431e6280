/// Turns generated token bytes into text deltas: only complete UTF-8 characters are released, and bytes that might
/// be the beginning of a stop text are held back until they are known not to be.
struct TextAssembler {
    let stops: [[UInt8]]
    /// Bytes generated but not yet released.
    private var pending: [UInt8] = []

    init(stops: [String]) {
        self.stops = stops.map { Array($0.utf8) }.filter { !$0.isEmpty }
    }

    /// Appends a token's bytes. Returns the text now safe to release and whether a stop text was completed (then the
    /// text ends right before it and nothing more may be appended).
    mutating func append(_ bytes: [UInt8]) -> (text: String, stopped: Bool) {
        pending += bytes
        // The earliest stop text in what is pending (nothing released can be part of one: see below).
        var earliest: Int?
        for s in stops where s.count <= pending.count {
            if let r = Self.firstIndex(of: s, in: pending), r < (earliest ?? Int.max) { earliest = r }
        }
        if let e = earliest {
            let text = String(decoding: pending[..<e], as: UTF8.self)
            pending.removeAll()
            return (text, true)
        }
        // Hold back the longest suffix that is a proper prefix of a stop text, and an incomplete UTF-8 character.
        var hold = 0
        for s in stops {
            for k in stride(from: min(s.count - 1, pending.count), to: hold, by: -1) where pending.suffix(k).elementsEqual(s.prefix(k)) {
                hold = k
                break
            }
        }
        var cut = pending.count - hold
        cut = Self.utf8Boundary(pending, before: cut)
        let text = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return (text, false)
    }

    /// Everything still held back (the end of generation).
    mutating func flush() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// The largest index ≤ `end` that does not split a UTF-8 character of `bytes`.
    static func utf8Boundary(_ bytes: [UInt8], before end: Int) -> Int {
        guard end > 0 else { return 0 }
        // Walk back over at most 3 continuation bytes to the lead byte, and see if the character is complete.
        var i = end - 1
        var continuation = 0
        while i > 0 && bytes[i] & 0xC0 == 0x80 && continuation < 3 { i -= 1; continuation += 1 }
        let lead = bytes[i]
        let need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
        if lead & 0xC0 == 0x80 { return end }  // stray continuation bytes: release as they are
        return need > continuation + 1 ? i : end
    }

    static func firstIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        for start in 0 ... haystack.count - needle.count where haystack[start] == needle[0] {
            if haystack[start ..< start + needle.count].elementsEqual(needle) { return start }
        }
        return nil
    }
}
