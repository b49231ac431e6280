// Lookup-table (LUT) matrix × vector kernels for low-bit weights, in the manner of T-MAC (Wei et al., "T-MAC: CPU
// Renaissance via Table Lookup for Low-Bit LLM Deployment on Edge", 2024, §3): the weights are split into bit
// planes, and per 4 activations a 16-entry table of partial sums replaces the multiplications; the packed weight bits
// of 32 rows index the table with one byte shuffle (pshufb). The work grows linearly with the number of planes.
//
// Weights: w[r, k] = d[r, g] · q[r, k] + m[r, g] with q = Σ_p 2^p · bit_p[r, k] (b planes, b = 1...4), d and m f16 per
// row and group of G columns (G = 32 or 64). Squish affine types SQ<b>_G<G> are exactly this; TQ2_0 / TQ1_0 (ternary,
// w = d · (t − 1), t in {0, 1, 2}) are 2 planes of t with m = −d, repeated per group of 64 (see sq_lut_repack).
//
// Packed layout (streamed front to back by one worker): blocks of 32 rows (the last one padded with zero rows),
// each block the matrix's groups in column order, each group
//   f16 d[32] @0 | f16 m[32] @64 | u8 bits[G / 8 pairs][b planes][32 rows] @128        (128 + 4 G b bytes)
// where byte [c][p][j] holds in its low nibble bit p of the codes of row j at columns 8c ... 8c + 3 (bit i: column
// 8c + i) and in its high nibble those of columns 8c + 4 ... 8c + 7. One 32-byte load therefore gives 32 rows'
// indices into two tables, and the weights are read once, sequentially.
//
// Tables (sq_lut_build_tables, once per token and matrix input): for chunk c of 4 activations x[4c ... 4c + 3],
// T_c[i] = Σ_{bit j of i set} x[4c + j], quantized to int8 with one scale per group of G activations:
// s_g = max |T| / 127 over the group's tables, T̂ = round(T / s_g). Then per row and group
//   Σ_k q x ≈ s_g · Σ_c Σ_p 2^p T̂_c[nibble_p(r, c)]        (integers: exact, ≤ 15 · 2 · 127 · G / 8 ≤ 30480 < 2^15)
//   y[r] = Σ_g fma(d · s_g, isum, ·) then fma(m, Σ_{k in g} x, ·).
// Error from the int8 tables: each entry is off by at most s_g / 2, and a row's sum uses G / 4 entries per plane with
// weight 2^p, so |Δy[r]| ≤ Σ_g |d[r, g]| · (2^b − 1) · (G / 4) · s_g / 2 (the tests check this bound; the errors are
// independent and mostly cancel, the typical error is about sqrt(Σ 4^p · G / 4) · s_g / sqrt(12) · |d| per group).
//
// AVX2: pshufb looks up 32 rows of chunk c (low nibbles) and of chunk c + 1 (high nibbles); unpacking the two
// results byte-wise puts both chunks of a row side by side, and one maddubs with the plane weight 2^p (unsigned) adds
// them into int16 per row; int16 sums per group (no overflow, see above), then float. The portable code does the
// same integer sums and the same float operations (fmaf), so both give bit-identical results. The tables are built
// by one shared function.
#include "squish_kernels.h"
#include "kernels_ext.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define SQ_X86 1
#include <immintrin.h>
#endif

enum { LUT_TQ1_0 = 34, LUT_TQ2_0 = 35 };

static int lut_source_params(int type, int *bits, int *group) {
    if ((type & 0xffff0000) == 0x53510000) {
        // Affine SQ<b>_G<g> only: bit 15 marks the symmetric Squish types (w = d·(q − 2^(b−1)), no m), which this
        // layout does not describe; groups other than 32 and 64 (16, 128, 256 = low byte 0) have no kernel here.
        if (type & 0x8000) return 0;
        const int b = (type >> 8) & 0x7f, g = type & 0xff;
        if (b < 1 || b > 4 || (g != 32 && g != 64)) return 0;
        *bits = b;
        *group = g;
        return 1;
    }
    if (type == LUT_TQ1_0 || type == LUT_TQ2_0) { *bits = 2; *group = 64; return 1; }
    return 0;
}

int sq_lut_supported(int type, int *bits, int *group) {
    int b = 0, g = 0;
    const int ok = lut_source_params(type, &b, &g);
    if (bits) *bits = b;
    if (group) *group = g;
    return ok;
}

