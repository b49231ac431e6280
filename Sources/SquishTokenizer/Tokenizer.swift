import Foundation
import SquishFormats

/// A tokenizer: byte-level BPE (GPT-2 family: SmolLM, Llama 3, Qwen2, ...) or SentencePiece (Llama 1/2, Gemma;
/// scored pieces from GGUF, or merge lists from `tokenizer.json`), built from GGUF metadata (`tokenizer.ggml.*`,
/// see `init(gguf:)`), a Hugging Face `tokenizer.json` (`init(huggingFaceJSON:)`) or plain arrays (the designated
/// initializers).
///
/// Encoding works on the text's UTF-8 bytes: control tokens are recognized only with `parseSpecial`, user-defined
/// tokens always; every other byte of the text is encoded as text. One instance may be used from several
/// threads at once (the piece cache is locked).
public final class Tokenizer: @unchecked Sendable {
    public enum Model: Sendable, Equatable {
        case byteLevelBPE(PreTokenizer)
        case sentencePiece(addSpacePrefix: Bool)
        /// A SentencePiece BPE model as Hugging Face runs it (`tokenizer.json` with `byte_fallback`): ▁ for
        /// spaces, the characters merged by the rank of their pair in the merge list, <0xXX> byte fallback.
        case sentencePieceBPE(addSpacePrefix: Bool)
    }

    public enum Normalization: Sendable, Equatable {
        case none
        /// Canonical composition (Unicode Standard Annex #15).
        case nfc
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
    /// Unicode normalization applied to text before encoding (a `tokenizer.json` may ask for NFC, e.g. Qwen2's).
    public internal(set) var normalization: Normalization = .none
    /// [vocabularySize] raw bytes each token stands for (special tokens: their text's UTF-8).
    let tokenBytes: FlatByteStrings
    /// Token bytes → id for the tokens that text may encode to (not control, byte or unused tokens); first id wins.
    let vocabulary: ByteStringTable
    /// BPE merges (byte-level and SentencePiece BPE): (left id, right id) → (rank, merged id).
    let merges: MergeTable
    /// [256] id of the token for each single byte (byte-level: its one-character token; SentencePiece: <0xXX>), -1 if none.
    let byteIDs: [Int32]
    /// [vocabularySize] SentencePiece scores (empty for BPE).
    let scores: [Float]
    /// Control and user-defined tokens: matched in text when special-token parsing is on.
    let specialTokens: SpecialTokenMatcher
    /// User-defined tokens alone: matched in text always (as llama.cpp and Hugging Face's added tokens do).
    let userDefinedTokens: SpecialTokenMatcher

    /// Piece bytes → offset into `cacheIDs` of [count, id, id, ...]: pieces BPE has already encoded.
    private var cache = ByteStringTable(minimumCapacity: 1 << 14)
    private var cacheIDs: [Int32] = []
    private let cacheLock = NSLock()
    /// The cache is emptied when its keys exceed this many bytes.
    private static let cacheLimitBytes = 8 << 20
    /// Longer pieces (runs of one character class, rare in text) are not cached.
    private static let cachedPieceLimit = 256

    public var vocabularySize: Int { tokens.count }

    // MARK: Construction

    /// A byte-level BPE tokenizer from its vocabulary (strings in GPT-2's byte-to-unicode alphabet; control and
    /// user-defined tokens as plain text) and its merges as pairs of token strings, highest priority first.
    /// Merges whose parts or result are not in the vocabulary are ignored, as in the reference implementation.
    public init(byteLevelTokens tokens: [String], mergePairs: [(String, String)], tokenTypes: [TokenType]? = nil,
                preTokenizer: PreTokenizer, bosID: Int? = nil, eosID: Int? = nil, unknownID: Int? = nil,
                paddingID: Int? = nil, addBOS: Bool = false, addEOS: Bool = false, source: String = "<tokenizer>") throws {
        let types = try Self.checkedTypes(tokenTypes, count: tokens.count, source: source)
        model = .byteLevelBPE(preTokenizer)
        self.tokens = tokens
        self.tokenTypes = types
        self.bosID = try Self.checkedID(bosID, "bos", tokens.count, source)
        self.eosID = try Self.checkedID(eosID, "eos", tokens.count, source)
        self.unknownID = try Self.checkedID(unknownID, "unknown", tokens.count, source)
        self.paddingID = try Self.checkedID(paddingID, "padding", tokens.count, source)
        self.addBOS = addBOS
        self.addEOS = addEOS
        scores = []
        let unicodeToByte = ByteLevel.unicodeToByte
        var tokenBytes = FlatByteStrings(capacity: tokens.count)
        var vocabulary = ByteStringTable(minimumCapacity: tokens.count)
        var idOf: [String: Int32] = [:]
        idOf.reserveCapacity(tokens.count)
        for (id, t) in tokens.enumerated() {
            var bytes: [UInt8] = []
            if Self.isSpecialType(types[id]) {
                bytes = Array(t.utf8)  // special tokens are stored as plain text
            } else {
                bytes.reserveCapacity(t.utf8.count)
                for scalar in t.unicodeScalars {
                    if let b = unicodeToByte[scalar.value] { bytes.append(b) } else { bytes.append(contentsOf: String(scalar).utf8) }
                }
                if types[id] != .unused { vocabulary.insert(bytes, value: Int32(id)) }
            }
            tokenBytes.append(bytes)
            if idOf[t] == nil { idOf[t] = Int32(id) }
        }
        // Some vocabularies lack tokens for a few control bytes; like the reference BPE without an unknown token,
        // such bytes produce no token (−1 here).
        var byteIDs = [Int32](repeating: -1, count: 256)
        for b in 0 ..< 256 { byteIDs[b] = vocabulary.find([UInt8(b)]) ?? -1 }
        var merges = MergeTable(minimumCapacity: mergePairs.count)
        for (rank, (left, right)) in mergePairs.enumerated() {
            guard let l = idOf[left], let r = idOf[right], let merged = idOf[left + right] else { continue }
            merges.insert(l, r, rank: Int32(truncatingIfNeeded: rank), merged: merged)
        }
        self.tokenBytes = tokenBytes
        self.vocabulary = vocabulary
        self.merges = merges
        self.byteIDs = byteIDs
        specialTokens = SpecialTokenMatcher(tokens: tokens, types: types) { Self.isSpecialType($0) }
        userDefinedTokens = SpecialTokenMatcher(tokens: tokens, types: types) { $0 == .userDefined }
    }

