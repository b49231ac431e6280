import Foundation
import Testing
import SquishFormats

/// Every codec against the `gguf` package's numpy reference, bit for bit: quantization of deterministic random
/// data (several distributions), dequantization of random valid blocks, and the default model's own tensors.
@Suite struct CodecReferenceTests {
    struct Case { let name: String; let type: GGMLType; let quantize: Bool; let count: Int }

    @Test func bitExactAgainstGGUFPackage() throws {
        let dir = try TestSupport.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try TestSupport.runPython("codec_reference.py", [dir, try TestSupport.defaultModelPath()])
        let cases = try String(contentsOfFile: dir + "/cases.txt", encoding: .utf8).split(separator: "\n").map { line -> Case in
            let p = line.split(separator: " ")
            return Case(name: String(p[0]), type: GGMLType(name: String(p[1]))!, quantize: p[2] == "quant", count: Int(p[3])!)
        }
        func load(_ suffix: String, _ c: Case) throws -> [UInt8] {
            [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(c.name).\(suffix)")))
        }
        var values = 0
        var typesSeen = Set<GGMLType>()
        for c in cases {
            let expected = try load("f32", c).withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }
            let blocks: [UInt8]
            if c.quantize {
                let input = try load("in", c).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                blocks = try Codecs.quantize(c.type, input)
                let reference = try load("q", c)
                if blocks != reference {
                    let firstDiff = zip(blocks, reference).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? -1
                    Issue.record("\(c.name): quantized bytes differ (first at byte \(firstDiff), block \(firstDiff / c.type.blockBytes))")
                    continue
                }
            } else {
                blocks = try load("in", c)
            }
            let ours = try blocks.withUnsafeBytes { try Codecs.dequantize(c.type, $0, count: c.count) }
            #expect(ours.count == expected.count)
            var mismatches = 0
            for (a, b) in zip(ours, expected) where a.bitPattern != b {
                // Any NaN matches any NaN.
                if a.isNaN && Float(bitPattern: b).isNaN { continue }
                mismatches += 1
            }
            #expect(mismatches == 0, "\(c.name): \(mismatches) of \(c.count) dequantized values differ")
            values += c.count
            typesSeen.insert(c.type)
        }
        print("codec reference: \(cases.count) cases, \(values) values, \(typesSeen.count) types")
        for t in GGMLType.allCases where Codecs.canDequantize(t) { #expect(typesSeen.contains(t), "no reference case for \(t)") }
    }

    @Test func wrongSizesAndTypesThrow() throws {
        let short = [UInt8](repeating: 0, count: 17), iq2 = [UInt8](repeating: 0, count: 66)
        #expect(throws: FormatError.self) { try short.withUnsafeBytes { try Codecs.dequantize(.q4_0, $0, count: 32) } }
        #expect(throws: FormatError.self) { try Codecs.quantize(.q8_0, [Float](repeating: 0, count: 33)) }
        #expect(throws: FormatError.unsupportedType(.iq2_XXS, operation: "dequantize")) {
            try iq2.withUnsafeBytes { try Codecs.dequantize(.iq2_XXS, $0, count: 256) }
        }
        #expect(throws: FormatError.unsupportedType(.q4_K, operation: "quantize")) { try Codecs.quantize(.q4_K, [Float](repeating: 0, count: 256)) }
    }
}
