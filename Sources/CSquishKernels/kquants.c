// Q2_K..Q6_K against int8 activations. K-quants (ggml PR #1684; layouts as in ggml's docs and the GGUF spec) pack
// 256 weights per super-block, split into sub-blocks of 16 or 32 with small integer scales, times f16 super-block
// factors:
//   Q2_K (84 B):  scales[16] @0 | qs[64] @16 | f16 d @80 | f16 dmin @82
//                 16 sub-blocks of 16: w = d * (sc & 15) * q - dmin * (sc >> 4), q in 0..3
//   Q3_K (110 B): hmask[32] @0 | qs[64] @32 | scales[12] @96 (16 six-bit) | f16 d @108
//                 16 sub-blocks of 16: w = d * (sc - 32) * (q + 4 * hbit - 4), q in 0..3
//   Q4_K (144 B): f16 d @0 | f16 dmin @2 | scales[12] @4 (8 six-bit scales, 8 six-bit mins) | qs[128] @16
//                 8 sub-blocks of 32: w = d * sc * q - dmin * m, q in 0..15
//   Q5_K (176 B): like Q4_K with qh[32] @16 (the fifth bit) and qs[128] @48, q in 0..31
//   Q6_K (210 B): ql[128] @0 | qh[64] @128 | int8 scales[16] @192 | f16 d @208
//                 16 sub-blocks of 16: w = d * sc * (q - 32), q in 0..63
// Element i = 128 g + 32 j + k of Q2_K/Q3_K/Q6_K takes its low bits from byte k of a 32-byte group of g, shifted by
// 2 j (Q2_K/Q3_K) or from ql / qh as described at kq_unpack; sub-block of element i is i / 16 (or i / 32).
//
// A super-block spans 8 activation blocks (x ≈ d_a * qa per 32). With unsigned weight integers u and per-sub-block
// integer scales sc, one super-block's contribution to a dot product is
//   Σ_b d_a[b] * (d * Σ_{sub-block s in b} sc_s * Σ u qa  +  coef * Σ_{s in b} c_s * Σ_s qa)
// where the second term carries the mins / offsets: c = mins and coef = -dmin (Q2_K, per 16 and Q4_K/Q5_K, per 32,
// where d_a * Σ qa is the activation block's `s`), c = sc and coef = -4 d (Q3_K) or -32 d (Q6_K).
#include "kernels_ext.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define KQ_X86 1
#include <immintrin.h>
#endif

// The dequantizer must round like numpy (one rounding per operation): no fused multiply-adds.
#pragma STDC FP_CONTRACT OFF

enum { KQ_Q2_K = 10, KQ_Q3_K = 11, KQ_Q4_K = 12, KQ_Q5_K = 13, KQ_Q6_K = 14 };

int sq_kquants_has_type(int type) { return type >= KQ_Q2_K && type <= KQ_Q6_K; }

static inline size_t kq_block_bytes(int type) {
    switch (type) {
    case KQ_Q2_K: return 84;
    case KQ_Q3_K: return 110;
    case KQ_Q4_K: return 144;
    case KQ_Q5_K: return 176;
    default: return 210;
    }
}

static inline float kq_f16(const uint8_t *p) { return sq_f16_to_f32(sq_load_u16(p)); }

/// Q3_K: the 16 six-bit scales (still biased by 32) from 12 bytes: low 4 bits = b[s % 8] >> 4 (s / 8),
/// high 2 bits = b[8 + s % 4] >> 2 (s / 4). Byte k of v[i] is scale 4 i + k.
static inline void kq_scales_q3_words(const uint8_t *b, uint32_t v[4]) {
    const uint32_t a0 = sq_load_u32(b), a1 = sq_load_u32(b + 4), a2 = sq_load_u32(b + 8);
    v[0] = (a0 & 0x0f0f0f0fu) | ((a2 & 0x03030303u) << 4);
    v[1] = (a1 & 0x0f0f0f0fu) | (((a2 >> 2) & 0x03030303u) << 4);
    v[2] = ((a0 >> 4) & 0x0f0f0f0fu) | (((a2 >> 4) & 0x03030303u) << 4);
    v[3] = ((a1 >> 4) & 0x0f0f0f0fu) | (((a2 >> 6) & 0x03030303u) << 4);
}

