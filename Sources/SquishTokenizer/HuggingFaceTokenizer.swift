import Foundation
import SquishFormats

extension JSONValue {
    var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }

    /// The member `key` of an object, nil when it is absent or null.
    func member(_ key: String) -> JSONValue? {
        guard let v = self[key], v != .null else { return nil }
        return v
    }

    /// How a value is named in messages.
    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// Typed, optional members of tokenizer.json objects: absent or null gives nil, a value of another type is an
/// error naming the field (a `merges` that is a string is not "no merges").
struct TokenizerJSONFields {
    let source: String

    func wrongType(_ field: String, _ expected: String, _ found: JSONValue) -> TokenizerError {
        .invalidVocabulary(source: source, reason: "field '\(field)' must be \(expected), found \(found.typeName)")
    }

    func string(_ object: JSONValue?, _ key: String, _ field: String) throws -> String? {
        guard let v = object?.member(key) else { return nil }
        guard let s = v.string else { throw wrongType(field, "a string", v) }
        return s
    }

    func bool(_ object: JSONValue?, _ key: String, _ field: String) throws -> Bool? {
        guard let v = object?.member(key) else { return nil }
        guard let b = v.boolValue else { throw wrongType(field, "a boolean", v) }
        return b
    }

    func array(_ object: JSONValue?, _ key: String, _ field: String) throws -> [JSONValue]? {
        guard let v = object?.member(key) else { return nil }
        guard let a = v.array else { throw wrongType(field, "an array", v) }
        return a
    }

    func object(_ object: JSONValue?, _ key: String, _ field: String) throws -> JSONValue? {
        guard let v = object?.member(key) else { return nil }
        guard v.object != nil else { throw wrongType(field, "an object", v) }
        return v
    }
}