size_t sq_lut_group_bytes(int bits, int group) { return 128 + 4 * (size_t)group * (size_t)bits; }

size_t sq_lut_packed_bytes(int64_t rows, int64_t columns, int bits, int group) {
    return (size_t)((rows + 31) / 32) * (size_t)(columns / group) * sq_lut_group_bytes(bits, group);
}

size_t sq_lut_table_bytes(int64_t columns, int group) {
    const size_t raw = 4 * (size_t)columns + 8 * (size_t)(columns / group);
    return (raw + 63) / 64 * 64;
}

/// TQ1_0 base-3 digit j of byte b (ggml's fixed-point packing; as in iq_tq.c).
static inline int lut_tq1_digit(uint8_t b, int j) {
    static const uint8_t pow3[5] = { 1, 3, 9, 27, 81 };
    return (((unsigned)(uint8_t)(b * pow3[j])) * 3) >> 8;
}

/// One row of the source type decoded into codes q[columns] and raw f16 d, m per group of `group` columns.
static void lut_decode_row(int type, int bits, int group, const uint8_t *row, int64_t columns, uint8_t *q,
                           uint16_t *dh, uint16_t *mh) {
    if (type == LUT_TQ2_0 || type == LUT_TQ1_0) {
        const size_t bb = type == LUT_TQ2_0 ? 66 : 54;
        for (int64_t s = 0; s < columns / 256; s++) {
            const uint8_t *blk = row + (size_t)s * bb;
            uint8_t *t = q + 256 * s;
            const uint16_t d = sq_load_u16(blk + (type == LUT_TQ2_0 ? 64 : 52));
            for (int h = 0; h < 4; h++) { dh[4 * s + h] = d; mh[4 * s + h] = (uint16_t)(d ^ 0x8000); }  // m = −d exactly
            if (type == LUT_TQ2_0) {
                // t = 3 (unused by ggml's quantizer) would need w = 2d: the code 3 is kept, 2 planes hold it exactly.
                for (int g = 0; g < 2; g++)
                    for (int j = 0; j < 4; j++)
                        for (int k = 0; k < 32; k++) t[128 * g + 32 * j + k] = (uint8_t)((blk[32 * g + k] >> (2 * j)) & 3);
            } else {
                for (int j = 0; j < 5; j++) {
                    for (int k = 0; k < 32; k++) t[32 * j + k] = (uint8_t)lut_tq1_digit(blk[k], j);
                    for (int k = 0; k < 16; k++) t[160 + 16 * j + k] = (uint8_t)lut_tq1_digit(blk[32 + k], j);
                }
                for (int j = 0; j < 4; j++)
                    for (int k = 0; k < 4; k++) t[240 + 4 * j + k] = (uint8_t)lut_tq1_digit(blk[48 + k], j);
            }
        }
        return;
    }
    // Squish affine: f16 d @0 | f16 m @2 | codes LSB-first @4.
    const size_t bb = 4 + (size_t)group * (size_t)bits / 8;
    const uint32_t mask = (1u << bits) - 1;
    for (int64_t g = 0; g < columns / group; g++) {
        const uint8_t *blk = row + (size_t)g * bb;
        dh[g] = sq_load_u16(blk);
        mh[g] = sq_load_u16(blk + 2);
        uint32_t acc = 0;
        int have = 0;
        size_t byte = 4;
        for (int j = 0; j < group; j++) {
            while (have < bits) { acc |= (uint32_t)blk[byte++] << have; have += 8; }
            q[g * group + j] = (uint8_t)(acc & mask);
            acc >>= bits;
            have -= bits;
        }
    }
}

