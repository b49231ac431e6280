// GGUF reader: every input must open or throw a FormatError, and everything a command reads from an opened file
// (each metadata value and its preview, typed arrays, tensor data, the tokenizer built from the metadata) must
// decode without a crash, a hang or an allocation beyond the input's size; the model configuration is read and
// validated as every loader does, and the tensors it names are checked against the file.
import Foundation
import FuzzSupport
import SquishCore
import SquishFormats
import SquishModel
import SquishTokenizer

func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let mapped = MappedFile(data: fuzzInput(data, size), path: "fuzz.gguf")
    guard let file = try? GGUFFile(file: mapped) else { return 0 }
    for entry in file.entries {
        _ = entry.preview()
        let value = entry.value
        if let a = value.arrayValue {
            _ = a.strings
            _ = a.ints
            _ = a.floats
            for element in a.prefix(16) { _ = element.int }
        }
        _ = value.double
    }
    for t in file.tensors {
        _ = t.elementCount
        _ = t.rowCount
        _ = file.data(for: t).last
    }
    _ = file.architecture
    if let config = try? Architectures.configuration(gguf: file) {
        for t in config.tensors() { _ = (config.shape(of: t), file.tensor(named: t.ggufName)) }
    }
    if let tokenizer = try? Tokenizer(gguf: file) {
        let ids = tokenizer.encode("Hello, world! 123 the and of <|im_start|>", parseSpecial: true, addSpecial: true)
        _ = tokenizer.decode(ids)
    }
    return 0
}

fuzzMain(seeds: { try Seeds.gguf() }, fuzzOne)
