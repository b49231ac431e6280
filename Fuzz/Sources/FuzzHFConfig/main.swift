// config.json loader: every input must decode and validate, or throw a FormatError.
import Foundation
import FuzzSupport
import SquishFormats

func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let config = try? HFConfig.decode(Data(fuzzInput(data, size)), path: "fuzz/config.json") else { return 0 }
    _ = config.kvHeads
    _ = config.resolvedHeadDim
    _ = try? config.jsonData()
    return 0
}

fuzzMain(seeds: { try Seeds.config() }, fuzzOne)