    /// A byte-level BPE tokenizer whose merges are "left right" strings (GGUF `tokenizer.ggml.merges`, older
    /// `tokenizer.json` files): each is split at its first space.
    public convenience init(byteLevelTokens tokens: [String], merges: [String], tokenTypes: [TokenType]? = nil,
                            preTokenizer: PreTokenizer, bosID: Int? = nil, eosID: Int? = nil, unknownID: Int? = nil,
                            paddingID: Int? = nil, addBOS: Bool = false, addEOS: Bool = false,
                            source: String = "<tokenizer>") throws {
        var pairs: [(String, String)] = []
        pairs.reserveCapacity(merges.count)
        for (rank, m) in merges.enumerated() {
            guard let space = m.firstIndex(of: " ") else {
                throw TokenizerError.invalidVocabulary(source: source, reason: "merge \(rank) '\(m)' has no space")
            }
            pairs.append((String(m[..<space]), String(m[m.index(after: space)...])))
        }
        try self.init(byteLevelTokens: tokens, mergePairs: pairs, tokenTypes: tokenTypes, preTokenizer: preTokenizer,
                      bosID: bosID, eosID: eosID, unknownID: unknownID, paddingID: paddingID, addBOS: addBOS,
                      addEOS: addEOS, source: source)
    }

    /// A SentencePiece tokenizer from its pieces and scores, encoding as llama.cpp's SPM tokenizer does: spaces
    /// become ▁ (U+2581), a space is prepended to the text and after every special token when `addSpacePrefix`,
    /// the initial symbols are the UTF-8 characters, and the adjacent pair whose concatenation is the piece with
    /// the highest score is merged first (leftmost on ties) until no pair is a piece; characters left without a
    /// piece become their <0xXX> byte tokens (or the unknown token).
    public init(sentencePieceTokens tokens: [String], scores: [Float], tokenTypes: [TokenType]? = nil,
                bosID: Int? = 1, eosID: Int? = 2, unknownID: Int? = 0, paddingID: Int? = nil,
                addBOS: Bool = true, addEOS: Bool = false, addSpacePrefix: Bool = true, source: String = "<tokenizer>") throws {
        guard scores.count == tokens.count else {
            throw TokenizerError.invalidVocabulary(source: source, reason: "\(scores.count) scores for \(tokens.count) tokens")
        }
        let types = try Self.checkedTypes(tokenTypes, count: tokens.count, source: source)
        model = .sentencePiece(addSpacePrefix: addSpacePrefix)
        self.tokens = tokens
        self.tokenTypes = types
        self.bosID = try Self.checkedID(bosID, "bos", tokens.count, source)
        self.eosID = try Self.checkedID(eosID, "eos", tokens.count, source)
        self.unknownID = try Self.checkedID(unknownID, "unknown", tokens.count, source)
        self.paddingID = try Self.checkedID(paddingID, "padding", tokens.count, source)
        self.addBOS = addBOS
        self.addEOS = addEOS
        self.scores = scores
        var tokenBytes = FlatByteStrings(capacity: tokens.count)
        var vocabulary = ByteStringTable(minimumCapacity: tokens.count)
        var byteIDs = [Int32](repeating: -1, count: 256)
        for (id, t) in tokens.enumerated() {
            let type = types[id]
            if type == .byte, let b = Self.byteTokenValue(t) {
                tokenBytes.append([b])
                if byteIDs[Int(b)] < 0 { byteIDs[Int(b)] = Int32(id) }
                continue
            }
            // The vocabulary is keyed by the piece's own bytes (▁ included): encoding works on the escaped text.
            let escaped = Array(t.utf8)
            if type == .normal || type == .userDefined || type == .undefined { vocabulary.insert(escaped, value: Int32(id)) }
            tokenBytes.append(Self.isSpecialType(type) ? escaped : Array(t.replacingOccurrences(of: "\u{2581}", with: " ").utf8))
        }
        self.tokenBytes = tokenBytes
        self.vocabulary = vocabulary
        self.byteIDs = byteIDs
        merges = MergeTable(minimumCapacity: 0)
        specialTokens = SpecialTokenMatcher(tokens: tokens, types: types) { Self.isSpecialType($0) }
        userDefinedTokens = SpecialTokenMatcher(tokens: tokens, types: types) { $0 == .userDefined }
    }

