// swift-tools-version: 6.1
// An app that embeds Squish: loads a model by name or path and streams generated text, in process.
import PackageDescription

let package = Package(
    name: "EmbedSquish",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "Squish", path: "../.."),
    ],
    targets: [
        .executableTarget(name: "EmbedSquish", dependencies: [.product(name: "SquishEngine", package: "Squish")],
                          swiftSettings: [.swiftLanguageMode(.v6)]),
    ]
)
