import SquishFormats

/// What constrained decoding may produce: any JSON object (`json_object`) or a JSON value valid under a JSON Schema
/// (`json_schema`), as a set of byte-level states the sampler advances token by token.
///
/// The schema is compiled into nodes; a state is a stack of frames (a pushdown automaton over bytes). Several states
/// live side by side where the text so far does not yet decide (which optional property comes next, which `anyOf`
/// alternative, whether a number goes on). The generated text is compact-ish JSON: whitespace only between tokens of
/// a container and at most `maxWhitespace` bytes in a row; properties of a schema object in the schema's order
/// (required ones always, optional ones may be left out); numbers of at most 16 integer, 16 fraction and 3 exponent
/// digits. Every text the automaton accepts parses as JSON and validates against the schema.
public struct JSONSchemaGrammar: Sendable {
    /// Supported keywords: type (one or a list), properties, required, additionalProperties (extra keys only for
    /// objects without `properties`), items, minItems, maxItems, enum, const, anyOf, oneOf (treated as anyOf: its
    /// alternatives must not overlap), minLength, maxLength, nullable, $ref to `#/...` (recursion allowed). Keywords
    /// that constrain values otherwise (pattern, minimum, allOf, ...) are refused by name; annotations (title,
    /// description, format, ...) and unknown keywords are ignored, as JSON Schema says.
    public struct UnsupportedSchema: Error, CustomStringConvertible, Sendable {
        public let path: String
        public let reason: String
        public var description: String { "json_schema at \(path): \(reason)" }
    }

    enum Node: Sendable {
        /// Objects: declared properties in order (key bytes with quotes), or free-form keys with `additional` values.
        case object(properties: [Property], additional: Int?)
        case array(items: Int, min: Int, max: Int)
        case string(min: Int, max: Int)
        case number(integer: Bool)
        /// enum / const / true / false / null: the canonical JSON text of each allowed value.
        case literals([[UInt8]])
        case anyOf([Int])
        /// Placeholder while a $ref is being compiled.
        case unresolved
    }

    struct Property: Sendable {
        var key: [UInt8]  // "name" with its quotes, as JSON text
        var value: Int
        var required: Bool
    }

    var nodes: [Node] = []
    var root = 0
    /// A string node for free-form object keys.
    var keyString = 0
    public var maxWhitespace = 20

    /// Any JSON object (OpenAI's `json_object`).
    public static func anyObject() -> JSONSchemaGrammar {
        var g = JSONSchemaGrammar()
        g.keyString = g.add(.string(min: 0, max: Int.max))
        let anyValue = g.addAnyValue()
        g.root = g.add(.object(properties: [], additional: anyValue))
        return g
    }

    /// A value valid under `schema`.
    public init(schema: JSONValue) throws {
        keyString = add(.string(min: 0, max: Int.max))
        var compiler = Compiler(document: schema)
        root = try compiler.compile(schema, path: "#", into: &self)
        try checkNoEmptyCycles()
    }

    /// A $ref or anyOf chain that leads back to itself without a byte in between would never end.
    private func checkNoEmptyCycles() throws {
        var state = [UInt8](repeating: 0, count: nodes.count)  // 0 unvisited, 1 on the path, 2 done
        func visit(_ n: Int) throws {
            if state[n] == 2 { return }
            guard state[n] == 0 else { throw UnsupportedSchema(path: "#", reason: "a $ref or anyOf refers back to itself") }
            state[n] = 1
            if case .anyOf(let alternatives) = nodes[n] { for a in alternatives { try visit(a) } }
            state[n] = 2
        }
        for n in nodes.indices { try visit(n) }
    }

    private init() {}

    mutating func add(_ n: Node) -> Int {
        nodes.append(n)
        return nodes.count - 1
    }

    /// anyOf(object of anything, array of anything, string, number, true/false/null).
    mutating func addAnyValue() -> Int {
        let any = add(.unresolved)
        let object = add(.object(properties: [], additional: any))
        let array = add(.array(items: any, min: 0, max: Int.max))
        let string = add(.string(min: 0, max: Int.max))
        let number = add(.number(integer: false))
        let literals = add(.literals([Array("true".utf8), Array("false".utf8), Array("null".utf8)]))
        nodes[any] = .anyOf([object, array, string, number, literals])
        return any
    }

