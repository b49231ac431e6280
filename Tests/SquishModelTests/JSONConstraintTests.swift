import Foundation
import SquishData
import SquishFormats
import SquishModel
import SquishTokenizer
import Testing

/// Constrained decoding's automaton against Python's json module and the jsonschema package: random walks through
/// the automaton (every byte chosen among those it allows) end in texts that parse and validate; hand-written
/// texts that break a schema die in the automaton and are rejected by jsonschema too. The token trie gives exactly
/// the tokens a byte-by-byte check allows.
struct JSONConstraintTests {
    static let schemas: [String] = [
        #"{"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}, "member": {"type": "boolean"}}, "required": ["name", "age"], "additionalProperties": false}"#,
        #"{"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 3}, "score": {"type": "number"}, "note": {"type": ["string", "null"], "maxLength": 5}}, "required": ["tags"]}"#,
        #"{"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "object", "properties": {"x": {"const": 1}}, "required": ["x"]}]}, "maxItems": 4}"#,
        ##"{"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"}, "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}}, "required": ["v", "next"]}}, "$ref": "#/$defs/node"}"##,
        #"{"type": "object", "additionalProperties": {"type": "number"}}"#,
        #"{"type": "string", "minLength": 2, "maxLength": 4}"#,
        #"{"enum": [1, 12, "a\"b", null, [1, 2]]}"#,
        #"{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string"}}, "required": ["c"]}"#,
        #"{}"#,
    ]

    /// A random text the automaton accepts (nil when the walk ran past `limit` bytes without ending).
    static func walk(_ g: JSONSchemaGrammar, rng: inout Xoshiro256, limit: Int = 400) -> String? {
        var states = g.initialStates
        var text: [UInt8] = []
        let closers = Set("\"]}".utf8)
        while text.count < limit {
            if g.isFinished(states) { break }
            if g.accepts(states) && Int.random(in: 0 ..< 3, using: &rng) == 0 { break }
            var options: [(UInt8, [JSONMatchState])] = []
            for b in 0 ... 255 {
                var out: [JSONMatchState] = []
                g.advance(states, UInt8(b), into: &out)
                if !out.isEmpty { options.append((UInt8(b), out)) }
            }
            if options.isEmpty { return g.accepts(states) ? String(decoding: text, as: UTF8.self) : nil }
            // Past a few dozen bytes, close what is open when possible, so that walks end.
            var pick = options.randomElement(using: &rng)!
            if text.count > 40, let c = options.filter({ closers.contains($0.0) }).randomElement(using: &rng),
               Int.random(in: 0 ..< 4, using: &rng) > 0 {
                pick = c
            }
            text.append(pick.0)
            states = pick.1
        }
        guard g.accepts(states) else { return nil }
        return String(decoding: text, as: UTF8.self)
    }

    static func accepts(_ g: JSONSchemaGrammar, _ text: String) -> Bool {
        var states = g.initialStates
        for b in text.utf8 {
            var out: [JSONMatchState] = []
            g.advance(states, b, into: &out)
            if out.isEmpty { return false }
            states = out
        }
        return g.accepts(states)
    }

