import Foundation

/// Strings that exercise tokenizers where the published regular expressions and Unicode classes matter.
enum TextSamples {
    /// Written by hand: contractions, digits of several kinds, whitespace runs before words and at the end,
    /// newlines in every combination, marks, emoji sequences, special-token text.
    static let handPicked: [String] = [
        "", " ", "  ", "\n", "\r\n", "a", "Hello World's 12345 x\n\n  y!!\n",
        "I'm sure you'll see we've done what they'd said: it's theirs.", "I'M SURE YOU'LL SEE WE'VE DONE IT'S",
        "don't 'tis ''s 's' '  's", "3.14159 1,000,000 12345678 ½ ² ³ Ⅻ ① ١٢٣٤ ৩৪ ０１２",
        "  leading and trailing  ", "tabs\tand\t\tmore\t", "line\n\nbreaks\r\n\r\nmixed \n \n  \n", "\u{00A0}nbsp\u{00A0}\u{00A0}x",
        "ideographic\u{3000}space\u{3000}\u{3000}", "en\u{2002}em\u{2003}thin\u{2009}x", "zero\u{200B}width\u{FEFF}bom",
        "naïve café résumé Ångström Straße", "Ελληνικά русский עברית العربية हिन्दी ไทย", "日本語のテキスト、中文。한국어",
        "e\u{0301} a\u{0308}\u{0301} \u{0915}\u{093E} \u{20DD}x", "ǅemal ʰaspirated ªordinal",
        "emoji 😀😀 👩‍💻 🇫🇷🇩🇪 👍🏽 ❤️ ☺︎", "math ∑∫√∞ ≠ ≤ → ⇒ €100 £5 ¥", "“quoted” ‘single’ — en–dash … ellipsis",
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|><|im_end|><|im_", "a<|im_end|>b",
        "controls \u{0001}\u{0007}\u{001B}[0m \u{007F} \u{0085} \u{009F} \u{000B}\u{000C}", "\u{001C}\u{001D}\u{001E}\u{001F} x",
        "private \u{E000}\u{F8FF} \u{F0000} \u{10FFFD} replacement \u{FFFD}\u{FFFD} nonchar \u{FFFE}\u{FFFF}",
        "!!!???...---===___", " !!! ??? x", "x  !!", "((Hello)) [World] {'key': 42}", "path/to/file.txt C:\\dir\\x",
        "mixed123abc456 abc123 ١٢٣abc", "CamelCaseWordsHere snake_case_here kebab-case-here",
        "    indented code:\n        return x + 1\n", "trailing newline\n", "\n\n\n", " \n", "\n ", "a \n b",
        String(repeating: "ab", count: 300), String(repeating: " ", count: 100) + "x",
    ]

    /// Scalar pools: (weight, ranges). All assigned characters, so that Unicode-version differences between Swift's
    /// tables and the reference's do not show.
    static let pools: [(Int, [ClosedRange<UInt32>])] = [
        (30, [0x61 ... 0x7A, 0x41 ... 0x5A]),                 // ASCII letters
        (10, [0x20 ... 0x20]),                                 // space
        (6, [0x30 ... 0x39]),                                  // ASCII digits
        (6, [0x21 ... 0x2F, 0x3A ... 0x40, 0x5B ... 0x60, 0x7B ... 0x7E]),  // ASCII punctuation
        (3, [0x27 ... 0x27]),                                  // apostrophe (contractions)
        (4, [0x09 ... 0x0D]),                                  // \t \n \v \f \r
        (2, [0x00 ... 0x08, 0x0E ... 0x1F, 0x7F ... 0x9F]),   // control characters
        (2, [0xA0 ... 0xA0, 0x1680 ... 0x1680, 0x2000 ... 0x200A, 0x2028 ... 0x2029, 0x202F ... 0x202F,
             0x205F ... 0x205F, 0x3000 ... 0x3000, 0x85 ... 0x85]),  // Unicode White_Space
        (6, [0xC0 ... 0x24F]),                                 // Latin-1 and Latin Extended letters
        (3, [0x391 ... 0x3A1, 0x3B1 ... 0x3C9, 0x410 ... 0x44F]),  // Greek, Cyrillic
        (2, [0x5D0 ... 0x5EA, 0x627 ... 0x64A, 0x905 ... 0x939, 0xE01 ... 0xE30]),  // Hebrew, Arabic, Devanagari, Thai
        (4, [0x4E00 ... 0x9FA5, 0x3041 ... 0x3096, 0xAC00 ... 0xD7A3]),  // CJK, Hiragana, Hangul
        (2, [0x660 ... 0x669, 0x966 ... 0x96F, 0xFF10 ... 0xFF19, 0xB2 ... 0xB3, 0xBC ... 0xBE, 0x2160 ... 0x216B,
             0x2460 ... 0x2473]),                              // other \p{N}: Nd, No, Nl
        (3, [0x300 ... 0x36F, 0x93E ... 0x94C, 0x20DD ... 0x20E0]),  // combining marks Mn, Mc, Me
        (3, [0x1F600 ... 0x1F64F, 0x1F300 ... 0x1F3FA, 0x2600 ... 0x26FF, 0xFE0F ... 0xFE0F, 0x200D ... 0x200D]),  // emoji
        (2, [0x2010 ... 0x2027, 0x20A0 ... 0x20C0, 0x2200 ... 0x22FF, 0x2500 ... 0x257F]),  // punctuation, symbols
        (1, [0x1C5 ... 0x1C5, 0x2B0 ... 0x2C1, 0xAA ... 0xAA, 0xE000 ... 0xE0FF, 0xFFFD ... 0xFFFD]),  // Lt, Lm, Lo, Co, U+FFFD
    ]

    /// `count` random strings of 0...`maxLength` scalars from the pools (deterministic for a seed).
    static func random(count: Int, maxLength: Int = 40, seed: UInt64) -> [String] {
        var rng = SplitMix64(seed: seed)
        let total = pools.reduce(0) { $0 + $1.0 }
        var out: [String] = []
        for _ in 0 ..< count {
            var s = String.UnicodeScalarView()
            for _ in 0 ..< Int.random(in: 0 ... maxLength, using: &rng) {
                var pick = Int.random(in: 0 ..< total, using: &rng)
                var pool = pools[0].1
                for (w, p) in pools {
                    if pick < w { pool = p; break }
                    pick -= w
                }
                let range = pool.randomElement(using: &rng)!
                if let u = Unicode.Scalar(UInt32.random(in: range, using: &rng)) { s.append(u) }
            }
            out.append(String(s))
        }
        return out
    }

    /// Writes `strings` as a JSON list.
    static func writeJSON(_ strings: [String], to path: String) throws {
        try JSONSerialization.data(withJSONObject: strings).write(to: URL(fileURLWithPath: path))
    }

    /// Lines of a corpus file (split on "\n", without it; no byte-order mark stripped).
    static func lines(of path: String) throws -> [String] {
        let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self)
        return text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map { String(String.UnicodeScalarView($0)) }
    }
}
