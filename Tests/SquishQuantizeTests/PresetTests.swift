import Foundation
import Testing
import SquishFormats
import SquishKernels
import SquishQuantize

@Suite("llama.cpp presets")
struct PresetTests {
    /// Tensor bytes of the files `llama-quantize --allow-requantize` writes from the default model (llama.cpp of
    /// February 2025, no importance matrix; these presets do not depend on one).
    static let llamaTensorBytes: [String: Int] = [
        "Q2_K": 86_416_128, "Q3_K_S": 86_416_128, "Q3_K_M": 91_724_544, "Q3_K_L": 95_747_328, "Q4_K_S": 100_253_952,
        "Q4_K_M": 103_668_480, "Q5_K_S": 108_188_928, "Q5_K_M": 110_317_824, "Q6_K": 136_597_248,
    ]

    /// The per-tensor choice simulated for llama.cpp adds up to the bytes llama.cpp really writes, and Squish's own
    /// choice never exceeds it while using all but a sliver of it.
    @Test(arguments: Array(llamaTensorBytes.keys).sorted())
    func defaultModelBudgetsMatchLlamaQuantize(preset name: String) throws {
        let file = try GGUFFile(path: try TestSupport.defaultModelPath())
        let preset = try #require(QuantizationPreset(name: name))
        let matrices = file.tensors.filter { $0.shape.count >= 2 && $0.shape.dropFirst().contains { $0 > 1 } }
        let sizes = Dictionary(uniqueKeysWithValues: matrices.map { ($0.name, ($0.shape[0], $0.rowCount)) })
        let choices = try preset.allocate(file, matrices: matrices.map { (name: $0.name, rowLength: $0.shape[0], rows: $0.rowCount) })
        func bytes(_ t: GGMLType, _ name: String) -> Int { t.rowBytes(elements: sizes[name]!.0)! * sizes[name]!.1 }
        let llama = choices.reduce(0) { $0 + bytes($1.llamaType, $1.name) }
        let ours = choices.reduce(0) { $0 + bytes($1.type, $1.name) }
        let others = file.tensors.filter { sizes[$0.name] == nil }.reduce(0) { $0 + $1.elementCount * 4 }  // norms as F32
        #expect(llama + others == Self.llamaTensorBytes[name]!)
        #expect(ours <= llama)
        #expect(Double(ours) > 0.95 * Double(llama))  // the last step (5 bits to Q8_0) is coarse
        // Rows that are multiples of 256 (ffn_down's 1536) take real K-quants (or Q8_0), the others Squish affine types.
        let kTypes: Set<GGMLType> = [.q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_0]
        for c in choices {
            if sizes[c.name]!.0 % 256 == 0 {
                #expect(kTypes.contains(c.type), "\(c.name): \(c.type)")
            } else {
                #expect(c.type.squishAffine != nil || c.type == .q8_0, "\(c.name): \(c.type)")
            }
        }
        // Never below llama.cpp's own K type on those rows.
        for c in choices where sizes[c.name]!.0 % 256 == 0 && c.llamaType.blockElements == 256 {
            #expect(c.type.bitsPerWeight >= c.llamaType.bitsPerWeight, "\(c.name): \(c.type) below \(c.llamaType)")
        }
    }

    @Test func presetNamesResolve() throws {
        let t = try QuantizationTarget.resolve(type: "q4_k_m", bits: nil, group: nil, symmetric: false)
        #expect(t.preset == .q4_K_M && t.name == "Q4_K_M" && t.fileType == 1024)
        #expect(QuantizationPreset(name: "Q7_K") == nil)
    }
}
