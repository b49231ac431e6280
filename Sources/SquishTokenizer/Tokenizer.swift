import Foundation
import SquishFormats

/// A tokenizer: byte-level BPE (GPT-2 family: SmolLM, Llama 3, Qwen2, ...) or SentencePiece (Llama 1/2, Gemma),
/// built from GGUF metadata (`tokenizer.ggml.*`) or a Hugging Face `tokenizer.json`.
public final class Tokenizer: @unchecked Sendable {
    public enum Model: Sendable, Equatable {
        case byteLevelBPE(PreTokenizer)
        case sentencePiece(addSpacePrefix: Bool)
    }

    /// GGUF token types (llama.cpp `llama_token_type`).
    public enum TokenType: Int, Sendable {
        case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    public let model: Model
    /// Token strings as stored (byte-level BPE: GPT-2's byte-to-unicode alphabet; SentencePiece: ▁ for spaces).
    public let tokens: [String]
    public let tokenTypes: [TokenType]
    public let bosID: Int?
    public let eosID: Int?
    public let unknownID: Int?
    public let paddingID: Int?
    public let addBOS: Bool
    public let addEOS: Bool
    /// Raw bytes each token stands for.
    let tokenBytes: [[UInt8]]
    /// Byte sequence → token id, for whole-piece lookups.
    let bytesToID: [[UInt8]: Int]
    /// BPE merges: (left id << 32 | right id) → (rank << 32 | merged id).
    let merges: [UInt64: UInt64]
    /// Byte-level BPE: id of the single-byte token for each byte value.
    let byteIDs: [Int]
    /// SentencePiece scores.
    let scores: [Float]
    /// Special (control / user-defined) tokens matched in text when special-token parsing is on, longest first.
    let specialTokens: [(bytes: [UInt8], id: Int)]
    private var cache: [[UInt8]: [Int]] = [:]
    private let cacheLock = NSLock()

    public var vocabularySize: Int { tokens.count }

    // MARK: Construction

    /// A byte-level BPE tokenizer from its vocabulary and merges ("left right" strings in the vocabulary's alphabet).
    public init(byteLevelTokens tokens: [String], merges mergeStrings: [String], tokenTypes: [TokenType]? = nil,
                preTokenizer: PreTokenizer, bosID: Int? = nil, eosID: Int? = nil, unknownID: Int? = nil,
                paddingID: Int? = nil, addBOS: Bool = false, addEOS: Bool = false, source: String = "<tokenizer>") throws {
        model = .byteLevelBPE(preTokenizer)
        self.tokens = tokens
        self.tokenTypes = tokenTypes ?? Array(repeating: .normal, count: tokens.count)
        self.bosID = bosID
        self.eosID = eosID
        self.unknownID = unknownID
        self.paddingID = paddingID
        self.addBOS = addBOS
        self.addEOS = addEOS
        scores = []
        let decode = ByteLevel.unicodeToByte
        var tokenBytes: [[UInt8]] = []
        tokenBytes.reserveCapacity(tokens.count)
        var bytesToID: [[UInt8]: Int] = [:]
        bytesToID.reserveCapacity(tokens.count)
        for (id, t) in tokens.enumerated() {
            let type = self.tokenTypes.indices.contains(id) ? self.tokenTypes[id] : .normal
            var bytes: [UInt8] = []
            if type == .control || type == .userDefined {
                bytes = Array(t.utf8)  // special tokens are stored as plain text
            } else {
                for scalar in t.unicodeScalars {
                    if let b = decode[scalar.value] { bytes.append(b) } else { bytes.append(contentsOf: String(scalar).utf8) }
                }
            }
            tokenBytes.append(bytes)
            if type != .control && type != .userDefined && bytesToID[bytes] == nil { bytesToID[bytes] = id }
        }
        // Some vocabularies lack tokens for a few control bytes; like the reference BPE without an unknown token,
        // such bytes produce no token (−1 here).
        var byteIDs = [Int](repeating: -1, count: 256)
        for b in 0 ..< 256 { byteIDs[b] = bytesToID[[UInt8(b)]] ?? -1 }
        // Merge parts are looked up by the bytes they stand for (no second string-keyed dictionary).
        func mappedBytes(_ s: Substring.UTF8View) -> [UInt8] {
            var out: [UInt8] = []
            for scalar in String(Substring(s)).unicodeScalars {
                if let b = decode[scalar.value] { out.append(b) } else { out.append(contentsOf: String(scalar).utf8) }
            }
            return out
        }
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(mergeStrings.count)
        for (rank, m) in mergeStrings.enumerated() {
            let utf8 = m.utf8
            guard let space = utf8.firstIndex(of: 0x20) else {
                throw TokenizerError.invalidVocabulary(source: source, reason: "merge \(rank) '\(m)' has no space")
            }
            let leftBytes = mappedBytes(utf8[..<space]), rightBytes = mappedBytes(utf8[utf8.index(after: space)...])
            guard let l = bytesToID[leftBytes], let r = bytesToID[rightBytes], let merged = bytesToID[leftBytes + rightBytes] else { continue }
            let key = UInt64(l) << 32 | UInt64(r)
            if merges[key] == nil { merges[key] = UInt64(rank) << 32 | UInt64(merged) }
        }
        self.tokenBytes = tokenBytes
        self.bytesToID = bytesToID
        self.merges = merges
        self.byteIDs = byteIDs
        specialTokens = Self.specials(tokens: tokens, types: self.tokenTypes)
    }