    /// Turns schema JSON into nodes, resolving local $refs (recursion allowed).
    struct Compiler {
        let document: JSONValue
        var refs: [String: Int] = [:]
        var depth = 0

        /// Keywords that constrain values in ways the automaton does not enforce: refused rather than ignored, so that
        /// a reply never fails the caller's validation. (Unknown keywords are ignored, as JSON Schema says.)
        static let unsupported: Set<String> = [
            "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minProperties",
            "maxProperties", "uniqueItems", "patternProperties", "propertyNames", "allOf", "not", "if", "then", "else",
            "dependentRequired", "dependentSchemas", "dependencies", "prefixItems", "additionalItems", "contains",
            "minContains", "maxContains", "unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$recursiveRef",
        ]

        mutating func compile(_ schema: JSONValue, path: String, into g: inout JSONSchemaGrammar) throws -> Int {
            depth += 1
            defer { depth -= 1 }
            guard depth < 64 else { throw UnsupportedSchema(path: path, reason: "nesting deeper than 64") }
            switch schema {
            case .bool(true): return g.addAnyValue()
            case .bool(false): throw UnsupportedSchema(path: path, reason: "the schema `false` allows no value")
            case .object(let members):
                for (k, _) in members where Self.unsupported.contains(k) {
                    throw UnsupportedSchema(path: path, reason: "keyword '\(k)' is not supported")
                }
            default: throw UnsupportedSchema(path: path, reason: "a schema must be an object or a boolean")
            }
            if let ref = schema["$ref"] {
                guard let r = ref.string else { throw UnsupportedSchema(path: path, reason: "$ref must be a string") }
                if let known = refs[r] { return known }
                let target = try resolve(r, path: path)
                let index = g.add(.unresolved)
                refs[r] = index
                let body = try compile(target, path: r, into: &g)
                g.nodes[index] = .anyOf([body])
                return index
            }
            if schema["const"] != nil || schema["enum"] != nil {
                var values: [JSONValue]
                if let c = schema["const"] {
                    values = [c]
                } else {
                    guard let e = schema["enum"]?.array, !e.isEmpty else { throw UnsupportedSchema(path: path, reason: "enum must be a non-empty array") }
                    values = e
                }
                // Beside `type`, only the values of that type can be produced.
                if let t = schema["type"] {
                    let types = t.string.map { [$0] } ?? (t.array ?? []).compactMap(\.string)
                    values = values.filter { v in types.contains { Self.value(v, hasType: $0) } }
                    guard !values.isEmpty else { throw UnsupportedSchema(path: path, reason: "no enum/const value has the schema's type") }
                }
                return g.add(.literals(values.map { Array($0.serialized.utf8) }))
            }
            for key in ["anyOf", "oneOf"] {
                if let alts = schema[key] {
                    guard let list = alts.array, !list.isEmpty else { throw UnsupportedSchema(path: path, reason: "\(key) must be a non-empty array") }
                    if schema["type"] != nil || schema["properties"] != nil {
                        throw UnsupportedSchema(path: path, reason: "\(key) beside type or properties is not supported")
                    }
                    var ids: [Int] = []
                    for (i, a) in list.enumerated() { ids.append(try compile(a, path: "\(path)/\(key)/\(i)", into: &g)) }
                    return g.add(.anyOf(ids))
                }
            }
            var types: [String]
            switch schema["type"] {
            case nil:
                // Untyped: decided by the keywords present.
                if schema["properties"] != nil || schema["additionalProperties"] != nil { types = ["object"] }
                else if schema["items"] != nil { types = ["array"] }
                else if schema["minLength"] != nil || schema["maxLength"] != nil { types = ["string"] }
                else { return g.addAnyValue() }
            case .string(let t)?: types = [t]
            case .array(let list)?:
                types = try list.map {
                    guard let s = $0.string else { throw UnsupportedSchema(path: path, reason: "type list entries must be strings") }
                    return s
                }
            default: throw UnsupportedSchema(path: path, reason: "type must be a string or a list of strings")
            }
            guard !types.isEmpty else { throw UnsupportedSchema(path: path, reason: "the type list is empty") }
            if schema["nullable"] == .bool(true), !types.contains("null") { types.append("null") }
            var ids: [Int] = []
            for t in types { ids.append(try compileType(t, schema, path: path, into: &g)) }
            return ids.count == 1 ? ids[0] : g.add(.anyOf(ids))
        }

