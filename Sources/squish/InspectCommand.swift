import ArgumentParser
import Foundation
import SquishCore
import SquishFormats
import SquishModel

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's architecture, key metadata and tensors (GGUF, safetensors, or a Hugging Face checkpoint directory).",
        discussion: "The architecture line is the configuration every command runs with (from GGUF metadata or config.json, validated; a file whose configuration is invalid still shows its metadata and tensors, with the reason). Shapes are printed as the file stores them: GGUF in ggml order (row length first), safetensors row-major (row length last). Metadata values are previews: long strings are cut and long arrays summarized; non-printing characters are escaped.")

    @Argument(help: "Model file (.gguf or .safetensors), checkpoint directory or known model name. Default: the cached default model.")
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
    /// The configuration the runtime derives (nil for a lone safetensors file, or when it is invalid).
    var model: Structure?
    /// Why the configuration is invalid, when it is.
    var config_error: String?

    /// A model's structure as the runtime sees it (`ModelConfig`).
    struct Structure: Encodable {
        let family: String
        let layers: Int
        let dim: Int
        let hidden_dim: Int
        let heads: Int
        let kv_heads: Int
        let head_dim: Int
        let vocab_size: Int
        let context_length: Int
        let norm_epsilon: Float
        let activation: String
        let attention_bias: Bool
        let qk_norm: Bool
        let post_norms: Bool
        let tied_embeddings: Bool
        let embedding_scale: Float
        let attention_scale: Float
        /// Per layer: the sliding window (nil: global) and the RoPE base.
        let sliding_windows: [Int?]
        let rope_bases: [Double]
        /// Linear layers (block matrices, embedding, output) and their parameters.
        let linear_layers: Int
        let linear_parameters: Int

        init(_ c: ModelConfig) {
            family = c.architecture
            layers = c.layers; dim = c.dim; hidden_dim = c.hiddenDim; heads = c.heads; kv_heads = c.kvHeads
            head_dim = c.headDim; vocab_size = c.vocabSize; context_length = c.contextLength; norm_epsilon = c.normEpsilon
            activation = c.activation.rawValue; attention_bias = c.attentionBias; qk_norm = c.qkNorm; post_norms = c.postNorms
            tied_embeddings = c.tiedEmbeddings; embedding_scale = c.embeddingScale; attention_scale = c.attentionScale
            sliding_windows = c.layerAttention.map(\.slidingWindow)
            rope_bases = c.layerAttention.map(\.ropeBase)
            let linear = c.linearLayers
            linear_layers = linear.count
            linear_parameters = linear.reduce(0) { $0 + $1.rows * $1.columns }
        }

        /// One line: family, sizes, and the choices that differ between families.
        var line: String {
            var parts = ["\(family)", "\(layers) layers", "dim \(dim)", "FFN \(hidden_dim) (\(activation))",
                         "heads \(heads) × \(head_dim), KV heads \(kv_heads)", "vocab \(vocab_size)", "context \(context_length)"]
            let windows = sliding_windows.compactMap { $0 }
            if let w = windows.first { parts.append("sliding window \(w) on \(windows.count) of \(layers) layers") }
            let bases = Array(Set(rope_bases)).sorted().map { String(format: "%g", $0) }
            parts.append("RoPE base \(bases.joined(separator: "/"))")
            var flags: [String] = []
            if attention_bias { flags.append("QKV bias") }
            if qk_norm { flags.append("QK-norm") }
            if post_norms { flags.append("post-norms") }
            if embedding_scale != 1 { flags.append(String(format: "embedding × %g", embedding_scale)) }
            flags.append(tied_embeddings ? "tied output" : "separate output")
            return (parts + flags).joined(separator: " · ")
        }
    }

    /// A GGUF or safetensors file, told apart by their first bytes: "GGUF", or a header length followed by `{`; or a
    /// checkpoint directory.
    static func load(path: String) throws -> ModelSummary {
        if FileManager.default.isDirectory(path) { return try checkpoint(path) }
        let mapped: MappedFile
        do {
            mapped = try MappedFile(path: path)
        } catch {
            throw FormatError.missing(path: path, what: "a readable model file (\(error))")
        }
        let b = mapped.bytes
        let isSafetensors = b.count >= 9 && !(b[0] == 0x47 && b[1] == 0x47 && b[2] == 0x55 && b[3] == 0x46) && b[8] == UInt8(ascii: "{")
        if isSafetensors { return safetensors(try SafetensorsFile(file: mapped)) }
        // A packed model (`squish pack`) is shown as the GGUF it decodes to.
        if PackedModel.isPacked(b) { return gguf(try GGUFFile(file: try PackedModel.decode(b, path: path))) }
        return gguf(try GGUFFile(file: mapped))
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
        var summary = make(path: file.path, format: "GGUF v\(file.version)", architecture: file.architecture.map(TerminalText.escape),
                           shapeOrder: "ggml", fileBytes: file.file.count, metadata: metadata, tensors: tensors)
        do {
            summary.model = Structure(try Architectures.configuration(gguf: file))
        } catch {
            summary.config_error = TerminalText.escape("\(error)")
        }
        return summary
    }

    /// A Hugging Face checkpoint directory: config.json (validated as the runtime reads it) and every shard's tensors.
    static func checkpoint(_ path: String) throws -> ModelSummary {
        let checkpoint = try HFCheckpoint(directory: path)
        var tensors: [Tensor] = []
        var fileBytes = 0
        var metadata: [String: String] = ["model_type": TerminalText.escape(checkpoint.hfConfig.modelType)]
        for shard in checkpoint.shardFiles {
            let file = try SafetensorsFile(path: path + "/" + shard)
            fileBytes += file.file.count
            tensors += safetensors(file).tensors
            for (key, value) in file.metadata {
                metadata[TerminalText.escape(shard + ":" + key)] = TerminalText.escape(bytes: Array(value.utf8.prefix(81)), limit: 80)
            }
        }
        var summary = make(path: path, format: "Hugging Face checkpoint (\(checkpoint.shardFiles.count) safetensors file\(checkpoint.shardFiles.count == 1 ? "" : "s"))",
                           architecture: TerminalText.escape(checkpoint.hfConfig.modelType), shapeOrder: "row-major",
                           fileBytes: fileBytes, metadata: metadata, tensors: tensors)
        summary.model = Structure(checkpoint.config)
        return summary
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
        if let model { line("model: " + model.line) }
        if let config_error { line("model: cannot run: " + config_error) }
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
