import SquishFormats
import SquishKernels

/// Round-to-nearest: every block gets its own parameters from its own weights and every weight the nearest grid
/// point. For Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 the SquishFormats encoders are used, which reproduce the reference
/// quantizers (gguf-py, and llama-quantize without an importance matrix) bit for bit; IQ4_NL and the Squish affine
/// types use `BlockGrid`'s parameter searches.
public enum RTNQuantizer {
    /// Quantizes `count` floats (whole blocks) into `dst` (`count / grid.groupSize` blocks of the grid's type).
    public static func quantize(_ x: UnsafePointer<Float>, count: Int, grid: BlockGrid, into dst: UnsafeMutableRawPointer) {
        let g = grid.groupSize
        let blocks = count / g
        if grid.usesParameterSearch {
            for b in 0 ..< blocks { grid.quantizeBlock(x + g * b, into: dst + grid.blockBytes * b) }
        } else {
            // Sizes are whole blocks by construction, so the codec cannot reject them.
            try? Codecs.quantize(grid.type, UnsafeBufferPointer(start: x, count: blocks * 32),
                                 into: UnsafeMutableRawBufferPointer(start: dst, count: blocks * grid.blockBytes))
        }
    }

    /// Importance-weighted round-to-nearest (as llama.cpp does with an importance matrix): quantizes `weights`
    /// ([rows × columns] floats, whole blocks per row) into `grid`, each block's parameters chosen to minimize
    /// Σ importance[j] · (w[j] − ŵ[j])² (`importance`: one non-negative weight per column; with the calibration
    /// inputs' Σ x² per channel this is the diagonal of GPTQ's objective ‖(W − Ŵ) X‖²). Returns the packed rows.
    public static func quantize(weights w: UnsafePointer<Float>, rows: Int, columns: Int, grid: BlockGrid,
                                importance: UnsafePointer<Float>, pool: WorkerPool) -> [UInt8] {
        let g = grid.groupSize, blocks = columns / g, bb = grid.blockBytes
        var out = [UInt8](repeating: 0, count: rows * blocks * bb)
        out.withUnsafeMutableBytes { dst in
            let d = dst.baseAddress!
            pool.parallelFor(rows, granularity: 4) { range in
                for r in range {
                    for b in 0 ..< blocks {
                        grid.quantizeBlock(w + r * columns + b * g, into: d + (r * blocks + b) * bb, importance: importance + b * g)
                    }
                }
            }
        }
        return out
    }

    /// Quantizes a stored tensor ([rows × columns] in block type `type`) row by row on `pool`: each row is decoded
    /// to f32 by its codec (the input is never modified), then rounded into `grid`.
    public static func quantizeTensor(_ data: UnsafeRawBufferPointer, type: GGMLType, rows: Int, columns: Int,
                                      grid: BlockGrid, pool: WorkerPool) throws -> [UInt8] {
        guard let inRow = type.rowBytes(elements: columns), inRow * rows == data.count,
              let outRow = grid.type.rowBytes(elements: columns)
        else {
            throw QuantizeError.unsupportedTarget("\(rows)×\(columns) \(type.name) tensor into \(grid.type.name)")
        }
        var out = [UInt8](repeating: 0, count: outRow * rows)
        out.withUnsafeMutableBytes { dst in
            let d = dst.baseAddress!, s = data.baseAddress!
            pool.parallelFor(rows, granularity: 4) { range in
                let row = UnsafeMutableBufferPointer<Float>.allocate(capacity: columns)
                defer { row.deallocate() }
                for r in range {
                    try? Codecs.dequantize(type, UnsafeRawBufferPointer(start: s + r * inRow, count: inRow), into: row)
                    quantize(row.baseAddress!, count: columns, grid: grid, into: d + r * outRow)
                }
            }
        }
        return out
    }
}