    /// A SentencePiece tokenizer from its pieces and scores (llama.cpp's SPM model: ▁ for spaces, score-ordered
    /// bigram merges, <0xXX> byte fallback).
    public init(sentencePieceTokens tokens: [String], scores: [Float], tokenTypes: [TokenType]? = nil,
                bosID: Int? = 1, eosID: Int? = 2, unknownID: Int? = 0, paddingID: Int? = nil,
                addBOS: Bool = true, addEOS: Bool = false, addSpacePrefix: Bool = true, source: String = "<tokenizer>") throws {
        guard scores.count == tokens.count else {
            throw TokenizerError.invalidVocabulary(source: source, reason: "\(scores.count) scores for \(tokens.count) tokens")
        }
        model = .sentencePiece(addSpacePrefix: addSpacePrefix)
        self.tokens = tokens
        self.tokenTypes = tokenTypes ?? Array(repeating: .normal, count: tokens.count)
        self.bosID = bosID
        self.eosID = eosID
        self.unknownID = unknownID
        self.paddingID = paddingID
        self.addBOS = addBOS
        self.addEOS = addEOS
        self.scores = scores
        var tokenBytes: [[UInt8]] = []
        var bytesToID: [[UInt8]: Int] = [:]
        var byteIDs = [Int](repeating: -1, count: 256)
        for (id, t) in tokens.enumerated() {
            let type = self.tokenTypes.indices.contains(id) ? self.tokenTypes[id] : .normal
            if type == .byte, t.hasPrefix("<0x"), t.hasSuffix(">"), let b = UInt8(t.dropFirst(3).dropLast(), radix: 16) {
                tokenBytes.append([b])
                byteIDs[Int(b)] = id
                continue
            }
            let text = t.replacingOccurrences(of: "\u{2581}", with: " ")
            let bytes = Array(text.utf8)
            tokenBytes.append(bytes)
            if type == .normal || type == .userDefined || type == .undefined, bytesToID[bytes] == nil { bytesToID[bytes] = id }
        }
        self.tokenBytes = tokenBytes
        self.bytesToID = bytesToID
        self.byteIDs = byteIDs
        merges = [:]
        specialTokens = Self.specials(tokens: tokens, types: self.tokenTypes)
    }

    static func specials(tokens: [String], types: [TokenType]) -> [(bytes: [UInt8], id: Int)] {
        var out: [(bytes: [UInt8], id: Int)] = []
        for (id, t) in tokens.enumerated() where id < types.count && (types[id] == .control || types[id] == .userDefined) && !t.isEmpty {
            out.append((Array(t.utf8), id))
        }
        return out.sorted { $0.bytes.count > $1.bytes.count }
    }

