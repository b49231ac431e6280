import Foundation
import SquishCore
import SquishFormats
import SquishKernels
import SquishModel

public enum QuantizationMethod: String, Sendable, Codable, CaseIterable {
    /// Round to nearest, per block.
    case rtn
    /// GPTQ (Frantar et al. 2022): error-compensated rounding with calibration statistics, block by block.
    case gptq
    /// AWQ (Lin et al. 2023): activation-aware per-channel scales folded into the preceding norm or layer, then
    /// rounding to nearest, block by block.
    case awq
    /// Ternary weights by absmean rounding (BitNet b1.58), no calibration; for experiments at ~1.7-2.5 bits.
    case ternary
}

public struct QuantizeOptions: Sendable {
    public var method: QuantizationMethod
    public var target: QuantizationTarget
    /// Decode and re-encode tensors that are already in the type they would get (default: copy them unchanged).
    public var requantize = false
    /// The token embedding's and output matrix's type (nil: Q8_0, or the target when it has 8 bits).
    public var embeddingType: GGMLType?
    /// Calibration text and size (calibrated methods).
    public var calibration = CalibrationOptions()
    public var gptq = GPTQOptions()
    public var awq = AWQOptions()
    /// RTN only: weight each block's rounding by the calibration inputs' Σ x² per channel (imatrix style); the
    /// transformer blocks are then calibrated one at a time like GPTQ.
    public var importance = false
    /// GPTQ (and importance RTN): quantize the transformer blocks' matrices in the basis of a Hadamard rotation of
    /// their input (`RotatedInputs`), which spreads outlier features over all of them.
    public var rotateInputs = false

    public init(method: QuantizationMethod, target: QuantizationTarget) {
        self.method = method
        self.target = target
    }
}

/// The closing summary of a quantization run (`--json` prints it).
public struct QuantizeReport: Codable, Sendable {
    public var input: String
    public var output: String
    public var method: String
    public var type: String
    /// Size of the output file.
    public var bytes: Int
    /// Tensor data bits over all tensor elements (as llama.cpp reports a model's bits per weight).
    public var bitsPerWeight: Double
    public var seconds: Double
    public var tensorsQuantized: Int
    public var tensorsCopied: Int
    public var calibrationTokens: Int?
    /// Quantized tensors per output type (a K-quant or preset target mixes types: rows that are not multiples of
    /// 256 cannot take a K-quant).
    public var tensorTypes: [String: Int] = [:]
    /// The closing check against the input on a short text (filled in by the caller, which owns the evaluation):
    /// mean KL(input ‖ output) per position in nats, top-1 agreement, positions scored, and the text's name.
    public var klDivergence: Double?
    public var top1Agreement: Double?
    public var klPositions: Int?
    public var klText: String?

    enum CodingKeys: String, CodingKey {
        case input, output, method, type, bytes, seconds
        case bitsPerWeight = "bits_per_weight", tensorsQuantized = "tensors_quantized", tensorsCopied = "tensors_copied"
        case calibrationTokens = "calibration_tokens", tensorTypes = "tensor_types"
        case klDivergence = "kl_divergence", top1Agreement = "top1_agreement", klPositions = "kl_positions", klText = "kl_text"
    }
}

