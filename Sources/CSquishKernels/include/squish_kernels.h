// Squish's innermost SIMD loops: dot products of ggml weight blocks with int8-quantized activations, and f32
// helpers for attention. AVX2/FMA/F16C versions carry per-function target attributes and are chosen at run time;
// a portable C version gives the same results everywhere else. Everything above these loops is Swift.
#ifndef SQUISH_KERNELS_H
#define SQUISH_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Activations quantized per block of 32: x[i] ≈ d * qs[i]; s = d * Σ qs[i] (for weight formats with an offset).
typedef struct {
    float d;
    float s;
    int8_t qs[32];
} sq_block_q8;  // 40 bytes

/// Weight block formats the integer kernels take (values are ggml type ids).
enum {
    SQ_TYPE_F32 = 0,
    SQ_TYPE_F16 = 1,
    SQ_TYPE_Q4_0 = 2,
    SQ_TYPE_Q4_1 = 3,
    SQ_TYPE_Q5_0 = 6,
    SQ_TYPE_Q5_1 = 7,
    SQ_TYPE_Q8_0 = 8,
    SQ_TYPE_IQ4_NL = 20,
};

/// 1 when the AVX2+FMA+F16C kernels are in use, 0 for the portable ones.
int sq_kernels_have_avx2(void);
/// The portable versions of the kernels below, callable directly (tests compare them with the dispatched ones).
void sq_quantize_q8_portable(const float *x, sq_block_q8 *y, int64_t n);
void sq_matmul_q8_portable(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                           const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy);
void sq_matmul_f_portable(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                          const float *x, int64_t ldx, int64_t n, int64_t nt, float *y, int64_t ldy);

/// True for types `sq_matmul_q8` accepts (the int8-activation block types).
int sq_type_has_q8_kernel(int type);

/// Quantizes n floats (n a multiple of 32) to n/32 blocks.
void sq_quantize_q8(const float *x, sq_block_q8 *y, int64_t n);

/// y[t * ldy + r] = Σ_k W[r, k] * x_t[k] for rows r in [r0, r1) and tokens t in [0, nt).
/// W: rows of `row_bytes` bytes in block type `type`, each row nb blocks of 32; a: nt rows of nb activation blocks.
void sq_matmul_q8(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                  const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy);

/// y[t * ldy + r] = Σ_k W[r, k] * x[t * ldx + k] for f32 or f16 weights (type SQ_TYPE_F32 / SQ_TYPE_F16), n columns.
void sq_matmul_f(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                 const float *x, int64_t ldx, int64_t n, int64_t nt, float *y, int64_t ldy);

/// Dequantizes one row of n weights (F32, F16 and the int8-kernel block types) to f32.
void sq_dequantize_row(int type, const void *src, float *dst, int64_t n);

/// Σ a[i] * b[i].
float sq_dot_f32(const float *a, const float *b, int64_t n);
/// y[i] += alpha * x[i].
void sq_axpy_f32(float alpha, const float *x, float *y, int64_t n);

/// One attention head over n cached positions, the plain definition: out = softmax(scale · K q) · V.
/// keys/values: n rows of `stride` floats (the head's slice starts at the pointer); scores: n floats of scratch.
void sq_attention_head_portable(const float *q, const float *keys, const float *values, int64_t stride, int64_t n,
                                int64_t head_dim, float scale, float *scores, float *out);

/// Several query heads sharing one KV head (multi-query / grouped-query attention; nq = 1 is plain attention): for
/// h < nq, out + h·head_dim = softmax(scale · K q_h) · V with q_h = q + h·head_dim, over the same n positions
/// (keys/values as for sq_attention_head_portable). Each key and value is read once per four heads; a single head
/// takes a kernel that scores four positions per step. scores: nq·n floats of scratch.
void sq_attention_heads(const float *q, int64_t nq, const float *keys, const float *values, int64_t stride, int64_t n,
                        int64_t head_dim, float scale, float *scores, float *out);