    /// From GGUF metadata.
    public convenience init(gguf file: GGUFFile) throws {
        let src = file.path
        guard let modelName = file["tokenizer.ggml.model"]?.string else {
            throw TokenizerError.missingField(source: src, field: "tokenizer.ggml.model")
        }
        guard let tokens = file["tokenizer.ggml.tokens"]?.stringArray else {
            throw TokenizerError.missingField(source: src, field: "tokenizer.ggml.tokens")
        }
        let types = file["tokenizer.ggml.token_type"]?.intArray.map { $0.map { TokenType(rawValue: $0) ?? .normal } }
        func id(_ key: String) -> Int? {
            guard let v = file["tokenizer.ggml.\(key)"]?.int, v >= 0, v < tokens.count else { return nil }
            return v
        }
        switch modelName {
        case "gpt2":
            guard let merges = file["tokenizer.ggml.merges"]?.stringArray else {
                throw TokenizerError.missingField(source: src, field: "tokenizer.ggml.merges")
            }
            let preName = file["tokenizer.ggml.pre"]?.string ?? "default"
            guard let pre = PreTokenizer(ggufName: preName) else {
                throw TokenizerError.unsupportedPreTokenizer(source: src, name: preName)
            }
            try self.init(byteLevelTokens: tokens, merges: merges, tokenTypes: types, preTokenizer: pre,
                          bosID: id("bos_token_id"), eosID: id("eos_token_id"), unknownID: id("unknown_token_id"),
                          paddingID: id("padding_token_id"),
                          addBOS: file["tokenizer.ggml.add_bos_token"]?.bool ?? false,
                          addEOS: file["tokenizer.ggml.add_eos_token"]?.bool ?? false, source: src)
        case "llama":
            guard let scores = file["tokenizer.ggml.scores"]?.floatArray else {
                throw TokenizerError.missingField(source: src, field: "tokenizer.ggml.scores")
            }
            try self.init(sentencePieceTokens: tokens, scores: scores, tokenTypes: types,
                          bosID: id("bos_token_id"), eosID: id("eos_token_id"), unknownID: id("unknown_token_id"),
                          paddingID: id("padding_token_id"),
                          addBOS: file["tokenizer.ggml.add_bos_token"]?.bool ?? true,
                          addEOS: file["tokenizer.ggml.add_eos_token"]?.bool ?? false,
                          addSpacePrefix: file["tokenizer.ggml.add_space_prefix"]?.bool ?? true, source: src)
        default:
            throw TokenizerError.unsupportedModel(source: src, model: modelName)
        }
    }

    // MARK: Encoding

    /// Token ids of `text`, byte for byte. `parseSpecial`: recognize special tokens' text (e.g. "<|im_start|>");
    /// `addSpecial`: add BOS/EOS as the model's metadata asks.
    public func encode(_ text: String, parseSpecial: Bool = false, addSpecial: Bool = false) -> [Int] {
        var out: [Int] = []
        if addSpecial, addBOS, let bos = bosID { out.append(bos) }
        let bytes = Array(text.utf8)
        if parseSpecial && !specialTokens.isEmpty {
            var start = 0, i = 0
            var isFirstSegment = true
            while i < bytes.count {
                if let (n, id) = matchSpecial(bytes, at: i) {
                    if start < i { encodeSegment(Array(bytes[start ..< i]), isFirst: isFirstSegment, into: &out) }
                    out.append(id)
                    isFirstSegment = false
                    i += n
                    start = i
                } else {
                    i += 1
                }
            }
            if start < bytes.count { encodeSegment(Array(bytes[start...]), isFirst: isFirstSegment, into: &out) }
        } else {
            encodeSegment(bytes, isFirst: true, into: &out)
        }
        if addSpecial, addEOS, let eos = eosID { out.append(eos) }
        return out
    }

    private func matchSpecial(_ bytes: [UInt8], at i: Int) -> (Int, Int)? {
        for (b, id) in specialTokens where b.count <= bytes.count - i && bytes[i] == b[0] {
            var ok = true
            for k in 1 ..< b.count where bytes[i + k] != b[k] { ok = false; break }
            if ok { return (b.count, id) }
        }
        return nil
    }

