import SquishCore

/// A JSON value parsed strictly (RFC 8259) from untrusted bytes. Numbers keep their source text so that
/// integers convert exactly (Foundation's JSONSerialization goes through Double and loses precision above 2^53);
/// objects keep their members in file order, and a repeated key is an error rather than "last one wins".
enum StrictJSON {
    case null
    case bool(Bool)
    /// The number's text exactly as written, already checked against the JSON number grammar.
    case number(String)
    case string(String)
    case array([StrictJSON])
    case object([(key: String, value: StrictJSON)])

    /// Deepest nesting accepted (safetensors headers use 3; the limit keeps recursion bounded).
    static let maxDepth = 64

    /// Parses `bytes` as one JSON value surrounded by optional whitespace. Errors are `FormatError`s naming
    /// `path` and the absolute byte offset (`baseOffset` is where `bytes` starts in the file).
    static func parse(_ bytes: UnsafeRawBufferPointer, path: String, baseOffset: Int = 0) throws -> StrictJSON {
        var p = StrictJSONParser(bytes: bytes, path: path, baseOffset: baseOffset)
        p.skipWhitespace()
        let value = try p.value(depth: 0)
        p.skipWhitespace()
        guard p.position == bytes.count else { throw p.error("unexpected text after the JSON value") }
        return value
    }

    var objectMembers: [(key: String, value: StrictJSON)]? {
        if case .object(let m) = self { return m }
        return nil
    }

    var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    var arrayValue: [StrictJSON]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// Result of reading a number as a non-negative integer.
    enum IntegerReading: Equatable {
        case value(Int)
        /// Not a number, negative, or with a fraction/exponent.
        case notAnInteger
        /// An integer above 2^53, the largest that every JSON implementation represents exactly.
        case tooLarge
    }

    /// This value as an exact non-negative integer no larger than 2^53.
    var nonNegativeInteger: IntegerReading {
        guard case .number(let text) = self else { return .notAnInteger }
        var v: UInt64 = 0
        for c in text.utf8 {
            guard c >= 0x30, c <= 0x39 else { return .notAnInteger }  // '-', '.', 'e' disqualify
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(c - 0x30))
            if o1 || o2 { return .tooLarge }
            v = a
        }
        return v <= 1 << 53 ? .value(Int(v)) : .tooLarge
    }

    /// A short description of the value's kind for error messages.
    var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number(let t): return "the number \(t)"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// Writes JSON strings the way serde_json (the safetensors reference) does: raw UTF-8, with only `"`, `\`