/// The same as out[s] for s in 0..15.
static inline void kq_scales_q3(const uint8_t *b, uint8_t out[16]) {
    uint32_t v[4];
    kq_scales_q3_words(b, v);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 4; k++) out[4 * i + k] = (uint8_t)(v[i] >> (8 * k));
}

// ---------------------------------------------------------------------------------------------------------------
// Dequantization, bit-exact with gguf-py's numpy dequantizers (same operation order: sub-block scale first, then
// times q, then minus the offset; all in f32).

static void kq_dequantize_block(int type, const uint8_t *blk, float *out) {
    switch (type) {
    case KQ_Q2_K: {
        const float d = kq_f16(blk + 80), dmin = kq_f16(blk + 82);
        const uint8_t *qs = blk + 16;
        for (int i = 0; i < 256; i++) {
            const int g = i >> 7, j = (i >> 5) & 3, k = i & 31, s = i >> 4;
            const float dl = d * (float)(blk[s] & 15);
            const float ml = dmin * (float)(blk[s] >> 4);
            const float v = dl * (float)((qs[32 * g + k] >> (2 * j)) & 3);
            out[i] = v - ml;
        }
        break;
    }
    case KQ_Q3_K: {
        const float d = kq_f16(blk + 108);
        uint8_t sc[16];
        kq_scales_q3(blk + 96, sc);
        for (int i = 0; i < 256; i++) {
            const int g = i >> 7, j = (i >> 5) & 3, k = i & 31, s = i >> 4;
            const float dl = d * (float)((int)sc[s] - 32);
            const int ql = (blk[32 + 32 * g + k] >> (2 * j)) & 3;
            const int hbit = (blk[k] >> (4 * g + j)) & 1;
            out[i] = dl * (float)(ql - ((hbit ^ 1) << 2));
        }
        break;
    }
    case KQ_Q4_K:
    case KQ_Q5_K: {
        const float d = kq_f16(blk), dmin = kq_f16(blk + 2);
        uint64_t sc, m;
        sq_kquant_scale_min_k4(blk + 4, &sc, &m);
        const uint8_t *qs = blk + (type == KQ_Q4_K ? 16 : 48);
        for (int s = 0; s < 8; s++) {
            const float ds = d * (float)((sc >> (8 * s)) & 0xff);
            const float dm = dmin * (float)((m >> (8 * s)) & 0xff);
            for (int k = 0; k < 32; k++) {
                int q = (qs[32 * (s >> 1) + k] >> (4 * (s & 1))) & 15;
                if (type == KQ_Q5_K) q |= ((blk[16 + k] >> s) & 1) << 4;
                const float v = ds * (float)q;
                out[32 * s + k] = v - dm;
            }
        }
        break;
    }
    default: {  // Q6_K
        const float d = kq_f16(blk + 208);
        for (int i = 0; i < 256; i++) {
            const int g = i >> 7, r = i & 127, s = i >> 4;
            const int low = (blk[64 * g + (r & 63)] >> (4 * (r >> 6))) & 15;
            const int high = (blk[128 + 32 * g + (r & 31)] >> (2 * (r >> 5))) & 3;
            const float ds = d * (float)(int8_t)blk[192 + s];
            out[i] = ds * (float)((low | (high << 4)) - 32);
        }
        break;
    }
    }
}

void sq_kquants_dequantize_row(int type, const void *src, float *dst, int64_t n) {
    const size_t bb = kq_block_bytes(type);
    for (int64_t i = 0; i < n / 256; i++) kq_dequantize_block(type, (const uint8_t *)src + (size_t)i * bb, dst + 256 * i);
}

// ---------------------------------------------------------------------------------------------------------------
// Portable matmul: each super-block unpacked to integers, exact integer dot per sub-block, then float scaling.

