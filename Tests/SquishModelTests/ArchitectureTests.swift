import Foundation
import Testing
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel
import SquishTokenizer

/// The architecture registry and the one semantic validation every loader goes through: hostile metadata gives a
/// typed error naming the file and the key, never a crash or a model that computes NaN.
@Suite("Architectures: registry and configuration validation")
struct ArchitectureTests {
    @Test func registryKnowsEveryFamilyOnce() throws {
        for (gguf, family) in [("llama", "llama"), ("mistral", "llama"), ("qwen2", "qwen2"), ("qwen3", "qwen3"), ("gemma3", "gemma3"), ("gemma", "gemma")] {
            #expect(Architectures.family(gguf: gguf)?.name == family)
        }
        for (hf, family) in [("llama", "llama"), ("mistral", "llama"), ("qwen2", "qwen2"), ("qwen3", "qwen3"), ("gemma3_text", "gemma3"), ("gemma", "gemma")] {
            #expect(Architectures.family(hfModelType: hf)?.name == family)
        }
        let names = Architectures.all.map { $0.name }
        #expect(Set(names).count == names.count)
        // Every GGUF name maps to exactly one family.
        let ggufNames = Architectures.all.flatMap { $0.ggufArchitectures }
        #expect(Set(ggufNames).count == ggufNames.count)
    }

    @Test func tensorNamesRoundTrip() throws {
        for arch in ["llama", "qwen2", "gemma3", "gemma"] {
            let c = try TinyModel.config(arch)
            for t in c.tensors(ropeFrequencies: true) {
                #expect(ModelTensor(ggufName: t.ggufName) == t, "\(t.ggufName)")
            }
            // The linear layers are the block matrices in order, then the embedding (and an untied output).
            #expect(c.linearLayers.count == 7 * c.layers + (c.tiedEmbeddings ? 1 : 2))
            for l in c.linearLayers { #expect(c.shape(of: l.tensor) == [l.columns, l.rows]) }
        }
        #expect(ModelTensor(ggufName: "blk.x.attn_q.weight") == nil)
        #expect(ModelTensor(ggufName: "blk.-1.attn_q.weight") == nil)
        #expect(ModelTensor(ggufName: "blk.0.attn_z.weight") == nil)
    }

    /// One tiny GGUF per hostile value: each load fails with a ModelError naming the file and the key.
    @Test(arguments: [
        ("attention.layer_norm_rms_epsilon", GGUFValue.float32(.nan)),
        ("attention.layer_norm_rms_epsilon", .float32(-1)),
        ("attention.layer_norm_rms_epsilon", .float32(.infinity)),
        ("attention.layer_norm_rms_epsilon", .float32(0)),
        ("rope.freq_base", .float32(0)),
        ("rope.freq_base", .float32(-10000)),
        ("rope.freq_base", .float32(.nan)),
        ("rope.scaling.factor", .float32(0)),
        ("rope.scaling.factor", .float32(.nan)),
        ("attention.key_length", .uint64(1 << 60)),
        ("attention.key_length", .uint64(1 << 62)),
        ("attention.key_length", .uint64(UInt64.max)),
        ("attention.head_count", .uint32(0)),
        ("attention.head_count_kv", .uint32(3)),
        ("block_count", .uint64(1 << 40)),
        ("context_length", .uint32(0)),
        ("embedding_length", .string("wide")),
        ("vocab_size", .uint32(65)),
        ("feed_forward_length", .int64(-5)),
    ] as [(String, GGUFValue)])
    func hostileMetadataIsATypedError(key: String, value: GGUFValue) throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.gguf"
        try TinyModel.writeGGUF(try TinyModel.config(), to: path) { w in
            if key == "rope.scaling.factor" { w.set("llama.rope.scaling.type", .string("linear")) }
            w.set("llama." + key, value)
        }
        do {
            _ = try TransformerModel(path: path)
            Issue.record("accepted llama.\(key) = \(value)")
        } catch let e as ModelError {
            let text = e.description
            #expect(text.hasPrefix(path), "\(text)")
            let named = text.contains("llama." + key) || (key == "vocab_size" && text.contains("vocab_size"))
                || (key == "block_count" && text.contains("block_count"))
            #expect(named, "error does not name the key: \(text)")
        }
    }