        static func value(_ v: JSONValue, hasType type: String) -> Bool {
            switch (type, v) {
            case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object),
                 ("integer", .int), ("number", .int), ("number", .double): return true
            case ("integer", .double(let d)): return d == d.rounded()
            default: return false
            }
        }

        func resolve(_ ref: String, path: String) throws -> JSONValue {
            guard ref == "#" || ref.hasPrefix("#/") else {
                throw UnsupportedSchema(path: path, reason: "only local $refs (#/...) are supported, not '\(ref)'")
            }
            var node = document
            for part in ref.dropFirst(2).split(separator: "/", omittingEmptySubsequences: false) where ref != "#" {
                let key = part.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
                guard let next = node[key] else { throw UnsupportedSchema(path: path, reason: "$ref '\(ref)' points nowhere") }
                node = next
            }
            return node
        }

        func count(_ schema: JSONValue, _ key: String, path: String) throws -> Int? {
            guard let v = schema[key] else { return nil }
            let n: Int64?
            switch v {
            case .int(let i): n = i
            case .double(let d) where d == d.rounded() && abs(d) < 1e15: n = Int64(d)
            default: n = nil
            }
            guard let n, n >= 0 else { throw UnsupportedSchema(path: path, reason: "\(key) must be a non-negative integer") }
            return Int(min(n, 1 << 40))
        }

        mutating func compileType(_ type: String, _ schema: JSONValue, path: String, into g: inout JSONSchemaGrammar) throws -> Int {
            switch type {
            case "object":
                var props: [Property] = []
                let required = Set((schema["required"]?.array ?? []).compactMap(\.string))
                if let p = schema["properties"] {
                    guard let members = p.object else { throw UnsupportedSchema(path: path, reason: "properties must be an object") }
                    for (k, v) in members {
                        let id = try compile(v, path: "\(path)/properties/\(k)", into: &g)
                        props.append(Property(key: Array(JSONValue.string(k).serialized.utf8), value: id, required: required.contains(k)))
                    }
                }
                let declared = Set(props.map { String(decoding: $0.key.dropFirst().dropLast(), as: UTF8.self) })
                for r in required where !declared.contains(r) && schema["properties"] != nil {
                    throw UnsupportedSchema(path: path, reason: "required property '\(r)' is not among the properties")
                }
                var additional: Int?
                if props.isEmpty {
                    switch schema["additionalProperties"] {
                    case nil, .bool(true)?: additional = g.addAnyValue()
                    case .bool(false)?: additional = nil
                    case let s?: additional = try compile(s, path: "\(path)/additionalProperties", into: &g)
                    }
                    if !required.isEmpty { throw UnsupportedSchema(path: path, reason: "required without properties is not supported") }
                }
                return g.add(.object(properties: props, additional: additional))
            case "array":
                let items = try schema["items"].map { try compile($0, path: "\(path)/items", into: &g) } ?? g.addAnyValue()
                let lo = try count(schema, "minItems", path: path) ?? 0, hi = try count(schema, "maxItems", path: path) ?? Int.max
                guard lo <= hi else { throw UnsupportedSchema(path: path, reason: "minItems > maxItems") }
                return g.add(.array(items: items, min: lo, max: hi))
            case "string":
                let lo = try count(schema, "minLength", path: path) ?? 0, hi = try count(schema, "maxLength", path: path) ?? Int.max
                guard lo <= hi else { throw UnsupportedSchema(path: path, reason: "minLength > maxLength") }
                return g.add(.string(min: lo, max: hi))
            case "number": return g.add(.number(integer: false))
            case "integer": return g.add(.number(integer: true))
            case "boolean": return g.add(.literals([Array("true".utf8), Array("false".utf8)]))
            case "null": return g.add(.literals([Array("null".utf8)]))
            default: throw UnsupportedSchema(path: path, reason: "unknown type '\(type)'")
            }
        }
    }
}