/// One super-block as integers: q[256] (offsets of Q3_K/Q6_K applied: signed), sc[16] sub-block scales
/// (first 8 used for Q4_K/Q5_K), mn[16] mins (Q2_K per 16, Q4_K/Q5_K per 32), super-block factors d, dmin.
static inline void kq_unpack_portable(int type, const uint8_t *blk, int8_t q[256], int sc[16], int mn[16],
                                      float *d, float *dmin) {
    *dmin = 0.0f;
    switch (type) {
    case KQ_Q2_K:
        *d = kq_f16(blk + 80);
        *dmin = kq_f16(blk + 82);
        for (int s = 0; s < 16; s++) { sc[s] = blk[s] & 15; mn[s] = blk[s] >> 4; }
        for (int i = 0; i < 256; i++) q[i] = (int8_t)((blk[16 + 32 * (i >> 7) + (i & 31)] >> (2 * ((i >> 5) & 3))) & 3);
        break;
    case KQ_Q3_K: {
        uint8_t s6[16];
        *d = kq_f16(blk + 108);
        kq_scales_q3(blk + 96, s6);
        for (int s = 0; s < 16; s++) { sc[s] = (int)s6[s] - 32; mn[s] = 0; }
        for (int i = 0; i < 256; i++) {
            const int g = i >> 7, j = (i >> 5) & 3, k = i & 31;
            const int ql = (blk[32 + 32 * g + k] >> (2 * j)) & 3;
            q[i] = (int8_t)(ql + 4 * ((blk[k] >> (4 * g + j)) & 1) - 4);
        }
        break;
    }
    case KQ_Q4_K:
    case KQ_Q5_K: {
        uint64_t sc8, m8;
        *d = kq_f16(blk);
        *dmin = kq_f16(blk + 2);
        sq_kquant_scale_min_k4(blk + 4, &sc8, &m8);
        for (int s = 0; s < 8; s++) { sc[s] = (int)((sc8 >> (8 * s)) & 0xff); mn[s] = (int)((m8 >> (8 * s)) & 0xff); }
        const uint8_t *qs = blk + (type == KQ_Q4_K ? 16 : 48);
        for (int i = 0; i < 256; i++) {
            const int s = i >> 5, k = i & 31;
            int v = (qs[32 * (s >> 1) + k] >> (4 * (s & 1))) & 15;
            if (type == KQ_Q5_K) v |= ((blk[16 + k] >> s) & 1) << 4;
            q[i] = (int8_t)v;
        }
        break;
    }
    default:  // Q6_K
        *d = kq_f16(blk + 208);
        for (int s = 0; s < 16; s++) { sc[s] = (int8_t)blk[192 + s]; mn[s] = 0; }
        for (int i = 0; i < 256; i++) {
            const int g = i >> 7, r = i & 127;
            const int low = (blk[64 * g + (r & 63)] >> (4 * (r >> 6))) & 15;
            const int high = (blk[128 + 32 * g + (r & 31)] >> (2 * (r >> 5))) & 3;
            q[i] = (int8_t)((low | (high << 4)) - 32);
        }
        break;
    }
}

