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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // zlib from the system (inflate for R's serialized data).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        // Shared foundations: errors, f16/bf16, memory-mapped files, atomic writes, progress.
        .target(name: "SquishCore"),
        // GGUF, safetensors, Hugging Face config.json, one codec per block type.
        .target(name: "SquishFormats", dependencies: ["SquishCore"]),
        // Byte-level BPE and SentencePiece tokenizers, pre-tokenizers, chat templates.
        .target(name: "SquishTokenizer", dependencies: ["SquishCore", "SquishFormats"]),
        // Fetching and caching the default model and the text corpora.
        .target(name: "SquishData", dependencies: [
            "SquishCore", "CZlib",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .executableTarget(name: "squish", dependencies: [
            "SquishCore", "SquishFormats", "SquishTokenizer", "SquishData",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "SquishCoreTests", dependencies: ["SquishCore"]),
        .testTarget(name: "SquishFormatsTests", dependencies: ["SquishFormats", "SquishCore"]),
    ],
    swiftLanguageModes: [.v5]
)