// MARK: - The automaton

/// One frame of the pushdown automaton: what the innermost open construct expects next.
struct JSONFrame: Equatable, Sendable {
    enum Kind: UInt8, Sendable {
        case document  // a: 0 before the value, 1 after it (complete)
        case value  // about to begin a value of `node`
        case objectOpen  // after '{'
        case objectKey  // inside declared key a at byte offset b
        case objectColon  // after key a (free-form keys: a = -1)
        case objectBeforeValue  // after ':' of key a
        case objectAfterValue  // after the value of key a
        case objectNextKey  // after ',' with next allowed key a
        case arrayOpen  // after '['
        case arrayAfterValue  // a items so far
        case arrayBeforeValue  // after ',', a items so far
        case string  // a characters so far; b: 0 plain, 1 after '\\', 2-5 hex digits left + 1, 6-8 UTF-8 continuation bytes left + 5, 9-12 the narrower first continuation after E0, ED, F0, F4
        case number  // a: phase; b digits in the phase
        case literal  // candidate a of node's literals, b bytes matched
    }
    var kind: Kind
    var node: Int32
    var a: Int32 = 0
    var b: Int32 = 0
    var whitespace: UInt8 = 0
}

/// Frames below the top, shared between states (a persistent stack: pushing allocates, advancing the top does not).
final class JSONFrameStack: Sendable {
    let frame: JSONFrame
    let below: JSONFrameStack?
    init(_ frame: JSONFrame, below: JSONFrameStack?) {
        self.frame = frame
        self.below = below
    }
}

/// One state of the automaton: the top frame and the rest of the stack.
public struct JSONMatchState: Sendable {
    var top: JSONFrame
    var below: JSONFrameStack?

    mutating func push(_ f: JSONFrame) {
        below = JSONFrameStack(top, below: below)
        top = f
    }

    /// Pops the top frame; false at the bottom.
    mutating func pop() -> Bool {
        guard let b = below else { return false }
        top = b.frame
        below = b.below
        return true
    }
}

extension JSONSchemaGrammar {
    private enum NumberPhase: Int32 { case afterMinus = 0, afterZero, integer, afterDot, fraction, afterE, afterSign, exponent }
    private static let maxIntegerDigits: Int32 = 16, maxFractionDigits: Int32 = 16, maxExponentDigits: Int32 = 3

    /// The states before any byte.
    public var initialStates: [JSONMatchState] {
        [JSONMatchState(top: JSONFrame(kind: .document, node: Int32(root)), below: nil)]
    }