/// The portable version of sq_attention_heads (one sq_attention_head_portable per head).
void sq_attention_heads_portable(const float *q, int64_t nq, const float *keys, const float *values, int64_t stride,
                                 int64_t n, int64_t head_dim, float scale, float *scores, float *out);

/// Causal attention for a tile of `tokens` query tokens whose `heads` query heads share one KV head: token i's head h
/// (query at q + i·q_stride + h·head_dim) gets out + i·out_stride + h·head_dim = softmax(scale · K q) · V over
/// positions lo[i] ..< hi[i] (lo[i] < hi[i]; keys/values: position p's head slice at keys + p·stride). Keys and values
/// are read in blocks of 32 positions once for all rows of the tile. A row's result depends on its own query and range
/// only (the same bits in any tile, a one-token tile included), and they are the bits sq_attention_heads gives it in
/// a group of two to four heads. Every position from min lo to max hi is read.
/// scratch: sq_attention_tile_scratch(tokens · heads, head_dim, max hi − min lo) floats.
void sq_attention_tile(const float *q, int64_t q_stride, int64_t tokens, int64_t heads, const float *keys,
                       const float *values, int64_t stride, const int64_t *lo, const int64_t *hi, int64_t head_dim,
                       float scale, float *scratch, float *out, int64_t out_stride);
/// The portable version of sq_attention_tile (sq_attention_head_portable for each row).
void sq_attention_tile_portable(const float *q, int64_t q_stride, int64_t tokens, int64_t heads, const float *keys,
                                const float *values, int64_t stride, const int64_t *lo, const int64_t *hi,
                                int64_t head_dim, float scale, float *scratch, float *out, int64_t out_stride);
/// Floats of scratch sq_attention_tile needs for `rows` query rows (tokens · heads) over at most `positions` positions.
int64_t sq_attention_tile_scratch(int64_t rows, int64_t head_dim, int64_t positions);

/// Gated activation of a feed-forward layer in place: g[i] = act(g[i]) · u[i] for i < n, act = SiLU (gelu = 0) or GELU
/// in its tanh form (gelu = 1). The AVX2 version computes both as g / (1 + e^z) with a vectorized exp.
void sq_gated_activation(int gelu, float *g, const float *u, int64_t n);
/// The portable version (expf / tanhf, the definitions).
void sq_gated_activation_portable(int gelu, float *g, const float *u, int64_t n);
/// y = x / √(mean(x²) + eps) · w over n values (sum of squares in double; y may be x).
void sq_rms_norm(const float *x, const float *w, float *y, int64_t n, float eps);
/// 1 when no x[i] (i < n) is NaN or infinite.
int sq_all_finite(const float *x, int64_t n);

/// dst[0 ..< n] = the randomized block Hadamard rotation of src (H·diag(signs)·src / √block per block of `block`
/// values, block a power of two dividing n); src may be dst. The portable variant gives the same bits.
void sq_hadamard_rotate(const float *src, float *dst, const float *signs, int64_t n, int64_t block);
void sq_hadamard_rotate_portable(const float *src, float *dst, const float *signs, int64_t n, int64_t block);
/// Index of the largest x[i], i < n (the first on ties; NaN never wins; 0 when none is larger than −∞).
int64_t sq_argmax(const float *x, int64_t n);

/// Softmax of `rows` rows of n values in place (row r at x + r·ld): x ← e^(x − max) / Σ e^(x − max).
void sq_softmax_rows(float *x, int64_t rows, int64_t n, int64_t ld);
void sq_softmax_rows_portable(float *x, int64_t rows, int64_t n, int64_t ld);