    private func encodeSegment(_ bytes: [UInt8], isFirst: Bool, into out: inout [Int]) {
        switch model {
        case .byteLevelBPE(let pre): encodeByteLevel(bytes, pre: pre, into: &out)
        case .sentencePiece(let prefix): encodeSentencePiece(bytes, addSpacePrefix: prefix && isFirst, into: &out)
        }
    }

    private func encodeByteLevel(_ bytes: [UInt8], pre: PreTokenizer, into out: inout [Int]) {
        guard !bytes.isEmpty else { return }
        // Decode to scalars, remembering each scalar's byte offset (the input is valid UTF-8: it came from a String).
        var scalars: [UInt32] = []
        var offsets: [Int] = []
        scalars.reserveCapacity(bytes.count)
        offsets.reserveCapacity(bytes.count + 1)
        var i = 0
        while i < bytes.count {
            let b0 = UInt32(bytes[i])
            offsets.append(i)
            if b0 < 0x80 { scalars.append(b0); i += 1 }
            else if b0 < 0xE0 { scalars.append((b0 & 0x1F) << 6 | UInt32(bytes[i + 1] & 0x3F)); i += 2 }
            else if b0 < 0xF0 { scalars.append((b0 & 0x0F) << 12 | UInt32(bytes[i + 1] & 0x3F) << 6 | UInt32(bytes[i + 2] & 0x3F)); i += 3 }
            else { scalars.append((b0 & 0x07) << 18 | UInt32(bytes[i + 1] & 0x3F) << 12 | UInt32(bytes[i + 2] & 0x3F) << 6 | UInt32(bytes[i + 3] & 0x3F)); i += 4 }
        }
        offsets.append(bytes.count)
        let classes = scalars.map(PreTokenizer.classify)
        scalars.withUnsafeBufferPointer { s in
            classes.withUnsafeBufferPointer { c in
                bytes.withUnsafeBufferPointer { b in
                    pre.split(s, c) { range in
                        let piece = UnsafeBufferPointer(rebasing: b[offsets[range.lowerBound] ..< offsets[range.upperBound]])
                        bpe(piece, into: &out)
                    }
                }
            }
        }
    }

    /// BPE on one piece: whole-piece lookup, cache, else merges by rank (lowest first; leftmost on ties).
    private func bpe(_ piece: UnsafeBufferPointer<UInt8>, into out: inout [Int]) {
        let key = Array(piece)
        if let id = bytesToID[key] { out.append(id); return }
        cacheLock.lock()
        let cached = cache[key]
        cacheLock.unlock()
        if let cached { out.append(contentsOf: cached); return }
        var symbols = key.map { byteIDs[Int($0)] }
        if symbols.contains(-1) { symbols.removeAll { $0 < 0 } }
        while symbols.count > 1 {
            var bestRank = UInt64.max, bestAt = -1, bestID = 0
            for j in 0 ..< symbols.count - 1 {
                if let m = merges[UInt64(symbols[j]) << 32 | UInt64(symbols[j + 1])], m >> 32 < bestRank {
                    bestRank = m >> 32
                    bestAt = j
                    bestID = Int(m & 0xFFFF_FFFF)
                }
            }
            if bestAt < 0 { break }
            // Merge every occurrence of this pair left to right (as the reference does for one rank).
            let left = symbols[bestAt], right = symbols[bestAt + 1]
            var merged: [Int] = []
            merged.reserveCapacity(symbols.count)
            var j = 0
            while j < symbols.count {
                if j < symbols.count - 1 && symbols[j] == left && symbols[j + 1] == right {
                    merged.append(bestID)
                    j += 2
                } else {
                    merged.append(symbols[j])
                    j += 1
                }
            }
            symbols = merged
        }
        cacheLock.lock()
        if cache.count > 200_000 { cache.removeAll(keepingCapacity: true) }
        cache[key] = symbols
        cacheLock.unlock()
        out.append(contentsOf: symbols)
    }

