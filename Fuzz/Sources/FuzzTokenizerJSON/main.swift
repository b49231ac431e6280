// tokenizer.json loader: every input must load or throw a TokenizerError; a loaded tokenizer encodes and decodes.
import Foundation
import FuzzSupport
import SquishTokenizer

func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let tokenizer = try? Tokenizer(huggingFaceJSON: Data(fuzzInput(data, size)), source: "fuzz/tokenizer.json") else { return 0 }
    let ids = tokenizer.encode("Hello, the world and 1234 ▁of<|im_start|>ü", parseSpecial: true, addSpecial: true)
    _ = tokenizer.decode(ids)
    return 0
}

fuzzMain(seeds: { Seeds.tokenizerJSON() }, fuzzOne)
