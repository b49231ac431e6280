import ArgumentParser
import Foundation
import Logging
import SquishEngine
import SquishServe

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve models over an OpenAI-compatible HTTP API (chat, completions, embeddings, models), with a web chat page at /.",
        discussion: """
            Several --model options serve several models side by side (requests choose by the `model` field: the name \
            shown by /v1/models, the path, the file name or a known model's short name). SIGTERM or SIGINT stops \
            accepting requests, lets in-flight ones finish for --shutdown-grace seconds and exits 0.
            """)

    @Option(name: .customLong("model"), help: "Model file, Hugging Face directory or known model name; repeat to serve several (default: the cached default model). NAME=MODEL serves MODEL as NAME.")
    var models: [String] = []

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port; the chosen one is printed).")
    var port = 8080

    @Option(help: "Require this key as 'Authorization: Bearer KEY' on /v1/ endpoints.")
    var apiKey: String?

    @Option(help: "Read the API key from this file (first line).")
    var apiKeyFile: String?

    @Option(help: "Sequences generated at once per model (continuous batching).")
    var parallel = 32

    @Option(help: "Context per sequence in tokens (default: the model's, at most 4096).")
    var context: Int?

    @Option(help: "Requests that may wait for a free sequence per model; more are refused with 429.")
    var maxQueue = 128

    @Option(name: [.customShort("t"), .long], help: "Threads (default: all cores).")
    var threads: Int?

    @Option(help: "Seconds in-flight requests get to finish after SIGTERM/SIGINT.")
    var shutdownGrace = 10.0

    @Option(help: "Largest request body in bytes.")
    var maxBody = 8 << 20

    @OptionGroup var cache: KVCacheOptions

    func validate() throws {
        guard (0 ... 65535).contains(port) else { throw ValidationError("--port must be in 0 ... 65535") }
        guard (1 ... 1024).contains(parallel) else { throw ValidationError("--parallel must be in 1 ... 1024") }
        guard (0 ... 1_000_000).contains(maxQueue) else { throw ValidationError("--max-queue must be in 0 ... 1000000") }
        if let context { guard (2 ... 1 << 20).contains(context) else { throw ValidationError("--context must be in 2 ... 1048576") } }
        if let threads { guard (1 ... 1024).contains(threads) else { throw ValidationError("--threads must be in 1 ... 1024") } }
        guard shutdownGrace >= 0, shutdownGrace <= 3600 else { throw ValidationError("--shutdown-grace must be in 0 ... 3600") }
        guard (1024 ... 1 << 30).contains(maxBody) else { throw ValidationError("--max-body must be in 1024 ... 1073741824") }
        if apiKey != nil && apiKeyFile != nil { throw ValidationError("give --api-key or --api-key-file, not both") }
    }

    func run() async throws {
        var specs: [ModelSpec] = []
        for m in models.isEmpty ? [nil] : models.map(Optional.some) {
            // NAME=MODEL, unless the whole argument is an existing path.
            if let m, let eq = m.firstIndex(of: "="), !FileManager.default.fileExists(atPath: m) {
                let name = String(m[..<eq]), reference = String(m[m.index(after: eq)...])
                guard !name.isEmpty else { throw CLIError("--model \(m): the name before '=' is empty") }
                specs.append(ModelSpec(try resolveModelPath(reference), name: name))
            } else {
                let path = try resolveModelPath(m)
                specs.append(ModelSpec(path, name: Engine.servedName(for: m ?? path)))
            }
        }
        var key = apiKey
        if let file = apiKeyFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw CLIError("\(file): cannot read the API key file") }
            let first = text.split(whereSeparator: \.isNewline).first.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? ""
            guard !first.isEmpty else { throw CLIError("\(file): the API key file is empty") }
            key = first
        }
        if let k = key, k.isEmpty || k.contains(where: { $0.isWhitespace || $0.isNewline }) {
            throw CLIError("the API key must be non-empty and without whitespace")
        }
        var options = EngineOptions(parallel: parallel, context: context, maxQueue: maxQueue)
        options.layout = kernelLayout
        options.kv = cache.kv
        let engine = Engine(threads: threads, options: options)
        var server = ServerConfiguration()
        server.host = host
        server.port = port
        server.apiKey = key
        server.shutdownGrace = shutdownGrace
        server.maxBodyBytes = maxBody
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = .info
            return h
        }
        let host = self.host
        let names = specs.map { $0.name ?? $0.reference }.joined(separator: ", ")
        try await SquishServer(engine: engine, models: specs, configuration: server).run { port in
            printError("squish serve: listening on http://\(host):\(port) (\(names))")
        }
    }
}
