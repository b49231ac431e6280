import Foundation
import SquishCore
import SquishFormats

/// Seed inputs for the fuzz targets, written by Squish's own writers (GGUFWriter, SafetensorsWriter, HFConfig, the
/// JSONValue serializer), small so that each run is fast: libFuzzer mutates them into hostile variants.
public enum Seeds {
    /// GPT-2's byte-to-character table (bytes_to_unicode): printable Latin-1 bytes stand for themselves, the others
    /// for U+0100 onwards, in byte order.
    static let byteCharacters: [String] = {
        var out = [String](repeating: "", count: 256)
        var next = 256
        for b in 0 ..< 256 {
            let printable = (33 ... 126).contains(b) || (161 ... 172).contains(b) || (174 ... 255).contains(b)
            out[b] = String(Character(Unicode.Scalar(UInt32(printable ? b : next))!))
            if !printable { next += 1 }
        }
        return out
    }()

    /// A tiny byte-level BPE vocabulary: the 256 byte tokens, a few merged ones, and special tokens.
    static var vocabulary: (tokens: [String], merges: [String], types: [Int]) {
        let space = byteCharacters[32]
        let merges = ["t h", "th e", "\(space) the", "a n", "an d", "\(space) and", "i n", "in g", "o f", "\(space) of"]
        var tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + byteCharacters
        tokens += merges.map { $0.replacingOccurrences(of: " ", with: "") }
        let types = tokens.indices.map { $0 < 3 ? 3 : 1 }
        return (tokens, merges, types)
    }

    /// Writes through `write` into a scratch file and returns its bytes.
    static func bytes(_ write: (String) throws -> Void) throws -> [UInt8] {
        let dir = NSTemporaryDirectory() + "squish-seeds-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try write(dir + "/seed")
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/seed")))
    }

    static func floats(_ n: Int) -> [UInt8] {
        (0 ..< n).map { Float($0) * 0.25 - 1 }.withUnsafeBytes { Array($0) }
    }