    static let invalid: [Int: [String]] = [
        0: [#"{"name": "x"}"#, #"{"name": "x", "age": 1.5}"#, #"{"name": "x", "age": 1, "extra": 2}"#,
            #"{"name": "much too long a name", "age": 1}"#, #"{"name": "x", "age": 01}"#],
        1: [#"{"tags": []}"#, #"{"tags": ["pink"]}"#, #"{"tags": ["red", "red", "red", "red"]}"#, #"{"tags": ["red"], "note": "toolong"}"#],
        2: [#"[1, 2, 3, 4, 5]"#, #"[{"x": 2}]"#, #"[1.5]"#],
        3: [#"{"v": 1}"#, #"{"v": 1, "next": {"v": "a", "next": null}}"#],
        4: [#"{"a": "b"}"#, #"{"a": 1,}"#],
        5: [#""a""#, #""abcde""#, #"ab"#],
        6: [#"2"#, #"[2,1]"#, #""ab""#],
        7: [#"{"a": "x"}"#],
    ]

    /// Valid under the schema but not produced: properties come in the schema's order.
    static let outOfOrder: [Int: [String]] = [0: [#"{"age": 3, "name": "x"}"#], 7: [#"{"c": "x", "a": "y"}"#]]

    @Test func randomWalksParseAndValidateInPython() throws {
        var rng = Xoshiro256(seed: 7)
        var cases: [JSONValue] = []
        for (i, text) in Self.schemas.enumerated() {
            let schema = try JSONValue.parse(Array(text.utf8))
            let g = try JSONSchemaGrammar(schema: schema)
            var valid: [String] = []
            var attempts = 0
            while valid.count < 40 && attempts < 400 {
                attempts += 1
                if let t = Self.walk(g, rng: &rng) { valid.append(t) }
            }
            #expect(valid.count >= 20, "schema \(i): only \(valid.count) walks ended")
            let bad = Self.invalid[i] ?? []
            for t in bad + (Self.outOfOrder[i] ?? []) { #expect(!Self.accepts(g, t), "schema \(i) accepts \(t)") }
            cases.append(.object([("schema", schema), ("valid", .array(valid.map { .string($0) })), ("invalid", .array(bad.map { .string($0) }))]))
        }
        // json_object: any object.
        let any = JSONSchemaGrammar.anyObject()
        var objects: [String] = []
        for _ in 0 ..< 60 { if let t = Self.walk(any, rng: &rng) { objects.append(t) } }
        #expect(objects.count >= 20)
        #expect(!Self.accepts(any, "[1]") && !Self.accepts(any, "\"x\"") && Self.accepts(any, "{}"))
        cases.append(.object([("schema", .object([("type", .string("object"))])), ("valid", .array(objects.map { .string($0) }))]))
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/cases.json"
        try JSONValue.array(cases).serialized.write(toFile: file, atomically: true, encoding: .utf8)
        let out = try TestSupport.runPython("json_schema_check.py", [file])
        #expect(out.contains("\"checked\""))
    }

    @Test func unsupportedAndImpossibleSchemasAreRefusedByName() throws {
        for (text, word) in [(#"{"type": "string", "pattern": "^a"}"#, "pattern"), (#"{"type": "integer", "minimum": 3}"#, "minimum"),
                             (#"{"allOf": [{}]}"#, "allOf"), (##"{"$ref": "#"}"##, "refers back"), (#"{"type": []}"#, "type"),
                             (#"{"enum": []}"#, "enum"), (#"{"type": "integer", "enum": [1.5, "a"]}"#, "enum"),
                             (#"{"$ref": "https://example.com/s.json"}"#, "local"), (#"false"#, "false"),
                             (#"{"type": "object", "properties": {"a": {}}, "required": ["b"]}"#, "'b'")] {
            do {
                _ = try JSONSchemaGrammar(schema: try JSONValue.parse(Array(text.utf8)))
                Issue.record("accepted \(text)")
            } catch let e as JSONSchemaGrammar.UnsupportedSchema {
                #expect(e.description.contains(word), "\(text): \(e)")
            }
        }
    }

    @Test func tokenTrieAllowsExactlyTheTokensAByteCheckAllows() throws {
        let file = try GGUFFile(path: try TestSupport.defaultModelPath())
        let tok = try Tokenizer(gguf: file)
        let bytes = (0 ..< tok.vocabularySize).map { tok.bytes(for: $0) }
        let special = Set((0 ..< tok.vocabularySize).filter { tok.isSpecial($0) })
        let trie = TokenTrie(tokenBytes: bytes, excluded: special)
        let g = try JSONSchemaGrammar(schema: try JSONValue.parse(Array(Self.schemas[0].utf8)))
        var c = JSONTokenConstraint(grammar: g, trie: trie, stopTokens: [tok.eosID!])
        // States along a valid text: the start, inside a key, inside a string value, after a number, the end.
        for prefix in ["", "{\"na", "{\"name\": \"Ann", "{\"name\": \"Ann\", \"age\": 4", "{\"name\":\"A\",\"age\":4}"] {
            c = JSONTokenConstraint(grammar: g, trie: trie, stopTokens: [tok.eosID!])
            let accepted = c.accept(-1, bytes: Array(prefix.utf8))
            #expect(accepted)
            let allowed = Set(c.allowedTokens())
            var expected = Set<Int>()
            for id in 0 ..< tok.vocabularySize where !special.contains(id) && !bytes[id].isEmpty {
                var states = c.states
                var ok = true
                for b in bytes[id] {
                    var out: [JSONMatchState] = []
                    g.advance(states, b, into: &out)
                    if out.isEmpty { ok = false; break }
                    states = out
                }
                if ok { expected.insert(id) }
            }
            if g.accepts(c.states) { expected.insert(tok.eosID!) }
            #expect(allowed == expected, "after \(prefix): \(allowed.count) vs \(expected.count)")
            #expect(!allowed.isEmpty)
        }
    }
}
