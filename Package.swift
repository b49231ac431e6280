// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Squish",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "squish", targets: ["squish"]),
        .library(name: "SquishCore", targets: ["SquishCore"]),
        .library(name: "SquishFormats", targets: ["SquishFormats"]),
        .library(name: "SquishTokenizer", targets: ["SquishTokenizer"]),
        .library(name: "SquishData", targets: ["SquishData"]),
        .library(name: "SquishKernels", targets: ["SquishKernels"]),
        .library(name: "SquishModel", targets: ["SquishModel"]),
        .library(name: "SquishEval", targets: ["SquishEval"]),
        .library(name: "SquishQuantize", targets: ["SquishQuantize"]),
        .library(name: "SquishCompress", targets: ["SquishCompress"]),
        // The embeddable API: load models by name or path, stream tokens, run the server's engine in-process.
        .library(name: "SquishEngine", targets: ["SquishEngine"]),
        // The OpenAI-compatible HTTP server over the engine.
        .library(name: "SquishServe", targets: ["SquishServe"]),
        .library(name: "SquishZip", targets: ["SquishZip"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // Tests only: property-based testing on Swift Testing.
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // zlib from the system (inflate for R's serialized data; deflate and CRC-32 for packed models).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        // Shared foundations: errors, f16/bf16, memory-mapped files, atomic writes, progress.
        .target(name: "SquishCore"),
        // GGUF, safetensors, Hugging Face config.json, one codec per block type.
        // Packed (entropy-coded) model files decode here, below every loader: zlib deflates their headers.
        .target(name: "SquishFormats", dependencies: ["SquishCore", "CZlib"]),
        // Byte-level BPE and SentencePiece tokenizers, pre-tokenizers, chat templates.
        .target(name: "SquishTokenizer", dependencies: ["SquishCore", "SquishFormats"]),
        // Fetching and caching models (known by short name) and the text corpora.
        .target(name: "SquishData", dependencies: [
            "SquishCore", "CZlib",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // The innermost SIMD loops (AVX2/FMA/F16C chosen at run time, portable C otherwise).
        .target(name: "CSquishKernels"),
        // Matmuls on the weights' own block types, the worker pool.
        .target(name: "SquishKernels", dependencies: ["SquishCore", "SquishFormats", "CSquishKernels"]),
        // Llama-family models: configuration, forward pass, KV cache, sampling, generation.
        .target(name: "SquishModel", dependencies: ["SquishCore", "SquishFormats", "SquishKernels", "SquishTokenizer"]),
        // Measuring models: perplexity protocols, KL divergence against a cached reference, tasks, reports and charts; speed (model, kernels, memory bandwidth), synthetic models.
        .target(name: "SquishEval", dependencies: ["SquishCore", "SquishFormats", "SquishKernels", "CSquishKernels", "SquishModel", "SquishTokenizer"]),
        // Model in, model out: calibration, quantizers (RTN, GPTQ), packing into block types, GGUF output.
        .target(name: "SquishQuantize", dependencies: ["SquishCore", "SquishFormats", "SquishKernels", "SquishModel", "SquishTokenizer"]),
        // Size budgets: level databases, importance signals, evolutionary search over per-tensor levels.
        .target(name: "SquishCompress", dependencies: ["SquishCore", "SquishFormats", "SquishKernels", "SquishModel", "SquishTokenizer", "SquishQuantize", "SquishEval"]),
        // Serving: one model's scheduler (continuous batching, prefix reuse, bounded queue) and several models on one
        // worker pool; the embeddable Swift API.
        .target(name: "SquishEngine", dependencies: ["SquishCore", "SquishFormats", "SquishTokenizer", "SquishData", "SquishKernels", "SquishModel"],
                swiftSettings: [.swiftLanguageMode(.v6)]),
        // The OpenAI-compatible HTTP server (Hummingbird), metrics (swift-metrics, Prometheus), the web chat page.
        .target(name: "SquishServe", dependencies: [
            "SquishEngine", "SquishModel", "SquishFormats", "SquishTokenizer",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: [.swiftLanguageMode(.v6)]),
        // Lossless compression: text coded by a model's next-token distribution (rANS), packed (entropy-coded) weights.
        .target(name: "SquishZip", dependencies: [
            "SquishCore", "SquishFormats", "SquishKernels", "SquishModel", "SquishTokenizer",
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: [.swiftLanguageMode(.v6)]),
        .executableTarget(name: "squish", dependencies: [
            "SquishCore", "SquishFormats", "SquishTokenizer", "SquishData", "SquishKernels", "SquishModel", "SquishEval",
            "SquishQuantize", "SquishCompress", "SquishEngine", "SquishServe", "SquishZip",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Helpers the test targets share (cached data, scratch directories, Python references, tiny models); tests only.
        .target(name: "SquishTestSupport", dependencies: ["SquishCore", "SquishData", "SquishFormats", "SquishModel", "SquishEval"],
                path: "Tests/SquishTestSupport", swiftSettings: [.swiftLanguageMode(.v6)]),
        .testTarget(name: "SquishCoreTests", dependencies: ["SquishCore", .product(name: "PropertyBased", package: "swift-property-based")]),
        .testTarget(name: "SquishFormatsTests", dependencies: ["SquishTestSupport", "SquishFormats", "SquishCore", "SquishData",
                                                               .product(name: "PropertyBased", package: "swift-property-based")]),
        .testTarget(name: "SquishTokenizerTests", dependencies: ["SquishTestSupport", "SquishTokenizer", "SquishFormats", "SquishCore", "SquishData"]),
        .testTarget(name: "SquishModelTests", dependencies: ["SquishTestSupport", "SquishModel", "SquishKernels", "CSquishKernels", "SquishFormats", "SquishCore", "SquishData", "SquishTokenizer", "SquishEval"]),
        .testTarget(name: "SquishQuantizeTests", dependencies: ["SquishTestSupport", "SquishQuantize", "SquishModel", "SquishKernels", "SquishFormats", "SquishCore", "SquishData", "SquishTokenizer", "SquishEval"]),
        .testTarget(name: "SquishEvalTests", dependencies: ["SquishTestSupport", "SquishEval", "SquishQuantize", "SquishModel", "SquishKernels", "SquishFormats", "SquishCore", "SquishData", "SquishTokenizer"]),
        .testTarget(name: "SquishCompressTests", dependencies: ["SquishCompress", "SquishQuantize", "SquishEval", "SquishModel", "SquishKernels", "SquishFormats", "SquishCore", "SquishData", "SquishTokenizer"]),
        .testTarget(name: "SquishEngineTests", dependencies: ["SquishTestSupport", "SquishEngine", "SquishModel", "SquishKernels", "SquishTokenizer", "SquishData", "SquishFormats"],
                    swiftSettings: [.swiftLanguageMode(.v6)]),
        .testTarget(name: "SquishZipTests", dependencies: ["SquishTestSupport", "SquishZip", "SquishModel", "SquishKernels", "SquishFormats", "SquishCore", "SquishData", "SquishTokenizer"]),
        .testTarget(name: "SquishDataTests", dependencies: ["SquishData", "SquishCore", .product(name: "Crypto", package: "swift-crypto")]),
        // The built `squish` binary end to end (run `swift build --build-tests`, which builds it too); small models
        // written by SquishEval's synthetic writer.
        .testTarget(name: "SquishCLITests", dependencies: ["SquishCore", "SquishFormats", "SquishData", "SquishEval"]),
    ],
    swiftLanguageModes: [.v5]
)
