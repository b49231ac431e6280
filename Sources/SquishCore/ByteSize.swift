import Foundation

/// Sizes written by people: "60MB", "57.5 MB", "55MiB", "0.06GB", "123456" (MB = 10^6 bytes, MiB = 2^20).
public enum ByteSize {
    /// The largest size accepted: 2^53 bytes (about 9 PB), beyond any model file; every whole number of bytes up to
    /// it is exact in a Double, so a parsed size never depends on rounding.
    public static let maximum = 1 << 53

    /// Units, longest suffix first so that "MIB" is not read as "B".
    static let units: [(suffix: String, bytes: Double)] = [
        ("GIB", 1_073_741_824), ("MIB", 1_048_576), ("KIB", 1024), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3),
        ("G", 1e9), ("M", 1e6), ("K", 1e3), ("B", 1),
    ]

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public let text: String
        public let reason: String
        public var description: String { TerminalText.escape("'\(text)': \(reason)") }
    }

    /// The number of bytes `text` stands for, rounded down to a whole byte; throws when it is not a size or lies
    /// outside 1 ... `maximum` bytes (the message says the allowed range).
    public static func parse(_ text: String) throws -> Int {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased().replacingOccurrences(of: " ", with: "")
        var number = Substring(t)
        var factor = 1.0
        if let unit = units.first(where: { t.hasSuffix($0.suffix) }) {
            number = t.dropLast(unit.suffix.count)
            factor = unit.bytes
        }
        // Digits, one optional point and an optional exponent: no sign, no hex, no "nan"/"inf".
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "." || $0 == "E" || $0 == "+" || $0 == "-") }),
              number.first!.isNumber || number.first == ".", let value = Double(number)
        else {
            throw ParseError(text: text, reason: "not a size (expected e.g. 60MB, 57.5MB, 55MiB, 0.06GB or a byte count)")
        }
        // Whole numbers in exact integer arithmetic (a Double would round 2^53 + 1 down into the range).
        if number.allSatisfy({ $0.isNumber }) {
            guard let n = Int(number), let b = Checked.mul(n, Int(factor)), b <= maximum else {
                throw ParseError(text: text, reason: "too large: a size must be at most \(maximum) bytes (2^53, about 9 PB)")
            }
            guard b >= 1 else { throw ParseError(text: text, reason: "a size must be at least 1 byte") }
            return b
        }
        let bytes = (value * factor).rounded(.down)
        guard bytes.isFinite, bytes <= Double(maximum) else {
            throw ParseError(text: text, reason: "too large: a size must be at most \(maximum) bytes (2^53, about 9 PB)")
        }
        guard bytes >= 1 else { throw ParseError(text: text, reason: "a size must be at least 1 byte") }
        return Int(bytes)
    }
}