    @inline(__always) static func isWhitespace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 }

    /// Advances every state by `byte`, appending the survivors to `out`.
    public func advance(_ states: [JSONMatchState], _ byte: UInt8, into out: inout [JSONMatchState]) {
        for s in states { step(s, byte, into: &out) }
    }

    /// True when the text so far is a complete value (generation may end here).
    public func accepts(_ states: [JSONMatchState]) -> Bool {
        states.contains { canEnd($0) }
    }

    /// True when the text is complete and nothing may follow.
    public func isFinished(_ states: [JSONMatchState]) -> Bool {
        !states.isEmpty && states.allSatisfy { $0.top.kind == .document && $0.top.a == 1 }
    }

    private func canEnd(_ state: JSONMatchState) -> Bool {
        var s = state
        while true {
            switch s.top.kind {
            case .document: return s.top.a == 1
            case .number:
                guard numberAccepting(s.top) else { return false }
                guard s.pop() else { return false }
                completeValue(&s)
            default: return false
            }
        }
    }

    private func numberAccepting(_ f: JSONFrame) -> Bool {
        switch NumberPhase(rawValue: f.a)! {
        case .afterZero, .integer, .fraction, .exponent: return true
        default: return false
        }
    }

    /// The frame below a finished value learns that its value is complete.
    private func completeValue(_ s: inout JSONMatchState) {
        switch s.top.kind {
        case .document: s.top.a = 1
        case .objectBeforeValue: s.top.kind = .objectAfterValue; s.top.whitespace = 0
        case .arrayOpen: s.top.kind = .arrayAfterValue; s.top.a = 1; s.top.whitespace = 0
        case .arrayBeforeValue: s.top.kind = .arrayAfterValue; s.top.a += 1; s.top.whitespace = 0
        case .objectColon: break  // a free-form key string finished: the colon comes next
        default: preconditionFailure("a value completed inside \(s.top.kind)")
        }
    }

    /// Pops the finished top frame and tells the parent.
    private func finish(_ s: inout JSONMatchState) {
        _ = s.pop()
        completeValue(&s)
    }

    /// Whitespace in a container position: allowed up to `maxWhitespace` bytes in a row.
    @inline(__always) private func whitespace(_ s: JSONMatchState, _ c: UInt8, into out: inout [JSONMatchState]) -> Bool {
        guard Self.isWhitespace(c) else { return false }
        if Int(s.top.whitespace) < maxWhitespace {
            var t = s
            t.top.whitespace += 1
            out.append(t)
        }
        return true
    }

    /// Begins a value of `node` (the current top stays below it) with byte c.
    private func beginValue(_ s: JSONMatchState, node: Int, _ c: UInt8, into out: inout [JSONMatchState]) {
        var t = s
        t.push(JSONFrame(kind: .value, node: Int32(node)))
        step(t, c, into: &out)
    }

    private func allowedKeys(_ properties: [Property], from: Int) -> Range<Int> {
        var end = from
        while end < properties.count {
            end += 1
            if properties[end - 1].required { break }
        }
        return from ..< end
    }

    private func step(_ state: JSONMatchState, _ c: UInt8, into out: inout [JSONMatchState]) {
        var s = state
        let f = s.top
        switch f.kind {
        case .document:
            if f.a == 1 { return }
            if whitespace(s, c, into: &out) { return }
            beginValue(s, node: Int(f.node), c, into: &out)

        case .value:
            switch nodes[Int(f.node)] {
            case .anyOf(let alternatives):
                for alt in alternatives {
                    var t = s
                    t.top.node = Int32(alt)
                    step(t, c, into: &out)
                }
            case .object:
                guard c == UInt8(ascii: "{") else { return }
                s.top = JSONFrame(kind: .objectOpen, node: f.node)
                out.append(s)
            case .array:
                guard c == UInt8(ascii: "[") else { return }
                s.top = JSONFrame(kind: .arrayOpen, node: f.node)
                out.append(s)
            case .string:
                guard c == UInt8(ascii: "\"") else { return }
                s.top = JSONFrame(kind: .string, node: f.node)
                out.append(s)
            case .number:
                s.top = JSONFrame(kind: .number, node: f.node)
                if c == UInt8(ascii: "-") {
                    s.top.a = NumberPhase.afterMinus.rawValue
                } else if c == UInt8(ascii: "0") {
                    s.top.a = NumberPhase.afterZero.rawValue
                } else if c >= UInt8(ascii: "1") && c <= UInt8(ascii: "9") {
                    s.top.a = NumberPhase.integer.rawValue
                    s.top.b = 1
                } else {
                    return
                }
                out.append(s)
            case .literals(let texts):
                for (i, t) in texts.enumerated() where t.first == c {
                    var u = s
                    u.top = JSONFrame(kind: .literal, node: f.node, a: Int32(i), b: 1)
                    if t.count == 1 { finish(&u) }
                    out.append(u)
                }
            case .unresolved:
                return
            }

        case .literal:
            guard case .literals(let texts) = nodes[Int(f.node)] else { return }
            let t = texts[Int(f.a)]
            guard Int(f.b) < t.count, t[Int(f.b)] == c else { return }
            s.top.b += 1
            if Int(s.top.b) == t.count { finish(&s) }
            out.append(s)

        case .objectOpen, .objectNextKey:
            guard case .object(let properties, let additional) = nodes[Int(f.node)] else { return }
            if whitespace(s, c, into: &out) { return }
            let from = f.kind == .objectOpen ? 0 : Int(f.a)
            if c == UInt8(ascii: "}") {
                // Closing right after '{' (not after ','): only when nothing required is left.
                guard f.kind == .objectOpen, !properties.contains(where: \.required) else { return }
                finish(&s)
                out.append(s)
                return
            }
            guard c == UInt8(ascii: "\"") else { return }
            if properties.isEmpty {
                guard additional != nil else { return }
                // A free-form key: a string, then ':' and a value of `additional`.
                s.top = JSONFrame(kind: .objectColon, node: f.node, a: -1)
                s.push(JSONFrame(kind: .string, node: Int32(keyString)))
                out.append(s)
                return
            }
            for k in allowedKeys(properties, from: from) {
                var t = s
                t.top = JSONFrame(kind: .objectKey, node: f.node, a: Int32(k), b: 1)
                out.append(t)
            }

        case .objectKey:
            guard case .object(let properties, _) = nodes[Int(f.node)] else { return }
            let key = properties[Int(f.a)].key
            guard key[Int(f.b)] == c else { return }
            s.top.b += 1
            if Int(s.top.b) == key.count { s.top = JSONFrame(kind: .objectColon, node: f.node, a: f.a) }
            out.append(s)

        case .objectColon:
            if whitespace(s, c, into: &out) { return }
            guard c == UInt8(ascii: ":") else { return }
            s.top = JSONFrame(kind: .objectBeforeValue, node: f.node, a: f.a)
            out.append(s)

        case .objectBeforeValue:
            guard case .object(let properties, let additional) = nodes[Int(f.node)] else { return }
            if whitespace(s, c, into: &out) { return }
            let valueNode = f.a >= 0 ? properties[Int(f.a)].value : additional!
            s.top.whitespace = 0
            beginValue(s, node: valueNode, c, into: &out)

        case .objectAfterValue:
            guard case .object(let properties, _) = nodes[Int(f.node)] else { return }
            if whitespace(s, c, into: &out) { return }
            let next = f.a >= 0 ? Int(f.a) + 1 : 0
            if c == UInt8(ascii: ",") {
                // Another key must be possible.
                guard properties.isEmpty || next < properties.count else { return }
                s.top = JSONFrame(kind: .objectNextKey, node: f.node, a: Int32(next))
                out.append(s)
            } else if c == UInt8(ascii: "}") {
                guard f.a < 0 || !properties[next...].contains(where: \.required) else { return }
                finish(&s)
                out.append(s)
            }

        case .arrayOpen, .arrayBeforeValue:
            guard case .array(let items, let lo, _) = nodes[Int(f.node)] else { return }
            if whitespace(s, c, into: &out) { return }
            if c == UInt8(ascii: "]") {
                guard f.kind == .arrayOpen, lo == 0 else { return }
                finish(&s)
                out.append(s)
                return
            }
            s.top.whitespace = 0
            beginValue(s, node: items, c, into: &out)

        case .arrayAfterValue:
            guard case .array(_, let lo, let hi) = nodes[Int(f.node)] else { return }
            if whitespace(s, c, into: &out) { return }
            if c == UInt8(ascii: ",") {
                guard Int(f.a) < hi else { return }
                s.top = JSONFrame(kind: .arrayBeforeValue, node: f.node, a: f.a)
                out.append(s)
            } else if c == UInt8(ascii: "]") {
                guard Int(f.a) >= lo else { return }
                finish(&s)
                out.append(s)
            }

        case .string:
            guard case .string(let lo, let hi) = nodes[Int(f.node)] else { return }
            let mode = f.b
            if mode == 1 {
                // After '\'.
                switch c {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    s.top.b = 0
                case UInt8(ascii: "u"):
                    s.top.b = 5
                default: return
                }
                out.append(s)
            } else if mode >= 2 && mode <= 5 {
                guard (c >= 0x30 && c <= 0x39) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x66) else { return }
                s.top.b = mode == 2 ? 0 : mode - 1
                out.append(s)
            } else if mode >= 6 {
                // UTF-8 continuation bytes (RFC 3629, table 3-7: the first one after E0, ED, F0, F4 is narrower).
                let (lo, hi, next): (UInt8, UInt8, Int32)
                switch mode {
                case 6: (lo, hi, next) = (0x80, 0xBF, 0)
                case 7: (lo, hi, next) = (0x80, 0xBF, 6)
                case 8: (lo, hi, next) = (0x80, 0xBF, 7)
                case 9: (lo, hi, next) = (0xA0, 0xBF, 6)
                case 10: (lo, hi, next) = (0x80, 0x9F, 6)
                case 11: (lo, hi, next) = (0x90, 0xBF, 7)
                default: (lo, hi, next) = (0x80, 0x8F, 7)
                }
                guard c >= lo && c <= hi else { return }
                s.top.b = next
                out.append(s)
            } else if c == UInt8(ascii: "\"") {
                guard Int(f.a) >= lo else { return }
                finish(&s)
                out.append(s)
            } else {
                guard c >= 0x20 else { return }
                // One more character (an escape, an ASCII byte or a UTF-8 lead byte), within maxLength.
                guard Int(f.a) < hi else { return }
                if c == UInt8(ascii: "\\") {
                    s.top.b = 1
                } else if c < 0x80 {
                    s.top.b = 0
                } else if c >= 0xC2 && c <= 0xDF {
                    s.top.b = 6
                } else if c == 0xE0 {
                    s.top.b = 9
                } else if c == 0xED {
                    s.top.b = 10
                } else if c >= 0xE1 && c <= 0xEF {
                    s.top.b = 7
                } else if c == 0xF0 {
                    s.top.b = 11
                } else if c == 0xF4 {
                    s.top.b = 12
                } else if c >= 0xF1 && c <= 0xF3 {
                    s.top.b = 8
                } else {
                    return
                }
                s.top.a += 1
                out.append(s)
            }

        case .number:
            guard case .number(let integer) = nodes[Int(f.node)] else { return }
            let digit = c >= 0x30 && c <= 0x39
            var next: (NumberPhase, Int32)?
            switch NumberPhase(rawValue: f.a)! {
            case .afterMinus:
                if c == 0x30 { next = (.afterZero, 0) } else if digit { next = (.integer, 1) }
            case .afterZero:
                if c == UInt8(ascii: "."), !integer { next = (.afterDot, 0) }
                else if c | 0x20 == UInt8(ascii: "e"), !integer { next = (.afterE, 0) }
            case .integer:
                if digit && f.b < Self.maxIntegerDigits { next = (.integer, f.b + 1) }
                else if c == UInt8(ascii: "."), !integer { next = (.afterDot, 0) }
                else if c | 0x20 == UInt8(ascii: "e"), !integer { next = (.afterE, 0) }
            case .afterDot:
                if digit { next = (.fraction, 1) }
            case .fraction:
                if digit && f.b < Self.maxFractionDigits { next = (.fraction, f.b + 1) }
                else if c | 0x20 == UInt8(ascii: "e") { next = (.afterE, 0) }
            case .afterE:
                if c == UInt8(ascii: "+") || c == UInt8(ascii: "-") { next = (.afterSign, 0) } else if digit { next = (.exponent, 1) }
            case .afterSign:
                if digit { next = (.exponent, 1) }
            case .exponent:
                if digit && f.b < Self.maxExponentDigits { next = (.exponent, f.b + 1) }
            }
            if let (phase, count) = next {
                var t = s
                t.top.a = phase.rawValue
                t.top.b = count
                out.append(t)
            }
            // The number may also end before this byte, which then belongs to the enclosing construct.
            if numberAccepting(f) && !digit {
                finish(&s)
                step(s, c, into: &out)
            }
        }
    }
}