int sq_lut_repack(int type, const void *src, size_t row_bytes, int64_t rows, int64_t columns, void *dst) {
    int bits, group;
    if (!lut_source_params(type, &bits, &group) || columns % group != 0 || rows <= 0) return 0;
    if ((type == LUT_TQ1_0 || type == LUT_TQ2_0) && columns % 256 != 0) return 0;
    const int64_t ng = columns / group;
    uint8_t *q = malloc((size_t)(32 * columns));                 // [32 rows × columns] codes
    uint16_t *dh = malloc(sizeof(uint16_t) * (size_t)(32 * ng)); // [32 rows × ng]
    uint16_t *mh = malloc(sizeof(uint16_t) * (size_t)(32 * ng));
    if (!q || !dh || !mh) { free(q); free(dh); free(mh); return 0; }
    const size_t gbytes = sq_lut_group_bytes(bits, group);
    uint8_t *o = (uint8_t *)dst;
    for (int64_t r0 = 0; r0 < rows; r0 += 32) {
        memset(q, 0, (size_t)(32 * columns));
        memset(dh, 0, sizeof(uint16_t) * (size_t)(32 * ng));
        memset(mh, 0, sizeof(uint16_t) * (size_t)(32 * ng));
        for (int j = 0; j < 32 && r0 + j < rows; j++)
            lut_decode_row(type, bits, group, (const uint8_t *)src + (size_t)(r0 + j) * row_bytes, columns,
                           q + (size_t)j * (size_t)columns, dh + j * ng, mh + j * ng);
        for (int64_t g = 0; g < ng; g++, o += gbytes) {
            for (int j = 0; j < 32; j++) {
                o[2 * j] = (uint8_t)dh[j * ng + g]; o[2 * j + 1] = (uint8_t)(dh[j * ng + g] >> 8);
                o[64 + 2 * j] = (uint8_t)mh[j * ng + g]; o[64 + 2 * j + 1] = (uint8_t)(mh[j * ng + g] >> 8);
            }
            uint8_t *bp = o + 128;
            for (int c = 0; c < group / 8; c++)
                for (int p = 0; p < bits; p++)
                    for (int j = 0; j < 32; j++) {
                        const uint8_t *qq = q + (size_t)j * (size_t)columns + g * group + 8 * c;
                        uint8_t v = 0;
                        for (int i = 0; i < 8; i++) v |= (uint8_t)(((qq[i] >> p) & 1) << i);
                        *bp++ = v;
                    }
        }
    }
    free(q); free(dh); free(mh);
    return 1;
}

/// The tables' body, shared by the two entry points below so that both compute the same floats: no product feeds
/// a sum within one expression (nothing for the compiler to fuse), and rounding to nearest-even is done with the
/// 1.5 · 2^23 trick (exact for |v| ≤ 127), which vectorizes where nearbyintf would be a library call.
__attribute__((always_inline)) static inline void lut_build_tables_body(const float *x, int64_t columns, int group,
                                                                        void *tables) {
    const int64_t ng = columns / group;
    int8_t *tab = (int8_t *)tables;                     // [columns / 4 chunks × 16]
    float *scales = (float *)(tab + 4 * columns);       // [ng]
    float *sums = scales + ng;                          // [ng]
    float t[16 * 16];                                   // one group's tables, G / 4 ≤ 16 chunks
    for (int64_t g = 0; g < ng; g++) {
        const float *xg = x + g * group;
        float amax = 0.0f, sx = 0.0f;
        for (int c = 0; c < group / 4; c++) {
            float *tc = t + 16 * c;
            tc[0] = 0.0f;
            // T[i] = T[i without its highest bit h] + x[h]: a fixed order, so every caller gets the same floats.
            for (int h = 0; h < 4; h++) {
                const float xv = xg[4 * c + h];
                for (int i = 0; i < (1 << h); i++) tc[(1 << h) + i] = tc[i] + xv;
            }
            for (int i = 1; i < 16; i++) amax = fmaxf(amax, fabsf(tc[i]));
        }
        for (int k = 0; k < group; k++) sx += xg[k];
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int8_t *tq = tab + 4 * g * group;
        for (int i = 0; i < 4 * group; i++) {
            const float v = t[i] * inv;
            const float r = (v + 12582912.0f) - 12582912.0f;
            tq[i] = (int8_t)(int)r;
        }
        scales[g] = amax / 127.0f;
        sums[g] = sx;
    }
}

#if defined(__x86_64__) || defined(_M_X64)
__attribute__((target("avx2,fma"))) static void lut_build_tables_avx2(const float *x, int64_t columns, int group, void *tables) {
    lut_build_tables_body(x, columns, group, tables);
}
#endif

void sq_lut_build_tables_portable(const float *x, int64_t columns, int group, void *tables) {
    lut_build_tables_body(x, columns, group, tables);
}

void sq_lut_build_tables(const float *x, int64_t columns, int group, void *tables) {
#if defined(__x86_64__) || defined(_M_X64)
    if (sq_kernels_have_avx2()) { lut_build_tables_avx2(x, columns, group, tables); return; }
#endif
    lut_build_tables_body(x, columns, group, tables);
}

