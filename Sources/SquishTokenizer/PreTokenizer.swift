import SquishFormats

/// Pre-tokenizers: split text into pieces that BPE encodes independently. Hand-coded equivalents of the
/// regular expressions the reference tokenizers use (no regex engine; Unicode classes from the scalar properties).
public enum PreTokenizer: String, Sendable, CaseIterable {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// SmolLM (HF: `Digits(individual_digits=True)` then the GPT-2 rules): every \p{N} scalar is its own piece.
    case smollm
    /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3
    /// Qwen2: as Llama 3 but numbers split into single \p{N} scalars.
    case qwen2

    /// The pre-tokenizer named by GGUF's `tokenizer.ggml.pre` (nil if unknown).
    public init?(ggufName: String) {
        switch ggufName {
        case "gpt2", "default", "gpt-2", "starcoder", "refact", "olmo", "jais", "phi-2": self = .gpt2
        case "smollm": self = .smollm
        case "llama3", "llama-bpe", "llama-v3", "falcon3", "pixtral", "tekken": self = .llama3
        case "qwen2", "deepseek-r1-qwen": self = .qwen2
        default: return nil
        }
    }

    /// The pre-tokenizer a Hugging Face `tokenizer.json` describes by its `pre_tokenizer` object (nil if it is
    /// not one of the supported four): `ByteLevel(use_regex)` is GPT-2; `Sequence[Digits(individual_digits),
    /// ByteLevel(use_regex)]` is SmolLM; `Sequence[Split(Regex(P), Isolated), ByteLevel(use_regex: false)]` is
    /// Llama 3 or Qwen2 when P is their published pattern.
    public init?(huggingFace json: JSONValue?) {
        guard let obj = json, let type = obj["type"]?.string else { return nil }
        func isByteLevel(_ o: JSONValue, regex: Bool) -> Bool {
            guard o["type"]?.string == "ByteLevel" else { return false }
            if o["add_prefix_space"]?.boolValue == true { return false }
            return (o["use_regex"]?.boolValue ?? true) == regex
        }
        if type == "ByteLevel" {
            guard isByteLevel(obj, regex: true) else { return nil }
            self = .gpt2
            return
        }
        guard type == "Sequence", let seq = obj["pretokenizers"]?.array, seq.count == 2 else { return nil }
        if seq[0]["type"]?.string == "Digits", seq[0]["individual_digits"]?.boolValue == true, isByteLevel(seq[1], regex: true) {
            self = .smollm
            return
        }
        let split = seq[0]
        guard split["type"]?.string == "Split", (split["invert"]?.boolValue ?? false) == false,
              split["behavior"]?.string?.lowercased() == "isolated",
              let pattern = split["pattern"]?["Regex"]?.string,
              isByteLevel(seq[1], regex: false) else { return nil }
        switch pattern {
        case Self.llama3Pattern: self = .llama3
        case Self.qwen2Pattern: self = .qwen2
        default: return nil
        }
    }

    /// The published regular expressions this file implements by hand (GPT-2's `encoder.py`; Llama 3's and
    /// Qwen2's `tokenizer.json`).
    public static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    public static let llama3Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    public static let qwen2Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The pieces of `text` as ranges of Unicode-scalar offsets (pieces are encoded independently by BPE).
    public func split(_ text: String) -> [Range<Int>] {
        let scalars = text.unicodeScalars.map(\.value)
        let classes = scalars.map(Self.classify)
        var out: [Range<Int>] = []
        scalars.withUnsafeBufferPointer { s in
            classes.withUnsafeBufferPointer { c in split(s, c) { out.append($0) } }
        }
        return out
    }

    /// Character classes used by the patterns.
    enum Class: UInt8 { case letter, number, space, newline, other }