    /// A SentencePiece BPE tokenizer with a merge list (Hugging Face `tokenizer.json` files converted from
    /// SentencePiece, e.g. Llama 2, Mistral): the text is escaped as for `init(sentencePieceTokens:...)`, its
    /// characters (or their <0xXX> byte tokens when a character is no piece) are merged by rank.
    public init(sentencePieceBPETokens tokens: [String], mergePairs: [(String, String)], tokenTypes: [TokenType]? = nil,
                bosID: Int? = nil, eosID: Int? = nil, unknownID: Int? = nil, paddingID: Int? = nil,
                addBOS: Bool = false, addEOS: Bool = false, addSpacePrefix: Bool = true, source: String = "<tokenizer>") throws {
        let types = try Self.checkedTypes(tokenTypes, count: tokens.count, source: source)
        model = .sentencePieceBPE(addSpacePrefix: addSpacePrefix)
        self.tokens = tokens
        self.tokenTypes = types
        self.bosID = try Self.checkedID(bosID, "bos", tokens.count, source)
        self.eosID = try Self.checkedID(eosID, "eos", tokens.count, source)
        self.unknownID = try Self.checkedID(unknownID, "unknown", tokens.count, source)
        self.paddingID = try Self.checkedID(paddingID, "padding", tokens.count, source)
        self.addBOS = addBOS
        self.addEOS = addEOS
        scores = []
        var tokenBytes = FlatByteStrings(capacity: tokens.count)
        var vocabulary = ByteStringTable(minimumCapacity: tokens.count)
        var byteIDs = [Int32](repeating: -1, count: 256)
        var idOf: [String: Int32] = [:]
        idOf.reserveCapacity(tokens.count)
        for (id, t) in tokens.enumerated() {
            if idOf[t] == nil { idOf[t] = Int32(id) }
            let type = types[id]
            if let b = Self.byteTokenValue(t), type == .byte || type == .normal || type == .undefined {
                tokenBytes.append([b])
                if byteIDs[Int(b)] < 0 { byteIDs[Int(b)] = Int32(id) }
                continue
            }
            let escaped = Array(t.utf8)
            if type == .normal || type == .userDefined || type == .undefined { vocabulary.insert(escaped, value: Int32(id)) }
            tokenBytes.append(Self.isSpecialType(type) ? escaped : Array(t.replacingOccurrences(of: "\u{2581}", with: " ").utf8))
        }
        var merges = MergeTable(minimumCapacity: mergePairs.count)
        for (rank, (left, right)) in mergePairs.enumerated() {
            guard let l = idOf[left], let r = idOf[right], let merged = idOf[left + right] else { continue }
            merges.insert(l, r, rank: Int32(truncatingIfNeeded: rank), merged: merged)
        }
        self.tokenBytes = tokenBytes
        self.vocabulary = vocabulary
        self.byteIDs = byteIDs
        self.merges = merges
        specialTokens = SpecialTokenMatcher(tokens: tokens, types: types) { Self.isSpecialType($0) }
        userDefinedTokens = SpecialTokenMatcher(tokens: tokens, types: types) { $0 == .userDefined }
    }