// ---------------------------------------------------------------------------------------------------------------
// Portable

static void lut_gemv_portable(const uint8_t *wp, int bits, int group, int64_t rows, int64_t columns, int64_t b0,
                              int64_t b1, const void *tables, size_t table_stride, int64_t nt, float *y, int64_t ldy) {
    const int64_t ng = columns / group;
    const size_t gbytes = sq_lut_group_bytes(bits, group);
    for (int64_t blk = b0; blk < b1; blk++) {
        for (int64_t t = 0; t < nt; t++) {
            const int8_t *tab = (const int8_t *)tables + (size_t)t * table_stride;
            const float *scales = (const float *)(tab + 4 * columns), *sums = scales + ng;
            const uint8_t *w = wp + (size_t)blk * (size_t)ng * gbytes;
            float acc[32] = { 0 };
            for (int64_t g = 0; g < ng; g++, w += gbytes) {
                int isum[32] = { 0 };
                const uint8_t *bp = w + 128;
                for (int c = 0; c < group / 8; c++) {
                    const int8_t *t0 = tab + 16 * (g * group / 4 + 2 * c), *t1 = t0 + 16;
                    for (int p = 0; p < bits; p++, bp += 32)
                        for (int j = 0; j < 32; j++) isum[j] += ((int)t0[bp[j] & 15] + (int)t1[bp[j] >> 4]) * (1 << p);
                }
                for (int j = 0; j < 32; j++) {
                    const float d = sq_f16_to_f32(sq_load_u16(w + 2 * j)), m = sq_f16_to_f32(sq_load_u16(w + 64 + 2 * j));
                    const float ds = d * scales[g];
                    acc[j] = fmaf(ds, (float)isum[j], acc[j]);
                    acc[j] = fmaf(m, sums[g], acc[j]);
                }
            }
            for (int j = 0; j < 32 && blk * 32 + j < rows; j++) y[t * ldy + blk * 32 + j] = acc[j];
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C

#ifdef SQ_X86
#define SQ_AVX2 __attribute__((target("avx2,fma,f16c")))

SQ_AVX2 __attribute__((always_inline)) static inline void lut_block_avx2(const uint8_t *w, const int bits, const int group,
                                                                       int64_t ng, const int8_t *tab, const float *scales,
                                                                       const float *sums, float *out) {
    const size_t gbytes = sq_lut_group_bytes(bits, group);
    const __m256i low = _mm256_set1_epi8(15);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; g++, w += gbytes) {
        __m256i alo = _mm256_setzero_si256(), ahi = _mm256_setzero_si256();
        const uint8_t *bp = w + 128;
        const int8_t *tg = tab + 4 * g * group;
        for (int c = 0; c < group / 8; c++) {
            const __m256i t0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(tg + 32 * c)));
            const __m256i t1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(tg + 32 * c + 16)));
            for (int p = 0; p < bits; p++, bp += 32) {
                const __m256i ix = _mm256_loadu_si256((const __m256i *)bp);
                const __m256i v0 = _mm256_shuffle_epi8(t0, _mm256_and_si256(ix, low));
                const __m256i v1 = _mm256_shuffle_epi8(t1, _mm256_and_si256(_mm256_srli_epi16(ix, 4), low));
                const __m256i pw = _mm256_set1_epi8((char)(1 << p));
                // Per 128-bit lane: unpacklo pairs rows 0-7 (16-23), unpackhi rows 8-15 (24-31) of the two chunks.
                alo = _mm256_add_epi16(alo, _mm256_maddubs_epi16(pw, _mm256_unpacklo_epi8(v0, v1)));
                ahi = _mm256_add_epi16(ahi, _mm256_maddubs_epi16(pw, _mm256_unpackhi_epi8(v0, v1)));
            }
        }
        const __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(alo)));      // rows 0-7
        const __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(ahi)));      // rows 8-15
        const __m256 f2 = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(alo, 1))); // rows 16-23
        const __m256 f3 = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(ahi, 1))); // rows 24-31
        const __m256 s = _mm256_set1_ps(scales[g]), sx = _mm256_set1_ps(sums[g]);
#define SQ_LUT_ROWS(k, f, acc)                                                                                   \
        {                                                                                                        \
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 16 * (k))));                 \
            const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 64 + 16 * (k))));            \
            acc = _mm256_fmadd_ps(_mm256_mul_ps(d, s), f, acc);                                                  \
            acc = _mm256_fmadd_ps(m, sx, acc);                                                                   \
        }
        SQ_LUT_ROWS(0, f0, acc0)
        SQ_LUT_ROWS(1, f1, acc1)
        SQ_LUT_ROWS(2, f2, acc2)
        SQ_LUT_ROWS(3, f3, acc3)