/// and control characters escaped.
func jsonQuoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if u.value < 0x20 {
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

private struct StrictJSONParser {
    let bytes: UnsafeRawBufferPointer
    let path: String
    let baseOffset: Int
    var position = 0

    init(bytes: UnsafeRawBufferPointer, path: String, baseOffset: Int) {
        self.bytes = bytes
        self.path = path
        self.baseOffset = baseOffset
    }

    func error(_ reason: String, at: Int? = nil) -> FormatError {
        .invalid(path: path, offset: baseOffset + (at ?? position), reason: "invalid JSON: \(reason)")
    }

    var atEnd: Bool { position >= bytes.count }
    var current: UInt8 { bytes[position] }

    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    mutating func expect(_ c: UInt8, _ what: String) throws {
        guard !atEnd else { throw error("text ends where \(what) was expected") }
        guard current == c else { throw error("expected \(what)") }
        position += 1
    }

    mutating func value(depth: Int) throws -> StrictJSON {
        guard depth < StrictJSON.maxDepth else { throw error("nesting deeper than \(StrictJSON.maxDepth)") }
        guard !atEnd else { throw error("text ends where a value was expected") }
        switch current {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0") ... UInt8(ascii: "9"): return .number(try number())
        default: throw error("unexpected byte 0x\(String(current, radix: 16))")
        }
    }

    mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard n <= bytes.count - position else { throw error("text ends inside a literal") }
        for i in 0 ..< n where bytes[position + i] != word.utf8Start[i] {
            throw error("unknown literal")
        }
        position += n
    }

    mutating func object(depth: Int) throws -> StrictJSON {
        position += 1  // '{'
        var members: [(key: String, value: StrictJSON)] = []
        var seen = Set<String>()
        skipWhitespace()
        if !atEnd, current == UInt8(ascii: "}") { position += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard !atEnd, current == UInt8(ascii: "\"") else {
                throw atEnd ? error("text ends inside an object") : error("expected a string key")
            }
            let key = try string()
            guard seen.insert(key).inserted else { throw FormatError.duplicateName(path: path, name: key) }
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "':'")
            skipWhitespace()
            members.append((key, try value(depth: depth + 1)))
            skipWhitespace()
            guard !atEnd else { throw error("text ends inside an object") }
            if current == UInt8(ascii: ",") { position += 1; continue }
            try expect(UInt8(ascii: "}"), "',' or '}'")
            return .object(members)
        }
    }

    mutating func array(depth: Int) throws -> StrictJSON {
        position += 1  // '['
        var values: [StrictJSON] = []
        skipWhitespace()
        if !atEnd, current == UInt8(ascii: "]") { position += 1; return .array(values) }
        while true {
            skipWhitespace()
            values.append(try value(depth: depth + 1))
            skipWhitespace()
            guard !atEnd else { throw error("text ends inside an array") }
            if current == UInt8(ascii: ",") { position += 1; continue }
            try expect(UInt8(ascii: "]"), "',' or ']'")
            return .array(values)
        }
    }

    /// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? (RFC 8259 section 6).
    mutating func number() throws -> String {
        let start = position
        func digits(_ p: inout StrictJSONParser) -> Int {
            var n = 0
            while !p.atEnd, p.current >= 0x30, p.current <= 0x39 { p.position += 1; n += 1 }
            return n
        }
        if current == UInt8(ascii: "-") { position += 1 }
        guard !atEnd else { throw error("text ends inside a number") }
        if current == UInt8(ascii: "0") {
            position += 1
        } else if digits(&self) == 0 {
            throw error("malformed number")
        }
        if !atEnd, current == UInt8(ascii: ".") {
            position += 1
            guard digits(&self) > 0 else { throw error("malformed number") }
        }
        if !atEnd, current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            position += 1
            if !atEnd, current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
            guard digits(&self) > 0 else { throw error("malformed number") }
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start ..< position]), as: UTF8.self)
    }

    mutating func hex4() throws -> UInt32 {
        guard 4 <= bytes.count - position else { throw error("text ends inside a \\u escape") }
        var v: UInt32 = 0
        for _ in 0 ..< 4 {
            let c = current
            let d: UInt8
            switch c {
            case 0x30 ... 0x39: d = c - 0x30
            case 0x41 ... 0x46: d = c - 0x41 + 10
            case 0x61 ... 0x66: d = c - 0x61 + 10
            default: throw error("bad hex digit in \\u escape")
            }
            v = v << 4 | UInt32(d)
            position += 1
        }
        return v
    }

    /// A string; the raw bytes between escapes must be valid UTF-8 and contain no control characters.
    mutating func string() throws -> String {
        let open = position
        position += 1  // '"'
        var result = ""
        var runStart = position
        func flushRun(_ p: StrictJSONParser, _ end: Int, into result: inout String) throws {
            guard end > runStart else { return }
            guard let s = String(validating: UnsafeRawBufferPointer(rebasing: p.bytes[runStart ..< end]), as: UTF8.self) else {
                throw p.error("string is not valid UTF-8", at: runStart)
            }
            result += s
        }
        while true {
            guard !atEnd else { throw error("text ends inside a string", at: open) }
            let c = current
            if c == UInt8(ascii: "\"") {
                try flushRun(self, position, into: &result)
                position += 1
                return result
            }
            if c < 0x20 { throw error("unescaped control character in a string") }
            if c != UInt8(ascii: "\\") { position += 1; continue }
            try flushRun(self, position, into: &result)
            position += 1
            guard !atEnd else { throw error("text ends inside an escape") }
            let e = current
            position += 1
            switch e {
            case UInt8(ascii: "\""): result += "\""
            case UInt8(ascii: "\\"): result += "\\"
            case UInt8(ascii: "/"): result += "/"
            case UInt8(ascii: "b"): result += "\u{08}"
            case UInt8(ascii: "f"): result += "\u{0C}"
            case UInt8(ascii: "n"): result += "\n"
            case UInt8(ascii: "r"): result += "\r"
            case UInt8(ascii: "t"): result += "\t"
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800, scalar < 0xDC00 {
                    // A high surrogate must be followed by an escaped low surrogate (RFC 8259 section 7).
                    guard 2 <= bytes.count - position, current == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                        throw error("unpaired surrogate in \\u escape")
                    }
                    position += 2
                    let low = try hex4()
                    guard low >= 0xDC00, low < 0xE000 else { throw error("unpaired surrogate in \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00, scalar < 0xE000 {
                    throw error("unpaired surrogate in \\u escape")
                }
                result.unicodeScalars.append(Unicode.Scalar(scalar)!)
            default:
                throw error("unknown escape \\\(Character(Unicode.Scalar(e)))")
            }
            runStart = position
        }
    }
}