    /// The byte of a "<0xXX>" piece.
    static func byteTokenValue(_ t: String) -> UInt8? {
        let u = Array(t.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        return UInt8(String(decoding: u[3 ..< 5], as: UTF8.self), radix: 16)
    }

    static func checkedTypes(_ types: [TokenType]?, count: Int, source: String) throws -> [TokenType] {
        guard let types else { return Array(repeating: .normal, count: count) }
        guard types.count == count else {
            throw TokenizerError.invalidVocabulary(source: source, reason: "\(types.count) token types for \(count) tokens")
        }
        return types
    }

    static func checkedID(_ id: Int?, _ what: String, _ count: Int, _ source: String) throws -> Int? {
        guard let id else { return nil }
        guard id >= 0 && id < count else {
            throw TokenizerError.invalidVocabulary(source: source, reason: "\(what) token id \(id) outside the vocabulary (\(count) tokens)")
        }
        return id
    }

    @inline(__always) static func isSpecialType(_ t: TokenType) -> Bool { t == .control || t == .userDefined }

    /// From GGUF metadata (`tokenizer.ggml.model` "gpt2" → byte-level BPE, "llama" → SentencePiece).
    public convenience init(gguf file: GGUFFile) throws {
        let src = file.path
        if file["tokenizer.ggml.model"] == nil, let json = file["tokenizer.huggingface.json"]?.string {
            // A whole tokenizer.json (gguf.md's `tokenizer.huggingface.json`), as Squish's converter stores a
            // checkpoint's tokenizer; BOS/EOS ids from the usual keys.
            let source = src + ": tokenizer.huggingface.json"
            let base = try Tokenizer(huggingFaceJSON: Data(json.utf8), source: source)
            func piece(_ key: String) -> String? {
                file["tokenizer.ggml.\(key)"]?.int.flatMap { $0 >= 0 && $0 < base.vocabularySize ? base.piece($0) : nil }
            }
            try self.init(huggingFaceJSON: Data(json.utf8), bosToken: piece("bos_token_id"), eosToken: piece("eos_token_id"), source: source)
            return
        }
        guard let modelName = file["tokenizer.ggml.model"]?.string else {
            throw TokenizerError.missingField(source: src, field: "tokenizer.ggml.model")
        }
        guard let tokens = file["tokenizer.ggml.tokens"]?.stringArray else {
            throw TokenizerError.missingField(source: src, field: "tokenizer.ggml.tokens")
        }
        var types: [TokenType]?
        if let raw = file["tokenizer.ggml.token_type"] {
            guard let ints = raw.intArray, ints.count == tokens.count else {
                throw TokenizerError.invalidVocabulary(source: src, reason: "tokenizer.ggml.token_type is not \(tokens.count) integers")
            }
            types = ints.map { TokenType(rawValue: $0) ?? .normal }
        }
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

    /// Token ids of `text`, byte for byte. `parseSpecial`: recognize control tokens' text (e.g. "<|im_start|>");
    /// user-defined tokens' text (e.g. Gemma's "<table>" or runs of spaces) is recognized always, as llama.cpp and
    /// Hugging Face's tokenizers do. `addSpecial`: add BOS/EOS as the model's metadata asks (like the references,
    /// even when the text already starts with BOS: encode a rendered chat prompt that contains its BOS with
    /// `addSpecial: false`).
    ///
    /// The text is cut at the leftmost, longest special token; llama.cpp instead cuts at every occurrence of each
    /// special token in turn, longest token first, which differs only where a token's end overlaps another's start
    /// (no real vocabulary seen so far has such a pair).
    public func encode(_ text: String, parseSpecial: Bool = false, addSpecial: Bool = false) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(text.utf8.count / 3 + 2)
        if addSpecial, addBOS, let bos = bosID { out.append(bos) }
        var scratch = Scratch()
        let text = normalization == .nfc ? text.precomposedStringWithCanonicalMapping : text
        let utf8 = text.utf8.withContiguousStorageIfAvailable { Array($0) } ?? Array(text.utf8)
        let specials = parseSpecial ? specialTokens : userDefinedTokens
        utf8.withUnsafeBufferPointer { bytes in
            guard !specials.isEmpty else {
                encodeText(bytes, scratch: &scratch, into: &out)
                return
            }
            // Text segments lie between special tokens (so each one starts the text or follows a special token).
            var start = 0, i = 0
            while i < bytes.count {
                if let (n, id) = specials.match(bytes, at: i) {
                    if start < i { encodeText(UnsafeBufferPointer(rebasing: bytes[start ..< i]), scratch: &scratch, into: &out) }
                    out.append(id)
                    i += n
                    start = i
                } else {
                    i += 1
                }
            }
            if start < bytes.count { encodeText(UnsafeBufferPointer(rebasing: bytes[start...]), scratch: &scratch, into: &out) }
        }
        if addSpecial, addEOS, let eos = eosID { out.append(eos) }
        return out
    }

    /// Per-call working memory, reused across the pieces of one `encode`.
    struct Scratch {
        var scalars: [UInt32] = []                 // [scalars] code points of the segment
        var offsets: [Int] = []                    // [scalars + 1] byte offset of each scalar
        var classes: [PreTokenizer.Class] = []     // [scalars] pre-tokenizer class of each scalar
        var symbolID: [Int32] = []                 // [symbols] token id of each symbol (BPE)
        var symbolStart: [Int32] = []              // [symbols] first byte of each symbol
        var symbolLength: [Int32] = []             // [symbols] bytes of each symbol; 0 once merged away
        var previous: [Int32] = []                 // [symbols] linked list of live symbols, -1 at the ends
        var next: [Int32] = []
        var heap = PairHeap()
        var text: [UInt8] = []                     // SentencePiece: the escaped text
    }

    /// Encodes text that starts the input or follows a special token.
    private func encodeText(_ bytes: UnsafeBufferPointer<UInt8>, scratch: inout Scratch, into out: inout [Int]) {
        switch model {
        case .byteLevelBPE(let pre): encodeByteLevel(bytes, pre: pre, scratch: &scratch, into: &out)
        case .sentencePiece(let prefix): encodeSentencePiece(bytes, addSpacePrefix: prefix, scratch: &scratch, into: &out)
        case .sentencePieceBPE(let prefix): encodeSentencePieceBPE(bytes, addSpacePrefix: prefix, scratch: &scratch, into: &out)
        }
    }

    private func encodeByteLevel(_ bytes: UnsafeBufferPointer<UInt8>, pre: PreTokenizer, scratch: inout Scratch,
                                 into out: inout [Int]) {
        guard !bytes.isEmpty else { return }
        // Decode to scalars, remembering each scalar's byte offset and class (the input is valid UTF-8: it came
        // from a String). The scratch arrays only grow, so their storage is reused from piece to piece.
        let n = bytes.count
        if scratch.scalars.count < n {
            scratch.scalars = [UInt32](repeating: 0, count: n)
            scratch.classes = [PreTokenizer.Class](repeating: .other, count: n)
            scratch.offsets = [Int](repeating: 0, count: n + 1)
        }
        var count = 0
        scratch.scalars.withUnsafeMutableBufferPointer { scalars in
            scratch.classes.withUnsafeMutableBufferPointer { classes in
                scratch.offsets.withUnsafeMutableBufferPointer { offsets in
                    PreTokenizer.asciiClasses.withUnsafeBufferPointer { ascii in
                        var i = 0
                        while i < n {
                            let b0 = UInt32(bytes[i])
                            offsets[count] = i
                            if b0 < 0x80 {
                                scalars[count] = b0
                                classes[count] = ascii[Int(b0)]
                                i += 1
                            } else {
                                let s: UInt32
                                if b0 < 0xE0 { s = (b0 & 0x1F) << 6 | UInt32(bytes[i + 1] & 0x3F); i += 2 }
                                else if b0 < 0xF0 { s = (b0 & 0x0F) << 12 | UInt32(bytes[i + 1] & 0x3F) << 6 | UInt32(bytes[i + 2] & 0x3F); i += 3 }
                                else { s = (b0 & 0x07) << 18 | UInt32(bytes[i + 1] & 0x3F) << 12 | UInt32(bytes[i + 2] & 0x3F) << 6 | UInt32(bytes[i + 3] & 0x3F); i += 4 }
                                scalars[count] = s
                                classes[count] = PreTokenizer.classify(s)
                            }
                            count += 1
                        }
                        offsets[count] = n
                    }
                }
            }
        }
        let scalars = scratch.scalars, classes = scratch.classes, offsets = scratch.offsets
        scalars.withUnsafeBufferPointer { s in
            classes.withUnsafeBufferPointer { c in
                offsets.withUnsafeBufferPointer { o in
                    pre.split(UnsafeBufferPointer(rebasing: s[..<count]), UnsafeBufferPointer(rebasing: c[..<count])) { range in
                        let piece = UnsafeBufferPointer(rebasing: bytes[o[range.lowerBound] ..< o[range.upperBound]])
                        bpe(piece, scratch: &scratch, into: &out)
                    }
                }
            }
        }
    }

    /// BPE on one piece: whole-piece lookup, cache, else merges by rank (lowest first; leftmost on ties), the
    /// pair candidates kept in a heap so that a long piece costs O(n log n).
    private func bpe(_ piece: UnsafeBufferPointer<UInt8>, scratch: inout Scratch, into out: inout [Int]) {
        if let id = vocabulary.find(piece) { out.append(Int(id)); return }
        cacheLock.lock()
        if let at = cache.find(piece) {
            cacheIDs.withUnsafeBufferPointer { ids in
                let start = Int(at), n = Int(ids[start])
                for k in 0 ..< n { out.append(Int(ids[start + 1 + k])) }
            }
            cacheLock.unlock()
            return
        }
        cacheLock.unlock()

        // Symbols: one per byte that has a token, as a doubly linked list.
        var n = 0
        scratch.symbolID.removeAll(keepingCapacity: true)
        for b in piece where byteIDs[Int(b)] >= 0 { scratch.symbolID.append(byteIDs[Int(b)]); n += 1 }
        let first = out.count
        mergeByRank(symbols: n, scratch: &scratch, into: &out)
        guard piece.count <= Self.cachedPieceLimit else { return }
        cacheLock.lock()
        if cache.storageBytes + piece.count > Self.cacheLimitBytes {
            cache.removeAll()
            cacheIDs.removeAll(keepingCapacity: true)
        }
        if cache.insert(piece, value: Int32(cacheIDs.count)) {
            cacheIDs.append(Int32(out.count - first))
            for id in out[first...] { cacheIDs.append(Int32(id)) }
        }
        cacheLock.unlock()
    }

    /// Merges the `symbols` ids in `scratch.symbolID` by rank (lowest first, leftmost on ties; Sennrich et al. 2016,
    /// as Hugging Face's BPE applies the merge list), the candidate pairs in a heap so that n symbols cost
    /// O(n log n); appends the resulting ids.
    private func mergeByRank(symbols n: Int, scratch: inout Scratch, into out: inout [Int]) {
        scratch.previous.removeAll(keepingCapacity: true)
        scratch.next.removeAll(keepingCapacity: true)
        for k in 0 ..< n {
            scratch.previous.append(Int32(k - 1))
            scratch.next.append(k + 1 < n ? Int32(k + 1) : -1)
        }
        scratch.heap.removeAll()
        for k in 0 ..< max(0, n - 1) {
            if let m = merges.find(scratch.symbolID[k], scratch.symbolID[k + 1]) {
                scratch.heap.push(PairHeap.Entry(priority: UInt32(bitPattern: m.rank), left: Int32(k), right: Int32(k + 1),
                                                 leftID: scratch.symbolID[k], rightID: scratch.symbolID[k + 1], merged: m.merged))
            }
        }
        while let e = scratch.heap.pop() {
            let l = Int(e.left), r = Int(e.right)
            // Stale when either symbol was merged since the pair was pushed.
            guard scratch.symbolID[l] == e.leftID, scratch.symbolID[r] == e.rightID, scratch.next[l] == e.right else { continue }
            scratch.symbolID[l] = e.merged
            scratch.symbolID[r] = -1
            let after = scratch.next[r]
            scratch.next[l] = after
            if after >= 0 { scratch.previous[Int(after)] = Int32(l) }
            let before = scratch.previous[l]
            if before >= 0, let m = merges.find(scratch.symbolID[Int(before)], e.merged) {
                scratch.heap.push(PairHeap.Entry(priority: UInt32(bitPattern: m.rank), left: before, right: Int32(l),
                                                 leftID: scratch.symbolID[Int(before)], rightID: e.merged, merged: m.merged))
            }
            if after >= 0, let m = merges.find(e.merged, scratch.symbolID[Int(after)]) {
                scratch.heap.push(PairHeap.Entry(priority: UInt32(bitPattern: m.rank), left: Int32(l), right: after,
                                                 leftID: e.merged, rightID: scratch.symbolID[Int(after)], merged: m.merged))
            }
        }
        var k: Int32 = n > 0 ? 0 : -1
        while k >= 0 {
            out.append(Int(scratch.symbolID[Int(k)]))
            k = scratch.next[Int(k)]
        }
    }

    /// SentencePiece BPE with a merge list: escape, one symbol per character (or per byte of a character that is
    /// no piece), merge by rank.
    private func encodeSentencePieceBPE(_ input: UnsafeBufferPointer<UInt8>, addSpacePrefix: Bool, scratch: inout Scratch,
                                        into out: inout [Int]) {
        guard !input.isEmpty else { return }
        scratch.text.removeAll(keepingCapacity: true)
        if addSpacePrefix { scratch.text.append(contentsOf: [0xE2, 0x96, 0x81]) }
        for b in input {
            if b == 0x20 { scratch.text.append(contentsOf: [0xE2, 0x96, 0x81]) } else { scratch.text.append(b) }
        }
        let text = scratch.text
        var n = 0
        scratch.symbolID.removeAll(keepingCapacity: true)
        text.withUnsafeBufferPointer { text in
            var i = 0
            while i < text.count {
                let b = text[i]
                let length = min(b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4, text.count - i)
                let char = UnsafeBufferPointer(rebasing: text[i ..< i + length])
                if let id = vocabulary.find(char) {
                    scratch.symbolID.append(id)
                    n += 1
                } else if char.allSatisfy({ byteIDs[Int($0)] >= 0 }) {
                    for c in char { scratch.symbolID.append(byteIDs[Int(c)]) }
                    n += char.count
                } else if let unk = unknownID {
                    // As Hugging Face's BPE: a character whose bytes are not all tokens becomes one unknown token.
                    scratch.symbolID.append(Int32(unk))
                    n += 1
                }
                i += length
            }
        }
        mergeByRank(symbols: n, scratch: &scratch, into: &out)
    }

    /// llama.cpp's SPM tokenizer (see the initializer): symbols are byte ranges of the escaped text in a linked
    /// list; candidate pairs wait in a heap ordered by the merged piece's score.
    private func encodeSentencePiece(_ input: UnsafeBufferPointer<UInt8>, addSpacePrefix: Bool, scratch: inout Scratch,
                                     into out: inout [Int]) {
        guard !input.isEmpty else { return }
        // Escape: a leading space when asked, every space as ▁ (E2 96 81).
        scratch.text.removeAll(keepingCapacity: true)
        if addSpacePrefix { scratch.text.append(contentsOf: [0xE2, 0x96, 0x81]) }
        for b in input {
            if b == 0x20 { scratch.text.append(contentsOf: [0xE2, 0x96, 0x81]) } else { scratch.text.append(b) }
        }
        let text = scratch.text
        text.withUnsafeBufferPointer { text in
            // Symbols: the UTF-8 characters (a truncated sequence at the end is cut to what is there).
            scratch.symbolStart.removeAll(keepingCapacity: true)
            scratch.symbolLength.removeAll(keepingCapacity: true)
            var i = 0
            while i < text.count {
                let b = text[i]
                let n = min(b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4, text.count - i)
                scratch.symbolStart.append(Int32(i))
                scratch.symbolLength.append(Int32(n))
                i += n
            }
            let n = scratch.symbolStart.count
            scratch.previous.removeAll(keepingCapacity: true)
            scratch.next.removeAll(keepingCapacity: true)
            for k in 0 ..< n {
                scratch.previous.append(Int32(k - 1))
                scratch.next.append(k + 1 < n ? Int32(k + 1) : -1)
            }
            scratch.heap.removeAll()
            func tryPair(_ l: Int32, _ r: Int32, _ scratch: inout Scratch) {
                guard l >= 0, r >= 0 else { return }
                let start = Int(scratch.symbolStart[Int(l)])
                let length = Int(scratch.symbolLength[Int(l)] + scratch.symbolLength[Int(r)])
                guard let id = vocabulary.find(UnsafeBufferPointer(rebasing: text[start ..< start + length])) else { return }
                scratch.heap.push(PairHeap.Entry(priority: PairHeap.descending(scores[Int(id)]), left: l, right: r,
                                                 leftID: Int32(length), rightID: 0, merged: id))
            }
            for k in 0 ..< max(0, n - 1) { tryPair(Int32(k), Int32(k + 1), &scratch) }
            while let e = scratch.heap.pop() {
                let l = Int(e.left), r = Int(e.right)
                // Stale when either symbol changed since the pair was pushed (leftID holds the pair's byte length).
                let ll = scratch.symbolLength[l], rl = scratch.symbolLength[r]
                guard ll > 0, rl > 0, ll + rl == e.leftID, scratch.next[l] == e.right else { continue }
                scratch.symbolLength[l] = ll + rl
                scratch.symbolLength[r] = 0
                let after = scratch.next[r]
                scratch.next[l] = after
                if after >= 0 { scratch.previous[Int(after)] = Int32(l) }
                tryPair(scratch.previous[l], Int32(l), &scratch)
                tryPair(Int32(l), after, &scratch)
            }
            var k: Int32 = n > 0 ? 0 : -1
            while k >= 0 {
                let start = Int(scratch.symbolStart[Int(k)]), length = Int(scratch.symbolLength[Int(k)])
                let piece = UnsafeBufferPointer(rebasing: text[start ..< start + length])
                if let id = vocabulary.find(piece) {
                    out.append(Int(id))
                } else {
                    for b in piece {
                        if byteIDs[Int(b)] >= 0 { out.append(Int(byteIDs[Int(b)])) } else if let unk = unknownID { out.append(unk) }
                    }
                }
                k = scratch.next[Int(k)]
            }
        }
    }

    // MARK: Decoding

    /// The bytes token `id` stands for (empty for ids outside the vocabulary).
    public func bytes(for id: Int) -> [UInt8] {
        guard id >= 0 && id < tokenBytes.count else { return [] }
        return Array(tokenBytes[id])
    }

    /// Concatenated bytes of `ids`: the inverse of `encode` (SentencePiece: the space added before the text and
    /// after each special token is removed again). `skipSpecial` leaves out control and user-defined tokens.
    public func decodeBytes(_ ids: [Int], skipSpecial: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        var stripSpace = false
        switch model {
        case .sentencePiece(let prefix), .sentencePieceBPE(let prefix): stripSpace = prefix
        case .byteLevelBPE: break
        }
        var afterSpecial = true
        for id in ids {
            let special = id >= 0 && id < tokenTypes.count && Self.isSpecialType(tokenTypes[id])
            if special {
                afterSpecial = true
                if !skipSpecial { out.append(contentsOf: tokenBytes[id]) }
                continue
            }
            let b = id >= 0 && id < tokenBytes.count ? tokenBytes[id] : []
            if stripSpace && afterSpecial, b.first == 0x20 { out.append(contentsOf: b.dropFirst()) } else { out.append(contentsOf: b) }
            if !b.isEmpty { afterSpecial = false }
        }
        return out
    }

    /// Text of `ids` (invalid UTF-8, e.g. a character cut between tokens, becomes U+FFFD).
    public func decode(_ ids: [Int], skipSpecial: Bool = false) -> String {
        String(decoding: decodeBytes(ids, skipSpecial: skipSpecial), as: UTF8.self)
    }

    /// The token's string as stored in the vocabulary.
    public func piece(_ id: Int) -> String { id >= 0 && id < tokens.count ? tokens[id] : "" }

    public func isSpecial(_ id: Int) -> Bool {
        id >= 0 && id < tokenTypes.count && Self.isSpecialType(tokenTypes[id])
    }

    /// Empties the per-piece cache (benchmarks measure encoding from a cold cache).
    public func clearCache() {
        cacheLock.lock()
        cache.removeAll()
        cacheIDs.removeAll(keepingCapacity: true)
        cacheLock.unlock()
    }

    /// The token that stands for the single byte `b` (byte-level BPE: its one-character token; SentencePiece: <0xXX>),
    /// if the vocabulary has one.
    public func tokenID(forByte b: UInt8) -> Int? {
        let id = byteIDs[Int(b)]
        return id >= 0 ? Int(id) : nil
    }

    /// True when every byte has a token, so that decode(encode(s)) == s for all text.
    public var coversAllBytes: Bool { !byteIDs.contains(-1) }

    /// Id of a token given by its text (e.g. "<|im_end|>").
    public func id(of token: String) -> Int? { tokens.firstIndex(of: token) }
}

/// Byte strings indexed by position, in one buffer (one allocation for a whole vocabulary instead of one per token).
struct FlatByteStrings {
    /// All strings concatenated.
    private var storage: [UInt8] = []
    /// [count + 1] string i is storage[offsets[i] ..< offsets[i + 1]].
    private var offsets: [Int] = [0]

