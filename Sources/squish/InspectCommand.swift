import ArgumentParser
import Foundation
import SquishCore
import SquishFormats

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model file's architecture, key metadata and tensors (GGUF or safetensors).")

    @Argument(help: "Model file (.gguf or .safetensors) or known model name. Default: the cached default model.")
    var model: String?

    @Option(help: "Show at most this many tensors in the table (totals always cover all).")
    var limit: Int?

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let path = try resolveModelPath(model)
        let summary = try ModelSummary.load(path: path)
        if json {
            print(try jsonString(summary))
        } else {
            print(summary.render(limit: limit))
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
    let file_bytes: Int
    let parameters: Int
    /// Bytes of all tensor data.
    let bytes: Int
    let bits_per_weight: Double
    let metadata: [String: String]
    let tensors: [Tensor]
    let types: [String: Int]

    static func load(path: String) throws -> ModelSummary {
        let file = try GGUFFile(path: path)
        let tensors = file.tensors.map { t in
            Tensor(name: t.name, type: t.type.name, shape: t.shape, parameters: t.elementCount,
                   bytes: t.byteCount, bits_per_weight: Double(t.byteCount * 8) / Double(max(t.elementCount, 1)))
        }
        var metadata: [String: String] = ["gguf.version": String(file.version)]
        for (key, value) in file.metadata {
            metadata[key] = Self.shortDescription(value)
        }
        return make(path: path, format: "GGUF v\(file.version)", architecture: file.architecture,
                     fileBytes: fileSize(path), metadata: metadata, tensors: tensors)
    }

    static func make(path: String, format: String, architecture: String?, fileBytes: Int,
                     metadata: [String: String], tensors: [Tensor]) -> ModelSummary {
        let parameters = tensors.reduce(0) { $0 + $1.parameters }
        let bytes = tensors.reduce(0) { $0 + $1.bytes }
        var types: [String: Int] = [:]
        for t in tensors { types[t.type, default: 0] += 1 }
        return ModelSummary(path: path, format: format, architecture: architecture, file_bytes: fileBytes,
                            parameters: parameters, bytes: bytes,
                            bits_per_weight: Double(bytes * 8) / Double(max(parameters, 1)),
                            metadata: metadata, tensors: tensors, types: types)
    }

    /// A one-line rendering of a metadata value; long arrays are summarized.
    static func shortDescription(_ value: GGUFValue) -> String {
        switch value {
        case .string(let s):
            let oneLine = s.replacingOccurrences(of: "\n", with: "\\n")
            return oneLine.count > 80 ? String(oneLine.prefix(77)) + "..." : oneLine
        case .array(let elementType, let values):
            if values.count <= 8 {
                return "[" + values.map(shortDescription).joined(separator: ", ") + "]"
            }
            return "[\(values.count) × \(elementType)]"
        case .bool(let b): return String(b)
        case .float32(let f): return String(f)
        case .float64(let d): return String(d)
        default: return value.int.map(String.init) ?? "?"
        }
    }

    func render(limit: Int?) -> String {
        var out: [String] = []
        out.append("\(path)")
        out.append("format: \(format)   architecture: \(architecture ?? "unknown")   file: \(Self.formatBytes(file_bytes))")
        let keys = metadata.keys.sorted().filter { !$0.hasPrefix("tokenizer.ggml.") || metadata[$0]!.count < 40 }
        out.append("")
        out.append("metadata:")
        for key in keys { out.append("  \(key) = \(metadata[key]!)") }
        out.append("")
        let nameWidth = min(max(tensors.map { $0.name.count }.max() ?? 4, 4), 48)
        out.append(Self.pad("tensor", nameWidth) + "  " + Self.pad("type", 7) + "  " + Self.pad("shape", 16)
                   + "  " + Self.lpad("bytes", 11) + "  " + Self.lpad("bpw", 6))
        let shown = limit.map { Array(tensors.prefix(max($0, 0))) } ?? tensors
        for t in shown {
            out.append(Self.pad(t.name, nameWidth) + "  " + Self.pad(t.type, 7) + "  "
                       + Self.pad(t.shape.map(String.init).joined(separator: "×"), 16) + "  "
                       + Self.lpad(String(t.bytes), 11) + "  " + Self.lpad(String(format: "%.2f", t.bits_per_weight), 6))
        }
        if shown.count < tensors.count { out.append("... \(tensors.count - shown.count) more tensors") }
        out.append("")
        let typeList = types.sorted { $0.value > $1.value }.map { "\($0.key)×\($0.value)" }.joined(separator: " ")
        out.append("tensors: \(tensors.count) (\(typeList))")
        out.append(String(format: "parameters: %d (%.1f M)   tensor bytes: %d (%@)   bits per weight: %.3f",
                          parameters, Double(parameters) / 1e6, bytes, Self.formatBytes(bytes), bits_per_weight))
        return out.joined(separator: "\n")
    }

    static func formatBytes(_ n: Int) -> String { String(format: "%.1f MB", Double(n) / 1e6) }
    static func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
    static func lpad(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
}

/// Size of the file at `path` in bytes (0 if it cannot be read).
func fileSize(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
}