// MARK: - Tokens

/// The vocabulary as a trie of token bytes, so that checking which tokens keep a constraint satisfied walks each
/// shared prefix once and stops at the first byte no state accepts.
public final class TokenTrie: @unchecked Sendable {  // immutable after init
    // Nodes in depth-first order; node 0 is the root. Children of a node are contiguous after it.
    let byte: [UInt8]  // [nodes] the edge byte into the node
    let subtreeEnd: [Int32]  // [nodes] index after the node's subtree
    let tokenStart: [Int32]  // [nodes + 1] offsets into `tokenIDs` of the tokens ending at the node
    let tokenIDs: [Int32]
    public let vocabularySize: Int

    /// Every token with non-empty bytes, except those in `excluded` (control tokens are matched by id, not bytes).
    public init(tokenBytes: [[UInt8]], excluded: Set<Int>) {
        vocabularySize = tokenBytes.count
        let order = tokenBytes.indices.filter { !tokenBytes[$0].isEmpty && !excluded.contains($0) }
            .sorted { tokenBytes[$0].lexicographicallyPrecedes(tokenBytes[$1]) }
        var byte: [UInt8] = [0], end: [Int32] = [0], start: [Int32] = [0], ids: [Int32] = []
        var path: [Int] = [0]  // node index per depth of the current path
        var prefix: [UInt8] = []
        func closeTo(_ depth: Int) {
            while path.count > depth + 1 {
                let n = path.removeLast()
                end[n] = Int32(byte.count)
                prefix.removeLast()
            }
        }
        for id in order {
            let bytes = tokenBytes[id]
            // Common prefix with the current path.
            var common = 0
            while common < prefix.count && common < bytes.count && prefix[common] == bytes[common] { common += 1 }
            closeTo(common)
            for k in common ..< bytes.count {
                byte.append(bytes[k])
                end.append(0)
                start.append(Int32(ids.count))
                path.append(byte.count - 1)
                prefix.append(bytes[k])
            }
            // In sorted order a token comes after its prefixes and before its extensions, so the tokens ending at a
            // node are appended right after the node is created, before any later node: node n's tokens are
            // ids[start[n] ..< start[n + 1]].
            ids.append(Int32(id))
        }
        closeTo(0)
        end[0] = Int32(byte.count)
        self.byte = byte
        subtreeEnd = end
        start.append(Int32(ids.count))
        tokenStart = start
        tokenIDs = ids
    }

