import Foundation
import SquishCore
import SquishFormats
import SquishKernels

/// Writes a GGUF model of any registered architecture as a Hugging Face checkpoint directory: `config.json`,
/// `model.safetensors` (every tensor dequantized, stored as F16, F32 or BF16, under the family's checkpoint names
/// and conventions) and, for byte-level BPE vocabularies, `tokenizer.json`. Q and K projections of families whose
/// GGUF files permute them (Llama) are un-permuted back to Hugging Face's half-split RoPE layout.
public enum HFExport {
    public static func write(gguf file: GGUFFile, to directory: String, dtype: SafetensorsDType = .F16) throws {
        guard [.F16, .F32, .BF16].contains(dtype) else {
            throw FormatError.unsupportedType(dtype.ggmlType ?? .i8, operation: "export as \(dtype.rawValue)")
        }
        let c = try Architectures.configuration(gguf: file)
        let family = Architectures.family(named: c.architecture)!
        guard !c.hasLayerWidths else {
            throw ModelError.invalidConfiguration(path: file.path, reason: "its layers differ in FFN width or head count (a pruned model), which config.json cannot describe")
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var writer = SafetensorsWriter()
        writer.metadata = ["format": "pt", "source": "squish export from GGUF"]
        let rotated = RotatedInputs.names(in: file)
        for t in file.tensors {
            guard let tensor = ModelTensor(ggufName: t.name), let hf = family.hfTensor(tensor) else { continue }
            var values = try Codecs.dequantize(t.type, file.data(for: t), count: t.elementCount)
            if rotated.contains(t.name) {  // stored W·Rᵀ: the checkpoint holds W
                let r = HadamardRotation.weightInput(columns: t.shape[0])
                values.withUnsafeMutableBufferPointer { p in for row in 0 ..< t.elementCount / t.shape[0] { r.invert(p.baseAddress! + row * t.shape[0]) } }
            }
            if hf.addsOne { for i in values.indices { values[i] -= 1 } }
            if family.ggufRoPEStyle == .adjacentPairs, case .block(let l, let b) = tensor, let heads = ropeHeads(b, c, layer: l) {
                values = unpermute(values, rows: t.shape.count > 1 ? t.shape[1] : t.elementCount, columns: t.shape.count > 1 ? t.shape[0] : 1,
                                   heads: heads)
            }
            let g = dtype.ggmlType!
            writer.add(hf.name, dtype: dtype, shape: Array(t.shape.reversed()), bytes: try Codecs.quantize(g, values))
        }
        try writer.write(to: directory + "/model.safetensors")
        let eos = file["tokenizer.ggml.eos_token_id"]?.int, bos = file["tokenizer.ggml.bos_token_id"]?.int
        let config = family.hfConfig(c, bos: bos, eos: eos, dtype: dtype == .F16 ? "float16" : dtype == .BF16 ? "bfloat16" : "float32")
        try config.write(to: directory + "/config.json")
        if file["tokenizer.ggml.model"]?.string == "gpt2" { try writeTokenizerJSON(gguf: file, to: directory + "/tokenizer.json") }
    }

    /// Heads whose rows RoPE rotates in a Q or K tensor (weights or bias) of block `layer`, nil for other tensors.
    static func ropeHeads(_ t: BlockTensor, _ c: ModelConfig, layer: Int) -> Int? {
        switch t {
        case .attnQ, .attnQBias: return c.heads(layer: layer)
        case .attnK, .attnKBias: return c.kvHeads(layer: layer)
        default: return nil
        }
    }

    /// Inverse of the GGUF converter's Q/K row permutation: HF row h·d + s·d/2 + i ← GGUF row h·d + 2i + s.
    static func unpermute(_ w: [Float], rows: Int, columns: Int, heads: Int) -> [Float] {
        permuteRows(w, rows: rows, columns: columns, heads: heads, toGGUF: false)
    }

    /// The GGUF converter's Q/K row permutation (llama.cpp's `permute`): GGUF row h·d + 2i + s ← HF row h·d + s·d/2 + i.
    static func permute(_ w: [Float], rows: Int, columns: Int, heads: Int) -> [Float] {
        permuteRows(w, rows: rows, columns: columns, heads: heads, toGGUF: true)
    }

    private static func permuteRows(_ w: [Float], rows: Int, columns: Int, heads: Int, toGGUF: Bool) -> [Float] {
        let d = rows / heads, half = d / 2
        var out = w
        for h in 0 ..< heads {
            for s in 0 ..< 2 {
                for i in 0 ..< half {
                    let gguf = (h * d + 2 * i + s) * columns, hf = (h * d + s * half + i) * columns
                    let (src, dst) = toGGUF ? (hf, gguf) : (gguf, hf)
                    for k in 0 ..< columns { out[dst + k] = w[src + k] }
                }
            }
        }
        return out
    }

    /// A Hugging Face `tokenizer.json` for the GGUF's byte-level BPE vocabulary and its pre-tokenizer.
    public static func writeTokenizerJSON(gguf file: GGUFFile, to path: String) throws {
        guard let tokens = file["tokenizer.ggml.tokens"]?.stringArray, let merges = file["tokenizer.ggml.merges"]?.stringArray else {
            throw FormatError.missing(path: file.path, what: "tokenizer.ggml.tokens / merges")
        }
        let types = file["tokenizer.ggml.token_type"]?.intArray ?? []
        let pre = file["tokenizer.ggml.pre"]?.string ?? "gpt2"
        let byteLevel: JSONValue = .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(false)),
                                            ("trim_offsets", .bool(true)), ("use_regex", .bool(true))])
        let preTokenizer: JSONValue
        switch pre {
        case "smollm":
            preTokenizer = .object([("type", .string("Sequence")), ("pretokenizers", .array([
                .object([("type", .string("Digits")), ("individual_digits", .bool(true))]), byteLevel]))])
        default:
            preTokenizer = byteLevel
        }
        var added: [JSONValue] = []
        for (id, t) in tokens.enumerated() where id < types.count && (types[id] == 3 || types[id] == 4) {
            added.append(.object([("id", .int(Int64(id))), ("content", .string(t)), ("single_word", .bool(false)),
                                  ("lstrip", .bool(false)), ("rstrip", .bool(false)), ("normalized", .bool(false)),
                                  ("special", .bool(types[id] == 3))]))
        }
        let json: JSONValue = .object([
            ("version", .string("1.0")),
            ("added_tokens", .array(added)),
            ("normalizer", .null),
            ("pre_tokenizer", preTokenizer),
            ("post_processor", .null),
            ("decoder", byteLevel),
            ("model", .object([
                ("type", .string("BPE")), ("dropout", .null), ("unk_token", .null), ("continuing_subword_prefix", .null),
                ("end_of_word_suffix", .null), ("fuse_unk", .bool(false)), ("byte_fallback", .bool(false)),
                ("vocab", .object(tokens.enumerated().map { ($0.element, .int(Int64($0.offset))) })),
                ("merges", .array(merges.map { .string($0) })),
            ])),
        ])
        try AtomicFileWriter.write(Array(json.serialized.utf8), to: path)
    }
}
