import Foundation
import Testing
import SquishCore
import SquishFormats

/// config.json texts shaped like the published ones (values as in the models' Hugging Face repositories).
enum SampleConfigs {
    static let smolLM2 = """
    {
      "architectures": ["LlamaForCausalLM"],
      "attention_bias": false,
      "attention_dropout": 0.0,
      "bos_token_id": 1,
      "eos_token_id": 2,
      "head_dim": 64,
      "hidden_act": "silu",
      "hidden_size": 576,
      "initializer_range": 0.041666666666666664,
      "intermediate_size": 1536,
      "is_llama_config": true,
      "max_position_embeddings": 8192,
      "mlp_bias": false,
      "model_type": "llama",
      "num_attention_heads": 9,
      "num_hidden_layers": 30,
      "num_key_value_heads": 3,
      "pad_token_id": 2,
      "pretraining_tp": 1,
      "rms_norm_eps": 1e-05,
      "rope_interleaved": false,
      "rope_scaling": null,
      "rope_theta": 100000,
      "tie_word_embeddings": true,
      "torch_dtype": "bfloat16",
      "transformers_version": "4.42.3",
      "transformers.js_config": {"kv_cache_dtype": {"q4f16": "float16", "fp16": "float16"}},
      "use_cache": true,
      "vocab_size": 49152
    }
    """

    static let llama31 = """
    {
      "architectures": ["LlamaForCausalLM"],
      "attention_bias": false,
      "attention_dropout": 0.0,
      "bos_token_id": 128000,
      "eos_token_id": [128001, 128008, 128009],
      "hidden_act": "silu",
      "hidden_size": 4096,
      "initializer_range": 0.02,
      "intermediate_size": 14336,
      "max_position_embeddings": 131072,
      "mlp_bias": false,
      "model_type": "llama",
      "num_attention_heads": 32,
      "num_hidden_layers": 32,
      "num_key_value_heads": 8,
      "pretraining_tp": 1,
      "rms_norm_eps": 1e-05,
      "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3"
      },
      "rope_theta": 500000.0,
      "tie_word_embeddings": false,
      "torch_dtype": "bfloat16",
      "transformers_version": "4.43.0.dev0",
      "use_cache": true,
      "vocab_size": 128256
    }
    """

    static let qwen25 = """
    {
      "architectures": ["Qwen2ForCausalLM"],
      "attention_dropout": 0.0,
      "bos_token_id": 151643,
      "eos_token_id": 151645,
      "hidden_act": "silu",
      "hidden_size": 896,
      "initializer_range": 0.02,
      "intermediate_size": 4864,
      "max_position_embeddings": 32768,
      "max_window_layers": 21,
      "model_type": "qwen2",
      "num_attention_heads": 14,
      "num_hidden_layers": 24,
      "num_key_value_heads": 2,
      "rms_norm_eps": 1e-06,
      "rope_theta": 1000000.0,
      "sliding_window": 32768,
      "tie_word_embeddings": true,
      "torch_dtype": "bfloat16",
      "transformers_version": "4.43.1",
      "use_cache": true,
      "use_sliding_window": false,
      "vocab_size": 151936
    }
    """

    /// An older Llama-2-style config: no num_key_value_heads, no rope_theta.
    static let llama2Old = """
    {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 172,
     "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 256, "rms_norm_eps": 1e-06,
     "vocab_size": 1000, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": null,
     "rope_scaling": {"type": "linear", "factor": 2.0}}
    """
}

func decodeConfig(_ text: String, path: String = "models/x/config.json") throws -> HFConfig {
    try HFConfig.decode(Data(text.utf8), path: path)
}

/// Expects decoding to fail with a FormatError naming the file and containing `field`.
func expectConfigRejected(_ text: String, field: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let path = "bad/config.json"
    do {
        _ = try decodeConfig(text, path: path)
        Issue.record("accepted a config with a bad \(field)", sourceLocation: sourceLocation)
    } catch let e as FormatError {
        #expect(e.description.contains(path) && (field.isEmpty || e.description.contains(field)), "\(e)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("not a FormatError: \(error)", sourceLocation: sourceLocation)
    }
}