static void kq_matmul_portable(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                               const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    const size_t bb = kq_block_bytes(type);
    const int per32 = type == KQ_Q4_K || type == KQ_Q5_K;
    const int64_t nsb = nb / 8;
    int8_t q[256];  // one super-block's integer weights
    int sc[16], mn[16];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
        for (int64_t t = 0; t < nt; t++) {
            const sq_block_q8 *x = a + t * nb;
            float acc = 0.0f;
            for (int64_t i = 0; i < nsb; i++) {
                float d, dmin;
                kq_unpack_portable(type, row + (size_t)i * bb, q, sc, mn, &d, &dmin);
                for (int b = 0; b < 8; b++) {
                    const sq_block_q8 *xb = x + 8 * i + b;
                    const int8_t *qb = q + 32 * b;
                    if (per32) {
                        int isum = 0;
                        for (int k = 0; k < 32; k++) isum += (int)qb[k] * (int)xb->qs[k];
                        acc += d * xb->d * (float)(sc[b] * isum) - dmin * (float)mn[b] * xb->s;
                    } else {
                        int isum = 0, msum = 0;
                        for (int h = 0; h < 2; h++) {
                            int dot = 0, sum = 0;
                            for (int k = 16 * h; k < 16 * h + 16; k++) { dot += (int)qb[k] * (int)xb->qs[k]; sum += xb->qs[k]; }
                            isum += sc[2 * b + h] * dot;
                            msum += mn[2 * b + h] * sum;
                        }
                        acc += xb->d * (d * (float)isum - dmin * (float)msum);
                    }
                }
            }
            y[t * ldy + r] = acc;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C

#ifdef KQ_X86
#define KQ_AVX2 __attribute__((target("avx2,fma,f16c")))
#define KQ_INLINE __attribute__((always_inline)) static inline

/// What the kernels need of one token's activations per super-block, computed once per token and call.
typedef struct {
    float d[8];      // d_a of the 8 activation blocks
    float s[8];      // d_a * Σ qa of each block of 32
    int16_t bs[16];  // Σ qa per 16: bs[2 b + h] is half h of block b
} kq_act;            // 96 bytes

static void kq_prepare(const sq_block_q8 *x, int64_t nsb, kq_act *out) {
    for (int64_t i = 0; i < nsb; i++) {
        for (int b = 0; b < 8; b++) {
            const sq_block_q8 *xb = x + 8 * i + b;
            out[i].d[b] = xb->d;
            out[i].s[b] = xb->s;
            for (int h = 0; h < 2; h++) {
                int sum = 0;
                for (int k = 16 * h; k < 16 * h + 16; k++) sum += xb->qs[k];
                out[i].bs[2 * b + h] = (int16_t)sum;
            }
        }
    }
}

/// Per-thread scratch for kq_act records, grown as needed (never inside the loops).
static _Thread_local kq_act *kq_scratch;
static _Thread_local size_t kq_scratch_count;

static kq_act *kq_get_scratch(size_t count) {
    if (count > kq_scratch_count) {
        free(kq_scratch);
        kq_scratch = (kq_act *)malloc(count * sizeof(kq_act));
        kq_scratch_count = kq_scratch ? count : 0;
    }
    return kq_scratch;
}

/// One super-block unpacked for the int8 dot products.
typedef struct {
    __m256i u[8];   // unsigned weight integers: byte k of u[b] is element 32 b + k
    __m256i sc[8];  // int16 scales in _mm256_maddubs_epi16's pair order: pair p of block b is in sub-block of byte 2p
    __m256i c16;    // 16-sub-block types: int16 offset coefficients per 16 (Q2_K mins, Q3_K/Q6_K scales)
    __m256 mf;      // Q4_K/Q5_K: the 8 mins as floats
    float d, coef;  // super-block scale; factor of the offset term
} kq_sb;

/// 16 int16 per-16 scales [s0..s7 | s8..s15] to the 8 per-block pair-order vectors.
KQ_AVX2 KQ_INLINE void kq_spread16(__m256i s16, __m256i sc[8]) {
    const __m256i lo = _mm256_permute2x128_si256(s16, s16, 0x00), hi = _mm256_permute2x128_si256(s16, s16, 0x11);
    for (int b = 0; b < 8; b++) {
        const int k = b & 3;
        // Low 128 bits: int16 2k of the lane (sub-block 2b); high 128 bits: int16 2k + 1 (sub-block 2b + 1).
        const __m256i ctl = _mm256_set_m128i(_mm_set1_epi16((short)((4 * k + 2) | ((4 * k + 3) << 8))),
                                             _mm_set1_epi16((short)((4 * k) | ((4 * k + 1) << 8))));
        sc[b] = _mm256_shuffle_epi8(b < 4 ? lo : hi, ctl);
    }
}

/// Bit `bit` of every byte of h moved to bit `to` (all other bits cleared). Shifts of 16-bit lanes are safe here:
/// the bit that lands on position `to` of a byte always comes from the same byte.
KQ_AVX2 KQ_INLINE __m256i kq_bit_to(__m256i h, int bit, int to) {
    const __m256i mask = _mm256_set1_epi8((char)(1 << to));
    if (bit < to) return _mm256_and_si256(_mm256_slli_epi16(h, to - bit), mask);
    if (bit > to) return _mm256_and_si256(_mm256_srli_epi16(h, bit - to), mask);
    return _mm256_and_si256(h, mask);
}

KQ_AVX2 KQ_INLINE void kq_unpack(const int type, const uint8_t *blk, kq_sb *o) {
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    switch (type) {
    case KQ_Q2_K: {
        o->d = _cvtsh_ss((unsigned short)(blk[80] | (blk[81] << 8)));
        o->coef = -_cvtsh_ss((unsigned short)(blk[82] | (blk[83] << 8)));
        const __m128i raw = _mm_loadu_si128((const __m128i *)blk);
        const __m128i l4 = _mm_set1_epi8(15);
        kq_spread16(_mm256_cvtepu8_epi16(_mm_and_si128(raw, l4)), o->sc);
        o->c16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), l4));
        for (int g = 0; g < 2; g++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * g));
            o->u[4 * g + 0] = _mm256_and_si256(q, m2);
            o->u[4 * g + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 2), m2);
            o->u[4 * g + 2] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m2);
            o->u[4 * g + 3] = _mm256_and_si256(_mm256_srli_epi16(q, 6), m2);
        }
        break;
    }
    case KQ_Q3_K: {
        uint32_t s6[4];
        kq_scales_q3_words(blk + 96, s6);
        o->d = _cvtsh_ss((unsigned short)(blk[108] | (blk[109] << 8)));
        o->coef = -4.0f * o->d;
        const __m128i s8 = _mm_sub_epi8(_mm_setr_epi32((int)s6[0], (int)s6[1], (int)s6[2], (int)s6[3]), _mm_set1_epi8(32));
        o->c16 = _mm256_cvtepi8_epi16(s8);
        kq_spread16(o->c16, o->sc);
        const __m256i h = _mm256_loadu_si256((const __m256i *)blk);
        for (int g = 0; g < 2; g++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 32 + 32 * g));
            // u = q + 4 * hbit in 0..7; the -4 goes to the offset term.
            o->u[4 * g + 0] = _mm256_or_si256(_mm256_and_si256(q, m2), kq_bit_to(h, 4 * g + 0, 2));
            o->u[4 * g + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2), m2), kq_bit_to(h, 4 * g + 1, 2));
            o->u[4 * g + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m2), kq_bit_to(h, 4 * g + 2, 2));
            o->u[4 * g + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 6), m2), kq_bit_to(h, 4 * g + 3, 2));
        }
        break;
    }
    case KQ_Q4_K:
    case KQ_Q5_K: {
        uint64_t sc8, m8;
        sq_kquant_scale_min_k4(blk + 4, &sc8, &m8);
        o->d = _cvtsh_ss((unsigned short)(blk[0] | (blk[1] << 8)));
        o->coef = -_cvtsh_ss((unsigned short)(blk[2] | (blk[3] << 8)));
        const __m256i s = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
        for (int b = 0; b < 8; b++)
            o->sc[b] = _mm256_shuffle_epi8(s, _mm256_set1_epi16((short)((2 * b) | ((2 * b + 1) << 8))));
        o->mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)m8)));
        const uint8_t *qs = blk + (type == KQ_Q4_K ? 16 : 48);
        for (int g = 0; g < 4; g++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
            o->u[2 * g] = _mm256_and_si256(q, m4);
            o->u[2 * g + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        }
        if (type == KQ_Q5_K) {
            const __m256i h = _mm256_loadu_si256((const __m256i *)(blk + 16));
            for (int b = 0; b < 8; b++) o->u[b] = _mm256_or_si256(o->u[b], kq_bit_to(h, b, 4));
        }
        break;
    }
    default: {  // Q6_K
        o->d = _cvtsh_ss((unsigned short)(blk[208] | (blk[209] << 8)));
        o->coef = -32.0f * o->d;
        o->c16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 192)));
        kq_spread16(o->c16, o->sc);
        const __m256i m30 = _mm256_set1_epi8(0x30);
        for (int g = 0; g < 2; g++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(blk + 64 * g));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(blk + 64 * g + 32));
            const __m256i h = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * g));
            o->u[4 * g + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
            o->u[4 * g + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
            o->u[4 * g + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30));
            o->u[4 * g + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                              _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
        }
        break;
    }
    }
}

