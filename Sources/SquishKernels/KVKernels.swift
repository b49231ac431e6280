import CSquishKernels

/// The compressed KV caches' kernels (CSquishKernels/kvcache.c holds the layouts): quantizing one position's key or
/// value of a KV head, and attention scores and value sums that read the compressed rows directly.
public enum KVKernels {
    /// Token-row formats: one row is one position's key or value of one KV head.
    public enum RowFormat: Int32, Sendable {
        case f32 = 0, f16 = 1
        /// Symmetric 8-bit, one f16 scale per group of channels.
        case q8 = 2
        /// Asymmetric 4- and 2-bit, an f16 scale and minimum per group of channels.
        case u4 = 3, u2 = 4
    }

    public static let maxHeadDim = Int(SQ_KV_MAX_HEAD_DIM)
    public static let maxGroup = Int(SQ_KV_MAX_GROUP)

    /// Bytes of one row of `headDim` values in groups of `group` channels.
    public static func rowBytes(_ f: RowFormat, headDim: Int, group: Int) -> Int {
        sq_kv_row_bytes(f.rawValue, Int64(headDim), Int64(group))
    }

    public static func quantizeRow(_ f: RowFormat, _ x: UnsafePointer<Float>, headDim: Int, group: Int, into dst: UnsafeMutableRawPointer) {
        sq_kv_quantize_row(f.rawValue, x, Int64(headDim), Int64(group), dst)
    }

    public static func dequantizeRow(_ f: RowFormat, _ src: UnsafeRawPointer, headDim: Int, group: Int, into dst: UnsafeMutablePointer<Float>) {
        sq_kv_dequantize_row(f.rawValue, src, Int64(headDim), Int64(group), dst)
    }

    /// Bytes of a block of `tokens` keys of one KV head quantized per channel to `bits` bits.
    public static func channelBlockBytes(bits: Int, headDim: Int, tokens: Int) -> Int {
        sq_kv_channel_block_bytes(Int32(bits), Int64(headDim), Int64(tokens))
    }

    /// keys[t·stride + c] for t < tokens, c < headDim, quantized per channel into a block.
    public static func quantizeChannels(bits: Int, _ keys: UnsafePointer<Float>, stride: Int, tokens: Int, headDim: Int,
                                        into dst: UnsafeMutableRawPointer) {
        sq_kv_quantize_channels(Int32(bits), keys, Int64(stride), Int64(tokens), Int64(headDim), dst)
    }

    public static func dequantizeChannels(bits: Int, _ block: UnsafeRawPointer, headDim: Int, token: Int, into dst: UnsafeMutablePointer<Float>) {
        sq_kv_dequantize_channels(Int32(bits), block, Int64(headDim), Int64(token), dst)
    }

    /// Bytes of a block of `tokens` keys of one KV head quantized per channel with per-channel widths averaging `bits`.
    public static func allocatedBlockBytes(bits: Int, headDim: Int, tokens: Int) -> Int {
        sq_kv_allocated_block_bytes(Int32(bits), Int64(headDim), Int64(tokens))
    }

    /// keys[t·stride + c] quantized per channel into an allocated block: each channel's width chosen for the least
    /// expected squared error of q·k at an average of `bits` bits, channel c's error weighing `weights[c]` (nil: 1).
    public static func quantizeChannelsAllocated(bits: Int, _ keys: UnsafePointer<Float>, stride: Int, tokens: Int, headDim: Int,
                                                 weights: UnsafePointer<Float>?, into dst: UnsafeMutableRawPointer) {
        sq_kv_quantize_channels_allocated(Int32(bits), keys, Int64(stride), Int64(tokens), Int64(headDim), weights, dst)
    }

    /// Positions of an allocated block of `tokens` positions as f32 rows dst[(j − positions.lowerBound)·stride + c].
    public static func dequantizeChannelsAllocated(_ block: UnsafeRawPointer, headDim: Int, tokens: Int, positions: Range<Int>,
                                                   into dst: UnsafeMutablePointer<Float>, stride: Int) {
        sq_kv_dequantize_channels_allocated(block, Int64(headDim), Int64(tokens), Int64(positions.lowerBound),
                                            Int64(positions.upperBound), dst, Int64(stride))
    }

    /// scores[r·ld + j] = scale · q_r · k_j for r < heads, j < count; row j at rows + j·rowStride bytes.
    @inline(__always) public static func scores(_ f: RowFormat, queries: UnsafePointer<Float>, heads: Int, headDim: Int, group: Int,
                                                rows: UnsafeRawPointer, rowStride: Int, count: Int, scale: Float,
                                                into scores: UnsafeMutablePointer<Float>, ld: Int) {
        sq_kv_scores(f.rawValue, queries, Int64(heads), Int64(headDim), Int64(group), rows, Int64(rowStride), Int64(count), scale,
                     scores, Int64(ld))
    }

    /// out[r·headDim + i] += Σ_j p[r·ld + j] · v_j[i]; row j at rows + j·rowStride bytes.
    @inline(__always) public static func accumulate(_ f: RowFormat, weights p: UnsafePointer<Float>, heads: Int, ld: Int,
                                                    rows: UnsafeRawPointer, rowStride: Int, count: Int, headDim: Int, group: Int,
                                                    into out: UnsafeMutablePointer<Float>) {
        sq_kv_accumulate(f.rawValue, p, Int64(heads), Int64(ld), rows, Int64(rowStride), Int64(count), Int64(headDim), Int64(group), out)
    }

    /// scores[r·ld + (j − j0)] = scale · q_r · k_j for j0 ≤ j < j1 of a channel block.
    @inline(__always) public static func channelScores(bits: Int, queries: UnsafePointer<Float>, heads: Int, headDim: Int,
                                                       block: UnsafeRawPointer, positions: Range<Int>, scale: Float,
                                                       into scores: UnsafeMutablePointer<Float>, ld: Int) {
        sq_kv_channel_scores(Int32(bits), queries, Int64(heads), Int64(headDim), block, Int64(positions.lowerBound),
                             Int64(positions.upperBound), scale, scores, Int64(ld))
    }

    /// Softmax of `rows` rows of `count` scores in place (row r at x + r·ld).
    @inline(__always) public static func softmax(_ x: UnsafeMutablePointer<Float>, rows: Int, count: Int, ld: Int) {
        sq_softmax_rows(x, Int64(rows), Int64(count), Int64(ld))
    }
}
