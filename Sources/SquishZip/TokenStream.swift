import SquishTokenizer

/// Any bytes as a sequence of the model's tokens whose pieces concatenate to exactly those bytes, and back.
///
/// Encoding: maximal runs of valid UTF-8 go through the tokenizer and are kept when their pieces reproduce the run;
/// otherwise each line of the run is tried alone, and a line that still does not reproduce (a normalizing
/// tokenizer, a dropped control character, an added space prefix) is spelled byte by byte, as are bytes that are
/// not UTF-8. A byte is spelled by its byte token where the vocabulary has one (real vocabularies lack some: SmolLM2
/// has no token for 0x04 or 0xFF), else by the escape token followed by the byte itself, which the coder codes with
/// a uniform distribution outside the model. The escape token is a control token, which text never encodes to.
///
/// Decoding concatenates each token's bytes (`Tokenizer.bytes(for:)`), an escape token standing for its byte.
public struct TokenStream: Sendable {
    public let tokenizer: Tokenizer
    /// [256] the token of each single byte, where there is one.
    let byteTokens: [Int?]
    /// The first control token, if the vocabulary has one.
    public let escapeToken: Int?

    public init(tokenizer: Tokenizer) {
        self.tokenizer = tokenizer
        byteTokens = (0 ... 255).map { b in
            tokenizer.tokenID(forByte: UInt8(b)).flatMap { tokenizer.bytes(for: $0) == [UInt8(b)] ? $0 : nil }
        }
        escapeToken = tokenizer.tokenTypes.firstIndex(of: .control)
    }

    /// A text as tokens: `escaped[i]` is the byte that the escape token at index i stands for.
    public struct Tokens: Sendable, Equatable {
        public var tokens: [Int] = []
        public var escaped: [Int: UInt8] = [:]
        /// Input bytes spelled byte by byte.
        public var fallbackBytes = 0
    }

    /// Tokens whose bytes concatenate to `input`. Throws (naming `path`) only when a byte has neither a byte token nor
    /// an escape.
    public func tokens(for input: [UInt8], path: String) throws -> Tokens {
        var out = Tokens()
        out.tokens.reserveCapacity(input.count / 3 + 1)
        var i = 0
        while i < input.count {
            let end = Self.validUTF8Prefix(input, from: i)
            if end > i {
                try encodeText(input[i ..< end], into: &out, path: path)
                i = end
            } else {
                try spell(input[i], into: &out, path: path)
                i += 1
            }
        }
        return out
    }

    /// The bytes of `tokens`; nil when one is outside the vocabulary or an escape lacks its byte.
    public func bytes(for tokens: Tokens) -> [UInt8]? {
        var out: [UInt8] = []
        for (i, t) in tokens.tokens.enumerated() {
            guard t >= 0 && t < tokenizer.vocabularySize else { return nil }
            if t == escapeToken {
                guard let b = tokens.escaped[i] else { return nil }
                out.append(b)
            } else {
                out.append(contentsOf: tokenizer.bytes(for: t))
            }
        }
        return out
    }

    private func spell(_ b: UInt8, into out: inout Tokens, path: String) throws {
        out.fallbackBytes += 1
        if let t = byteTokens[Int(b)] {
            out.tokens.append(t)
        } else if let e = escapeToken {
            out.escaped[out.tokens.count] = b
            out.tokens.append(e)
        } else {
            throw ZipError.unsupportedModel(path: path, reason: "the input has byte 0x\(String(b, radix: 16)), which the vocabulary has no token for, and there is no control token to escape it with")
        }
    }

    /// Pieces of `ids` reproduce `text` exactly (and none is the escape token).
    private func reproduces(_ ids: [Int], _ text: ArraySlice<UInt8>) -> Bool {
        var at = text.startIndex
        for t in ids {
            guard t != escapeToken else { return false }
            let b = tokenizer.bytes(for: t)
            guard b.count <= text.endIndex - at, text[at ..< at + b.count].elementsEqual(b) else { return false }
            at += b.count
        }
        return at == text.endIndex
    }

    private func encodeText(_ run: ArraySlice<UInt8>, into out: inout Tokens, path: String) throws {
        let whole = tokenizer.encode(String(decoding: run, as: UTF8.self))
        if reproduces(whole, run) {
            out.tokens.append(contentsOf: whole)
            return
        }
        var start = run.startIndex
        while start < run.endIndex {
            let newline = run[start...].firstIndex(of: 0x0A).map { $0 + 1 } ?? run.endIndex
            let line = run[start ..< newline]
            let ids = tokenizer.encode(String(decoding: line, as: UTF8.self))
            if reproduces(ids, line) {
                out.tokens.append(contentsOf: ids)
            } else {
                for b in line { try spell(b, into: &out, path: path) }
            }
            start = newline
        }
    }

    /// End of the longest valid UTF-8 prefix of input[from...] (RFC 3629: no overlong forms, no surrogates, at most
    /// U+10FFFF).
    public static func validUTF8Prefix(_ input: [UInt8], from: Int) -> Int {
        var i = from
        let n = input.count
        while i < n {
            let b = input[i]
            if b < 0x80 { i += 1; continue }
            let length: Int, low: UInt8, high: UInt8  // bounds of the second byte
            switch b {
            case 0xC2 ... 0xDF: length = 2; low = 0x80; high = 0xBF
            case 0xE0: length = 3; low = 0xA0; high = 0xBF
            case 0xE1 ... 0xEC, 0xEE ... 0xEF: length = 3; low = 0x80; high = 0xBF
            case 0xED: length = 3; low = 0x80; high = 0x9F
            case 0xF0: length = 4; low = 0x90; high = 0xBF
            case 0xF1 ... 0xF3: length = 4; low = 0x80; high = 0xBF
            case 0xF4: length = 4; low = 0x80; high = 0x8F
            default: return i
            }
            guard i + length <= n, input[i + 1] >= low, input[i + 1] <= high else { return i }
            for k in 2 ..< length where input[i + k] & 0xC0 != 0x80 { return i }
            i += length
        }
        return n
    }
}