    /// llama.cpp's SPM: spaces → ▁ (with a leading one when asked), UTF-8 characters as initial symbols, repeatedly
    /// merge the adjacent pair whose concatenation is a token with the highest score, unknown pieces as byte tokens.
    private func encodeSentencePiece(_ input: [UInt8], addSpacePrefix: Bool, into out: inout [Int]) {
        guard !input.isEmpty else { return }
        var text: [UInt8] = []
        if addSpacePrefix { text.append(0x20) }
        text.append(contentsOf: input)
        // Symbols as byte ranges of characters.
        var ranges: [Range<Int>] = []
        var i = 0
        while i < text.count {
            let b = text[i]
            let n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4
            ranges.append(i ..< min(i + n, text.count))
            i += n
        }
        while ranges.count > 1 {
            var bestScore = -Float.infinity, bestAt = -1
            for j in 0 ..< ranges.count - 1 {
                if let id = bytesToID[Array(text[ranges[j].lowerBound ..< ranges[j + 1].upperBound])], scores[id] > bestScore {
                    bestScore = scores[id]
                    bestAt = j
                }
            }
            if bestAt < 0 { break }
            ranges[bestAt] = ranges[bestAt].lowerBound ..< ranges[bestAt + 1].upperBound
            ranges.remove(at: bestAt + 1)
        }
        for r in ranges {
            let piece = Array(text[r])
            if let id = bytesToID[piece] {
                out.append(id)
            } else {
                for b in piece {
                    if byteIDs[Int(b)] >= 0 { out.append(byteIDs[Int(b)]) } else if let unk = unknownID { out.append(unk) }
                }
            }
        }
    }

    // MARK: Decoding

    /// The bytes token `id` stands for (empty for ids outside the vocabulary).
    public func bytes(for id: Int) -> [UInt8] {
        guard id >= 0 && id < tokenBytes.count else { return [] }
        return tokenBytes[id]
    }

    /// Concatenated bytes of `ids`.
    public func decodeBytes(_ ids: [Int]) -> [UInt8] {
        var out: [UInt8] = []
        for id in ids { out.append(contentsOf: bytes(for: id)) }
        if case .sentencePiece(let prefix) = model, prefix, out.first == 0x20 { out.removeFirst() }
        return out
    }

    /// Text of `ids` (invalid UTF-8, e.g. a character cut between tokens, becomes U+FFFD).
    public func decode(_ ids: [Int]) -> String { String(decoding: decodeBytes(ids), as: UTF8.self) }

    /// The token's string as stored in the vocabulary.
    public func piece(_ id: Int) -> String { id >= 0 && id < tokens.count ? tokens[id] : "" }

    public func isSpecial(_ id: Int) -> Bool {
        id >= 0 && id < tokenTypes.count && (tokenTypes[id] == .control || tokenTypes[id] == .userDefined)
    }

    /// Empties the per-piece cache (benchmarks measure encoding from a cold cache).
    public func clearCache() {
        cacheLock.lock()
        cache.removeAll()
        cacheLock.unlock()
    }

    /// True when every byte has a token, so that decode(encode(s)) == s for all text.
    public var coversAllBytes: Bool { !byteIDs.contains(-1) }

    /// Id of a token given by its text (e.g. "<|im_end|>").
    public func id(of token: String) -> Int? { tokens.firstIndex(of: token) }
}

/// GPT-2's reversible byte ↔ unicode mapping: printable bytes map to themselves, the others to U+0100 upwards.
public enum ByteLevel {
    public static let byteToUnicode: [UInt32] = {
        var printable = Set<Int>()
        for r in [0x21 ... 0x7E, 0xA1 ... 0xAC, 0xAE ... 0xFF] { for b in r { printable.insert(b) } }
        var out = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0 ..< 256 {
            if printable.contains(b) { out[b] = UInt32(b) } else { out[b] = next; next += 1 }
        }
        return out
    }()