extension Tokenizer {
    /// A tokenizer from a Hugging Face `tokenizer.json` whose `model` is "BPE" (`vocab`, `merges` as "left right"
    /// strings or ["left", "right"] pairs), with `added_tokens` (special ones become control tokens, the others
    /// user-defined; their lstrip/rstrip/single_word flags are not implemented). Byte-level BPE needs a
    /// `pre_tokenizer` that `PreTokenizer(huggingFace:)` recognizes and no normalizer or an NFC one; SentencePiece
    /// BPE (`byte_fallback`, ▁ for spaces) is recognized by `sentencePieceSpacePrefix`. BOS/EOS come from a
    /// `TemplateProcessing` post-processor when it adds them, or from `bosToken`/`eosToken` (the strings of
    /// `tokenizer_config.json`), which set the ids without adding the tokens.
    public convenience init(huggingFaceJSON data: Data, bosToken: String? = nil, eosToken: String? = nil,
                            source: String = "tokenizer.json") throws {
        let root: JSONValue
        do {
            root = try JSONValue.parse([UInt8](data))
        } catch {
            throw TokenizerError.invalidVocabulary(source: source, reason: "not valid JSON: \(error)")
        }
        guard root.object != nil else {
            throw TokenizerError.invalidVocabulary(source: source, reason: "the top level is not a JSON object")
        }
        let fields = TokenizerJSONFields(source: source)
        guard let model = try fields.object(root, "model", "model") else { throw TokenizerError.missingField(source: source, field: "model") }
        let type = try fields.string(model, "type", "model.type") ?? "BPE"
        guard type == "BPE" else { throw TokenizerError.unsupportedModel(source: source, model: type) }
        let spacePrefix = try Self.sentencePieceSpacePrefix(root, model: model, source: source)
        guard let vocab = try fields.object(model, "vocab", "model.vocab")?.object else {
            throw TokenizerError.missingField(source: source, field: "model.vocab")
        }
        let added = try fields.array(root, "added_tokens", "added_tokens") ?? []

        // Ids may leave gaps; the vocabulary is as long as the largest id + 1 (bounded by the entries present).
        var entries: [(id: Int, text: String, type: TokenType)] = []
        entries.reserveCapacity(vocab.count + added.count)
        for (text, value) in vocab {
            guard let id = value.int, id >= 0, id < Int64(Int32.max) else {
                throw TokenizerError.invalidVocabulary(source: source, reason: "token '\(text)' has no valid id")
            }
            entries.append((Int(id), text, .normal))
        }
        for (i, a) in added.enumerated() {
            guard a.object != nil else { throw fields.wrongType("added_tokens[\(i)]", "an object", a) }
            guard let id = a["id"]?.int, id >= 0, id < Int64(Int32.max), let text = a["content"]?.string else {
                throw TokenizerError.invalidVocabulary(source: source, reason: "added token \(i) lacks a valid id or content")
            }
            let special = try fields.bool(a, "special", "added_tokens[\(i)].special") ?? false
            entries.append((Int(id), text, special ? .control : .userDefined))
        }
        let count = (entries.map(\.id).max() ?? -1) + 1
        guard count <= 2 * entries.count + 1024 else {
            throw TokenizerError.invalidVocabulary(source: source, reason: "token id \(count - 1) for \(entries.count) tokens")
        }
        var tokens = [String?](repeating: nil, count: count)
        var types = [TokenType](repeating: .unused, count: count)
        // Vocabulary entries before added tokens of the same id.
        for e in entries.sorted(by: { ($0.id, $0.type == .normal ? 0 : 1) < ($1.id, $1.type == .normal ? 0 : 1) }) {
            if let existing = tokens[e.id] {
                // An added token repeats its vocabulary entry (and makes it special); anything else is a conflict.
                guard existing == e.text else {
                    throw TokenizerError.invalidVocabulary(source: source, reason: "id \(e.id) is both '\(existing)' and '\(e.text)'")
                }
                types[e.id] = e.type
                continue
            }
            tokens[e.id] = e.text
            types[e.id] = e.type
        }

        var pairs: [(String, String)] = []
        let rawMerges = try fields.array(model, "merges", "model.merges") ?? []
        pairs.reserveCapacity(rawMerges.count)
        for (rank, m) in rawMerges.enumerated() {
            if let s = m.string, let space = s.firstIndex(of: " ") {
                pairs.append((String(s[..<space]), String(s[s.index(after: space)...])))
            } else if let p = m.array, p.count == 2, let l = p[0].string, let r = p[1].string {
                pairs.append((l, r))
            } else {
                throw TokenizerError.invalidVocabulary(source: source, reason: "merge \(rank) is neither \"a b\" nor [\"a\", \"b\"]")
            }
        }

        let texts = tokens.map { $0 ?? "" }
        func idOf(_ text: String?) -> Int? { text.flatMap { t in tokens.firstIndex { $0 == t } } }
        var bos = idOf(bosToken), eos = idOf(eosToken)
        var addBOS = false, addEOS = false
        if let (first, last) = Self.templateSpecials(root["post_processor"]) {
            if let id = idOf(first) { bos = id; addBOS = true }
            if let id = idOf(last) { eos = id; addEOS = true }
        }
        let unknown = idOf(try fields.string(model, "unk_token", "model.unk_token"))
        if let spacePrefix {
            try self.init(sentencePieceBPETokens: texts, mergePairs: pairs, tokenTypes: types, bosID: bos, eosID: eos,
                          unknownID: unknown, paddingID: nil, addBOS: addBOS, addEOS: addEOS, addSpacePrefix: spacePrefix,
                          source: source)
        } else {
            let (pre, normalization) = try Self.byteLevelSettings(root, source: source)
            try self.init(byteLevelTokens: texts, mergePairs: pairs, tokenTypes: types, preTokenizer: pre, bosID: bos,
                          eosID: eos, unknownID: unknown, paddingID: nil, addBOS: addBOS, addEOS: addEOS, source: source)
            self.normalization = normalization
        }
    }