/// Model in, model out: reads a GGUF file, quantizes its matrices as planned and writes a new GGUF file atomically
/// (metadata and untouched tensors copied; the input is only read).
public enum ModelQuantizer {
    /// Rejects an output that cannot be written or would overwrite the input, before any work is done.
    public static func checkOutput(_ output: String, input: String) throws {
        let dir = (output as NSString).deletingLastPathComponent
        let directory = dir.isEmpty ? "." : dir
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw QuantizeError.badOutput(path: output, reason: "directory '\(directory)' does not exist")
        }
        guard !isSameFile(output, input) else { throw QuantizeError.badOutput(path: output, reason: "the output is the input file; choose another path") }
        if FileManager.default.fileExists(atPath: output, isDirectory: &isDir), isDir.boolValue {
            throw QuantizeError.badOutput(path: output, reason: "is a directory")
        }
    }

    /// Quantizes a GGUF file or a checkpoint directory (converted to GGUF first, see `GGUFConversion`) into `output`.
    public static func quantize(input: String, output: String, options: QuantizeOptions, pool: WorkerPool,
                                log: @escaping (String) -> Void = { _ in }) throws -> QuantizeReport {
        try checkOutput(output, input: input)
        var report = try GGUFConversion.withGGUF(for: input) { gguf in
            try quantizeGGUF(input: gguf, output: output, options: options, pool: pool, log: log)
        }
        report.input = input
        return report
    }

    static func quantizeGGUF(input: String, output: String, options: QuantizeOptions, pool: WorkerPool,
                             log: @escaping (String) -> Void) throws -> QuantizeReport {
        let start = Date()
        let file = try GGUFFile(path: input)
        let plan = try QuantizationPlanner.plan(file, target: options.target, requantize: options.requantize,
                                                embeddingType: options.embeddingType)

        // Calibrated methods quantize the transformer blocks' linear layers up front, block by block.
        var calibrated: [String: [UInt8]] = [:]
        var calibrationTokens: Int?
        var foldedNorms: [String: [Float]] = [:]
        var rotated: [String] = []
        try RotatedInputs.refuse(file, pipeline: "quantize")
        if options.rotateInputs && !(options.method == .gptq || (options.method == .rtn && options.importance)) {
            throw QuantizeError.unsupportedTarget("rotated inputs with \(options.method.rawValue): use gptq, or rtn with importance")
        }
        switch options.method {
        case .gptq:
            let result = try GPTQModelQuantizer.run(file: file, plan: plan, options: options, pool: pool, log: log)
            calibrated = result.tensors
            rotated = result.rotated
            calibrationTokens = result.tokens
        case .awq:
            let result = try AWQModelQuantizer.run(file: file, plan: plan, options: options, pool: pool, log: log)
            calibrated = result.tensors
            foldedNorms = result.norms
            calibrationTokens = result.tokens
        case .rtn where options.importance:
            let result = try GPTQModelQuantizer.run(file: file, plan: plan, options: options, pool: pool, log: log)
            calibrated = result.tensors
            rotated = result.rotated
            calibrationTokens = result.tokens
        case .rtn, .ternary:
            break
        }

        var writer = GGUFWriter(copying: file)
        writer.set("general.file_type", .uint32(options.target.fileType))
        writer.set("general.quantization_version", .uint32(2))
        if !rotated.isEmpty { writer.set(RotatedInputs.metadataKey, RotatedInputs.value(rotated)) }
        let toQuantize = plan.filter { if case .quantize = $0.action { return true } else { return false } }.count
        var quantized = 0, copied = 0
        var tensorTypes: [String: Int] = [:]
        var totalBits = 0.0, totalElements = 0.0
        for p in plan {
            let t = p.info
            let rows = t.rowCount, columns = t.shape[0]
            totalElements += Double(t.elementCount)
            totalBits += Double(p.outputType.rowBytes(elements: columns)! * rows * 8)
            if let values = foldedNorms[t.name] {
                // A norm with AWQ's scales folded in.
                writer.replaceTensor(name: t.name, shape: t.shape, type: .f32, source: .bytes(values.withUnsafeBytes { Array($0) }))
                continue
            }
            switch p.action {
            case .copy:
                copied += 1
            case .toF32:
                writer.replaceTensor(name: t.name, shape: t.shape, type: .f32, source: .producer {
                    let v = try Codecs.dequantize(t.type, file.data(for: t), count: t.elementCount)
                    return v.withUnsafeBytes { Array($0) }
                })
            case .quantize(let grid, _):
                quantized += 1
                tensorTypes[grid.type.name, default: 0] += 1
                if let bytes = calibrated[t.name] {
                    writer.replaceTensor(name: t.name, shape: t.shape, type: grid.type, source: .bytes(bytes))
                    calibrated[t.name] = nil
                } else {
                    let index = quantized, total = toQuantize
                    writer.replaceTensor(name: t.name, shape: t.shape, type: grid.type, source: .producer {
                        log("rtn \(t.name) \(t.type.name) -> \(grid.type.name) (\(index)/\(total) tensors)")
                        return try RTNQuantizer.quantizeTensor(file.data(for: t), type: t.type, rows: rows, columns: columns,
                                                               grid: grid, pool: pool)
                    })
                }
            }
        }
        try writer.write(to: output)
        let bytes = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        return QuantizeReport(input: input, output: output, method: options.method.rawValue + (options.method == .rtn && options.importance ? "+importance" : ""), type: options.target.name,
                              bytes: bytes, bitsPerWeight: totalElements > 0 ? totalBits / totalElements : 0,
                              seconds: Date().timeIntervalSince(start), tensorsQuantized: quantized, tensorsCopied: copied,
                              calibrationTokens: calibrationTokens, tensorTypes: tensorTypes)
    }
}
