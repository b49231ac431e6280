// The packed (8-row interleaved) matmuls with AVX512-VNNI on 256-bit vectors: vpdpbusd multiplies 4 unsigned
// weight bytes by 4 signed activation bytes and adds the four products to an int32 lane in one instruction, where
// AVX2 needs maddubs, an int16 add and a madd. The 32 vector registers of AVX-512 also hold 8 tokens' accumulators.
// Layouts are those of repack.c and repack_kquants.c; every kernel computes the same integers as the AVX2 and
// portable ones and the same float operations in the same order, so all three give bit-identical results.
//
// vpdpbusd wants unsigned weights. Types whose weights are stored unsigned (Q4_0/Q4_1/Q5_0/Q5_1 and the K-quants)
// use them as they are; signed ones are offset: Q8_0 as w + 128 (w ^ 0x80), IQ4_NL through a level table shifted by
// 128, Q3_K as its stored u = q + 4 (0..7); the offset times the activations' integer sum (per block, or per half
// block for the 16-column scales of Q3_K and Q6_K, from sq_pk_half_sums) is subtracted from the exact int32 sum.
#include "kernels_ext.h"

#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

int sq_kernels_have_vnni(void) {
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = sq_kernels_have_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
    }
    return have;
}

#define VN_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))
#define VN_INLINE __attribute__((always_inline)) static inline

VN_TARGET VN_INLINE __m256i vn_bcast4(const int8_t *p) {
    int v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/// Bits `from` .. `from + width − 1` of every byte moved to bits `to` ..; 16-bit shifts are safe here because the bits
/// that land in the mask of a byte always come from that byte (|to − from| ≤ 4, mask inside bits 4-5).
VN_TARGET VN_INLINE __m256i vn_move_bits(__m256i h, const int from, const int to, const int mask) {
    const __m256i m = _mm256_set1_epi8((char)mask);
    if (from < to) return _mm256_and_si256(_mm256_slli_epi16(h, to - from), m);
    if (from > to) return _mm256_and_si256(_mm256_srli_epi16(h, from - to), m);
    return _mm256_and_si256(h, m);
}

/// The activations' integer sum over a whole block (both int16 halves of a half-sum word) times `k`, per lane.
VN_TARGET VN_INLINE __m256i vn_block_sum_times(int32_t half_sums, const int k) {
    return _mm256_madd_epi16(_mm256_set1_epi32(half_sums), _mm256_set1_epi16((short)k));
}

/// 32-weight types: 8 rows × NT tokens over all nb group-blocks of one group. bs[t]: token t's half sums (Q8_0 and
/// IQ4_NL only).
VN_TARGET VN_INLINE void vn_group(const int type, const int NT, const uint8_t *gp, int64_t nb,
                                  const sq_block_q8 *const *x, const int32_t *const *bs, float *y, int64_t ldy) {
    const size_t gb = sq_pk_group_bytes(type), qo = sq_pk_quants(type);
    const int q5 = type == SQ_TYPE_Q5_0 || type == SQ_TYPE_Q5_1;
    const int has_m = type == SQ_TYPE_Q4_1 || type == SQ_TYPE_Q5_1;
    const __m256i low4 = _mm256_set1_epi8(15);
    __m256 acc[8];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = gp + (size_t)b * gb;
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        if (type == SQ_TYPE_Q8_0) {
            __m256i u[8];
            for (int c = 0; c < 8; c++)
                u[c] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + qo + 32 * c)), _mm256_set1_epi8((char)0x80));
            _Pragma("unroll") for (int t = 0; t < NT; t++) {
                const sq_block_q8 *xb = x[t] + b;
                __m256i s = _mm256_setzero_si256();
                for (int c = 0; c < 8; c++) s = _mm256_dpbusd_epi32(s, u[c], vn_bcast4(xb->qs + 4 * c));
                s = _mm256_sub_epi32(s, vn_block_sum_times(bs[t][b], 128));
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb->d)), _mm256_cvtepi32_ps(s), acc[t]);
            }
        } else if (type == SQ_TYPE_IQ4_NL) {
            const __m256i table = _mm256_xor_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sq_iq4nl_levels)),
                                                   _mm256_set1_epi8((char)0x80));  // L + 128, unsigned
            __m256i lo[4], hi[4];
            for (int c = 0; c < 4; c++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(blk + qo + 32 * c));
                lo[c] = _mm256_shuffle_epi8(table, _mm256_and_si256(raw, low4));
                hi[c] = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4));
            }
            _Pragma("unroll") for (int t = 0; t < NT; t++) {
                const sq_block_q8 *xb = x[t] + b;
                __m256i s = _mm256_setzero_si256();
                for (int c = 0; c < 4; c++) {
                    s = _mm256_dpbusd_epi32(s, lo[c], vn_bcast4(xb->qs + 4 * c));
                    s = _mm256_dpbusd_epi32(s, hi[c], vn_bcast4(xb->qs + 16 + 4 * c));
                }
                s = _mm256_sub_epi32(s, vn_block_sum_times(bs[t][b], 128));
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb->d)), _mm256_cvtepi32_ps(s), acc[t]);
            }
        } else {  // Q4_0, Q4_1, Q5_0, Q5_1: unsigned q, then the offset or min term
            __m256i lo[4], hi[4];
            const __m256i qh = q5 ? _mm256_loadu_si256((const __m256i *)(blk + (has_m ? 32 : 16))) : _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(blk + qo + 32 * c));
                lo[c] = _mm256_and_si256(raw, low4);
                hi[c] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
                if (q5) {
                    lo[c] = _mm256_or_si256(lo[c], vn_move_bits(qh, 2 * c, 4, 0x10));
                    hi[c] = _mm256_or_si256(hi[c], vn_move_bits(qh, 2 * c + 1, 4, 0x10));
                }
            }
            const __m256 m = has_m ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16))) : d;
            const float offset = type == SQ_TYPE_Q4_0 ? -8.0f : type == SQ_TYPE_Q5_0 ? -16.0f : 1.0f;
            _Pragma("unroll") for (int t = 0; t < NT; t++) {
                const sq_block_q8 *xb = x[t] + b;
                __m256i s = _mm256_setzero_si256();
                for (int c = 0; c < 4; c++) {
                    s = _mm256_dpbusd_epi32(s, lo[c], vn_bcast4(xb->qs + 4 * c));
                    s = _mm256_dpbusd_epi32(s, hi[c], vn_bcast4(xb->qs + 16 + 4 * c));
                }
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb->d)), _mm256_cvtepi32_ps(s), acc[t]);
                acc[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(offset * xb->s), acc[t]);
            }
        }
    }
    for (int t = 0; t < NT; t++) _mm256_storeu_ps(y + t * ldy, acc[t]);
}