    /// Tokens (ids) whose bytes every keep at least one state alive, given `advance` (states, byte) → survivors.
    public func allowedTokens<State>(from states: [State], advance: ([State], UInt8) -> [State]) -> [Int] {
        var allowed: [Int] = []
        func visit(_ node: Int, _ states: [State]) {
            var child = node + 1
            let end = Int(subtreeEnd[node])
            while child < end {
                let next = advance(states, byte[child])
                if !next.isEmpty {
                    for k in Int(tokenStart[child]) ..< Int(tokenStart[child + 1]) { allowed.append(Int(tokenIDs[k])) }
                    visit(child, next)
                }
                child = Int(subtreeEnd[child])
            }
        }
        visit(0, states)
        return allowed
    }
}

/// Constrained decoding for one sequence: which tokens may come next, and the state after each chosen token.
public struct JSONTokenConstraint: Sendable {
    public let grammar: JSONSchemaGrammar
    public let trie: TokenTrie
    /// Tokens that end generation (EOS, end of turn): allowed exactly when the text is a complete value.
    public let stopTokens: Set<Int>
    public private(set) var states: [JSONMatchState]

    public init(grammar: JSONSchemaGrammar, trie: TokenTrie, stopTokens: Set<Int>) {
        self.grammar = grammar
        self.trie = trie
        self.stopTokens = stopTokens
        states = grammar.initialStates
    }