/// A config text with one top-level field replaced (or removed when `value` is nil).
func editedConfig(_ text: String, _ key: String, _ value: Any?) throws -> String {
    var obj = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    obj[key] = value
    return String(decoding: try JSONSerialization.data(withJSONObject: obj), as: UTF8.self)
}

@Suite struct HFConfigTests {
    @Test func smolLM2() throws {
        let c = try decodeConfig(SampleConfigs.smolLM2)
        #expect(c.architectures == ["LlamaForCausalLM"] && c.modelType == "llama")
        #expect(c.hiddenSize == 576 && c.intermediateSize == 1536 && c.numHiddenLayers == 30)
        #expect(c.numAttentionHeads == 9 && c.kvHeads == 3 && c.resolvedHeadDim == 64)
        #expect(c.rmsNormEps == 1e-5 && c.ropeTheta == 100_000 && c.ropeScaling == nil)
        #expect(c.maxPositionEmbeddings == 8192 && c.vocabSize == 49152 && c.tied)
        #expect(c.bosTokenID == .one(1) && c.eosTokenID?.all == [2] && c.torchDtype == "bfloat16")
        #expect(!c.hasAttentionBias && !c.hasOutputProjectionBias && c.hiddenAct == "silu" && c.mlpBias == false)
    }

    @Test func llama31() throws {
        let c = try decodeConfig(SampleConfigs.llama31)
        #expect(c.hiddenSize == 4096 && c.kvHeads == 8 && c.resolvedHeadDim == 128 && c.headDim == nil)
        #expect(c.ropeTheta == 500_000 && !c.tied && c.vocabSize == 128_256)
        #expect(c.ropeScaling == HFConfig.RopeScaling(ropeType: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4,
                                                       originalMaxPositionEmbeddings: 8192))
        #expect(c.ropeScaling?.kind == "llama3")
        #expect(c.bosTokenID?.all == [128_000] && c.eosTokenID == .many([128_001, 128_008, 128_009]))
    }

    @Test func qwen25() throws {
        let c = try decodeConfig(SampleConfigs.qwen25)
        #expect(c.modelType == "qwen2" && c.numAttentionHeads == 14 && c.kvHeads == 2 && c.resolvedHeadDim == 64)
        #expect(c.rmsNormEps == 1e-6 && c.ropeTheta == 1_000_000 && c.tied)
        #expect(c.attentionBias == nil && c.hasAttentionBias && !c.hasOutputProjectionBias)
    }

    @Test func defaultsForOlderConfigs() throws {
        let c = try decodeConfig(SampleConfigs.llama2Old)
        #expect(c.numKeyValueHeads == nil && c.kvHeads == 4)  // = heads
        #expect(c.ropeTheta == nil && !c.tied && c.resolvedHeadDim == 16)
        #expect(c.ropeScaling?.type == "linear" && c.ropeScaling?.factor == 2)
        #expect(c.torchDtype == nil)
        // Nested rope_parameters (newer transformers) and the newer "dtype" key.
        var text = try editedConfig(SampleConfigs.llama2Old, "rope_parameters", ["rope_theta": 250000.0, "rope_type": "default"])
        text = try editedConfig(text, "dtype", "float16")
        let n = try decodeConfig(text)
        #expect(n.ropeTheta == 250_000 && n.torchDtype == "float16")
        // bos/eos may be null or absent.
        let none = try decodeConfig(try editedConfig(try editedConfig(SampleConfigs.llama2Old, "bos_token_id", NSNull()), "eos_token_id", nil))
        #expect(none.bosTokenID == nil && none.eosTokenID == nil)
        // head_dim lifts the divisibility requirement on hidden_size.
        let odd = try editedConfig(try editedConfig(SampleConfigs.llama2Old, "hidden_size", 60), "head_dim", 16)
        #expect(try decodeConfig(odd).resolvedHeadDim == 16)
    }

    @Test func invalidConfigsNameFileAndField() throws {
        let base = SampleConfigs.smolLM2
        expectConfigRejected(try editedConfig(base, "hidden_size", nil), field: "hidden_size")
        expectConfigRejected(try editedConfig(base, "hidden_size", "576"), field: "hidden_size")
        expectConfigRejected(try editedConfig(base, "hidden_size", 0), field: "hidden_size")
        expectConfigRejected(try editedConfig(base, "vocab_size", -5), field: "vocab_size")
        expectConfigRejected(try editedConfig(base, "num_hidden_layers", 2.5), field: "num_hidden_layers")
        expectConfigRejected(try editedConfig(base, "num_key_value_heads", 4), field: "num_key_value_heads")
        expectConfigRejected(try editedConfig(try editedConfig(base, "head_dim", nil), "num_attention_heads", 7),
                             field: "num_attention_heads")
        expectConfigRejected(try editedConfig(base, "head_dim", 0), field: "head_dim")
        expectConfigRejected(try editedConfig(base, "rms_norm_eps", 0), field: "rms_norm_eps")
        expectConfigRejected(try editedConfig(base, "rope_theta", -1), field: "rope_theta")
        expectConfigRejected(try editedConfig(base, "model_type", nil), field: "model_type")
        expectConfigRejected(try editedConfig(base, "head_dim", 63), field: "head_dim")
        expectConfigRejected(try editedConfig(base, "eos_token_id", "2"), field: "eos_token_id")
        expectConfigRejected(try editedConfig(base, "eos_token_id", [2, 1.5]), field: "eos_token_id")
        expectConfigRejected(try editedConfig(base, "max_position_embeddings", 1e300), field: "max_position_embeddings")
        expectConfigRejected(try editedConfig(base, "bos_token_id", 49152), field: "bos_token_id")
        expectConfigRejected(try editedConfig(base, "tie_word_embeddings", "yes"), field: "tie_word_embeddings")
        expectConfigRejected(try editedConfig(base, "rope_scaling", ["rope_type": "llama3", "factor": 8.0]), field: "rope_scaling")
        expectConfigRejected(try editedConfig(base, "rope_scaling", ["type": "linear", "factor": -1.0]), field: "rope_scaling.factor")
        expectConfigRejected(try editedConfig(base, "rope_scaling", ["type": "linear", "factor": "big"]), field: "rope_scaling.factor")
        expectConfigRejected("[1, 2]", field: "")
        expectConfigRejected("{\"hidden_size\": ", field: "")
    }

    @Test func encodeDecodeRoundTrip() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for text in [SampleConfigs.smolLM2, SampleConfigs.llama31, SampleConfigs.qwen25, SampleConfigs.llama2Old] {
            let c = try decodeConfig(text)
            try c.write(to: dir + "/config.json")
            let back = try HFConfig.load(path: dir + "/config.json")
            #expect(back == c)
            // What we write, transformers-style readers see with the expected keys and types.
            let obj = try #require(try JSONSerialization.jsonObject(with: try c.jsonData()) as? [String: Any])
            #expect(obj["hidden_size"] as? Int == c.hiddenSize)
            #expect(obj["num_key_value_heads"] as? Int == c.numKeyValueHeads)
            let eos = c.eosTokenID?.all ?? []
            if eos.count == 1 { #expect(obj["eos_token_id"] as? Int == eos[0]) }
            if eos.count > 1 { #expect(obj["eos_token_id"] as? [Int] == eos) }
        }
        let text = String(decoding: try decodeConfig(SampleConfigs.llama31).jsonData(), as: UTF8.self)
        #expect(text.contains("\"rope_type\" : \"llama3\"") && text.contains("\"rms_norm_eps\" : 1e-05"))
        #expect(throws: FormatError.self) { try HFConfig.load(path: dir + "/absent.json") }
        // An invalid config is not written.
        var bad = try decodeConfig(SampleConfigs.smolLM2)
        bad.numKeyValueHeads = 2
        #expect(throws: FormatError.self) { try bad.write(to: dir + "/bad.json") }
        #expect(!FileManager.default.fileExists(atPath: dir + "/bad.json"))
    }
}