    @inline(__always) static func classify(_ s: UInt32) -> Class {
        if s < 0x80 {
            return asciiClasses[Int(s)]
        }
        guard let scalar = Unicode.Scalar(s) else { return .other }
        let p = scalar.properties
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return p.isWhitespace ? .space : .other
        }
    }

    static let asciiClasses: [Class] = (0 ..< 128).map { (c: Int) -> Class in
        switch c {
        case 0x0A, 0x0D: return .newline  // also whitespace
        case 0x09, 0x0B, 0x0C, 0x20: return .space
        case 0x30 ... 0x39: return .number
        case 0x41 ... 0x5A, 0x61 ... 0x7A: return .letter
        default: return .other
        }
    }

    /// Splits `scalars` (with their classes) into piece ranges, calling `emit` for each.
    func split(_ s: UnsafeBufferPointer<UInt32>, _ cls: UnsafeBufferPointer<Class>, _ emit: (Range<Int>) -> Void) {
        switch self {
        case .gpt2: Self.gpt2Split(s, cls, 0 ..< s.count, emit)
        case .smollm:
            // Digits(individual_digits=True): each \p{N} scalar isolated, the GPT-2 rules on the runs between.
            var start = 0
            for i in 0 ..< s.count where cls[i] == .number {
                if start < i { Self.gpt2Split(s, cls, start ..< i, emit) }
                emit(i ..< i + 1)
                start = i + 1
            }
            if start < s.count { Self.gpt2Split(s, cls, start ..< s.count, emit) }
        case .llama3: Self.llamaSplit(s, cls, maxDigits: 3, emit)
        case .qwen2: Self.llamaSplit(s, cls, maxDigits: 1, emit)
        }
    }

    @inline(__always) static func isSpace(_ c: Class) -> Bool { c == .space || c == .newline }

    /// Length of a contraction ('s 't 're 've 'm 'll 'd) at i, 0 if none.
    @inline(__always) static func contraction(_ s: UnsafeBufferPointer<UInt32>, _ i: Int, _ end: Int, ignoreCase: Bool) -> Int {
        guard s[i] == 0x27, i + 1 < end else { return 0 }
        func lower(_ c: UInt32) -> UInt32 { ignoreCase && c >= 0x41 && c <= 0x5A ? c + 32 : c }
        let a = lower(s[i + 1])
        if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return 2 }  // s t m d
        if i + 2 < end {
            let b = lower(s[i + 2])
            if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return 3 }  // re ve ll
        }
        return 0
    }

    /// Whitespace handling shared by both families: `\s+(?!\S)|\s+` at i (i is whitespace).
    @inline(__always) static func whitespaceRun(_ cls: UnsafeBufferPointer<Class>, _ i: Int, _ end: Int) -> Int {
        var j = i
        while j < end && isSpace(cls[j]) { j += 1 }
        if j == end { return j - i }
        // Followed by non-space: leave the last whitespace scalar to the next piece when the run is longer than one.
        return j - i >= 2 ? j - i - 1 : 1
    }

    static func gpt2Split(_ s: UnsafeBufferPointer<UInt32>, _ cls: UnsafeBufferPointer<Class>, _ range: Range<Int>,
                          _ emit: (Range<Int>) -> Void) {
        var i = range.lowerBound
        let end = range.upperBound
        while i < end {
            let n = contraction(s, i, end, ignoreCase: false)
            if n > 0 { emit(i ..< i + n); i += n; continue }
            var j = i
            if s[j] == 0x20 && j + 1 < end && !isSpace(cls[j + 1]) { j += 1 }
            let c = cls[j]
            if c == .letter || c == .number || (c == .other && (j > i || !isSpace(cls[i]))) {
                // ` ?\p{L}+`, ` ?\p{N}+` or ` ?[^\s\p{L}\p{N}]+`
                var k = j + 1
                while k < end && cls[k] == c { k += 1 }
                emit(i ..< k)
                i = k
                continue
            }
            let w = whitespaceRun(cls, i, end)
            emit(i ..< i + w)
            i += w
        }
    }

    static func llamaSplit(_ s: UnsafeBufferPointer<UInt32>, _ cls: UnsafeBufferPointer<Class>, maxDigits: Int,
                           _ emit: (Range<Int>) -> Void) {
        var i = 0
        let end = s.count
        while i < end {
            let n = contraction(s, i, end, ignoreCase: true)
            if n > 0 { emit(i ..< i + n); i += n; continue }
            let c = cls[i]
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if c == .letter || (c != .newline && c != .number && i + 1 < end && cls[i + 1] == .letter) {
                var k = i + 1
                while k < end && cls[k] == .letter { k += 1 }
                emit(i ..< k)
                i = k
                continue
            }
            // \p{N}{1,maxDigits}
            if c == .number {
                var k = i + 1
                while k < end && k - i < maxDigits && cls[k] == .number { k += 1 }
                emit(i ..< k)
                i = k
                continue
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            var j = i
            if s[j] == 0x20 && j + 1 < end && cls[j + 1] == .other { j += 1 }
            if cls[j] == .other {
                var k = j + 1
                while k < end && cls[k] == .other { k += 1 }
                while k < end && cls[k] == .newline { k += 1 }
                emit(i ..< k)
                i = k
                continue
            }
            // `\s*[\r\n]+`: the whitespace run up to and including its last newline.
            var k = i
            var lastNewline = -1
            while k < end && isSpace(cls[k]) {
                if cls[k] == .newline { lastNewline = k }
                k += 1
            }
            if lastNewline >= 0 {
                // [\r\n]+ must be a contiguous run ending the match: extend through newlines after the last one seen.
                emit(i ..< lastNewline + 1)
                i = lastNewline + 1
                continue
            }
            let w = whitespaceRun(cls, i, end)
            emit(i ..< i + w)
            i += w
        }
    }
}
