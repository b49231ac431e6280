// safetensors header parser: every input must open or throw a FormatError; an opened file's tensors convert.
import Foundation
import FuzzSupport
import SquishCore
import SquishFormats

func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let mapped = MappedFile(data: fuzzInput(data, size), path: "fuzz.safetensors")
    guard let file = try? SafetensorsFile(file: mapped) else { return 0 }
    for t in file.tensors {
        _ = file.data(for: t).first
        if t.dtype.convertsToFloat, t.elementCount <= 4096 { _ = try? file.floats(for: t) }
    }
    _ = SafetensorsCheckpoint(file: file).tensorNames
    return 0
}

fuzzMain(seeds: { try Seeds.safetensors() }, fuzzOne)