/// Compressed KV cache storage (layouts in kvcache.c). Token rows: one position's key or value of one KV head.
enum { SQ_KV_F32 = 0, SQ_KV_F16 = 1, SQ_KV_Q8 = 2, SQ_KV_U4 = 3, SQ_KV_U2 = 4 };
/// Largest head size and largest per-channel group (positions per KIVI key block) the kernels take.
#define SQ_KV_MAX_HEAD_DIM 512
#define SQ_KV_MAX_GROUP 256
/// Bytes of one token row (head_dim values in groups of `group` channels; group divides head_dim, multiple of 8).
size_t sq_kv_row_bytes(int fmt, int64_t head_dim, int64_t group);
void sq_kv_quantize_row(int fmt, const float *x, int64_t head_dim, int64_t group, void *dst);
void sq_kv_dequantize_row(int fmt, const void *src, int64_t head_dim, int64_t group, float *dst);
/// Bytes of a channel block: `tokens` keys of one KV head quantized per channel to `bits` (4 or 2) bits.
size_t sq_kv_channel_block_bytes(int bits, int64_t head_dim, int64_t tokens);
/// Quantizes keys[t·stride + c] (t < tokens ≤ SQ_KV_MAX_GROUP, c < head_dim) per channel into a block.
void sq_kv_quantize_channels(int bits, const float *keys, int64_t stride, int64_t tokens, int64_t head_dim, void *dst);
/// Position `token` of a channel block as f32 [head_dim].
void sq_kv_dequantize_channels(int bits, const void *block, int64_t head_dim, int64_t token, float *dst);
/// Bytes of an allocated channel block: like a channel block, with each channel's width chosen per block (kvcache.c).
size_t sq_kv_allocated_block_bytes(int bits, int64_t head_dim, int64_t tokens);
/// Quantizes keys per channel into an allocated block: widths minimizing Σ weight_c · step_c² (weight NULL: all 1)
/// for an average of `bits` bits.
void sq_kv_quantize_channels_allocated(int bits, const float *keys, int64_t stride, int64_t tokens, int64_t head_dim,
                                       const float *weight, void *dst);
/// Positions j0 ..< j1 of an allocated block of `tokens` positions as f32 rows dst[(t − j0)·stride + c].
void sq_kv_dequantize_channels_allocated(const void *block, int64_t head_dim, int64_t tokens, int64_t j0, int64_t j1,
                                         float *dst, int64_t stride);
void sq_kv_dequantize_channels_allocated_portable(const void *block, int64_t head_dim, int64_t tokens, int64_t j0,
                                                  int64_t j1, float *dst, int64_t stride);
/// scores[r·ld + j] = scale · q_r · k_j for r < nq, j < n; k_j: the token row at rows + j·row_stride bytes.
void sq_kv_scores(int fmt, const float *q, int64_t nq, int64_t head_dim, int64_t group, const void *rows,
                  int64_t row_stride, int64_t n, float scale, float *scores, int64_t ld);
/// out[r·head_dim + i] += Σ_j p[r·ld + j] · v_j[i] for r < nq, j < n; v_j: the token row at rows + j·row_stride bytes.
void sq_kv_accumulate(int fmt, const float *p, int64_t nq, int64_t ld, const void *rows, int64_t row_stride, int64_t n,
                      int64_t head_dim, int64_t group, float *out);
/// scores[r·ld + (j − j0)] = scale · q_r · k_j for positions j0 ≤ j < j1 of a channel block.
void sq_kv_channel_scores(int bits, const float *q, int64_t nq, int64_t head_dim, const void *block, int64_t j0,
                          int64_t j1, float scale, float *scores, int64_t ld);
/// The portable versions of the three above (the definitions, one dequantized row at a time).
void sq_kv_scores_portable(int fmt, const float *q, int64_t nq, int64_t head_dim, int64_t group, const void *rows,
                           int64_t row_stride, int64_t n, float scale, float *scores, int64_t ld);
void sq_kv_accumulate_portable(int fmt, const float *p, int64_t nq, int64_t ld, const void *rows, int64_t row_stride,
                               int64_t n, int64_t head_dim, int64_t group, float *out);
void sq_kv_channel_scores_portable(int bits, const float *q, int64_t nq, int64_t head_dim, const void *block,
                                   int64_t j0, int64_t j1, float scale, float *scores, int64_t ld);