#undef SQ_LUT_ROWS
    }
    _mm256_storeu_ps(out, acc0);
    _mm256_storeu_ps(out + 8, acc1);
    _mm256_storeu_ps(out + 16, acc2);
    _mm256_storeu_ps(out + 24, acc3);
}

SQ_AVX2 __attribute__((always_inline)) static inline void lut_gemv_avx2_bits(const uint8_t *wp, const int bits, const int group, int64_t rows, int64_t columns,
                                       int64_t b0, int64_t b1, const void *tables, size_t table_stride, int64_t nt,
                                       float *y, int64_t ldy) {
    const int64_t ng = columns / group;
    const size_t bbytes = (size_t)ng * sq_lut_group_bytes(bits, group);
    float out[32];
    for (int64_t blk = b0; blk < b1; blk++) {
        const uint8_t *w = wp + (size_t)blk * bbytes;
        const int64_t valid = rows - blk * 32 < 32 ? rows - blk * 32 : 32;
        for (int64_t t = 0; t < nt; t++) {
            const int8_t *tab = (const int8_t *)tables + (size_t)t * table_stride;
            const float *scales = (const float *)(tab + 4 * columns);
            float *yt = y + t * ldy + blk * 32;
            if (valid == 32) {
                lut_block_avx2(w, bits, group, ng, tab, scales, scales + ng, yt);
            } else {
                lut_block_avx2(w, bits, group, ng, tab, scales, scales + ng, out);
                memcpy(yt, out, sizeof(float) * (size_t)valid);
            }
        }
    }
}

// One specialization per (bits, group) so that the inner loops unroll.
#define SQ_LUT_SPECIAL(B, G)                                                                                     \
    SQ_AVX2 static void lut_gemv_avx2_##B##_##G(const uint8_t *wp, int64_t rows, int64_t columns, int64_t b0,   \
                                                int64_t b1, const void *tables, size_t ts, int64_t nt, float *y,   \
                                                int64_t ldy) {                                                     \
        lut_gemv_avx2_bits(wp, B, G, rows, columns, b0, b1, tables, ts, nt, y, ldy);                               \
    }
SQ_LUT_SPECIAL(1, 32) SQ_LUT_SPECIAL(2, 32) SQ_LUT_SPECIAL(3, 32) SQ_LUT_SPECIAL(4, 32)
SQ_LUT_SPECIAL(1, 64) SQ_LUT_SPECIAL(2, 64) SQ_LUT_SPECIAL(3, 64) SQ_LUT_SPECIAL(4, 64)
#undef SQ_LUT_SPECIAL
#endif

void sq_lut_gemv_portable(const void *wp, int bits, int group, int64_t rows, int64_t columns, int64_t b0, int64_t b1,
                          const void *tables, size_t table_stride, int64_t nt, float *y, int64_t ldy) {
    lut_gemv_portable((const uint8_t *)wp, bits, group, rows, columns, b0, b1, tables, table_stride, nt, y, ldy);
}

void sq_lut_gemv(const void *wp, int bits, int group, int64_t rows, int64_t columns, int64_t b0, int64_t b1,
                 const void *tables, size_t table_stride, int64_t nt, float *y, int64_t ldy) {
#ifdef SQ_X86
    if (sq_kernels_have_avx2()) {
        const uint8_t *w = (const uint8_t *)wp;
#define SQ_LUT_CASE(B, G) \
        if (bits == B && group == G) { lut_gemv_avx2_##B##_##G(w, rows, columns, b0, b1, tables, table_stride, nt, y, ldy); return; }
        SQ_LUT_CASE(1, 32) SQ_LUT_CASE(2, 32) SQ_LUT_CASE(3, 32) SQ_LUT_CASE(4, 32)
        SQ_LUT_CASE(1, 64) SQ_LUT_CASE(2, 64) SQ_LUT_CASE(3, 64) SQ_LUT_CASE(4, 64)
#undef SQ_LUT_CASE
    }
#endif
    lut_gemv_portable((const uint8_t *)wp, bits, group, rows, columns, b0, b1, tables, table_stride, nt, y, ldy);
}
