import Foundation
import SquishCore
import SquishFormats

/// A Hugging Face checkpoint directory: `config.json` plus `model.safetensors` or sharded
/// `model.safetensors.index.json`. Serves tensors under GGUF names with ggml-order shapes (a row-major
/// [out, in] matrix is the same bytes as ggml's [in, out]).
public final class HFCheckpoint: ModelTensorSource {
    public let path: String
    public let config: HFConfig
    private var shards: [String: SafetensorsFile] = [:]
    /// HF tensor name → shard file name.
    private let weightMap: [String: String]

    public init(directory: String) throws {
        path = directory
        config = try HFConfig.load(path: directory + "/config.json")
        let index = directory + "/model.safetensors.index.json"
        if FileManager.default.fileExists(atPath: index) {
            guard let data = FileManager.default.contents(atPath: index) else { throw FormatError.missing(path: index, what: "a readable index") }
            let json: JSONValue
            do { json = try JSONValue.parse([UInt8](data)) } catch { throw FormatError.invalid(path: index, offset: nil, reason: "\(error)") }
            guard let map = json["weight_map"]?.object else { throw FormatError.missing(path: index, what: "weight_map") }
            var m: [String: String] = [:]
            for (k, v) in map {
                guard let file = v.string, !file.contains("/"), !file.contains("..") else {
                    throw FormatError.invalid(path: index, offset: nil, reason: "weight_map['\(k)'] is not a file name in the directory")
                }
                m[k] = file
            }
            weightMap = m
        } else {
            let single = try SafetensorsFile(path: directory + "/model.safetensors")
            shards["model.safetensors"] = single
            var m: [String: String] = [:]
            for t in single.tensors { m[t.name] = "model.safetensors" }
            weightMap = m
        }
    }

    /// GGUF name → Hugging Face name for Llama-family checkpoints.
    public static func hfName(_ gguf: String) -> String? {
        switch gguf {
        case "token_embd.weight": return "model.embed_tokens.weight"
        case "output_norm.weight": return "model.norm.weight"
        case "output.weight": return "lm_head.weight"
        default: break
        }
        let parts = gguf.split(separator: ".")
        guard parts.count == 4, parts[0] == "blk", let layer = Int(parts[1]) else { return nil }
        let map = ["attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                   "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
                   "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"]
        guard let m = map[String(parts[2])] else { return nil }
        return "model.layers.\(layer).\(m).\(parts[3])"
    }

    public func tensor(_ name: String) -> TensorView? {
        guard let hf = Self.hfName(name), let shardName = weightMap[hf] else { return nil }
        if shards[shardName] == nil { shards[shardName] = try? SafetensorsFile(path: path + "/" + shardName) }
        guard let shard = shards[shardName], let t = shard.tensor(named: hf), let type = t.dtype.ggmlType else { return nil }
        return TensorView(type: type, shape: Array(t.shape.reversed()), data: shard.data(for: t))
    }
}

extension LlamaConfig {
    /// From a Hugging Face config: RoPE rotates halves (x[i], x[i + d/2]); base from rope_theta.
    public init(hf c: HFConfig, path: String) throws {
        let headDim = c.resolvedHeadDim
        self.init(architecture: c.modelType, dim: c.hiddenSize, hiddenDim: c.intermediateSize, layers: c.numHiddenLayers,
                  heads: c.numAttentionHeads, kvHeads: c.kvHeads, headDim: headDim, vocabSize: c.vocabSize,
                  contextLength: c.maxPositionEmbeddings ?? 2048, normEpsilon: Float(c.rmsNormEps ?? 1e-6),
                  ropeBase: Float(c.ropeTheta ?? 10000), ropeDimensions: headDim, ropeStyle: .halfSplit,
                  ropeLinearScale: c.ropeScaling?.kind == "linear" ? Float(c.ropeScaling?.factor ?? 1) : 1,
                  tiedEmbeddings: c.tied, attentionBias: c.hasAttentionBias)
        try validate(path: path)
    }

    /// Llama 3.1 frequency divisors from `rope_scaling` of type "llama3" (per rotary pair), nil otherwise.
    static func llama3FrequencyFactors(_ c: HFConfig, headDim: Int) -> [Float]? {
        guard let s = c.ropeScaling, s.kind == "llama3", let factor = s.factor else { return nil }
        let low = s.lowFreqFactor ?? 1, high = s.highFreqFactor ?? 4
        let old = Double(s.originalMaxPositionEmbeddings ?? 8192)
        let base = c.ropeTheta ?? 10000
        return (0 ..< headDim / 2).map { i in
            let freq = pow(base, -2.0 * Double(i) / Double(headDim))
            let wavelen = 2 * Double.pi / freq
            if wavelen < old / high { return 1 }
            if wavelen > old / low { return Float(factor) }
            let smooth = (old / wavelen - low) / (high - low)
            let scaled = (1 - smooth) * freq / factor + smooth * freq
            return Float(freq / scaled)
        }
    }
}

extension LlamaModel {
    /// Loads a Hugging Face checkpoint directory.
    public convenience init(hfDirectory directory: String) throws {
        let checkpoint = try HFCheckpoint(directory: directory)
        let config = try LlamaConfig(hf: checkpoint.config, path: directory)
        try self.init(config: config, source: checkpoint,
                      ropeFrequencyFactors: LlamaConfig.llama3FrequencyFactors(checkpoint.config, headDim: config.headDim))
    }

    /// A model from a GGUF file or a Hugging Face checkpoint directory.
    public static func load(path: String) throws -> LlamaModel {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            return try LlamaModel(hfDirectory: path)
        }
        return try LlamaModel(path: path)
    }
}
