// swift-tools-version: 6.1
// libFuzzer targets for Squish's parsers of untrusted files. Built by scripts/fuzz.sh with
// `-sanitize=fuzzer,address` (kept out of the main package, which has no unsafe flags): see scripts/fuzz.sh.
import PackageDescription

let package = Package(
    name: "SquishFuzz",
    dependencies: [.package(name: "Squish", path: "..")],
    targets: [
        // Declares libFuzzer's LLVMFuzzerRunDriver, which each target's main calls.
        .target(name: "CFuzzDriver"),
        // Seed inputs written by Squish's own writers, and the driver glue.
        .target(name: "FuzzSupport", dependencies: [
            "CFuzzDriver",
            .product(name: "SquishCore", package: "Squish"),
            .product(name: "SquishFormats", package: "Squish"),
        ]),
        .executableTarget(name: "FuzzGGUF", dependencies: [
            "FuzzSupport",
            .product(name: "SquishFormats", package: "Squish"),
            .product(name: "SquishTokenizer", package: "Squish"),
            .product(name: "SquishModel", package: "Squish"),
        ]),
        .executableTarget(name: "FuzzSafetensors", dependencies: ["FuzzSupport", .product(name: "SquishFormats", package: "Squish")]),
        .executableTarget(name: "FuzzTokenizerJSON", dependencies: [
            "FuzzSupport",
            .product(name: "SquishFormats", package: "Squish"),
            .product(name: "SquishTokenizer", package: "Squish"),
        ]),
        .executableTarget(name: "FuzzHFConfig", dependencies: [
            "FuzzSupport",
            .product(name: "SquishFormats", package: "Squish"),
            .product(name: "SquishModel", package: "Squish"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
