import Foundation

/// Pretty, key-sorted JSON text for results printed with `--json`. A value JSON cannot represent (NaN or an
/// infinity, which the commands refuse before printing) is reported with the field's name instead of Foundation's
/// internal message. `snakeCaseKeys` spells Swift's camelCase property names as the snake_case keys every result
/// uses, for types without CodingKeys of their own (never for types that hold dictionaries: their keys would change too).
public func jsonString(_ value: some Encodable, snakeCaseKeys: Bool = false) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    if snakeCaseKeys { encoder.keyEncodingStrategy = .convertToSnakeCase }
    do {
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    } catch EncodingError.invalidValue(let v, let context) {
        let field = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        throw JSONOutputError(field: field.isEmpty ? "(top level)" : field, value: "\(v)")
    }
}

/// A result that cannot be written as JSON (a NaN or infinite number).
public struct JSONOutputError: Error, CustomStringConvertible, Equatable {
    public let field: String
    public let value: String
    public var description: String {
        TerminalText.escape("cannot write the result as JSON: field '\(field)' is \(value), which JSON cannot represent")
    }
}
