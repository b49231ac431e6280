import Foundation
import Testing
import SquishFormats
import SquishModel
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
        let choices = try preset.allocate(file, config: try Architectures.configuration(gguf: file))
        #expect(Set(choices.map(\.name)) == Set(matrices.map(\.name)))
        func bytes(_ t: GGMLType, _ name: String) -> Int { t.rowBytes(elements: sizes[name]!.0)! * sizes[name]!.1 }
        let llama = choices.reduce(0) { $0 + bytes($1.llamaType, $1.name) }
        let ours = choices.reduce(0) { $0 + bytes($1.type, $1.name) }
        let others = file.tensors.filter { sizes[$0.name] == nil }.reduce(0) { $0 + $1.elementCount * 4 }  // norms as F32
        #expect(llama + others == Self.llamaTensorBytes[name]!)
        #expect(ours <= llama)
        // No tensor gets more bits than the input gives it: its own blocks (copied, lossless) top its ladder.
        let source = Dictionary(uniqueKeysWithValues: matrices.map { ($0.name, $0.type) })
        for c in choices {
            #expect(c.type.bitsPerWeight <= source[c.name]!.bitsPerWeight, "\(c.name): \(c.type) above \(source[c.name]!)")
        }
        // The bytes left over are too few for any tensor's next level (the steps are coarse: 5 bits to Q8_0 on the
        // embedding is 10.6 MB).
        for c in choices {
            let ladder = QuantizationPreset.ladder(rowLength: sizes[c.name]!.0, source: source[c.name]!)
            let l = try #require(ladder.firstIndex(of: c.type))
            guard l + 1 < ladder.count else { continue }
            #expect(bytes(ladder[l + 1], c.name) - bytes(c.type, c.name) > llama - ours, "\(c.name) could still go up")
        }
        // Rows that are multiples of 256 (ffn_down's 1536) take real K-quants (or Q8_0), the others Squish affine
        // types; or the input's own type.
        let kTypes: Set<GGMLType> = [.q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_0]
        for c in choices where c.type != source[c.name]! {
            if sizes[c.name]!.0 % 256 == 0 {
                #expect(kTypes.contains(c.type), "\(c.name): \(c.type)")
            } else {
                #expect(c.type.squishAffine != nil || c.type == .q8_0, "\(c.name): \(c.type)")
            }
        }
        // Never below llama.cpp's own K type on those rows, unless the input's type is smaller.
        for c in choices where sizes[c.name]!.0 % 256 == 0 && c.llamaType.blockElements == 256 {
            let floor = min(c.llamaType.bitsPerWeight, source[c.name]!.bitsPerWeight)
            #expect(c.type.bitsPerWeight >= floor, "\(c.name): \(c.type) below \(c.llamaType)")
        }
    }

    /// Q4_K_M's bytes exceed the default model's own (98.4 MB of Q4_1 and Q8_0 against llama.cpp's 103.7 MB of
    /// tensors), so every matrix keeps its input blocks and the plan copies them: the "quantized" file is the input.
    @Test func presetAboveTheInputKeepsItsBlocks() throws {
        let file = try GGUFFile(path: try TestSupport.defaultModelPath())
        let target = try QuantizationTarget.resolve(type: "Q4_K_M", bits: nil, group: nil, symmetric: false)
        let plans = try QuantizationPlanner.plan(file, target: target, requantize: false)
        let matrices = plans.filter { $0.info.shape.count >= 2 && $0.info.shape[1] > 1 }
        #expect(matrices.count == 211)
        for p in matrices { #expect(p.action == .copy, "\(p.info.name): \(p.action)") }
        // A smaller preset still quantizes, and nowhere with more bits than the input.
        let q3 = try QuantizationPlanner.plan(file, target: try QuantizationTarget.resolve(type: "Q3_K_S", bits: nil, group: nil, symmetric: false),
                                              requantize: false)
        let quantized = q3.filter { if case .quantize = $0.action { return true } else { return false } }
        #expect(!quantized.isEmpty)
        for p in q3 { #expect(p.outputType.bitsPerWeight <= max(p.info.type.bitsPerWeight, 32)) }
    }

    /// `--embedding-type` overrides the embedding's default 8 bits (and only the embedding's).
    @Test func embeddingTypeOverridesTheEdgeDefault() throws {
        let file = try GGUFFile(path: try TestSupport.defaultModelPath())
        let target = try QuantizationTarget.resolve(type: nil, bits: 4, group: 64, symmetric: false)
        let plain = try QuantizationPlanner.plan(file, target: target, requantize: false)
        let custom = try QuantizationPlanner.plan(file, target: target, requantize: false, embeddingType: .sq5_G64)
        for (a, b) in zip(plain, custom) {
            if a.info.name == "token_embd.weight" {
                #expect(a.outputType == .q8_0 && b.outputType == .sq5_G64)
            } else {
                #expect(a.outputType == b.outputType, "\(a.info.name)")
            }
        }
        #expect(throws: QuantizeError.self) { try QuantizationPlanner.plan(file, target: target, requantize: false, embeddingType: .iq2_XXS) }
    }

    @Test func presetNamesResolve() throws {
        let t = try QuantizationTarget.resolve(type: "q4_k_m", bits: nil, group: nil, symmetric: false)
        #expect(t.preset == .q4_K_M && t.name == "Q4_K_M" && t.fileType == 1024)
        #expect(QuantizationPreset(name: "Q7_K") == nil)
    }
}