/// Q3_K: 8 rows × NT tokens over the nb / 8 super-blocks of one group (layout: repack.c, rp_repack_q3k).
VN_TARGET VN_INLINE void vn_group_q3k(const int NT, const uint8_t *gp, int64_t nb, const sq_block_q8 *const *x,
                                      const int32_t *const *bs, float *y, int64_t ldy) {
    const __m256i low4 = _mm256_set1_epi8(15);
    __m256 acc[8];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb / 8; i++) {
        const uint8_t *sb = gp + (size_t)i * SQ_PK_Q3_K_SB;
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)sb));
        for (int b = 0; b < 8; b++) {
            const uint8_t *qs = sb + 144 + b * 128;
            const __m128i sc = _mm_loadu_si128((const __m128i *)(sb + 16 + b * 16));
            const __m256 dl = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)));
            const __m256 dh = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8))));
            __m256i lo[4], hi[4];  // u = q + 4 hbit in 0..7; the weight is (u − 4) times the scale
            for (int c = 0; c < 4; c++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                lo[c] = _mm256_and_si256(raw, low4);
                hi[c] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
            }
            _Pragma("unroll") for (int t = 0; t < NT; t++) {
                const int8_t *xq = x[t][8 * i + b].qs;
                __m256i slo = _mm256_setzero_si256(), shi = _mm256_setzero_si256();
                for (int c = 0; c < 4; c++) {
                    slo = _mm256_dpbusd_epi32(slo, lo[c], vn_bcast4(xq + 4 * c));
                    shi = _mm256_dpbusd_epi32(shi, hi[c], vn_bcast4(xq + 16 + 4 * c));
                }
                // Minus 4 × Σ qa of each half (the low int16 of the half-sum word: first half; the high one: second).
                const __m256i h = _mm256_set1_epi32(bs[t][8 * i + b]);
                slo = _mm256_sub_epi32(slo, _mm256_slli_epi32(_mm256_srai_epi32(_mm256_slli_epi32(h, 16), 16), 2));
                shi = _mm256_sub_epi32(shi, _mm256_slli_epi32(_mm256_srai_epi32(h, 16), 2));
                const __m256 dx = _mm256_set1_ps(x[t][8 * i + b].d);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dl, dx), _mm256_cvtepi32_ps(slo), acc[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dh, dx), _mm256_cvtepi32_ps(shi), acc[t]);
            }
        }
    }
    for (int t = 0; t < NT; t++) _mm256_storeu_ps(y + t * ldy, acc[t]);
}

