import Foundation
import SquishCore
import SquishFormats

/// Writes a Hugging Face checkpoint as a GGUF file of its family, the way llama.cpp's converter does: llama.cpp's
/// metadata keys (plus the family's own, see each architecture), tensors under GGUF names in the runtime's
/// convention (Gemma's norms with 1 added, Llama's Q/K rows permuted for adjacent-pair RoPE), F32/F16/BF16 kept as
/// stored, Llama 3 frequency divisors as `rope_freqs.weight`. The checkpoint's `tokenizer.json` is stored whole as
/// `tokenizer.huggingface.json` (gguf.md's key) with BOS/EOS ids and `tokenizer_config.json`'s chat template, so
/// that every command runs the converted file. Written atomically.
public enum GGUFConversion {
    public static func write(checkpoint: HFCheckpoint, to path: String) throws {
        let c = checkpoint.config, family = checkpoint.family
        var w = GGUFWriter()
        for (k, v) in Architectures.ggufMetadata(c) { w.set(k, v) }
        w.set("general.name", .string((checkpoint.path as NSString).lastPathComponent))
        let dir = checkpoint.path
        if let json = FileManager.default.contents(atPath: dir + "/tokenizer.json") {
            w.set("tokenizer.huggingface.json", .string(String(decoding: json, as: UTF8.self)))
            if let bos = checkpoint.hfConfig.bosTokenID?.all.first { w.set("tokenizer.ggml.bos_token_id", .uint32(UInt32(bos))) }
            if let eos = checkpoint.hfConfig.eosTokenID?.all.first { w.set("tokenizer.ggml.eos_token_id", .uint32(UInt32(eos))) }
            if let data = FileManager.default.contents(atPath: dir + "/tokenizer_config.json"),
               let template = try? JSONValue.parse([UInt8](data))["chat_template"]?.string {
                w.set("tokenizer.chat_template", .string(template))
            }
        }
        let factors = family.ropeFrequencyFactors(hf: checkpoint.hfConfig, config: c)
        for tensor in c.tensors(ropeFrequencies: factors != nil) {
            let shape = c.shape(of: tensor)
            if tensor == .ropeFrequencies, let factors {
                w.addTensor(name: tensor.ggufName, shape: shape, type: .f32, source: .bytes(factors.withUnsafeBytes { Array($0) }))
                continue
            }
            guard let view = try checkpoint.tensor(tensor) else { throw ModelError.missingTensor(path: checkpoint.path, tensor: tensor.ggufName) }
            guard Array(view.shape.prefix(shape.count)) == shape else {
                throw ModelError.shapeMismatch(path: checkpoint.path, tensor: tensor.ggufName, expected: shape, found: view.shape)
            }
            var bytes = Array(view.data)
            // GGUF llama: Q and K rows permuted so that RoPE rotates adjacent pairs.
            if family.ggufRoPEStyle == .adjacentPairs, case .block(let l, let b) = tensor, let heads = HFExport.ropeHeads(b, c, layer: l) {
                let n = shape.reduce(1, *)
                let values = try Codecs.dequantize(view.type, view.data, count: n)
                let rows = shape.count > 1 ? shape[1] : n, columns = shape.count > 1 ? shape[0] : 1
                bytes = try Codecs.quantize(view.type, HFExport.permute(values, rows: rows, columns: columns, heads: heads))
            }
            w.addTensor(name: tensor.ggufName, shape: shape, type: view.type, source: .bytes(bytes))
        }
        try w.write(to: path)
    }

    /// Runs `body` on a GGUF file for `path`: the file itself, or a checkpoint directory converted into a scratch
    /// directory that is removed afterwards.
    public static func withGGUF<T>(for path: String, _ body: (String) throws -> T) throws -> T {
        guard isDirectory(path) else { return try body(path) }
        let scratch = NSTemporaryDirectory() + "squish-convert-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let out = scratch + "/" + (path as NSString).lastPathComponent + ".gguf"
        try write(checkpoint: try HFCheckpoint(directory: path), to: out)
        return try body(out)
    }
}
