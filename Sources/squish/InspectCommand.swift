import ArgumentParser
import Foundation
import SquishCore
import SquishFormats

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model file's architecture, key metadata and tensors (GGUF or safetensors).",
        discussion: "Shapes are printed as the file stores them: GGUF in ggml order (row length first), safetensors row-major (row length last). Metadata values are previews: long strings are cut and long arrays summarized; non-printing characters are escaped.")

    @Argument(help: "Model file (.gguf or .safetensors) or known model name. Default: the cached default model.")
    var model: String?

    @Option(help: "Show at most this many tensors in the table (totals always cover all).")
    var limit: Int?

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        if let limit, limit < 0 { throw ValidationError("--limit must be at least 0, found \(limit)") }
    }

    func run() throws {
        let path = try resolveModelPath(model)
        let summary = try ModelSummary.load(path: path)
        if json {
            print(try jsonString(summary))
        } else {
            summary.render(limit: limit) { print($0) }
        }
    }
}

/// What `squish inspect` reports about a model file.
struct ModelSummary: Encodable {
    struct Tensor: Encodable {
        let name: String
        let type: String
        let shape: [Int]
        let parameters: Int
        let bytes: Int
        let bits_per_weight: Double
    }
    let path: String
    let format: String
    let architecture: String?
    /// "ggml" (row length first) or "row-major" (row length last).
    let shape_order: String
    let file_bytes: Int
    let parameters: Int
    /// Bytes of all tensor data.
    let bytes: Int
    let bits_per_weight: Double
    /// Previews of the metadata values (keys and values escaped for the terminal).
    let metadata: [String: String]
    let tensors: [Tensor]
    let types: [String: Int]

    /// A GGUF or safetensors file, told apart by their first bytes: "GGUF", or a header length followed by `{`.
    static func load(path: String) throws -> ModelSummary {
        let mapped: MappedFile
        do {
            mapped = try MappedFile(path: path)
        } catch {
            throw FormatError.missing(path: path, what: "a readable model file (\(error))")
        }
        let b = mapped.bytes
        let isSafetensors = b.count >= 9 && !(b[0] == 0x47 && b[1] == 0x47 && b[2] == 0x55 && b[3] == 0x46) && b[8] == UInt8(ascii: "{")
        return isSafetensors ? try safetensors(SafetensorsFile(file: mapped)) : try gguf(GGUFFile(file: mapped))
    }

    static func gguf(_ file: GGUFFile) -> ModelSummary {
        let tensors = file.tensors.map { t in
            Tensor(name: t.name, type: t.type.name, shape: t.shape, parameters: t.elementCount,
                   bytes: t.byteCount, bits_per_weight: Double(t.byteCount) * 8 / Double(max(t.elementCount, 1)))
        }
        var metadata: [String: String] = ["gguf.version": String(file.version)]
        for entry in file.entries {
            metadata[TerminalText.escape(entry.key)] = entry.preview()
        }
        return make(path: file.path, format: "GGUF v\(file.version)", architecture: file.architecture.map(TerminalText.escape),
                    shapeOrder: "ggml", fileBytes: file.file.count, metadata: metadata, tensors: tensors)
    }

    static func safetensors(_ file: SafetensorsFile) -> ModelSummary {
        let tensors = file.tensors.map { t in
            Tensor(name: t.name, type: t.dtype.name, shape: t.shape, parameters: t.elementCount, bytes: t.byteCount,
                   bits_per_weight: Double(t.dtype.size * 8))
        }
        var metadata: [String: String] = [:]
        for (key, value) in file.metadata {
            metadata[TerminalText.escape(key)] = TerminalText.escape(bytes: Array(value.utf8.prefix(81)), limit: 80)
        }
        return make(path: file.path, format: "safetensors", architecture: nil, shapeOrder: "row-major",
                    fileBytes: file.file.count, metadata: metadata, tensors: tensors)
    }

    static func make(path: String, format: String, architecture: String?, shapeOrder: String, fileBytes: Int,
                     metadata: [String: String], tensors: [Tensor]) -> ModelSummary {
        // Sums in Double: a hostile file can declare sizes whose total overflows an Int (each one fits).
        let parameters = tensors.reduce(0) { $0 &+ $1.parameters }
        let bytes = tensors.reduce(0) { $0 &+ $1.bytes }
        let overflow = tensors.reduce(0.0) { $0 + Double($1.parameters) } > Double(Int.max)
        var types: [String: Int] = [:]
        for t in tensors { types[t.type, default: 0] += 1 }
        return ModelSummary(path: path, format: format, architecture: architecture, shape_order: shapeOrder, file_bytes: fileBytes,
                            parameters: overflow ? Int.max : parameters, bytes: bytes,
                            bits_per_weight: Double(bytes) * 8 / Double(max(parameters, 1)),
                            metadata: metadata, tensors: tensors, types: types)
    }

    /// Writes the report line by line (a file with millions of tensors is not built up as one string).
    func render(limit: Int?, _ line: (String) -> Void) {
        line(TerminalText.escape(path))
        line("format: \(format)   architecture: \(architecture ?? "unknown")   file: \(Self.formatBytes(file_bytes))")
        let keys = metadata.keys.sorted().filter { !$0.hasPrefix("tokenizer.ggml.") || metadata[$0]!.count < 40 }
        line("")
        line("metadata:")
        for key in keys { line("  \(key) = \(metadata[key]!)") }
        line("")
        let shown = limit.map { tensors.prefix($0) } ?? tensors[...]
        let nameWidth = min(max(shown.map { $0.name.count }.max() ?? 4, 4), 48)
        line(Self.pad("tensor", nameWidth) + "  " + Self.pad("type", 7) + "  " + Self.pad("shape (\(shape_order))", 16)
             + "  " + Self.lpad("bytes", 11) + "  " + Self.lpad("bpw", 6))
        for t in shown {
            line(Self.pad(TerminalText.escape(t.name), nameWidth) + "  " + Self.pad(t.type, 7) + "  "
                 + Self.pad(t.shape.map(String.init).joined(separator: "×"), 16) + "  "
                 + Self.lpad(String(t.bytes), 11) + "  " + Self.lpad(String(format: "%.2f", t.bits_per_weight), 6))
        }
        if shown.count < tensors.count { line("... \(tensors.count - shown.count) more tensors") }
        line("")
        let typeList = types.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.key)×\($0.value)" }.joined(separator: " ")
        line("tensors: \(tensors.count) (\(typeList))")
        line(String(format: "parameters: %d (%.1f M)   tensor bytes: %d (%@)   bits per weight: %.3f",
                    parameters, Double(parameters) / 1e6, bytes, Self.formatBytes(bytes), bits_per_weight))
    }

    static func formatBytes(_ n: Int) -> String { String(format: "%.1f MB", Double(n) / 1e6) }
    static func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
    static func lpad(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
}