    init(capacity: Int) { offsets.reserveCapacity(capacity + 1) }

    var count: Int { offsets.count - 1 }

    mutating func append<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        storage.append(contentsOf: bytes)
        offsets.append(storage.count)
    }

    subscript(i: Int) -> ArraySlice<UInt8> { storage[offsets[i] ..< offsets[i + 1]] }
}

/// Special tokens to find in text: for each first byte, the tokens starting with it, longest first (ties: lower
/// id first), so that the first match at a position is the longest.
struct SpecialTokenMatcher {
    /// [256] (token bytes, id) for the tokens whose text starts with that byte.
    private let buckets: [[(bytes: [UInt8], id: Int)]]
    let isEmpty: Bool

    init(tokens: [String], types: [Tokenizer.TokenType], include: (Tokenizer.TokenType) -> Bool) {
        var buckets = [[(bytes: [UInt8], id: Int)]](repeating: [], count: 256)
        var any = false
        for (id, t) in tokens.enumerated() where include(types[id]) && !t.isEmpty {
            let bytes = Array(t.utf8)
            buckets[Int(bytes[0])].append((bytes, id))
            any = true
        }
        for b in 0 ..< 256 where buckets[b].count > 1 {
            buckets[b].sort { ($0.bytes.count, -$0.id) > ($1.bytes.count, -$1.id) }
        }
        self.buckets = buckets
        isEmpty = !any
    }