/// acc (8 float lanes) += one super-block · one token's 8 activation blocks x (with their record ra).
KQ_AVX2 KQ_INLINE __m256 kq_sb_dot(const int type, const kq_sb *w, const sq_block_q8 *x, const kq_act *ra, __m256 acc) {
    __m256 sb = _mm256_setzero_ps();
    for (int b = 0; b < 8; b++) {
        const __m256i qa = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i v = _mm256_madd_epi16(_mm256_maddubs_epi16(w->u[b], qa), w->sc[b]);
        sb = _mm256_fmadd_ps(_mm256_broadcast_ss(&ra->d[b]), _mm256_cvtepi32_ps(v), sb);
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(w->d), sb, acc);
    if (type == KQ_Q4_K || type == KQ_Q5_K) {
        acc = _mm256_fmadd_ps(w->mf, _mm256_mul_ps(_mm256_set1_ps(w->coef), _mm256_loadu_ps(ra->s)), acc);
    } else {
        // Lane b of the madd: c_{2b} Σ qa (first half of block b) + c_{2b+1} Σ qa (second half).
        const __m256 off = _mm256_cvtepi32_ps(_mm256_madd_epi16(w->c16, _mm256_loadu_si256((const __m256i *)ra->bs)));
        acc = _mm256_fmadd_ps(off, _mm256_mul_ps(_mm256_set1_ps(w->coef), _mm256_loadu_ps(ra->d)), acc);
    }
    return acc;
}