/// Row-interleaved ("repacked") weights, see repack.c: 1 for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q3_K, Q4_K, Q5_K
/// and Q6_K.
int sq_repack_supported(int type);
/// Bytes of one packed group-block (8 rows × 32 columns; for the K-quants an eighth of an 8-row super-block group:
/// Q3_K 146, Q4_K 148, Q5_K 180, Q6_K 210);
/// 0 for unsupported types. A packed matrix takes rows / 8 × nb × this.
size_t sq_repack_group_bytes(int type);
/// Repacks `rows` rows (a multiple of 8) of nb blocks each from the ggml layout (rows of `row_bytes`) into dst
/// (rows / 8 × nb × sq_repack_group_bytes(type) bytes).
void sq_repack_rows8(int type, const void *src, size_t row_bytes, int64_t rows, int64_t nb, void *dst);
/// y[t * ldy + r] = Σ_k W[r, k] * x_t[k] for rows r in [8 g0, 8 g1) and tokens t in [0, nt), W repacked.
/// Uses the AVX512-VNNI kernels where the CPU has them (see sq_kernels_have_vnni), else AVX2, else portable C.
void sq_matmul_packed(int type, const void *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb, int64_t nt,
                      float *y, int64_t ldy);
/// 1 when the CPU runs the AVX512-VNNI packed kernels (AVX2, FMA, F16C, AVX512 F/VL/BW and VNNI).
int sq_kernels_have_vnni(void);
/// sq_matmul_packed without AVX512-VNNI (AVX2 where available, else portable; bit-identical results).
void sq_matmul_packed_avx2(int type, const void *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb,
                           int64_t nt, float *y, int64_t ldy);
/// The portable version of sq_matmul_packed (bit-identical results).
void sq_matmul_packed_portable(int type, const void *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb,
                               int64_t nt, float *y, int64_t ldy);

/// Lookup-table (T-MAC style) kernels for bit-plane weights, see lut.c. 1 when `type` (a ggml/Squish type id) can be
/// repacked: SQ<b>_G<g> with b ≤ 4 and g = 32 or 64, TQ2_0, TQ1_0; sets the planes and group of the packed layout.
int sq_lut_supported(int type, int *bits, int *group);
/// Bytes of one packed group of 32 rows (128 + 4 · group · bits) and of a whole packed matrix (rows rounded up to 32).
size_t sq_lut_group_bytes(int bits, int group);
size_t sq_lut_packed_bytes(int64_t rows, int64_t columns, int bits, int group);
/// Repacks rows (of row_bytes bytes in `type`) into dst (sq_lut_packed_bytes); 0 when unsupported (nothing written).
int sq_lut_repack(int type, const void *src, size_t row_bytes, int64_t rows, int64_t columns, void *dst);
/// Bytes of one token's tables for `columns` activations (int8 [columns / 4][16], then f32 scales and sums per group).
size_t sq_lut_table_bytes(int64_t columns, int group);
/// Builds one token's tables from x[columns] (columns a multiple of group) into `tables`.
void sq_lut_build_tables(const float *x, int64_t columns, int group, void *tables);
/// The portable version of sq_lut_build_tables (bit-identical tables).
void sq_lut_build_tables_portable(const float *x, int64_t columns, int group, void *tables);
/// y[t * ldy + r] for rows r of the 32-row blocks [b0, b1) (r < rows) and tokens t < nt (tables t · table_stride apart).
void sq_lut_gemv(const void *wp, int bits, int group, int64_t rows, int64_t columns, int64_t b0, int64_t b1,
                 const void *tables, size_t table_stride, int64_t nt, float *y, int64_t ldy);
/// The portable version of sq_lut_gemv (bit-identical results).
void sq_lut_gemv_portable(const void *wp, int bits, int group, int64_t rows, int64_t columns, int64_t b0, int64_t b1,
                          const void *tables, size_t table_stride, int64_t nt, float *y, int64_t ldy);

#ifdef __cplusplus
}
#endif
#endif
