// config.json loader: every input must decode and validate (as a family's configuration too), or throw.
import Foundation
import FuzzSupport
import SquishFormats
import SquishModel

func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let config = try? HFConfig.decode(Data(fuzzInput(data, size)), path: "fuzz/config.json") else { return 0 }
    _ = config.kvHeads
    _ = config.resolvedHeadDim
    _ = try? config.jsonData()
    if let c = try? Architectures.configuration(hf: config, path: "fuzz/config.json") { _ = c.linearLayers.count }
    return 0
}

fuzzMain(seeds: { try Seeds.config() }, fuzzOne)