/// Q4_K / Q5_K: 8 rows × NT tokens over the nsb super-blocks of one group (layout: repack_kquants.c).
VN_TARGET VN_INLINE void vn_group_q45(const int type, const int NT, const uint8_t *gp, int64_t nsb,
                                      const sq_block_q8 *const *x, float *y, int64_t ldy) {
    const int q5 = type == SQ_PK_Q5_K;
    const size_t sbb = q5 ? SQ_PK_Q5_K_SB : SQ_PK_Q4_K_SB;
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256 acc[8];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *sb = gp + (size_t)i * sbb;
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)sb));
        for (int j = 0; j < 4; j++) {
            const uint8_t *qs = sb + sq_pk_q45_quants(type, j);
            const __m256i h0 = q5 ? _mm256_loadu_si256((const __m256i *)(sb + sq_pk_q5_high(j))) : _mm256_setzero_si256();
            const __m256i h1 = q5 ? _mm256_loadu_si256((const __m256i *)(sb + sq_pk_q5_high(j) + 32)) : _mm256_setzero_si256();
            __m256i lo[8], hi[8];
            for (int c = 0; c < 8; c++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                lo[c] = _mm256_and_si256(raw, m4);
                hi[c] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                if (q5) {
                    lo[c] = _mm256_or_si256(lo[c], vn_move_bits(h0, c, 4, 0x10));
                    hi[c] = _mm256_or_si256(hi[c], vn_move_bits(h1, c, 4, 0x10));
                }
            }
            const __m256i sclo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sb + 32 + 8 * (2 * j))));
            const __m256i schi = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sb + 32 + 8 * (2 * j + 1))));
            _Pragma("unroll") for (int t = 0; t < NT; t++) {
                const int8_t *xl = x[t][8 * i + 2 * j].qs, *xh = x[t][8 * i + 2 * j + 1].qs;
                __m256i ilo = _mm256_setzero_si256(), ihi = _mm256_setzero_si256();
                for (int c = 0; c < 8; c++) {
                    ilo = _mm256_dpbusd_epi32(ilo, lo[c], vn_bcast4(xl + 4 * c));
                    ihi = _mm256_dpbusd_epi32(ihi, hi[c], vn_bcast4(xh + 4 * c));
                }
                ilo = _mm256_mullo_epi32(ilo, sclo);
                ihi = _mm256_mullo_epi32(ihi, schi);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(x[t][8 * i + 2 * j].d)), _mm256_cvtepi32_ps(ilo), acc[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(x[t][8 * i + 2 * j + 1].d)), _mm256_cvtepi32_ps(ihi), acc[t]);
            }
        }
        __m256 macc[8];
        for (int t = 0; t < NT; t++) macc[t] = _mm256_setzero_ps();
        for (int b = 0; b < 8; b++) {
            const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sb + 96 + 8 * b))));
            _Pragma("unroll") for (int t = 0; t < NT; t++) macc[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(x[t][8 * i + b].s), macc[t]);
        }
        const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sb + 16)));
        for (int t = 0; t < NT; t++) acc[t] = _mm256_fnmadd_ps(dmin, macc[t], acc[t]);
    }
    for (int t = 0; t < NT; t++) _mm256_storeu_ps(y + t * ldy, acc[t]);
}

