import Foundation

extension Tokenizer {
    /// A tokenizer from a Hugging Face `tokenizer.json` whose `model` is "BPE" (`vocab`, `merges` as "left right"
    /// strings or ["left", "right"] pairs), with `added_tokens` (special ones become control tokens, the others
    /// user-defined; their lstrip/rstrip/single_word flags are not implemented). Byte-level BPE needs a
    /// `pre_tokenizer` that `PreTokenizer(huggingFace:)` recognizes and no normalizer or an NFC one; SentencePiece
    /// BPE (`byte_fallback`, ▁ for spaces) is recognized by `sentencePieceSpacePrefix`. BOS/EOS come from a
    /// `TemplateProcessing` post-processor when it adds them, or from `bosToken`/`eosToken` (the strings of
    /// `tokenizer_config.json`), which also set the ids without adding the tokens.
    public convenience init(huggingFaceJSON data: Data, bosToken: String? = nil, eosToken: String? = nil,
                            source: String = "tokenizer.json") throws {
        let root: [String: Any]
        do {
            guard let r = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw TokenizerError.invalidVocabulary(source: source, reason: "the top level is not a JSON object")
            }
            root = r
        } catch let e as TokenizerError {
            throw e
        } catch {
            throw TokenizerError.invalidVocabulary(source: source, reason: "not valid JSON: \(error.localizedDescription)")
        }
        guard let model = root["model"] as? [String: Any] else { throw TokenizerError.missingField(source: source, field: "model") }
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw TokenizerError.unsupportedModel(source: source, model: type) }
        let spacePrefix = try Self.sentencePieceSpacePrefix(root, model: model, source: source)
        guard let vocab = model["vocab"] as? [String: Any] else { throw TokenizerError.missingField(source: source, field: "model.vocab") }
        let added = root["added_tokens"] as? [[String: Any]] ?? []

        // Ids may leave gaps; the vocabulary is as long as the largest id + 1 (bounded by the entries present).
        var entries: [(id: Int, text: String, type: TokenType)] = []
        entries.reserveCapacity(vocab.count + added.count)
        for (text, value) in vocab {
            guard let id = (value as? NSNumber)?.intValue, id >= 0 else {
                throw TokenizerError.invalidVocabulary(source: source, reason: "token '\(text)' has no valid id")
            }
            entries.append((id, text, .normal))
        }
        for a in added {
            guard let id = (a["id"] as? NSNumber)?.intValue, id >= 0, let text = a["content"] as? String else {
                throw TokenizerError.invalidVocabulary(source: source, reason: "an added token lacks a valid id or content")
            }
            entries.append((id, text, (a["special"] as? Bool) == true ? .control : .userDefined))
        }
        let count = (entries.map(\.id).max() ?? -1) + 1
        guard count <= 2 * entries.count + 1024 else {
            throw TokenizerError.invalidVocabulary(source: source, reason: "token id \(count - 1) for \(entries.count) tokens")
        }
        var tokens = [String?](repeating: nil, count: count)
        var types = [TokenType](repeating: .unused, count: count)
        for e in entries.sorted(by: { ($0.id, $0.type == .normal ? 1 : 0) < ($1.id, $1.type == .normal ? 1 : 0) }) {
            if let existing = tokens[e.id] {
                // An added token repeats its vocabulary entry; anything else is a conflict.
                guard existing == e.text else {
                    throw TokenizerError.invalidVocabulary(source: source, reason: "id \(e.id) is both '\(existing)' and '\(e.text)'")
                }
                continue
            }
            tokens[e.id] = e.text
            types[e.id] = e.type
        }

        var pairs: [(String, String)] = []
        let rawMerges = model["merges"] as? [Any] ?? []
        pairs.reserveCapacity(rawMerges.count)
        for (rank, m) in rawMerges.enumerated() {
            if let s = m as? String, let space = s.firstIndex(of: " ") {
                pairs.append((String(s[..<space]), String(s[s.index(after: space)...])))
            } else if let p = m as? [String], p.count == 2 {
                pairs.append((p[0], p[1]))
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
        let unknown = idOf(model["unk_token"] as? String)
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

    static func describe(_ json: Any?) -> String {
        guard let json, !(json is NSNull) else { return "null" }
        let text = (try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) }
        return String((text ?? "?").prefix(300))
    }

    /// Byte-level BPE: a recognized pre-tokenizer and no normalizer or NFC.
    static func byteLevelSettings(_ root: [String: Any], source: String) throws -> (PreTokenizer, Normalization) {
        guard let pre = PreTokenizer(huggingFace: root["pre_tokenizer"]) else {
            throw TokenizerError.unsupportedPreTokenizer(source: source, name: describe(root["pre_tokenizer"]))
        }
        var normalization = Normalization.none
        if let normalizer = root["normalizer"], !(normalizer is NSNull) {
            guard (normalizer as? [String: Any])?["type"] as? String == "NFC" else {
                throw TokenizerError.unsupportedModel(source: source, model: "normalizer \(describe(normalizer)) (supported: none, NFC)")
            }
            normalization = .nfc
        }
        return (pre, normalization)
    }

    /// nil for byte-level BPE; for a SentencePiece-style BPE (byte fallback, spaces as ▁), whether a ▁ is put
    /// before the text. Recognized: normalizer Replace(" " → "▁") with an optional Prepend("▁") before it, or
    /// pre-tokenizer Metaspace("▁", split: false) with its prepend_scheme (text after special tokens always gets
    /// the ▁, as in llama.cpp, also under prepend_scheme "first").
    static func sentencePieceSpacePrefix(_ root: [String: Any], model: [String: Any], source: String) throws -> Bool? {
        let normalizer = root["normalizer"] as? [String: Any]
        let pre = root["pre_tokenizer"] as? [String: Any]
        let byteFallback = (model["byte_fallback"] as? Bool) == true
        var steps: [[String: Any]] = []
        if let normalizer {
            steps = normalizer["type"] as? String == "Sequence" ? (normalizer["normalizers"] as? [[String: Any]] ?? []) : [normalizer]
        }
        func isReplaceSpace(_ n: [String: Any]) -> Bool {
            n["type"] as? String == "Replace" && (n["pattern"] as? [String: Any])?["String"] as? String == " "
                && n["content"] as? String == "\u{2581}"
        }
        func isPrepend(_ n: [String: Any]) -> Bool { n["type"] as? String == "Prepend" && n["prepend"] as? String == "\u{2581}" }
        let metaspace = pre?["type"] as? String == "Metaspace"
        let replaces = steps.contains(where: isReplaceSpace)
        guard byteFallback || metaspace || replaces else { return nil }
        if metaspace {
            guard pre?["replacement"] as? String == "\u{2581}", (pre?["split"] as? Bool) != true, steps.isEmpty else {
                throw TokenizerError.unsupportedPreTokenizer(source: source, name: describe(pre))
            }
            if let scheme = pre?["prepend_scheme"] as? String { return scheme != "never" }
            return (pre?["add_prefix_space"] as? Bool) ?? true
        }
        let known = steps.allSatisfy { isReplaceSpace($0) || isPrepend($0) }
        guard known, replaces, pre == nil, steps.count <= 2, steps.count == 1 || isPrepend(steps[0]) else {
            throw TokenizerError.unsupportedModel(
                source: source,
                model: "SentencePiece-style BPE with normalizer \(describe(root["normalizer"])) and pre-tokenizer \(describe(root["pre_tokenizer"]))")
        }
        return steps.count == 2
    }

    /// Reads `path` (a `tokenizer.json`).
    public convenience init(huggingFacePath path: String, bosToken: String? = nil, eosToken: String? = nil) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError.invalidVocabulary(source: path, reason: "cannot read the file")
        }
        try self.init(huggingFaceJSON: data, bosToken: bosToken, eosToken: eosToken, source: path)
    }

    /// The special tokens a `TemplateProcessing` post-processor (alone or in a `Sequence`) puts before and after a
    /// single sequence.
    static func templateSpecials(_ json: Any?) -> (String?, String?)? {
        guard let obj = json as? [String: Any], let type = obj["type"] as? String else { return nil }
        if type == "Sequence", let list = obj["processors"] as? [Any] {
            for p in list { if let r = templateSpecials(p) { return r } }
            return nil
        }
        guard type == "TemplateProcessing", let single = obj["single"] as? [[String: Any]], !single.isEmpty else { return nil }
        func special(_ item: [String: Any]) -> String? { (item["SpecialToken"] as? [String: Any])?["id"] as? String }
        let first = special(single[0])
        let last = single.count > 1 ? special(single[single.count - 1]) : nil
        return (first, last)
    }
}