    /// GGUF: every value type, nested and empty arrays, tensors of several types; a Llama model's metadata with a
    /// byte-level tokenizer; and, given the default model, its metadata with the arrays cut to 300 elements over one
    /// block per tensor.
    public static func gguf(model: String? = ProcessInfo.processInfo.environment["SQUISH_FUZZ_SEED_MODEL"]) throws -> [(name: String, bytes: [UInt8])] {
        var out: [(name: String, bytes: [UInt8])] = []
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        w.set("general.alignment", .uint32(64))
        w.set("u8", .uint8(200)); w.set("i8", .int8(-100)); w.set("u16", .uint16(60000)); w.set("i16", .int16(-30000))
        w.set("u32", .uint32(4_000_000_000)); w.set("i32", .int32(-2_000_000_000)); w.set("f32", .float32(3.5))
        w.set("bool", .bool(true)); w.set("str", .string("naïve café 🙂")); w.set("u64", .uint64(UInt64.max))
        w.set("i64", .int64(Int64.min)); w.set("f64", .float64(-1e300))
        w.set("bools", .array(elementType: .bool, values: [.bool(true), .bool(false)]))
        w.set("strings", .array(elementType: .string, values: [.string("a"), .string(""), .string("ü")]))
        w.set("empty", .array(elementType: .float32, values: []))
        w.set("nested", .array(elementType: .array, values: [
            .array(elementType: .int32, values: [.int32(1), .int32(2)]),
            .array(elementType: .string, values: [.string("x")]),
        ]))
        w.addTensor(name: "a", shape: [32, 2], type: .q8_0, source: .bytes([UInt8](repeating: 1, count: 68)))
        w.addTensor(name: "b", shape: [3], type: .f32, source: .bytes(floats(3)))
        w.addTensor(name: "c", shape: [64], type: .q4_1, source: .bytes((0 ..< 40).map { UInt8($0) }))
        w.addTensor(name: "d", shape: [256, 1, 1], type: .q4_K, source: .bytes([UInt8](repeating: 7, count: GGMLType.q4_K.blockBytes)))
        out.append(("every-value-type.gguf", try bytes { try w.write(to: $0) }))

        let v = vocabulary
        var t = GGUFWriter(version: 3)
        t.set("general.architecture", .string("llama"))
        for (k, n) in [("block_count", 1), ("context_length", 64), ("embedding_length", 32), ("feed_forward_length", 64),
                       ("attention.head_count", 2), ("attention.head_count_kv", 1), ("rope.dimension_count", 16)] {
            t.set("llama.\(k)", .uint32(UInt32(n)))
        }
        t.set("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        t.set("llama.rope.freq_base", .float32(10000))
        t.set("tokenizer.ggml.model", .string("gpt2"))
        t.set("tokenizer.ggml.pre", .string("smollm"))
        t.set("tokenizer.ggml.tokens", .array(elementType: .string, values: v.tokens.map { .string($0) }))
        t.set("tokenizer.ggml.token_type", .array(elementType: .int32, values: v.types.map { .int32(Int32($0)) }))
        t.set("tokenizer.ggml.merges", .array(elementType: .string, values: v.merges.map { .string($0) }))
        t.set("tokenizer.ggml.bos_token_id", .uint32(1))
        t.set("tokenizer.ggml.eos_token_id", .uint32(2))
        t.set("tokenizer.ggml.add_bos_token", .bool(false))
        t.set("tokenizer.chat_template", .string("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"))
        t.addTensor(name: "token_embd.weight", shape: [32, v.tokens.count], type: .q8_0,
                    source: .bytes([UInt8](repeating: 0, count: v.tokens.count * 34)))
        t.addTensor(name: "output_norm.weight", shape: [32], type: .f32, source: .bytes(floats(32)))
        out.append(("byte-level-tokenizer.gguf", try bytes { try t.write(to: $0) }))

        var spm = GGUFWriter(version: 2)
        spm.set("general.architecture", .string("llama"))
        spm.set("tokenizer.ggml.model", .string("llama"))
        let pieces = ["<unk>", "<s>", "</s>"] + (0 ..< 256).map { String(format: "<0x%02X>", $0) } + ["▁", "▁the", "▁a", "e", "t"]
        spm.set("tokenizer.ggml.tokens", .array(elementType: .string, values: pieces.map { .string($0) }))
        spm.set("tokenizer.ggml.scores", .array(elementType: .float32, values: pieces.indices.map { .float32(-Float($0)) }))
        spm.set("tokenizer.ggml.token_type", .array(elementType: .int32,
                                                     values: pieces.indices.map { .int32($0 == 0 ? 2 : $0 < 3 ? 3 : $0 < 259 ? 6 : 1) }))
        spm.set("tokenizer.ggml.add_bos_token", .bool(true))
        out.append(("sentencepiece-tokenizer.gguf", try bytes { try spm.write(to: $0) }))

        if let model, FileManager.default.fileExists(atPath: model) {
            let file = try GGUFFile(path: model)
            var m = GGUFWriter(version: file.version)
            for (key, value) in file.metadata {
                if let a = value.arrayValue, a.count > 300 {
                    m.set(key, .array(elementType: a.elementType, values: Array(a.prefix(300))))
                } else {
                    m.set(key, value)
                }
            }
            for tensor in file.tensors.prefix(40) {
                m.addTensor(name: tensor.name, shape: [tensor.type.blockElements], type: tensor.type,
                            source: .bytes([UInt8](repeating: 0x11, count: tensor.type.blockBytes)))
            }
            out.append(("default-model-header.gguf", try bytes { try m.write(to: $0) }))
        }
        return out
    }

    /// safetensors: float and integer dtypes, a scalar, an empty tensor, metadata.
    public static func safetensors() throws -> [(name: String, bytes: [UInt8])] {
        var w = SafetensorsWriter(metadata: ["format": "pt", "source": "squish fuzz seed"], order: .reference)
        w.add("model.embed_tokens.weight", dtype: .F32, shape: [4, 3], bytes: floats(12))
        w.add("model.norm.weight", dtype: .BF16, shape: [3], bytes: [0x80, 0x3F, 0x00, 0x40, 0x40, 0x40])
        w.add("lm_head.weight", dtype: .F16, shape: [2, 2], bytes: [0, 0x3C, 0, 0xC0, 0, 0x3C, 0, 0])
        w.add("scalar", dtype: .F64, shape: [], bytes: Double(2.5).bitPattern.littleEndianBytes)
        w.add("empty", dtype: .I8, shape: [0, 5], bytes: [])
        w.add("ids", dtype: .I64, shape: [2], bytes: Int64(7).littleEndianBytes + Int64(-1).littleEndianBytes)
        var plain = SafetensorsWriter()
        plain.add("w", dtype: .F32, shape: [2], bytes: floats(2))
        return [("checkpoint.safetensors", try bytes { try w.write(to: $0) }),
                ("one-tensor.safetensors", try bytes { try plain.write(to: $0) })]
    }

    /// tokenizer.json: byte-level BPE with added tokens and a smollm-style pre-tokenizer and post-processor, and a
    /// SentencePiece-style BPE (byte fallback, Metaspace).
    public static func tokenizerJSON() -> [(name: String, bytes: [UInt8])] {
        let v = vocabulary
        let byteLevel: JSONValue = .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(false)),
                                            ("trim_offsets", .bool(true)), ("use_regex", .bool(true))])
        let added: [JSONValue] = (0 ..< 3).map { id in
            .object([("id", .int(Int64(id))), ("content", .string(v.tokens[id])), ("single_word", .bool(false)), ("lstrip", .bool(false)),
                     ("rstrip", .bool(false)), ("normalized", .bool(false)), ("special", .bool(true))])
        }
        let post: JSONValue = .object([("type", .string("TemplateProcessing")), ("single", .array([
            .object([("SpecialToken", .object([("id", .string("<|im_start|>")), ("type_id", .int(0))]))]),
            .object([("Sequence", .object([("id", .string("A")), ("type_id", .int(0))]))]),
        ]))])
        let gpt2: JSONValue = .object([
            ("version", .string("1.0")), ("added_tokens", .array(added)), ("normalizer", .null),
            ("pre_tokenizer", .object([("type", .string("Sequence")), ("pretokenizers", .array([
                .object([("type", .string("Digits")), ("individual_digits", .bool(true))]), byteLevel]))])),
            ("post_processor", post), ("decoder", byteLevel),
            ("model", .object([
                ("type", .string("BPE")), ("dropout", .null), ("unk_token", .null), ("byte_fallback", .bool(false)),
                ("vocab", .object(v.tokens.enumerated().map { ($0.element, .int(Int64($0.offset))) })),
                ("merges", .array(v.merges.enumerated().map { $0.offset % 2 == 0 ? .string($0.element)
                    : .array($0.element.split(separator: " ").map { .string(String($0)) }) })),
            ])),
        ])
        let pieces = ["<unk>", "<s>", "</s>"] + (0 ..< 256).map { String(format: "<0x%02X>", $0) } + ["▁", "t", "h", "e", "th", "▁the"]
        let spm: JSONValue = .object([
            ("added_tokens", .array([.object([("id", .int(1)), ("content", .string("<s>")), ("special", .bool(true))])])),
            ("normalizer", .null),
            ("pre_tokenizer", .object([("type", .string("Metaspace")), ("replacement", .string("▁")),
                                       ("prepend_scheme", .string("first")), ("split", .bool(false))])),
            ("model", .object([
                ("type", .string("BPE")), ("unk_token", .string("<unk>")), ("byte_fallback", .bool(true)),
                ("vocab", .object(pieces.enumerated().map { ($0.element, .int(Int64($0.offset))) })),
                ("merges", .array([.string("t h"), .string("th e"), .string("▁ the")])),
            ])),
        ])
        return [("byte-level.json", Array(gpt2.serialized.utf8)), ("sentencepiece.json", Array(spm.serialized.utf8))]
    }

    /// config.json: SmolLM2-135M's (Llama), a Qwen2 with biases, a Llama 3.1 with rope scaling.
    public static func config() throws -> [(name: String, bytes: [UInt8])] {
        let smol = HFConfig(architectures: ["LlamaForCausalLM"], modelType: "llama", hiddenSize: 576, intermediateSize: 1536,
                            numHiddenLayers: 30, numAttentionHeads: 9, numKeyValueHeads: 3, headDim: nil, rmsNormEps: 1e-5,
                            ropeTheta: 100000, ropeScaling: nil, maxPositionEmbeddings: 8192, vocabSize: 49152,
                            tieWordEmbeddings: true, bosTokenID: .one(1), eosTokenID: .one(2), torchDtype: "bfloat16",
                            attentionBias: false, mlpBias: false, hiddenAct: "silu")
        var qwen = smol
        qwen.modelType = "qwen2"
        qwen.architectures = ["Qwen2ForCausalLM"]
        qwen.attentionBias = nil
        qwen.eosTokenID = .many([2, 0])
        var llama3 = smol
        llama3.ropeScaling = .init(ropeType: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192)
        llama3.headDim = 64
        return try [("smollm2.json", smol), ("qwen2.json", qwen), ("llama3.json", llama3)].map { ($0.0, [UInt8](try $0.1.jsonData())) }
    }
}

extension FixedWidthInteger {
    var littleEndianBytes: [UInt8] { withUnsafeBytes(of: littleEndian) { Array($0) } }
}