    /// True when the text so far is complete and nothing may follow it.
    public var isFinished: Bool { grammar.isFinished(states) }

    /// Ids of the tokens allowed next.
    public func allowedTokens() -> [Int] {
        var ids = trie.allowedTokens(from: states) { s, b in
            var out: [JSONMatchState] = []
            grammar.advance(s, b, into: &out)
            return out
        }
        if grammar.accepts(states) { ids.append(contentsOf: stopTokens.sorted()) }
        return ids
    }

    /// Sets every disallowed logit to −∞; returns how many tokens remain allowed.
    @discardableResult
    public func mask(_ logits: inout [Float]) -> Int {
        let allowed = allowedTokens()
        var masked = [Float](repeating: -.infinity, count: logits.count)
        for id in allowed where id < logits.count { masked[id] = logits[id] }
        logits = masked
        return allowed.count
    }

    /// Advances by a chosen token's bytes (a stop token leaves the state as it is). False when the bytes break the
    /// constraint.
    public mutating func accept(_ token: Int, bytes: [UInt8]) -> Bool {
        if stopTokens.contains(token) { return grammar.accepts(states) }
        var current = states
        for b in bytes {
            var out: [JSONMatchState] = []
            grammar.advance(current, b, into: &out)
            guard !out.isEmpty else { return false }
            current = out
        }
        states = current
        return true
    }
}
