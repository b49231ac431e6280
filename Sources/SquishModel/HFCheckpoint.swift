import Foundation
import SquishCore
import SquishFormats

/// A Hugging Face checkpoint directory: `config.json` plus `model.safetensors` or sharded
/// `model.safetensors.index.json`. Serves tensors by their place in the model (the architecture maps them to the
/// checkpoint's names) with ggml-order shapes (a row-major [out, in] matrix is the same bytes as ggml's [in, out]),
/// converted to the runtime's convention where the family stores them differently (Gemma's norms: 1 + w).
public final class HFCheckpoint: ModelTensorSource {
    public let path: String
    public let hfConfig: HFConfig
    public let config: ModelConfig
    public let family: any Architecture.Type
    private var shards: [String: SafetensorsFile] = [:]
    /// Checkpoint tensor name → shard file name.
    private let weightMap: [String: String]
    /// Converted copies (norms with 1 added) handed out as views; freed with the checkpoint.
    private var owned: [UnsafeMutableRawBufferPointer] = []

    public init(directory: String) throws {
        path = directory
        hfConfig = try HFConfig.load(path: directory + "/config.json")
        config = try Architectures.configuration(hf: hfConfig, path: directory + "/config.json")
        family = Architectures.family(hfModelType: hfConfig.modelType)!
        let index = directory + "/model.safetensors.index.json"
        if FileManager.default.fileExists(atPath: index) {
            guard let data = FileManager.default.contents(atPath: index) else { throw FormatError.missing(path: index, what: "a readable index") }
            let json: JSONValue
            do { json = try JSONValue.parse([UInt8](data)) } catch { throw FormatError.invalid(path: index, offset: nil, reason: "\(error)") }
            guard let map = json["weight_map"]?.object else { throw FormatError.missing(path: index, what: "weight_map") }
            var m: [String: String] = [:]
            for (k, v) in map {
                guard let file = v.string, !file.isEmpty, !file.contains("/"), !file.contains("..") else {
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

    deinit { for b in owned { b.deallocate() } }

    /// The safetensors files of the checkpoint, sorted (shards named by the index, or `model.safetensors`).
    public var shardFiles: [String] { Set(weightMap.values).sorted() }

    /// Whether the checkpoint lists `tensor` (without reading it).
    public func has(_ tensor: ModelTensor) -> Bool {
        family.hfTensor(tensor).map { weightMap[$0.name] != nil } ?? false
    }

    public func tensor(_ tensor: ModelTensor) throws -> TensorView? {
        guard let hf = family.hfTensor(tensor), let shardName = weightMap[hf.name] else { return nil }
        let shard: SafetensorsFile
        if let s = shards[shardName] {
            shard = s
        } else {
            shard = try SafetensorsFile(path: path + "/" + shardName)  // a corrupt shard reports its own error
            shards[shardName] = shard
        }
        guard let t = shard.tensor(named: hf.name) else {
            throw FormatError.missing(path: path + "/" + shardName, what: "tensor '\(hf.name)' (listed in the index)")
        }
        guard let type = t.dtype.ggmlType else {
            throw FormatError.unsupportedType(.f32, operation: "reading \(hf.name) of dtype \(t.dtype.rawValue)")
        }
        let shape = Array(t.shape.reversed())
        let data = shard.data(for: t)
        guard hf.addsOne else { return TensorView(type: type, shape: shape, data: data) }
        // The runtime multiplies by the stored weight: store 1 + w (in f32).
        let n = t.shape.reduce(1, *)
        let values = try Codecs.dequantize(type, data, count: n)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, n * 4), alignment: 64)
        owned.append(buffer)
        let f = buffer.bindMemory(to: Float.self)
        for i in 0 ..< n { f[i] = values[i] + 1 }
        return TensorView(type: .f32, shape: shape, data: UnsafeRawBufferPointer(start: buffer.baseAddress, count: n * 4))
    }
}

extension TransformerModel {
    /// Loads a Hugging Face checkpoint directory.
    public convenience init(hfDirectory directory: String, layout: KernelLayout = KernelLayout()) throws {
        let checkpoint = try HFCheckpoint(directory: directory)
        let factors = checkpoint.family.ropeFrequencyFactors(hf: checkpoint.hfConfig, config: checkpoint.config)
        if !checkpoint.config.tiedEmbeddings, !checkpoint.has(.output) {
            throw ModelError.invalidConfiguration(path: directory, reason: "config.json says tie_word_embeddings is false, but the checkpoint has no '\(checkpoint.family.hfTensor(.output)?.name ?? "output")' tensor")
        }
        try self.init(config: checkpoint.config, source: checkpoint, ropeFrequencyFactors: factors, layout: layout)
    }

    /// A model from a GGUF file or a Hugging Face checkpoint directory.
    public static func load(path: String, layout: KernelLayout = KernelLayout()) throws -> TransformerModel {
        if isDirectory(path) { return try TransformerModel(hfDirectory: path, layout: layout) }
        return try TransformerModel(path: path, layout: layout)
    }
}

func isDirectory(_ path: String) -> Bool { FileManager.default.isDirectory(path) }