KQ_AVX2 static inline float kq_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// Prefetch distance in bytes ahead within each row (decode reads four row streams at once).
#define KQ_PREFETCH 512

KQ_AVX2 SQ_SPECIALIZED void kq_matmul_avx2_typed(const int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                                            const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy,
                                            kq_act *ra) {
    const size_t bb = kq_block_bytes(type);
    const int64_t nsb = nb / 8;
    kq_sb sb;
    // Tokens in tiles of four against one row: each super-block is unpacked once and used four times.
    int64_t t = 0;
    for (; t + 4 <= nt; t += 4) {
        for (int k = 0; k < 4; k++) kq_prepare(a + (t + k) * nb, nsb, ra + k * nsb);
        const kq_act *ra0 = ra, *ra1 = ra + nsb, *ra2 = ra + 2 * nsb, *ra3 = ra + 3 * nsb;
        const sq_block_q8 *x0 = a + t * nb, *x1 = x0 + nb, *x2 = x1 + nb, *x3 = x2 + nb;
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
            for (int64_t i = 0; i < nsb; i++) {
                kq_unpack(type, row + (size_t)i * bb, &sb);
                acc0 = kq_sb_dot(type, &sb, x0 + 8 * i, ra0 + i, acc0);
                acc1 = kq_sb_dot(type, &sb, x1 + 8 * i, ra1 + i, acc1);
                acc2 = kq_sb_dot(type, &sb, x2 + 8 * i, ra2 + i, acc2);
                acc3 = kq_sb_dot(type, &sb, x3 + 8 * i, ra3 + i, acc3);
            }
            y[(t + 0) * ldy + r] = kq_hsum(acc0);
            y[(t + 1) * ldy + r] = kq_hsum(acc1);
            y[(t + 2) * ldy + r] = kq_hsum(acc2);
            y[(t + 3) * ldy + r] = kq_hsum(acc3);
        }
    }
    // Remaining tokens (all of them in decode): four rows at a time, four independent chains, prefetch ahead.
    for (; t < nt; t++) {
        const sq_block_q8 *x = a + t * nb;
        kq_prepare(x, nsb, ra);
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) {
            const uint8_t *w0 = (const uint8_t *)w + (size_t)r * row_bytes, *w1 = w0 + row_bytes, *w2 = w1 + row_bytes,
                          *w3 = w2 + row_bytes;
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
            for (int64_t i = 0; i < nsb; i++) {
                const size_t o = (size_t)i * bb;
                for (size_t p = 0; p < bb; p += 64) {
                    _mm_prefetch((const char *)(w0 + o + KQ_PREFETCH + p), _MM_HINT_T0);
                    _mm_prefetch((const char *)(w1 + o + KQ_PREFETCH + p), _MM_HINT_T0);
                    _mm_prefetch((const char *)(w2 + o + KQ_PREFETCH + p), _MM_HINT_T0);
                    _mm_prefetch((const char *)(w3 + o + KQ_PREFETCH + p), _MM_HINT_T0);
                }
                kq_unpack(type, w0 + o, &sb);
                acc0 = kq_sb_dot(type, &sb, x + 8 * i, ra + i, acc0);
                kq_unpack(type, w1 + o, &sb);
                acc1 = kq_sb_dot(type, &sb, x + 8 * i, ra + i, acc1);
                kq_unpack(type, w2 + o, &sb);
                acc2 = kq_sb_dot(type, &sb, x + 8 * i, ra + i, acc2);
                kq_unpack(type, w3 + o, &sb);
                acc3 = kq_sb_dot(type, &sb, x + 8 * i, ra + i, acc3);
            }
            y[t * ldy + r] = kq_hsum(acc0);
            y[t * ldy + r + 1] = kq_hsum(acc1);
            y[t * ldy + r + 2] = kq_hsum(acc2);
            y[t * ldy + r + 3] = kq_hsum(acc3);
        }
        for (; r < r1; r++) {
            const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
            __m256 acc = _mm256_setzero_ps();
            for (int64_t i = 0; i < nsb; i++) {
                kq_unpack(type, row + (size_t)i * bb, &sb);
                acc = kq_sb_dot(type, &sb, x + 8 * i, ra + i, acc);
            }
            y[t * ldy + r] = kq_hsum(acc);
        }
    }
}

