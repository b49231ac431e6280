/// Text from files and arguments made safe to print on a terminal: every character that a terminal interprets
/// instead of showing (C0 controls such as ESC, NUL and newline, DEL, C1 controls, Unicode line separators and bidi
/// overrides) is written as a visible escape, and bytes that are not UTF-8 become `\xNN`. Every error type's
/// `description` goes through `escape`, so a crafted metadata key cannot move the cursor, recolor the screen or
/// split one error into several lines.
public enum TerminalText {
    /// `s` with non-printing characters escaped: `\n`, `\r`, `\t`, `\e` (ESC), `\0`, `\x7F`, `\u{85}`, `\u{202E}`, ...
    public static func escape(_ s: String) -> String {
        // Fast path: nothing to escape in the common case.
        if !s.unicodeScalars.contains(where: needsEscape) { return s }
        var out = ""
        out.reserveCapacity(s.utf8.count + 8)
        for u in s.unicodeScalars { append(u, to: &out) }
        return out
    }

    /// Bytes that should be UTF-8 text, escaped like `escape(_:)`; bytes that are not valid UTF-8 become `\xNN`.
    /// At most `limit` bytes are read (then "..." is appended), so a huge value costs no more than what is shown.
    public static func escape(bytes: some Collection<UInt8>, limit: Int = .max) -> String {
        let b = Array(bytes.prefix(limit))
        var out = ""
        var i = 0
        while i < b.count {
            if let (u, length) = scalar(b, at: i) {
                append(u, to: &out)
                i += length
            } else {
                out += hex(b[i])
                i += 1
            }
        }
        if bytes.count > limit { out += "..." }
        return out
    }

    /// The scalar encoded at `b[i...]` and its length, nil if the bytes there are not well-formed UTF-8
    /// (Unicode 15, table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF).
    static func scalar(_ b: [UInt8], at i: Int) -> (Unicode.Scalar, Int)? {
        let b0 = b[i]
        if b0 < 0x80 { return (Unicode.Scalar(b0), 1) }
        let length: Int, low: UInt8, high: UInt8
        switch b0 {
        case 0xC2 ... 0xDF: (length, low, high) = (2, 0x80, 0xBF)
        case 0xE0: (length, low, high) = (3, 0xA0, 0xBF)
        case 0xE1 ... 0xEC, 0xEE ... 0xEF: (length, low, high) = (3, 0x80, 0xBF)
        case 0xED: (length, low, high) = (3, 0x80, 0x9F)
        case 0xF0: (length, low, high) = (4, 0x90, 0xBF)
        case 0xF1 ... 0xF3: (length, low, high) = (4, 0x80, 0xBF)
        case 0xF4: (length, low, high) = (4, 0x80, 0x8F)
        default: return nil
        }
        guard i + length <= b.count, b[i + 1] >= low, b[i + 1] <= high else { return nil }
        var v = UInt32(b0) & (0xFF >> (length + 1))
        for k in 1 ..< length {
            guard b[i + k] & 0xC0 == 0x80 else { return nil }
            v = v << 6 | UInt32(b[i + k] & 0x3F)
        }
        return Unicode.Scalar(v).map { ($0, length) }
    }

    @inline(__always) static func needsEscape(_ u: Unicode.Scalar) -> Bool {
        let v = u.value
        return v < 0x20 || (v >= 0x7F && v <= 0x9F) || v == 0x2028 || v == 0x2029 || (v >= 0x202A && v <= 0x202E)
            || (v >= 0x2066 && v <= 0x2069) || v == 0x200E || v == 0x200F || v == 0x061C
    }

    static func append(_ u: Unicode.Scalar, to out: inout String) {
        guard needsEscape(u) else { out.unicodeScalars.append(u); return }
        switch u {
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{1B}": out += "\\e"
        case "\0": out += "\\0"
        default:
            out += u.value < 0x80 ? hex(UInt8(u.value)) : "\\u{" + String(u.value, radix: 16, uppercase: true) + "}"
        }
    }

    static func hex(_ b: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return "\\x" + String(digits[Int(b >> 4)]) + String(digits[Int(b & 15)])
    }
}