    /// The longest token whose text starts at `bytes[i]`: (its length in bytes, its id).
    @inline(__always) func match(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> (Int, Int)? {
        let remaining = bytes.count - i
        for (b, id) in buckets[Int(bytes[i])] where b.count <= remaining {
            var k = 1
            while k < b.count && bytes[i + k] == b[k] { k += 1 }
            if k == b.count { return (b.count, id) }
        }
        return nil
    }
}

/// A binary min-heap of candidate pairs ordered by (priority, left position): BPE's lowest merge rank or
/// SentencePiece's highest score first, the leftmost pair first among equals.
struct PairHeap {
    struct Entry {
        var priority: UInt32  // smaller pops first
        var left: Int32       // symbol index of the pair's left side
        var right: Int32      // symbol index of the right side when pushed
        var leftID: Int32     // BPE: left symbol's id when pushed; SentencePiece: the pair's byte length
        var rightID: Int32    // BPE: right symbol's id when pushed
        var merged: Int32     // token id of the merged pair
        @inline(__always) var key: UInt64 { UInt64(priority) << 32 | UInt64(UInt32(bitPattern: left)) }
    }

    private var entries: [Entry] = []

    mutating func removeAll() { entries.removeAll(keepingCapacity: true) }

    /// Maps a score to a priority so that higher scores pop first (order-preserving float bits, inverted).
    @inline(__always) static func descending(_ score: Float) -> UInt32 {
        let bits = score.bitPattern
        let ascending = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
        return ~ascending
    }

    mutating func push(_ e: Entry) {
        entries.append(e)
        var i = entries.count - 1
        let key = e.key
        while i > 0 {
            let parent = (i - 1) / 2
            if entries[parent].key <= key { break }
            entries.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let top = entries.first else { return nil }
        let last = entries.removeLast()
        if entries.isEmpty { return top }
        entries[0] = last
        var i = 0
        let n = entries.count
        let key = last.key
        while true {
            let l = 2 * i + 1
            if l >= n { break }
            var c = l
            if l + 1 < n && entries[l + 1].key < entries[l].key { c = l + 1 }
            if entries[c].key >= key { break }
            entries.swapAt(i, c)
            i = c
        }
        return top
    }
}

/// GPT-2's reversible byte ↔ unicode mapping (`bytes_to_unicode` in GPT-2's `encoder.py`): printable bytes map to
/// themselves, the others to U+0100 upwards in byte order.
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

    /// A token string in the byte-level alphabet for raw bytes.
    public static func encode(_ bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(byteToUnicode[Int(b)])!) }
        return String(s)
    }
}