    @Test func nonFiniteNormWeightsAreRefused() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.gguf"
        try TinyModel.writeGGUF(try TinyModel.config(), to: path) { w in
            var v = [Float](repeating: 1, count: 32)
            v[5] = .nan
            w.replaceTensor(name: "blk.1.ffn_norm.weight", shape: [32], type: .f32, source: .bytes(v.withUnsafeBytes { Array($0) }))
        }
        do {
            _ = try TransformerModel(path: path)
            Issue.record("accepted a NaN norm weight")
        } catch ModelError.nonFiniteWeights(let p, let tensor, let index, let value) {
            #expect(p == path && tensor == "blk.1.ffn_norm.weight" && index == 5 && value.isNaN)
        }
    }

    /// A NaN block scale inside a weight matrix is only seen when the model runs: the forward pass names the first
    /// place that produced non-finite values instead of handing NaN logits to the sampler.
    @Test func nonFiniteActivationsNameTheFirstLayer() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.gguf"
        let c = try TinyModel.config()
        try TinyModel.writeGGUF(c, to: path) { w in
            // blk.1.ffn_up in Q8_0 with the first block's f16 scale set to NaN (0x7E00).
            var bytes = try! Codecs.quantize(.q8_0, [Float](repeating: 0.01, count: c.dim * c.hiddenDim))
            bytes[0] = 0x00
            bytes[1] = 0x7E
            w.replaceTensor(name: "blk.1.ffn_up.weight", shape: [c.dim, c.hiddenDim], type: .q8_0, source: .bytes(bytes))
        }
        let model = try TransformerModel(path: path)
        let session = try ModelSession(model: model, pool: WorkerPool(threads: 2), contextLength: 16)
        #expect(throws: ModelError.nonFiniteActivations(path: path, stage: "block 1 (feed-forward)")) {
            try session.forward([1, 2, 3])
        }
        // The failed batch left nothing in the cache.
        #expect(session.position == 0)
    }

    @Test func tokenizerMustMatchTheEmbedding() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.gguf"
        try TinyModel.writeGGUF(try TinyModel.config(vocab: 64), to: path) { w in
            // A byte-level vocabulary of 63 tokens for 64 embedding rows.
            let tokens = (0 ..< 63).map { "t\($0)" }
            w.set("tokenizer.ggml.model", .string("gpt2"))
            w.set("tokenizer.ggml.tokens", .array(elementType: .string, values: tokens.map { .string($0) }))
            w.set("tokenizer.ggml.merges", .array(elementType: .string, values: []))
        }
        #expect(throws: ModelError.self) { try LanguageModel(path: path) }
        do { _ = try LanguageModel(path: path) } catch let e as ModelError {
            #expect(e.description.contains("63 tokens") && e.description.contains("64 rows"), "\(e)")
        }
    }

    @Test func unknownArchitecturesListWhatIsSupported() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.gguf"
        try TinyModel.writeGGUF(try TinyModel.config(), to: path) { w in w.set("general.architecture", .string("gptneox")) }
        #expect(throws: ModelError.unsupportedArchitecture(path: path, architecture: "gptneox", supported: Architectures.supportedGGUF)) {
            try TransformerModel(path: path)
        }
        let config = try HFConfig.decode(Data("""
            {"model_type": "gpt_neox", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
             "num_attention_heads": 2, "vocab_size": 10}
            """.utf8))
        #expect(throws: ModelError.self) { try Architectures.configuration(hf: config, path: "x/config.json") }
    }

    /// Gemma checkpoints: "gelu" in `hidden_act` is the tanh approximation (as transformers reads the released
    /// configs), other activations and biases are refused naming the field; head_dim defaults to 256 and the output
    /// to tied, as GemmaConfig's defaults.
    @Test func gemmaCheckpointConfiguration() throws {
        func config(_ extra: String) throws -> HFConfig {
            try HFConfig.decode(Data("""
                {"model_type": "gemma", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
                 "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 10\(extra)}
                """.utf8))
        }
        for extra in ["", #", "hidden_act": "gelu""#, #", "hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh""#] {
            let c = try Architectures.configuration(hf: try config(extra), path: "x/config.json")
            #expect(c.architecture == "gemma" && c.activation == .geluTanh && c.headDim == 256 && c.tiedEmbeddings)
            #expect(c.embeddingScale == Float(64).squareRoot() && c.attentionScale == 1 / 16 && !c.qkNorm && !c.postNorms)
            #expect(c.layerAttention == [LayerAttention(ropeBase: 10000)])
        }
        for (extra, field) in [(#", "hidden_act": "relu""#, "hidden_act"), (#", "hidden_activation": "gelu""#, "hidden_activation"),
                               (#", "attention_bias": true"#, "attention_bias")] {
            do {
                _ = try Architectures.configuration(hf: try config(extra), path: "x/config.json")
                Issue.record("accepted \(extra)")
            } catch let e as ModelError {
                #expect(e.description.contains(field) && e.description.contains("x/config.json"), "\(e)")
            }
        }
    }

    /// A checkpoint whose config says the output is untied must have lm_head (no silent reuse of the embedding).
    @Test func untiedCheckpointWithoutLMHeadIsRefused() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try HFConfig(architectures: nil, modelType: "llama", hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 1,
                     numAttentionHeads: 4, numKeyValueHeads: 2, headDim: nil, rmsNormEps: 1e-5, ropeTheta: 10000,
                     ropeScaling: nil, maxPositionEmbeddings: 64, vocabSize: 16, tieWordEmbeddings: false,
                     bosTokenID: nil, eosTokenID: nil, torchDtype: nil, attentionBias: nil).write(to: dir + "/config.json")
        var w = SafetensorsWriter()
        w.add("model.embed_tokens.weight", dtype: .F32, shape: [16, 32], bytes: [UInt8](repeating: 0, count: 16 * 32 * 4))
        try w.write(to: dir + "/model.safetensors")
        do {
            _ = try TransformerModel(hfDirectory: dir)
            Issue.record("loaded an untied checkpoint without lm_head")
        } catch let e as ModelError {
            #expect(e.description.contains("lm_head.weight"), "\(e)")
        }
    }

    /// A corrupt shard listed in an index reports the shard's own parse error, not "missing tensor".
    @Test func corruptShardReportsItsOwnError() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try HFConfig(architectures: nil, modelType: "llama", hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 1,
                     numAttentionHeads: 4, numKeyValueHeads: 2, headDim: nil, rmsNormEps: 1e-5, ropeTheta: 10000,
                     ropeScaling: nil, maxPositionEmbeddings: 64, vocabSize: 16, tieWordEmbeddings: true,
                     bosTokenID: nil, eosTokenID: nil, torchDtype: nil, attentionBias: nil).write(to: dir + "/config.json")
        try Data("""
            {"weight_map": {"model.embed_tokens.weight": "a.safetensors", "model.norm.weight": "a.safetensors"}}
            """.utf8).write(to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
        try Data([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x7B]).write(to: URL(fileURLWithPath: dir + "/a.safetensors"))
        do {
            _ = try TransformerModel(hfDirectory: dir)
            Issue.record("loaded a corrupt shard")
        } catch let e as FormatError {
            #expect(e.description.contains("a.safetensors"), "\(e)")
        }
    }

    /// A checkpoint converted to GGUF by Squish's writer (Llama: Q/K rows permuted for adjacent-pair RoPE; Gemma 1
    /// and 3: norms with 1 added; Qwen2: biases) computes the same logits as the checkpoint itself.
    @Test(arguments: ["llama", "qwen2", "gemma3", "gemma"])
    func checkpointAndConvertedGGUFAgree(architecture: String) throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try TinyModel.config(architecture)
        let family = try #require(Architectures.family(named: architecture))
        // The checkpoint: export a GGUF of the family written by the test helper.
        try TinyModel.writeGGUF(c, to: dir + "/a.gguf")
        try HFExport.write(gguf: try GGUFFile(path: dir + "/a.gguf"), to: dir + "/hf", dtype: .F32)
        let checkpoint = try HFCheckpoint(directory: dir + "/hf")
        #expect(checkpoint.family.name == family.name)
        #expect(checkpoint.config.layerAttention == c.layerAttention)
        #expect(checkpoint.config.attentionScale == c.attentionScale && checkpoint.config.embeddingScale == c.embeddingScale)
        try GGUFConversion.write(checkpoint: checkpoint, to: dir + "/b.gguf")
        let models = [try TransformerModel(path: dir + "/a.gguf"), try TransformerModel(hfDirectory: dir + "/hf"),
                      try TransformerModel(path: dir + "/b.gguf")]
        let tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7]  // longer than Gemma's window of 4
        let logits = try models.map { m in
            try ModelSession(model: m, pool: WorkerPool(threads: 2), contextLength: 32, exactActivations: true)
                .forward(tokens, logitsFor: tokens.count)
        }
        for other in logits.dropFirst() {
            let worst = zip(logits[0], other).map { abs($0 - $1) }.max()!
            #expect(worst < 1e-4, "\(architecture): max |Δlogit| \(worst)")
        }
    }
}