/// Q6_K: 8 rows × NT tokens over the nsb super-blocks of one group (layout: repack_kquants.c).
VN_TARGET VN_INLINE void vn_group_q6(const int NT, const uint8_t *gp, int64_t nsb, const sq_block_q8 *const *x,
                                     const int32_t *const *bs, float *y, int64_t ldy) {
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256 acc[8];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *sb = gp + (size_t)i * SQ_PK_Q6_K_SB;
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)sb));
        for (int j = 0; j < 4; j++) {
            const uint8_t *pj = sb + sq_pk_q6_pair(j);
            __m256i lo[8], hi[8];
            for (int p = 0; p < 4; p++) {
                const __m256i h = _mm256_loadu_si256((const __m256i *)(pj + 96 * p));
                for (int e = 0; e < 2; e++) {
                    const __m256i raw = _mm256_loadu_si256((const __m256i *)(pj + 96 * p + 32 + 32 * e));
                    lo[2 * p + e] = _mm256_or_si256(_mm256_and_si256(raw, m4), vn_move_bits(h, 4 * e, 4, 0x30));
                    hi[2 * p + e] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), vn_move_bits(h, 4 * e + 2, 4, 0x30));
                }
            }
            // Sub-block scales: block 2 j's halves are sub-blocks 4 j, 4 j + 1; block 2 j + 1's are 4 j + 2, 4 j + 3.
            const uint8_t *sc = sb + 16 + 8 * (4 * j);
            __m256i s32[4];
            for (int k = 0; k < 4; k++) s32[k] = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(sc + 8 * k)));
            const __m256i olo = _mm256_or_si256(_mm256_and_si256(s32[0], _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(s32[1], 16));
            const __m256i ohi = _mm256_or_si256(_mm256_and_si256(s32[2], _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(s32[3], 16));
            _Pragma("unroll") for (int t = 0; t < NT; t++) {
                const int8_t *xl = x[t][8 * i + 2 * j].qs, *xh = x[t][8 * i + 2 * j + 1].qs;
                __m256i dl[2], dh[2];
                for (int half = 0; half < 2; half++) {
                    dl[half] = dh[half] = _mm256_setzero_si256();
                    for (int c = 4 * half; c < 4 * half + 4; c++) {
                        dl[half] = _mm256_dpbusd_epi32(dl[half], lo[c], vn_bcast4(xl + 4 * c));
                        dh[half] = _mm256_dpbusd_epi32(dh[half], hi[c], vn_bcast4(xh + 4 * c));
                    }
                }
                __m256i ilo = _mm256_add_epi32(_mm256_mullo_epi32(dl[0], s32[0]), _mm256_mullo_epi32(dl[1], s32[1]));
                __m256i ihi = _mm256_add_epi32(_mm256_mullo_epi32(dh[0], s32[2]), _mm256_mullo_epi32(dh[1], s32[3]));
                const __m256i bl = _mm256_set1_epi32(bs[t][8 * i + 2 * j]), bh = _mm256_set1_epi32(bs[t][8 * i + 2 * j + 1]);
                ilo = _mm256_sub_epi32(ilo, _mm256_slli_epi32(_mm256_madd_epi16(olo, bl), 5));
                ihi = _mm256_sub_epi32(ihi, _mm256_slli_epi32(_mm256_madd_epi16(ohi, bh), 5));
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(x[t][8 * i + 2 * j].d)), _mm256_cvtepi32_ps(ilo), acc[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(x[t][8 * i + 2 * j + 1].d)), _mm256_cvtepi32_ps(ihi), acc[t]);
            }
        }
    }
    for (int t = 0; t < NT; t++) _mm256_storeu_ps(y + t * ldy, acc[t]);
}

/// NT tokens against groups [g0, g1) of one packed matrix.
VN_TARGET VN_INLINE void vn_groups(const int type, const int NT, const uint8_t *wp, int64_t g0, int64_t g1,
                                   const sq_block_q8 *a, int64_t nb, const int32_t *bsum, int64_t t, float *y, int64_t ldy) {
    const sq_block_q8 *x[8];
    const int32_t *bs[8];
    for (int k = 0; k < NT; k++) {
        x[k] = a + (t + k) * nb;
        bs[k] = bsum ? bsum + (t + k) * nb : NULL;
    }
    size_t gb;  // bytes of one group (8 rows, all columns)
    switch (type) {
    case SQ_PK_Q3_K: gb = (size_t)(nb / 8) * SQ_PK_Q3_K_SB; break;
    case SQ_PK_Q4_K: gb = (size_t)(nb / 8) * SQ_PK_Q4_K_SB; break;
    case SQ_PK_Q5_K: gb = (size_t)(nb / 8) * SQ_PK_Q5_K_SB; break;
    case SQ_PK_Q6_K: gb = (size_t)(nb / 8) * SQ_PK_Q6_K_SB; break;
    default: gb = (size_t)nb * sq_pk_group_bytes(type); break;
    }
    for (int64_t g = g0; g < g1; g++) {
        const uint8_t *gp = wp + (size_t)g * gb;
        float *yg = y + t * ldy + g * 8;
        switch (type) {
        case SQ_PK_Q3_K: vn_group_q3k(NT, gp, nb, x, bs, yg, ldy); break;
        case SQ_PK_Q4_K:
        case SQ_PK_Q5_K: vn_group_q45(type, NT, gp, nb / 8, x, yg, ldy); break;
        case SQ_PK_Q6_K: vn_group_q6(NT, gp, nb / 8, x, bs, yg, ldy); break;
        default: vn_group(type, NT, gp, nb, x, bs, yg, ldy); break;
        }
    }
}