    /// Reads `path` (a `tokenizer.json`).
    public convenience init(huggingFacePath path: String, bosToken: String? = nil, eosToken: String? = nil) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError.invalidVocabulary(source: path, reason: "cannot read the file")
        }
        try self.init(huggingFaceJSON: data, bosToken: bosToken, eosToken: eosToken, source: path)
    }

    /// The same as `init(huggingFacePath:bosToken:eosToken:)` (the name the CLI uses for checkpoint directories).
    public convenience init(tokenizerJSON path: String, bosToken: String? = nil, eosToken: String? = nil) throws {
        try self.init(huggingFacePath: path, bosToken: bosToken, eosToken: eosToken)
    }

    static func describe(_ json: JSONValue?) -> String { String((json ?? .null).serialized.prefix(300)) }

    /// Byte-level BPE: a recognized pre-tokenizer and no normalizer or NFC.
    static func byteLevelSettings(_ root: JSONValue, source: String) throws -> (PreTokenizer, Normalization) {
        guard let pre = PreTokenizer(huggingFace: root["pre_tokenizer"]) else {
            throw TokenizerError.unsupportedPreTokenizer(source: source, name: describe(root["pre_tokenizer"]))
        }
        var normalization = Normalization.none
        if let normalizer = root["normalizer"], normalizer != .null {
            guard normalizer["type"]?.string == "NFC" else {
                throw TokenizerError.unsupportedModel(source: source, model: "normalizer \(describe(normalizer)) (supported: none, NFC)")
            }
            normalization = .nfc
        }
        return (pre, normalization)
    }

    /// nil for byte-level BPE; for a SentencePiece-style BPE (byte fallback, spaces as ▁), whether a ▁ is put
    /// before the text. Recognized: normalizer Replace(" " → "▁") with an optional Prepend("▁") before it (and no
    /// pre-tokenizer, or Gemma's Split(" "), which has nothing left to split), or
    /// pre-tokenizer Metaspace("▁", split: false) with its prepend_scheme (text after special tokens always gets
    /// the ▁, as in llama.cpp, also under prepend_scheme "first").
    static func sentencePieceSpacePrefix(_ root: JSONValue, model: JSONValue, source: String) throws -> Bool? {
        let normalizer = root["normalizer"].flatMap { $0 == .null ? nil : $0 }
        let pre = root["pre_tokenizer"].flatMap { $0 == .null ? nil : $0 }
        let fields = TokenizerJSONFields(source: source)
        for key in ["normalizer", "pre_tokenizer", "post_processor", "decoder"] { _ = try fields.object(root, key, key) }
        let byteFallback = try fields.bool(model, "byte_fallback", "model.byte_fallback") ?? false
        var steps: [JSONValue] = []
        if let normalizer {
            steps = normalizer["type"]?.string == "Sequence" ? (normalizer["normalizers"]?.array ?? []) : [normalizer]
        }
        func isReplaceSpace(_ n: JSONValue) -> Bool {
            n["type"]?.string == "Replace" && n["pattern"]?["String"]?.string == " " && n["content"]?.string == "\u{2581}"
        }
        func isPrepend(_ n: JSONValue) -> Bool { n["type"]?.string == "Prepend" && n["prepend"]?.string == "\u{2581}" }
        let metaspace = pre?["type"]?.string == "Metaspace"
        let replaces = steps.contains(where: isReplaceSpace)
        guard byteFallback || metaspace || replaces else { return nil }
        if metaspace {
            guard pre?["replacement"]?.string == "\u{2581}", pre?["split"]?.boolValue != true, steps.isEmpty else {
                throw TokenizerError.unsupportedPreTokenizer(source: source, name: describe(pre))
            }
            if let scheme = pre?["prepend_scheme"]?.string { return scheme != "never" }
            return pre?["add_prefix_space"]?.boolValue ?? true
        }
        // transformers' GemmaTokenizer (Gemma 3's tokenizer.json) adds a pre-tokenizer that splits at " ": after the
        // normalizer has turned every space into ▁ it never splits.
        let splitsAtSpace = pre?["type"]?.string == "Split" && pre?["pattern"]?["String"]?.string == " "
            && pre?["invert"]?.boolValue != true
        let known = steps.allSatisfy { isReplaceSpace($0) || isPrepend($0) }
        guard known, replaces, pre == nil || splitsAtSpace, steps.count <= 2, steps.count == 1 || isPrepend(steps[0]) else {
            throw TokenizerError.unsupportedModel(
                source: source,
                model: "SentencePiece-style BPE with normalizer \(describe(normalizer)) and pre-tokenizer \(describe(pre))")
        }
        return steps.count == 2
    }

    /// The special tokens a `TemplateProcessing` post-processor (alone or in a `Sequence`) puts before and after a
    /// single sequence.
    static func templateSpecials(_ json: JSONValue?) -> (String?, String?)? {
        guard let obj = json, let type = obj["type"]?.string else { return nil }
        if type == "Sequence", let list = obj["processors"]?.array {
            for p in list { if let r = templateSpecials(p) { return r } }
            return nil
        }
        guard type == "TemplateProcessing", let single = obj["single"]?.array, !single.isEmpty else { return nil }
        func special(_ item: JSONValue) -> String? { item["SpecialToken"]?["id"]?.string }
        let first = special(single[0])
        let last = single.count > 1 ? special(single[single.count - 1]) : nil
        return (first, last)
    }
}
