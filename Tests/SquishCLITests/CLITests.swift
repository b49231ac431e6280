#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import SquishCore
import SquishFormats

/// The `squish` binary end to end: each subcommand's success path with its `--json` shape, its failure paths with
/// their exit status (1 for errors, 64 for usage errors) and one error line on stderr, and the hostile inputs of
/// issue 16. Models are small ones written by our own writer (2 layers of width 64), so each run takes a fraction of
/// a second; the few runs on the real default model are marked.
@Suite("CLI end to end", .serialized)
struct CLITests {
    // MARK: Every command

    @Test func everySubcommandHasHelp() throws {
        for command in ["fetch", "inspect", "tokenize", "run", "chat", "perplexity", "eval", "bench", "synth", "quantize", "compress"] {
            let r = try CLI.run([command, "--help"])
            #expect(r.status == 0 && r.stdout.contains("USAGE"), "\(command): \(r)")
        }
        try CLI.run(["no-such-command"]).expectUsageError("no-such-command")
    }

    // MARK: inspect

    @Test func inspectGGUFAndItsJSONShape() throws {
        let model = try CLI.tiny()
        let text = try CLI.run(["inspect", model, "--limit", "2"])
        text.expectSuccess()
        #expect(text.stdout.contains("format: GGUF v3") && text.stdout.contains("token_embd.weight") && text.stdout.contains("more tensors"))
        let r = try CLI.run(["inspect", model, "--json"])
        r.expectSuccess()
        let j = try r.json()
        #expect(keys(j) == ["path", "format", "architecture", "shape_order", "file_bytes", "parameters", "bytes", "bits_per_weight",
                            "metadata", "tensors", "types", "model"])
        #expect(j["architecture"] as? String == "llama" && j["shape_order"] as? String == "ggml")
        let structure = try #require(j["model"] as? [String: Any])
        #expect(structure["family"] as? String == "llama" && structure["layers"] as? Int == CLI.tinyShape.layers)
        #expect(text.stdout.contains("model: llama · \(CLI.tinyShape.layers) layers"))
        let tensors = try #require(j["tensors"] as? [[String: Any]])
        #expect(tensors.count == 3 + 9 * CLI.tinyShape.layers)
        #expect(keys(tensors.first) == ["name", "type", "shape", "parameters", "bytes", "bits_per_weight"])
        #expect((j["metadata"] as? [String: String])?["llama.block_count"] == "2")
        try CLI.run(["inspect", "/nonexistent/model.gguf"]).expectError("/nonexistent/model.gguf")
        try CLI.run(["inspect", model, "--limit", "-1"]).expectUsageError("--limit")
    }

    /// A checkpoint directory (the tiny Gemma 3 reference fixture): the structure the runtime derives agrees with
    /// its config.json as JSONSerialization reads it, and the tensors of its safetensors file are listed.
    @Test func inspectCheckpointDirectory() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tiny-models/gemma3").path
        let config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as? [String: Any])
        let r = try CLI.run(["inspect", dir, "--json"])
        r.expectSuccess()
        let j = try r.json()
        #expect(j["architecture"] as? String == "gemma3_text" && j["shape_order"] as? String == "row-major")
        let m = try #require(j["model"] as? [String: Any])
        #expect(m["family"] as? String == "gemma3")
        #expect(m["layers"] as? Int == config["num_hidden_layers"] as? Int && m["dim"] as? Int == config["hidden_size"] as? Int)
        #expect(m["heads"] as? Int == config["num_attention_heads"] as? Int && m["kv_heads"] as? Int == config["num_key_value_heads"] as? Int)
        #expect(m["head_dim"] as? Int == config["head_dim"] as? Int && m["vocab_size"] as? Int == config["vocab_size"] as? Int)
        let layerTypes = try #require(config["layer_types"] as? [String])
        let windows = try #require(m["sliding_windows"] as? [Any])
        #expect(windows.map { $0 is NSNull ? "full_attention" : "sliding_attention" } == layerTypes)
        #expect(m["qk_norm"] as? Bool == true && m["post_norms"] as? Bool == true && m["activation"] as? String == "geluTanh")
        let tensors = try #require(j["tensors"] as? [[String: Any]])
        #expect(tensors.contains { $0["name"] as? String == "model.embed_tokens.weight" })
        let text = try CLI.run(["inspect", dir])
        text.expectSuccess()
        #expect(text.stdout.contains("model: gemma3 · 4 layers") && text.stdout.contains("sliding window 8 on 3 of 4 layers"))
        // A directory without config.json is an error naming the file.
        let empty = try CLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: empty) }
        try CLI.run(["inspect", empty]).expectError("config.json")
    }

    /// `inspect` says it takes safetensors: a file from our writer shows its tensors, dtypes and metadata.
    @Test func inspectSafetensors() throws {
        let dir = try CLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var w = SafetensorsWriter(metadata: ["format": "pt", "note": "evil\u{1B}[31m"])
        w.add("model.embed_tokens.weight", dtype: .BF16, shape: [8, 4], bytes: [UInt8](repeating: 0x3F, count: 64))
        w.add("lm_head.weight", dtype: .F32, shape: [8, 4], bytes: [UInt8](repeating: 0, count: 128))
        try w.write(to: dir + "/model.safetensors")
        let r = try CLI.run(["inspect", dir + "/model.safetensors", "--json"])
        r.expectSuccess()
        let j = try r.json()
        #expect(j["format"] as? String == "safetensors" && j["shape_order"] as? String == "row-major")
        #expect(j["parameters"] as? Int == 64 && j["bytes"] as? Int == 192)
        #expect((j["types"] as? [String: Int]) == ["BF16": 1, "F32": 1])
        #expect((j["metadata"] as? [String: String])?["note"] == "evil\\e[31m")
        let text = try CLI.run(["inspect", dir + "/model.safetensors"])
        text.expectSuccess()
        #expect(text.stdout.contains("model.embed_tokens.weight") && text.stdout.contains("BF16") && !text.stdout.contains("\u{1B}"))
        // A truncated safetensors file is an error naming it.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/model.safetensors"))
        try bytes.prefix(bytes.count - 10).write(to: URL(fileURLWithPath: dir + "/cut.safetensors"))
        try CLI.run(["inspect", dir + "/cut.safetensors"]).expectError("cut.safetensors")
    }

    /// Hostile GGUF files: escape sequences in keys and values never reach the terminal raw; a huge declared array
    /// costs no memory; overflowing dimensions and offsets beyond 2^63 are clean errors with the real numbers.
    @Test func inspectHostileGGUF() throws {
        let dir = try CLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let evilKey = Array("evil\u{1B}[31mRED\u{1B}[0m\u{0}key\n".utf8)
        try Data(CLI.rawGGUF(metadata: [(evilKey, 99, [])])).write(to: URL(fileURLWithPath: dir + "/key.gguf"))
        let key = try CLI.run(["inspect", dir + "/key.gguf"])
        key.expectError("unknown value type 99")
        #expect(key.stderr.contains("evil\\e[31mRED\\e[0m\\0key\\n"))

        let value: [UInt8] = CLI.le(UInt64(14)) + [0x1B, 0x5B, 0x32, 0x4A, 0xFF, 0xFE, 0x9B] + Array("31m ok".utf8) + [0x07]
        try Data(CLI.rawGGUF(metadata: [(Array("title".utf8), 8, value)])).write(to: URL(fileURLWithPath: dir + "/value.gguf"))
        let shown = try CLI.run(["inspect", dir + "/value.gguf"])
        shown.expectSuccess()
        #expect(shown.stdout.contains("title = \\e[2J\\xFF\\xFE\\x9B31m ok\\x07"), "\(shown.stdout)")
        #expect(!shown.stdout.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" })

        // One u8 array of 256 MiB and one of 32M empty strings (sparse files): inspect stays small.
        let n = 256 << 20
        try CLI.sparse(dir + "/u8.gguf", prefix: CLI.rawGGUF(metadata: [(Array("x".utf8), 9, CLI.le(UInt32(0)) + CLI.le(UInt64(n)))]),
                       size: 49 + n)
        try CLI.sparse(dir + "/strings.gguf",
                       prefix: CLI.rawGGUF(metadata: [(Array("x".utf8), 9, CLI.le(UInt32(8)) + CLI.le(UInt64(n / 8)))]), size: 49 + n)
        for (file, shownValue) in [("u8.gguf", "[268435456 × uint8]"), ("strings.gguf", "[33554432 × string]")] {
            let r = try CLI.runMeasuringMemory(["inspect", dir + "/" + file])
            r.expectSuccess()
            #expect(r.stdout.contains("x = \(shownValue)"))
            #expect((r.maxRSSKilobytes ?? .max) < 64 << 10, "\(file): peak RSS \(r.maxRSSKilobytes ?? -1) KB")
        }

        // Dimensions [3.2e9, 3.2e9, 0] of Q4_0 in a 1 GiB file: 0 bytes, but 1e19 elements.
        func tensorFile(_ dims: [UInt64], offset: UInt64) -> [UInt8] {
            var b = CLI.rawGGUF(tensorCount: 1, metadata: [(Array("general.architecture".utf8), 8, CLI.le(UInt64(5)) + Array("llama".utf8))])
            b += CLI.le(UInt64(1)) + Array("w".utf8) + CLI.le(UInt32(dims.count))
            for d in dims { b += CLI.le(d) }
            b += CLI.le(UInt32(2)) + CLI.le(offset)
            return b
        }
        try CLI.sparse(dir + "/dims.gguf", prefix: tensorFile([3_200_000_000, 3_200_000_000, 0], offset: 0), size: 1 << 30)
        try CLI.run(["inspect", dir + "/dims.gguf"]).expectError("element count of 'w'")
        try CLI.sparse(dir + "/offset.gguf", prefix: tensorFile([32], offset: 1 << 63), size: 4096)
        let offset = try CLI.run(["inspect", dir + "/offset.gguf"])
        offset.expectError("lies outside the file")
        #expect(offset.stderr.contains("922337203685477") && !offset.stderr.contains("9223372036854775807"))
    }

    // MARK: tokenize

    @Test func tokenize() throws {
        let model = try CLI.tiny()
        let r = try CLI.run(["tokenize", "--model", model, "--json", "Hello world"])
        r.expectSuccess()
        let j = try r.json()
        #expect(keys(j) == ["ids", "pieces", "count"])
        #expect((j["ids"] as? [Int])?.count == j["count"] as? Int && (j["count"] as? Int ?? 0) >= 2)
        let piped = try CLI.run(["tokenize", "--model", model, "-"], stdin: "Hello world")
        piped.expectSuccess()
        #expect(piped.stdout.hasPrefix(((j["ids"] as? [Int]) ?? []).map(String.init).joined(separator: " ")))
        try CLI.run(["tokenize", "--model", model, "-"], stdinBytes: [0x41, 0xFF, 0xFE]).expectError("not valid UTF-8")
        try CLI.run(["tokenize", "--model", "/nonexistent.gguf", "x"]).expectError("/nonexistent.gguf")
    }

    // MARK: run and chat

    @Test func runAndItsArgumentRanges() throws {
        let model = try CLI.tiny()
        let r = try CLI.run(["run", "--model", model, "--prompt", "Once upon a time", "-n", "4", "--temp", "0", "--json"])
        r.expectSuccess()
        let j = try r.json()
        #expect(keys(j) == ["text", "tokens", "stats", "prompt_tokens_per_second", "generation_tokens_per_second", "kv_cache",
                            "kv_cache_bytes", "kv_cache_positions"])
        // f32 cache: 2 layers × 2 × 32 KV values × 4 bytes per position.
        #expect(j["kv_cache"] as? String == "f32" && j["kv_cache_bytes"] as? Int == 512 * (j["kv_cache_positions"] as? Int ?? -1))
        #expect(keys(j["stats"]) == ["prompt_tokens", "prompt_seconds", "generated_tokens", "generation_seconds", "stopped_by", "decode_steps"])
        // Greedy is deterministic.
        let again = try CLI.run(["run", "--model", model, "--prompt", "Once upon a time", "-n", "4", "--temp", "0", "--json"])
        #expect((try again.json()["tokens"] as? [Int]) == j["tokens"] as? [Int])
        let streamed = try CLI.run(["run", "--model", model, "--prompt", "Hi", "-n", "2", "--seed", "3"])
        streamed.expectSuccess()
        #expect(streamed.stderr.contains("tokens/s"))

        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--context", "100000000"]).expectUsageError("--context must be between 1 and 1048576")
        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--context", "2048"]).expectError("trained context of 1024")
        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--max-tokens=-1"]).expectUsageError("-n/--max-tokens")
        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--threads", "0"]).expectUsageError("--threads must be between 1")
        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--temp", "nan"]).expectUsageError("--temp")
        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--top-p", "0"]).expectUsageError("--top-p")
        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--min-p", "1"]).expectUsageError("--min-p")
        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--repeat-penalty", "-1"]).expectUsageError("--repeat-penalty")
        try CLI.run(["run", "--model", model, "--prompt", ""]).expectError("the prompt is empty")
        // --kv: a compressed cache reports its own bytes; a bad spec is a usage error that names it.
        let q8 = try CLI.run(["run", "--model", model, "--prompt", "Once upon a time", "-n", "4", "--temp", "0", "--kv", "q8", "--json"])
        q8.expectSuccess()
        let q8j = try q8.json()
        #expect(q8j["kv_cache"] as? String == "q8" && (q8j["kv_cache_bytes"] as? Int ?? 0) < (j["kv_cache_bytes"] as? Int ?? 0))
        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--kv", "kivi5"]).expectUsageError("'kivi5'")
        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--kv", "kivi2:g12"]).expectUsageError("multiple of 8")
        // Rotated KIVI keys run and name themselves; a repeated parameter is a usage error quoting it.
        let rotated = try CLI.run(["run", "--model", model, "--prompt", "Once upon a time", "-n", "4", "--temp", "0", "--kv", "kivi2:s4,h", "--json"])
        rotated.expectSuccess()
        #expect(try rotated.json()["kv_cache"] as? String == "kivi2:g32,r128,s4,h")
        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--kv", "kivi2:h,h"]).expectUsageError("'h' given twice")
        // Keys before RoPE with allocated widths and rotated values run through the binary; a repeated one is a usage error quoting it.
        let allocated = try CLI.run(["run", "--model", model, "--prompt", "Once upon a time", "-n", "4", "--temp", "0", "--kv", "kivi2:a,p,s4,v", "--json"])
        allocated.expectSuccess()
        #expect(try allocated.json()["kv_cache"] as? String == "kivi2:g32,r128,s4,p,a,v")
        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--kv", "kivi2:p,p"]).expectUsageError("'p' given twice")
        // An evicting cache on q8 rows runs and names itself canonically; a pair that cannot compose is a usage error,
        // and a budget the cache cannot use is an error naming the spec.
        let h2o = try CLI.run(["run", "--model", model, "--prompt", "Once upon a time", "-n", "4", "--temp", "0", "--kv", "h2o:budget16+q8", "--json"])
        h2o.expectSuccess()
        #expect(try h2o.json()["kv_cache"] as? String == "h2o:sink0,budget16+q8")
        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--kv", "h2o+kivi2"]).expectUsageError("'h2o+kivi2'")
        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--kv", "snapkv:budget8"]).expectError("leaves none to select")
        // The head-aware cache probes the model's heads and runs; a split that leaves the other heads nothing is an
        // error naming the spec; serve takes --kv too.
        let duo = try CLI.run(["run", "--model", model, "--prompt", "Once upon a time", "-n", "4", "--temp", "0", "--kv", "duo:50%", "--json"])
        duo.expectSuccess()
        #expect(try duo.json()["kv_cache"] as? String == "duo:sink4,50%")
        try CLI.run(["run", "--model", model, "--prompt", "Hi", "--kv", "duo:budget16,full3"]).expectError("duo:sink4,budget16,full3")
        try CLI.run(["serve", "--model", model, "--kv", "duo:window3"]).expectUsageError("'duo:window3'")
        // Far more threads than cores: capped to the cores, said on stderr, as fast as with the cores.
        let many = try CLI.run(["run", "--model", model, "--prompt", "Hi", "-n", "2", "--temp", "0", "--threads", "200"], timeout: 30)
        many.expectSuccess()
        #expect(many.stderr.contains("--threads 200: using"))
    }

    /// A model whose output norm is NaN: every command that loads it ends in a typed error naming the tensor (exit 1),
    /// never a trap, `nan` on stdout or `<|endoftext|>` (the runtime guard on non-finite logits and activations is
    /// tested in SquishModelTests with weights that overflow instead).
    @Test func nanModelIsAnErrorEverywhere() throws {
        let dir = try CLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try CLI.poisoned(dir + "/nan.gguf")
        try CLI.text(dir + "/text.txt", bytes: 3000)
        let named = "tensor 'output_norm.weight' holds nan"
        for temp in ["0", "0.8"] {
            let r = try CLI.run(["run", "--model", dir + "/nan.gguf", "--prompt", "Hello", "-n", "3", "--temp", temp])
            r.expectError(named)
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        }
        for json in [false, true] {
            let r = try CLI.run(["perplexity", "--model", dir + "/nan.gguf", "--text", dir + "/text.txt", "--context", "64"] + (json ? ["--json"] : []))
            r.expectError(named)
            #expect(!r.stdout.lowercased().contains("nan"))
        }
        try CLI.run(["eval", "--model", dir + "/nan.gguf", "--reference", try CLI.tiny(), "--text", dir + "/text.txt", "--context", "64",
                     "--tasks", "none"], env: ["SQUISH_CACHE": dir + "/cache"]).expectError(named)
    }

    @Test func chat() throws {
        let model = try CLI.tiny()
        let r = try CLI.run(["chat", "--model", model, "-n", "3", "--temp", "0"], stdin: "Hello there\n")
        r.expectSuccess()
        #expect(r.stderr.contains("Ctrl-D") && r.stderr.contains("tokens/s"))
        try CLI.run(["chat", "--model", model, "--context", "0"]).expectUsageError("--context")
        try CLI.run(["chat", "--model", model, "--context", "5000"], stdin: "Hi\n").expectError("trained context")
    }

    // MARK: perplexity and eval

    @Test func perplexityAndItsJSONShape() throws {
        let dir = try CLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try CLI.text(dir + "/text.txt", bytes: 3000)
        let model = try CLI.tiny()
        let r = try CLI.run(["perplexity", "--model", model, "--text", dir + "/text.txt", "--context", "64", "--json"])
        r.expectSuccess()
        let j = try r.json()
        #expect(keys(j) == ["perplexity", "stderr", "tokens", "text_tokens", "chunks", "context", "protocol", "running_perplexity", "mean_nll"])
        // A random model is about uniform over the 49,152 tokens: perplexity within a factor of 3 of the vocabulary.
        let ppl = try #require(j["perplexity"] as? Double)
        #expect(ppl > 49152.0 / 3 && ppl < 49152.0 * 3, "\(ppl)")
        let windows = try CLI.run(["perplexity", "--model", model, "--text", dir + "/text.txt", "--context", "64", "--protocol", "windows"])
        windows.expectSuccess()
        #expect(windows.stdout.contains("Final estimate: PPL = "))
        try CLI.run(["perplexity", "--model", model, "--text", dir + "/text.txt", "--context", "2048"]).expectError("trained context of 1024")
        try CLI.run(["perplexity", "--model", model, "--text", dir + "/text.txt", "--bytes", "0"]).expectUsageError("--bytes")
        try CLI.run(["perplexity", "--model", model, "--text", dir + "/missing.txt"]).expectError("missing.txt")
        try Data([0x41, 0xFF, 0x42]).write(to: URL(fileURLWithPath: dir + "/binary.txt"))
        try CLI.run(["perplexity", "--model", model, "--text", dir + "/binary.txt"]).expectError("not valid UTF-8")
        try CLI.run(["perplexity", "--model", model, "--text", dir + "/text.txt", "--context", "3"]).expectUsageError("--context")
    }

    @Test func evalAgainstItselfAndItsJSONShape() throws {
        let dir = try CLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try CLI.text(dir + "/text.txt", bytes: 4000)
        let model = try CLI.tiny()
        let args = ["eval", "--model", model, "--reference", model, "--text", dir + "/text.txt", "--context", "64", "--tasks", "none", "--json"]
        let r = try CLI.run(args, env: ["SQUISH_CACHE": dir + "/cache"])
        r.expectSuccess()
        let j = try r.json()
        #expect(keys(j).isSuperset(of: ["model", "reference", "perplexity", "reference_perplexity", "kl_divergence", "top1_agreement",
                                        "delta_p", "bits_per_byte", "tasks", "reference_cached"]))
        // The same model and code: the reference cached by the first run is used again, and KL is 0.
        let kl = try #require((j["kl_divergence"] as? [String: Any])?["mean"] as? Double)
        #expect(abs(kl) < 1e-6 && j["top1_agreement"] as? Double == 1)
        let second = try CLI.run(args, env: ["SQUISH_CACHE": dir + "/cache"])
        #expect((try second.json())["reference_cached"] as? Bool == true)
        // The cache file name carries the code fingerprint.
        let cached = try FileManager.default.contentsOfDirectory(atPath: dir + "/cache/eval").filter { $0.hasPrefix("reference-") }
        #expect(cached.count == 1 && cached[0].split(separator: "-").count == 7, "\(cached)")
        // --kv: the same model with a q8 cache against its f32 reference (cached above): close, not identical.
        let kv = try CLI.run(args + ["--kv", "q8"], env: ["SQUISH_CACHE": dir + "/cache"])
        kv.expectSuccess()
        let kvj = try kv.json()
        let kvKL = try #require((kvj["kl_divergence"] as? [String: Any])?["mean"] as? Double)
        #expect(kvKL > 0 && kvKL < 0.05 && kvj["kv_cache"] as? String == "q8" && kvj["reference_cached"] as? Bool == true, "\(kvKL)")
        try CLI.run(["eval", "--reference", model, "--text", dir + "/text.txt"]).expectUsageError("--model")
        try CLI.run(["eval", "--model", model, "--tasks", "bogus"]).expectUsageError("bogus")
        try CLI.run(["eval", "--model", model, "--reference", model, "--retrieval-lengths", "8"]).expectUsageError("--retrieval-lengths")
        try CLI.run(["eval", "--model", model, "--reference", model, "--text", dir + "/text.txt", "--context", "4096", "--tasks", "none"],
                    env: ["SQUISH_CACHE": dir + "/cache"]).expectError("trained context")
    }

    // MARK: prune, zip, unzip, pack, unpack

    /// The commands that came with pruning and lossless compression, through the binary: success paths (outputs
    /// that load and round-trip byte for byte) and failure paths (exit 1 with one line, or a usage error).
    @Test func pruneZipAndPackEndToEnd() throws {
        let dir = try CLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try CLI.tiny()
        let p = try CLI.run(["prune", "--model", model, "--method", "shortgpt", "--drop-layers", "1", "--out", dir + "/p.gguf", "--json"])
        p.expectSuccess()
        #expect((try p.json()["block_influence"] as? [Double])?.count == CLI.tinyShape.layers)
        let pruned = try CLI.run(["inspect", dir + "/p.gguf", "--json"])
        pruned.expectSuccess()
        #expect((try pruned.json()["model"] as? [String: Any])?["layers"] as? Int == CLI.tinyShape.layers - 1)
        try CLI.run(["prune", "--model", model, "--method", "shortgpt", "--drop-layers", "5", "--out", dir + "/q.gguf"])
            .expectError("cannot prune: dropping 5 of \(CLI.tinyShape.layers) blocks")
        try CLI.run(["prune", "--model", model, "--method", "wanda", "--sparsity", "0.3", "--out", dir + "/q.gguf"]).expectUsageError("--sparsity")
        #expect(!FileManager.default.fileExists(atPath: dir + "/q.gguf"))

        try CLI.text(dir + "/text.txt", bytes: 500)
        let z = try CLI.run(["zip", "--model", model, dir + "/text.txt", "-o", dir + "/text.sqz", "--json"])
        z.expectSuccess()
        #expect(keys(try z.json()).isSuperset(of: ["input_bytes", "output_bytes", "bits_per_byte", "model_bits_per_byte", "model_sha256", "threads"]))
        try CLI.run(["unzip", "--model", model, dir + "/text.sqz", "-o", dir + "/text.out", "-t", "1"]).expectSuccess()
        #expect(FileManager.default.contents(atPath: dir + "/text.out") == FileManager.default.contents(atPath: dir + "/text.txt"))
        try CLI.run(["unzip", "--model", dir + "/p.gguf", dir + "/text.sqz", "-o", dir + "/other.out"]).expectError("wrong model")
        try CLI.run(["unzip", "--model", model, dir + "/text.txt", "-o", dir + "/x.out"]).expectError("not a file written by `squish zip`")
        try CLI.run(["zip", "--model", model, dir + "/text.txt", "-o", dir + "/text.txt"]).expectError("the output is the input file")

        let packed = try CLI.run(["pack", dir + "/p.gguf", "-o", dir + "/p.sqzw", "--json"])
        packed.expectSuccess()
        #expect(keys(try packed.json()).isSuperset(of: ["original_bytes", "packed_bytes", "rest_bytes", "decode_seconds", "types"]))
        try CLI.run(["unpack", dir + "/p.sqzw", "-o", dir + "/p2.gguf", "--json"]).expectSuccess()
        #expect(FileManager.default.contents(atPath: dir + "/p2.gguf") == FileManager.default.contents(atPath: dir + "/p.gguf"))
        try CLI.run(["inspect", dir + "/p.sqzw"]).expectSuccess()  // packed models load wherever a model is taken
        try CLI.run(["unpack", dir + "/text.txt", "-o", dir + "/y.gguf"]).expectError("not a packed model")
        try CLI.run(["pack", dir + "/p.gguf", "-o", dir + "/p.gguf"]).expectError("the output is the input file")
    }

    // MARK: bench and synth

    @Test func benchModesAndTheirJSONShapes() throws {
        let dir = try CLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try CLI.tiny()
        let r = try CLI.run(["bench", "--model", model, "-p", "8", "-n", "4", "-r", "1", "--json"])
        r.expectSuccess()
        let j = try r.json()
        #expect(keys(j).isSuperset(of: ["prompt_tokens", "generated_tokens", "threads", "prompt_tokens_per_second", "generation_tokens_per_second",
                                        "weight_bytes_per_token"]))
        let memory = try CLI.run(["bench", "--memory", "--memory-mib", "8", "-r", "1", "--json"])
        memory.expectSuccess()
        #expect(keys(try memory.json()) == ["buffer_bytes", "repetitions", "uses_avx2", "results"])
        let kernels = try CLI.run(["bench", "--kernels", "--types", "Q4_0", "--shapes", "64x64", "-r", "1", "--json"])
        kernels.expectSuccess()
        #expect(keys(try kernels.json()).isSuperset(of: ["threads", "repetitions", "rows", "int8_peak"]))
        let deep = try CLI.run(["bench", "--model", model, "-p", "8", "-n", "0", "-d", "16", "-r", "1", "--json"])
        deep.expectSuccess()
        #expect(try deep.json()["depth"] as? Int == 16)
        try CLI.text(dir + "/text.txt", bytes: 2000)
        let tok = try CLI.run(["bench", "--tokenizer", "--model", model, "--text", dir + "/text.txt", "-r", "1", "--json"])
        tok.expectSuccess()
        #expect(keys(try tok.json()) == ["bytes", "tokens", "megabytes_per_second", "samples"])

        // At depth through a KIVI cache: bytes per position below f32's 512.
        let deepKIVI = try CLI.run(["bench", "--model", model, "-p", "0", "-n", "4", "-d", "40", "-r", "1", "--kv", "kivi2:g8,r8", "--json"])
        deepKIVI.expectSuccess()
        let dj = try deepKIVI.json()
        #expect(dj["depth"] as? Int == 40 && dj["kv_cache"] as? String == "kivi2:g8,r8")
        #expect((dj["kv_cache_bytes_per_token"] as? Double).map { $0 > 0 && $0 < 512 } == true, "\(dj)")
        try CLI.run(["bench", "--model", model, "-p", "0", "-n", "0"]).expectUsageError("-p and -n")
        try CLI.run(["bench", "--model", model, "-p", "4096", "-n", "1", "-r", "1"]).expectError("trained context of 1024")
        try CLI.run(["bench", "--model", model, "-p", "512", "-d", "1000", "-r", "1"]).expectError("trained context of 1024")
        try CLI.run(["bench", "--memory", "--memory-mib", "100000000"]).expectUsageError("--memory-mib")
        try CLI.run(["bench", "--kernels", "--shapes", "100000000x100000000"]).expectUsageError("--shapes")
        try CLI.run(["bench", "--memory", "--kernels"]).expectUsageError("separate benchmarks")
    }

    @Test func synth() throws {
        let dir = try CLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["synth", "--shape", "smollm2-135m", "--type", "Q4_0", "--tokenizer-from", try CLI.tiny(), "--out", dir + "/s.gguf",
                             "--json"], timeout: 300)
        r.expectSuccess()
        let j = try r.json()
        #expect(keys(j) == ["path", "shape", "type", "vocab_size", "tensors", "parameters", "file_bytes"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["s.gguf"])
        try CLI.run(["synth", "--shape", "nope", "--out", dir + "/x.gguf"]).expectUsageError("--shape")
        try CLI.run(["synth", "--type", "Q9_9", "--out", dir + "/x.gguf"]).expectUsageError("--type")
        try CLI.run(["synth", "--shape", "smollm2-135m", "--tokenizer-from", try CLI.tiny(), "--out", dir + "/missing/x.gguf"])
            .expectError("does not exist")
    }

    // MARK: quantize and compress

    @Test func quantizeAndItsJSONShape() throws {
        let dir = try CLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try CLI.text(dir + "/text.txt", bytes: 3000)
        let model = try CLI.tiny()
        let r = try CLI.run(["quantize", "--model", model, "--type", "Q4_0", "--out", dir + "/q.gguf", "--kl-text", dir + "/text.txt",
                             "--kl-context", "64", "--json"])
        r.expectSuccess()
        let j = try r.json()
        #expect(keys(j).isSuperset(of: ["input", "output", "method", "type", "bytes", "bits_per_weight", "tensors_quantized", "kl_divergence",
                                        "top1_agreement"]))
        #expect((j["kl_divergence"] as? Double).map { $0 >= 0 && $0.isFinite } == true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["q.gguf", "text.txt"])
        try CLI.run(["quantize", "--model", model, "--type", "Q4_0", "--out", model]).expectError("input")
        try CLI.run(["quantize", "--model", model, "--type", "Q4_0", "--out", dir + "/k.gguf", "--kl-context", "4096"])
            .expectError("trained context of 1024")
        #expect(!FileManager.default.fileExists(atPath: dir + "/k.gguf"))
        try CLI.run(["quantize", "--model", model, "--bits", "9", "--out", dir + "/b.gguf"]).expectUsageError("--bits")
        try CLI.run(["quantize", "--model", model, "--type", "Q4_0", "--damp", "nan", "--out", dir + "/b.gguf"]).expectUsageError("--damp")
        try CLI.run(["quantize", "--model", model, "--type", "SQ3_G64", "--rotate", "--out", dir + "/b.gguf"]).expectUsageError("--rotate")
        // GPTQ into llama.cpp's MXFP4 (here without the parameter refit): written, listed by inspect, and it runs.
        try CLI.text(dir + "/calib.txt", bytes: 20000)
        try CLI.run(["quantize", "--model", model, "--method", "gptq", "--no-refit", "--type", "MXFP4", "--calib", dir + "/calib.txt",
                     "--calib-tokens", "1024", "--no-kl", "--out", dir + "/m.gguf"]).expectSuccess()
        let types = try CLI.run(["inspect", dir + "/m.gguf", "--json"]).json()["tensors"] as? [[String: Any]] ?? []
        #expect(types.contains { $0["type"] as? String == "MXFP4" })
        try CLI.run(["run", "--model", dir + "/m.gguf", "--prompt", "It is a truth", "-n", "4"]).expectSuccess()
    }

    /// Sizes people type that do not fit: refused while parsing the arguments, with the allowed range.
    @Test func compressSizesOutOfRange() throws {
        for size in ["1e19", "1e300GB", "20000000000GB", "0", "0.5B", "nan", "-5MB", "12XB"] {
            let r = try CLI.run(["compress", "--target-size", size, "--out", "/tmp/never.gguf"])
            r.expectUsageError("--target-size")
            if ["1e19", "1e300GB", "20000000000GB"].contains(size) { #expect(r.stderr.contains("at most 9007199254740992 bytes")) }
        }
        try CLI.run(["compress", "--target-bpw", "40", "--out", "/tmp/never.gguf"]).expectUsageError("--target-bpw")
        try CLI.run(["compress", "--target-bpw", "4", "--target-size", "60MB", "--out", "/tmp/never.gguf"]).expectUsageError("exactly one")
        try CLI.run(["compress", "--target-bpw", "4", "--budget-minutes", "inf", "--out", "/tmp/never.gguf"]).expectUsageError("--budget-minutes")
        try CLI.run(["compress", "--target-bpw", "4", "--max-dropped-layers", "2", "--out", "/tmp/never.gguf"]).expectUsageError("--prune")
        try CLI.run(["compress", "--target-bpw", "4", "--search-length", "8", "--out", "/tmp/never.gguf"]).expectUsageError("--search-length")
        try CLI.run(["compress", "--target-bpw", "4", "--rotated-levels", "SQ3_X", "--out", "/tmp/never.gguf"]).expectUsageError("--rotated-levels")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/never.gguf"))
    }

    @Test func compressSmallModelAndItsJSONShape() throws {
        let dir = try CLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try CLI.text(dir + "/text.txt", bytes: 12000)
        let r = try CLI.run(["compress", "--model", try CLI.tiny(), "--target-bpw", "6", "--calib", dir + "/text.txt", "--calib-tokens", "512",
                             "--generations", "1", "--offspring", "2", "--search-sequences", "1", "--eval-text", dir + "/text.txt",
                             "--out", dir + "/c.gguf", "--json"], env: ["SQUISH_CACHE": dir + "/cache"], timeout: 600)
        r.expectSuccess()
        let j = try r.json()
        #expect(keys(j).isSuperset(of: ["output", "bytes", "target_bytes", "bits_per_weight", "choices", "kl_divergence", "perplexity",
                                        "dropped_layers", "drop_sensitivity"]))
        #expect((j["bytes"] as? Int ?? .max) <= (j["target_bytes"] as? Int ?? 0))
    }

    // MARK: fetch

    @Test func fetchVerifyReportsACorruptCache() throws {
        let dir = try CLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A file of the pinned size with a marker claiming it was verified: --verify re-hashes it and says so.
        try FileManager.default.createDirectory(atPath: dir + "/models", withIntermediateDirectories: true)
        let path = dir + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        try CLI.sparse(path, prefix: [], size: 98_362_432)
        try "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53\n".write(toFile: path + ".sha256", atomically: true, encoding: .utf8)
        try CLI.run(["fetch", "--model-only", "--verify"], env: ["SQUISH_CACHE": dir]).expectError("does not match")
        // A cache path that is a file: the model cannot be cached there.
        _ = FileManager.default.createFile(atPath: dir + "/file", contents: Data([1]))
        try CLI.run(["fetch", "--model-only"], env: ["SQUISH_CACHE": dir + "/file"]).expectError(dir + "/file")
        // The real cache (already fetched): nothing is downloaded, and --json names the model.
        let ok = try CLI.run(["fetch", "--model-only", "--json"])
        ok.expectSuccess()
        #expect(keys(try ok.json()) == ["model", "models"])
    }

    // MARK: Signals and temporary files

    /// Interrupted writers leave no temporary file: SIGINT during `quantize` and SIGTERM during `synth` remove
    /// theirs and end by the signal; after SIGKILL (no cleanup possible) the next run beside the same output sweeps
    /// the stale one.
    @Test func signalsRemoveTemporaryFilesAndStaleOnesAreSwept() throws {
        let dir = try CLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try CLI.defaultModel()  // large enough that writing takes a while
        func temporaries() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.contains(".tmp-") }
        }
        func interrupt(_ args: [String], with sig: Int32) throws -> CLIResult {
            let p = try CLI.start(args)
            let deadline = Date().addingTimeInterval(60)
            while temporaries().isEmpty && Date() < deadline { usleep(1000) }
            #expect(!temporaries().isEmpty, "no temporary file appeared")
            p.signal(sig)
            return try p.wait(timeout: 60)
        }
        let q = try interrupt(["quantize", "--model", model, "--type", "Q8_0", "--requantize", "--no-kl", "--out", dir + "/q.gguf"], with: SIGINT)
        #expect(q.signal == SIGINT, "\(q)")
        #expect(temporaries().isEmpty && !FileManager.default.fileExists(atPath: dir + "/q.gguf"), "\(temporaries())")
        let s = try interrupt(["synth", "--shape", "tinyllama-1.1b", "--type", "Q8_0", "--tokenizer-from", model, "--out", dir + "/s.gguf"],
                              with: SIGTERM)
        #expect(s.signal == SIGTERM, "\(s)")
        #expect(temporaries().isEmpty, "\(temporaries())")

        let k = try interrupt(["quantize", "--model", model, "--type", "Q8_0", "--requantize", "--no-kl", "--out", dir + "/q.gguf"], with: SIGKILL)
        #expect(k.signal == SIGKILL)
        let left = temporaries()
        #expect(left.count == 1 && left.first?.hasPrefix(".q.gguf.tmp-") == true, "\(left)")
        // Not swept while fresh; swept once older than the threshold, by a run writing the same output.
        let tiny = try CLI.tiny()
        try CLI.run(["quantize", "--model", tiny, "--type", "Q4_0", "--no-kl", "--out", dir + "/q.gguf"]).expectSuccess()
        #expect(temporaries() == left)
        var times = [timespec(tv_sec: time(nil) - 3600, tv_nsec: 0), timespec(tv_sec: time(nil) - 3600, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, dir + "/" + left[0], &times, 0) == 0)
        // Someone else's file of another name is never touched.
        let other = dir + "/.other.gguf.tmp-1-abcdef"
        _ = FileManager.default.createFile(atPath: other, contents: Data([1]))
        _ = utimensat(AT_FDCWD, other, &times, 0)
        try CLI.run(["quantize", "--model", tiny, "--type", "Q4_0", "--no-kl", "--out", dir + "/q.gguf"]).expectSuccess()
        #expect(temporaries() == [".other.gguf.tmp-1-abcdef"])
    }
}