KQ_AVX2 static void kq_matmul_avx2(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                                   const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy, kq_act *ra) {
    // One specialized copy per block type (the type is a constant inside each).
    switch (type) {
    case KQ_Q2_K: kq_matmul_avx2_typed(KQ_Q2_K, w, row_bytes, r0, r1, a, nb, nt, y, ldy, ra); break;
    case KQ_Q3_K: kq_matmul_avx2_typed(KQ_Q3_K, w, row_bytes, r0, r1, a, nb, nt, y, ldy, ra); break;
    case KQ_Q4_K: kq_matmul_avx2_typed(KQ_Q4_K, w, row_bytes, r0, r1, a, nb, nt, y, ldy, ra); break;
    case KQ_Q5_K: kq_matmul_avx2_typed(KQ_Q5_K, w, row_bytes, r0, r1, a, nb, nt, y, ldy, ra); break;
    default: kq_matmul_avx2_typed(KQ_Q6_K, w, row_bytes, r0, r1, a, nb, nt, y, ldy, ra); break;
    }
}
#endif

void sq_kquants_matmul(int type, int avx2, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                       const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
#ifdef KQ_X86
    if (avx2) {
        kq_act *ra = kq_get_scratch((size_t)(4 * (nb / 8)) + 1);  // four tokens' records
        if (ra) { kq_matmul_avx2(type, w, row_bytes, r0, r1, a, nb, nt, y, ldy, ra); return; }
    }
#else
    (void)avx2;
#endif
    kq_matmul_portable(type, w, row_bytes, r0, r1, a, nb, nt, y, ldy);
}
