import CFuzzDriver
import Foundation

/// The main of every fuzz target: with `SQUISH_FUZZ_SEEDS=DIR` in the environment it writes the target's seed inputs
/// into DIR and exits; otherwise it hands the command line to libFuzzer, which calls `callback` on each input.
public func fuzzMain(seeds: () throws -> [(name: String, bytes: [UInt8])],
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Never {
    if let dir = ProcessInfo.processInfo.environment["SQUISH_FUZZ_SEEDS"] {
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let list = try seeds()
            for s in list { try Data(s.bytes).write(to: URL(fileURLWithPath: dir + "/" + s.name)) }
            FileHandle.standardError.write(Data("wrote \(list.count) seeds to \(dir)\n".utf8))
            exit(0)
        } catch {
            FileHandle.standardError.write(Data("cannot write seeds: \(error)\n".utf8))
            exit(1)
        }
    }
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
}

/// The input as an array (libFuzzer may pass a null pointer for the empty input).
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}
