import Foundation
import Testing
import SquishCore
import SquishFormats

func safetensorsBytes(header: String, data: [UInt8] = []) -> [UInt8] {
    var h = Array(header.utf8)
    while h.count % 8 != 0 { h.append(0x20) }
    return withUnsafeBytes(of: UInt64(h.count).littleEndian, Array.init) + h + data
}

func parseSafetensors(_ bytes: [UInt8], path: String = "mem.safetensors") throws -> SafetensorsFile {
    try SafetensorsFile(file: MappedFile(data: bytes, path: path))
}

@Suite struct SafetensorsTests {
    @Test func roundTripEveryDType() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var w = SafetensorsWriter()
        w.metadata = ["format": "pt"]
        var expected: [(String, SafetensorsDType, [Int], [UInt8])] = []
        var rng = SplitMix64(seed: 3)
        for (i, dtype) in [SafetensorsDType.F32, .F16, .BF16, .I8, .U8, .I16, .I32].enumerated() {
            let shape = [i + 1, 3]
            let bytes = (0 ..< shape.reduce(1, *) * dtype.size).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            w.add("t\(i)", dtype: dtype, shape: shape, bytes: bytes)
            expected.append(("t\(i)", dtype, shape, bytes))
        }
        try w.write(to: dir + "/a.safetensors")
        let f = try SafetensorsFile(path: dir + "/a.safetensors")
        #expect(f.metadata == ["format": "pt"])
        #expect(f.dataOffset % 8 == 0)
        for (name, dtype, shape, bytes) in expected {
            let t = try #require(f.tensor(named: name))
            #expect(t.dtype == dtype && t.shape == shape && Array(f.data(for: t)) == bytes)
        }
        // Read → write → read gives the same tensors.
        var w2 = SafetensorsWriter()
        w2.metadata = f.metadata
        for t in f.tensors { w2.add(t.name, dtype: t.dtype, shape: t.shape, bytes: Array(f.data(for: t))) }
        try w2.write(to: dir + "/b.safetensors")
        #expect(FileManager.default.contents(atPath: dir + "/a.safetensors") == FileManager.default.contents(atPath: dir + "/b.safetensors"))
    }

    /// Files written by the reference `safetensors` package read here, and ours read there.
    @Test func crossCheckWithReferencePackage() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try TestSupport.runPython("safetensors_reference.py", ["write", dir + "/ref.safetensors"])
        let f = try SafetensorsFile(path: dir + "/ref.safetensors")
        #expect(Set(f.tensors.map(\.name)) == ["f32", "f16", "i8", "u8", "i16", "i32", "empty"])
        #expect(f.tensor(named: "f16")?.shape == [4, 2, 2])
        #expect(f.metadata["note"] == "reference")
        let f32 = try f.floats(for: f.tensor(named: "f32")!)
        #expect(f32.count == 15)
        // Write it back with our writer; the reference reads the same sums.
        var w = SafetensorsWriter()
        w.metadata = f.metadata
        for t in f.tensors { w.add(t.name, dtype: t.dtype, shape: t.shape, bytes: Array(f.data(for: t))) }
        try w.write(to: dir + "/ours.safetensors")
        let a = try TestSupport.runPython("safetensors_reference.py", ["read", dir + "/ref.safetensors"])
        let b = try TestSupport.runPython("safetensors_reference.py", ["read", dir + "/ours.safetensors"])
        #expect(a == b && a.split(separator: "\n").count == 7)
    }

    @Test func hostileHeaders() {
        let ok = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        #expect((try? parseSafetensors(safetensorsBytes(header: ok, data: [UInt8](repeating: 0, count: 8)))) != nil)
        let cases: [(String, [UInt8])] = [
            ("empty", []),
            ("short length", [1, 2, 3]),
            ("length 2^63", withUnsafeBytes(of: (UInt64(1) << 63).littleEndian, Array.init) + [0x7B, 0x7D]),
            ("length beyond file", withUnsafeBytes(of: UInt64(100).littleEndian, Array.init) + Array("{}".utf8)),
            ("invalid JSON", safetensorsBytes(header: #"{"a":"#)),
            ("not an object", safetensorsBytes(header: "[1,2]")),
            ("unknown dtype", safetensorsBytes(header: #"{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}"#, data: [0])),
            ("negative dim", safetensorsBytes(header: #"{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}"#, data: [0])),
            ("huge dims", safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])),
            ("length mismatch", safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))),
            ("outside file", safetensorsBytes(header: #"{"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}}"#, data: [0])),
            ("begin after end", safetensorsBytes(header: #"{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}}"#, data: [0, 0, 0, 0])),
            ("offset 2^63", safetensorsBytes(header: #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[9223372036854775807,9223372036854775807]}}"#)),
            ("overlap", safetensorsBytes(header: #"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#, data: [UInt8](repeating: 0, count: 6))),
            ("duplicate", safetensorsBytes(header: #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#, data: [0, 0])),
            ("hole", safetensorsBytes(header: #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#, data: [0, 0])),
            ("trailing bytes", safetensorsBytes(header: #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, data: [0, 0])),
            ("float offsets", safetensorsBytes(header: #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0.0,1]}}"#, data: [0])),
            ("deep nesting", safetensorsBytes(header: String(repeating: "[", count: 100) + String(repeating: "]", count: 100))),
            ("bad metadata", safetensorsBytes(header: #"{"__metadata__":{"k":1}}"#)),
        ]
        for (name, bytes) in cases {
            do {
                _ = try parseSafetensors(bytes, path: "\(name).safetensors")
                Issue.record("\(name): accepted")
            } catch let e as FormatError {
                #expect(e.description.contains("\(name).safetensors"), "\(name): \(e)")
            } catch {
                Issue.record("\(name): untyped error \(error)")
            }
        }
    }

    /// Every truncation of a valid file is rejected.
    @Test func truncatedAnywhere() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var w = SafetensorsWriter()
        w.add("x", dtype: .F32, shape: [4], bytes: [UInt8](repeating: 1, count: 16))
        w.add("y", dtype: .I16, shape: [3], bytes: [UInt8](repeating: 2, count: 6))
        try w.write(to: dir + "/t.safetensors")
        let full = [UInt8](FileManager.default.contents(atPath: dir + "/t.safetensors")!)
        for n in 0 ..< full.count {
            #expect(throws: FormatError.self) { try parseSafetensors(Array(full[0 ..< n])) }
        }
    }
}

@Suite struct HFConfigTests {
    func write(_ json: String) throws -> String {
        let dir = try TestSupport.scratchDirectory()
        try Array(json.utf8).withUnsafeBytes { _ in }
        try AtomicFileWriter.write(Array(json.utf8), to: dir + "/config.json")
        return dir + "/config.json"
    }

    @Test func realConfigs() throws {
        let smol = try HFConfig.load(path: write(#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":576,"intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,"rms_norm_eps":1e-05,"rope_theta":100000,"max_position_embeddings":8192,"vocab_size":49152,"tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2,"torch_dtype":"bfloat16"}"#))
        #expect(smol.resolvedHeadDim == 64 && smol.kvHeads == 3 && smol.tied && !smol.hasAttentionBias)
        let llama3 = try HFConfig.load(path: write(#"{"model_type":"llama","hidden_size":2048,"intermediate_size":8192,"num_hidden_layers":16,"num_attention_heads":32,"num_key_value_heads":8,"rms_norm_eps":1e-05,"rope_theta":500000.0,"rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},"vocab_size":128256,"eos_token_id":[128001,128008,128009],"head_dim":64}"#))
        #expect(llama3.ropeScaling?.kind == "llama3" && llama3.eosTokenID?.all == [128001, 128008, 128009])
        let qwen = try HFConfig.load(path: write(#"{"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"vocab_size":151936,"tie_word_embeddings":true}"#))
        #expect(qwen.hasAttentionBias)
    }

    @Test func invalidConfigsNameTheField() throws {
        let cases = [
            (#"{"model_type":"gpt_neox","hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10}"#, "model_type"),
            (#"{"model_type":"llama","hidden_size":10,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":3,"vocab_size":10}"#, "num_attention_heads"),
            (#"{"model_type":"llama","hidden_size":12,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":2,"vocab_size":10}"#, "num_key_value_heads"),
            (#"{"model_type":"llama","hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10}"#, "intermediate_size"),
            (#"{"model_type":"llama","hidden_size":"8","intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10}"#, "hidden_size"),
            (#"{"model_type":"llama","hidden_size":8,"intermediate_size":8,"num_hidden_layers":0,"num_attention_heads":2,"vocab_size":10}"#, "num_hidden_layers"),
        ]
        for (json, field) in cases {
            do {
                _ = try HFConfig.load(path: write(json))
                Issue.record("accepted config with bad \(field)")
            } catch let e as FormatError {
                #expect(e.description.contains(field) && e.description.contains("config.json"), "\(e)")
            }
        }
    }
}