/// All tokens: tiles of 8, then 4, then single tokens.
VN_TARGET SQ_SPECIALIZED void vn_typed(const int type, const uint8_t *wp, int64_t g0, int64_t g1, const sq_block_q8 *a,
                                  int64_t nb, int64_t nt, const int32_t *bs, float *y, int64_t ldy) {
    int64_t t = 0;
    for (; t + 8 <= nt; t += 8) vn_groups(type, 8, wp, g0, g1, a, nb, bs, t, y, ldy);
    for (; t + 4 <= nt; t += 4) vn_groups(type, 4, wp, g0, g1, a, nb, bs, t, y, ldy);
    for (; t < nt; t++) vn_groups(type, 1, wp, g0, g1, a, nb, bs, t, y, ldy);
}

VN_TARGET static void vn_dispatch(int type, const uint8_t *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb,
                                  int64_t nt, const int32_t *bs, float *y, int64_t ldy) {
    // One specialized copy per block type (the type is a constant inside each).
    switch (type) {
    case SQ_TYPE_Q4_0: vn_typed(SQ_TYPE_Q4_0, wp, g0, g1, a, nb, nt, bs, y, ldy); break;
    case SQ_TYPE_Q4_1: vn_typed(SQ_TYPE_Q4_1, wp, g0, g1, a, nb, nt, bs, y, ldy); break;
    case SQ_TYPE_Q5_0: vn_typed(SQ_TYPE_Q5_0, wp, g0, g1, a, nb, nt, bs, y, ldy); break;
    case SQ_TYPE_Q5_1: vn_typed(SQ_TYPE_Q5_1, wp, g0, g1, a, nb, nt, bs, y, ldy); break;
    case SQ_TYPE_Q8_0: vn_typed(SQ_TYPE_Q8_0, wp, g0, g1, a, nb, nt, bs, y, ldy); break;
    case SQ_TYPE_IQ4_NL: vn_typed(SQ_TYPE_IQ4_NL, wp, g0, g1, a, nb, nt, bs, y, ldy); break;
    case SQ_PK_Q3_K: vn_typed(SQ_PK_Q3_K, wp, g0, g1, a, nb, nt, bs, y, ldy); break;
    case SQ_PK_Q4_K: vn_typed(SQ_PK_Q4_K, wp, g0, g1, a, nb, nt, bs, y, ldy); break;
    case SQ_PK_Q5_K: vn_typed(SQ_PK_Q5_K, wp, g0, g1, a, nb, nt, bs, y, ldy); break;
    default: vn_typed(SQ_PK_Q6_K, wp, g0, g1, a, nb, nt, bs, y, ldy); break;
    }
}

void sq_vnni_matmul_packed(int type, const void *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb,
                           int64_t nt, float *y, int64_t ldy) {
    const int32_t *bs = NULL;
    if (type == SQ_TYPE_Q8_0 || type == SQ_TYPE_IQ4_NL || type == SQ_PK_Q3_K || type == SQ_PK_Q6_K) {
        bs = sq_pk_half_sums(a, nb, nt);
        if (!bs) {  // no scratch: the portable kernel needs none
            sq_matmul_packed_portable(type, wp, g0, g1, a, nb, nt, y, ldy);
            return;
        }
    }
    vn_dispatch(type, (const uint8_t *)wp, g0, g1, a, nb, nt, bs, y, ldy);
}

#else
int sq_kernels_have_vnni(void) { return 0; }

void sq_vnni_matmul_packed(int type, const void *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb,
                           int64_t nt, float *y, int64_t ldy) {
    sq_matmul_packed_portable(type, wp, g0, g1, a, nb, nt, y, ldy);
}
#endif