    public static let unicodeToByte: [UInt32: UInt8] = {
        var d: [UInt32: UInt8] = [:]
        for (b, u) in byteToUnicode.enumerated() { d[u] = UInt8(b) }
        return d
    }()
}

extension Tokenizer {
    /// From a Hugging Face `tokenizer.json` with a byte-level BPE model (merges as "a b" strings or ["a", "b"]
    /// pairs); the pre-tokenizer is recognized from its structure (ByteLevel → gpt2, Digits + ByteLevel → smollm,
    /// Split with the Llama 3 or Qwen2 pattern → llama3 / qwen2).
    public convenience init(tokenizerJSON path: String, bosToken: String? = nil, eosToken: String? = nil) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError.missingField(source: path, field: "(file cannot be read)")
        }
        let json: JSONValue
        do { json = try JSONValue.parse([UInt8](data)) } catch {
            throw TokenizerError.invalidVocabulary(source: path, reason: "\(error)")
        }
        guard let model = json["model"], model["type"]?.string == "BPE" else {
            throw TokenizerError.unsupportedModel(source: path, model: json["model"]?["type"]?.string ?? "missing")
        }
        guard let vocab = model["vocab"]?.object else { throw TokenizerError.missingField(source: path, field: "model.vocab") }
        var tokens = [String](repeating: "", count: vocab.count)
        var types = [TokenType](repeating: .normal, count: vocab.count)
        for (t, v) in vocab {
            guard let id = v.int, id >= 0, Int(id) < 10_000_000 else {
                throw TokenizerError.invalidVocabulary(source: path, reason: "token '\(t)' has an invalid id")
            }
            if Int(id) >= tokens.count {
                tokens += Array(repeating: "", count: Int(id) + 1 - tokens.count)
                types += Array(repeating: .unused, count: Int(id) + 1 - types.count)
            }
            tokens[Int(id)] = t
        }
        for a in json["added_tokens"]?.array ?? [] {
            guard let id = a["id"]?.int, let content = a["content"]?.string, id >= 0, Int(id) < 10_000_000 else { continue }
            if Int(id) >= tokens.count {
                tokens += Array(repeating: "", count: Int(id) + 1 - tokens.count)
                types += Array(repeating: .unused, count: Int(id) + 1 - types.count)
            }
            tokens[Int(id)] = content
            types[Int(id)] = a["special"] == .bool(true) ? .control : .userDefined
        }
        var merges: [String] = []
        for m in model["merges"]?.array ?? [] {
            if let s = m.string { merges.append(s) } else if let pair = m.array, pair.count == 2, let a = pair[0].string, let b = pair[1].string {
                merges.append(a + " " + b)
            }
        }
        let pre = try Self.detectPreTokenizer(json["pre_tokenizer"], source: path)
        func id(_ t: String?) -> Int? { t.flatMap { tok in tokens.firstIndex(of: tok) } }
        try self.init(byteLevelTokens: tokens, merges: merges, tokenTypes: types, preTokenizer: pre,
                      bosID: id(bosToken), eosID: id(eosToken), source: path)
    }

    static func detectPreTokenizer(_ p: JSONValue?, source: String) throws -> PreTokenizer {
        guard let p, p != .null else { throw TokenizerError.unsupportedPreTokenizer(source: source, name: "none") }
        let type = p["type"]?.string ?? ""
        if type == "ByteLevel" { return .gpt2 }
        if type == "Sequence", let parts = p["pretokenizers"]?.array {
            let types = parts.compactMap { $0["type"]?.string }
            if types == ["Digits", "ByteLevel"], parts[0]["individual_digits"] == .bool(true) { return .smollm }
            if let split = parts.first(where: { $0["type"]?.string == "Split" }), let pattern = split["pattern"]?["Regex"]?.string {
                if pattern.contains("\\p{N}{1,3}") { return .llama3 }
                if pattern.contains("\\p{N}|") || pattern.contains("\\p{N}| ?") { return .qwen2 }
            }
            if types == ["ByteLevel"] { return .gpt2 }
        }
        throw TokenizerError.unsupportedPreTokenizer(source: source, name: p.serialized.prefix(120).description)
    }
}
