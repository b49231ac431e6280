// Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / IQ4_NL (and Q3_K, see rp_repack_q3k; Q4_K, Q5_K, Q6_K in repack_kquants.c)
// weights repacked at load time into groups of 8 output rows, so that one 256-bit register holds 4 consecutive
// quant bytes of each of the 8 rows and one maddubs + madd gives int32 partial sums for all 8 rows at once (the
// activation's 4 bytes broadcast to every lane). Scales stay per row (a vector of 8), sums need no horizontal
// reduction, and the 8 results are stored with one instruction. The idea of interleaving rows
// for SIMD dot products is the one llama.cpp's AVX2 "repack" path uses for Q4_0; the layout below is our own.
//
// Packed matrix: rows/8 groups, each nb group-blocks (one per 32-column block), group g block b at
// (g * nb + b) * sq_repack_group_bytes(type). A group-block:
//   Q4_0: f16 d[8]            | u8 qs[128]   (144 bytes = 8 × 18)
//   Q4_1: f16 d[8], f16 m[8]  | u8 qs[128]   (160 bytes = 8 × 20)
//   Q5_0: f16 d[8]            | u32 qh[8] | u8 qs[128]   (176 bytes = 8 × 22)
//   Q5_1: f16 d[8], f16 m[8]  | u32 qh[8] | u8 qs[128]   (192 bytes = 8 × 24)
//   Q8_0: f16 d[8]            | i8 qs[256]   (272 bytes = 8 × 34)
//   IQ4_NL: as Q4_0 (144 bytes); a nibble q stands for the level L[q] of ggml's kvalues_iq4nl table
// with qs[c * 32 + r * 4 + i] = qs_r[4 * c + i] (row r's own block bytes, chunk c of 4 bytes). For Q4 a byte holds
// element j (low nibble) and element j + 16 (high nibble), as in the ggml block.
// Q5: row r's fifth bits are rearranged so that chunk c needs one bit per byte at the same place in every byte:
// bit 2c of byte i of qh[r] is the fifth bit of element 4c + i, bit 2c + 1 that of element 16 + 4c + i
// (in the ggml block, bit j of the u32 qh belongs to element j). One 16-bit shift and a mask then put them at bit 4.
//
// Per row and block the result is accumulated as acc = fma(d * d_a, Σ q qa, acc), then
// acc = fma(d, −8 s_a, acc) (Q4_0), acc = fma(d, −16 s_a, acc) (Q5_0) or acc = fma(m, s_a, acc) (Q4_1, Q5_1),
// where s_a = d_a Σ qa, with the unsigned q (0..15, 0..31 for Q5); the portable version
// does exactly these float operations (fmaf), so both give bit-identical results.
//
// IQ4_NL: the AVX2 code turns nibbles into signed levels with one byte shuffle (pshufb) against the 16-entry
// table, then multiplies as Q8_0 does: maddubs(|w|, sign(qa, w)) (|w|, |qa| ≤ 127, so the int16 pair sums cannot
// saturate) and madd with ones to int32 per 4-byte chunk; Σ L[q] qa is exact in both versions, and the float
// steps are Q8_0's (no offset term).
#include "squish_kernels.h"
#include "kernels_ext.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define SQ_X86 1
#include <immintrin.h>
#endif



/// Bytes of one ggml block, of its f16 scales (d, or d and m), of its fifth bits (qh), and of the quants.
static int rp_layout(int type, size_t *block, size_t *header, size_t *high, size_t *quants) {
    *high = 0;
    switch (type) {
    case SQ_TYPE_Q4_0: *block = 18; *header = 2; *quants = 16; return 1;
    case SQ_TYPE_Q4_1: *block = 20; *header = 4; *quants = 16; return 1;
    case SQ_TYPE_Q5_0: *block = 22; *header = 2; *high = 4; *quants = 16; return 1;
    case SQ_TYPE_Q5_1: *block = 24; *header = 4; *high = 4; *quants = 16; return 1;
    case SQ_TYPE_Q8_0: *block = 34; *header = 2; *quants = 32; return 1;
    case SQ_TYPE_IQ4_NL: *block = 18; *header = 2; *quants = 16; return 1;
    default: return 0;
    }
}

enum { RP_Q3_K = SQ_PK_Q3_K, RP_Q3K_SB = SQ_PK_Q3_K_SB };

int sq_repack_supported(int type) {
    size_t b, h, hi, q;
    return type == RP_Q3_K || sq_rpk_has_type(type) || rp_layout(type, &b, &h, &hi, &q);
}

size_t sq_repack_group_bytes(int type) {
    size_t b, h, hi, q;
    if (type == RP_Q3_K) return RP_Q3K_SB / 8;  // 146: one 8-row super-block group per 8 blocks of 32
    if (sq_rpk_has_type(type)) return sq_rpk_superblock_bytes(type) / 8;  // Q4_K 148, Q5_K 180, Q6_K 210
    return rp_layout(type, &b, &h, &hi, &q) ? 8 * b : 0;
}

/// Q3_K rows repacked: per 8 rows and super-block (256 columns), RP_Q3K_SB bytes:
///   f16 d[8] @0 | i8 sc[8 blocks][2 halves][8 rows] @16 (sub-block scale − 32) | u8 qs[8 blocks][128] @144
/// where block b's qs are in Q4_0's packed order with nibble u = q + 4 hbit (0..7; the weight is d·sc·(u − 4)):
/// the low nibble is element 32 b + 4 c + i (sub-block 2 b), the high nibble element 32 b + 16 + 4 c + i.
static void rp_repack_q3k(const uint8_t *s, size_t row_bytes, int64_t rows, int64_t nb, uint8_t *d) {
    const int64_t nsb = nb / 8;
    for (int64_t g = 0; g < rows / 8; g++) {
        for (int64_t i = 0; i < nsb; i++) {
            uint8_t *o = d + (size_t)(g * nsb + i) * RP_Q3K_SB;
            for (int r = 0; r < 8; r++) {
                const uint8_t *blk = s + (size_t)(g * 8 + r) * row_bytes + (size_t)i * 110;
                memcpy(o + 2 * r, blk + 108, 2);
                // Six-bit scales (ggml's Q3_K packing): low 4 bits from byte s % 8 (nibble s / 8), high 2 bits from
                // byte 8 + s % 4 (bits 2 (s / 4)).
                for (int sb = 0; sb < 16; sb++) {
                    const int lo = (blk[96 + sb % 8] >> (4 * (sb / 8))) & 15, hi = (blk[104 + sb % 4] >> (2 * (sb / 4))) & 3;
                    o[16 + (sb / 2) * 16 + (sb % 2) * 8 + r] = (uint8_t)(int8_t)((lo | (hi << 4)) - 32);
                }
                uint8_t u[256];
                for (int e = 0; e < 256; e++) {
                    const int gg = e >> 7, j = (e >> 5) & 3, k = e & 31;
                    u[e] = (uint8_t)(((blk[32 + 32 * gg + k] >> (2 * j)) & 3) | (((blk[k] >> (4 * gg + j)) & 1) << 2));
                }
                for (int b = 0; b < 8; b++)
                    for (int c = 0; c < 4; c++)
                        for (int k = 0; k < 4; k++)
                            o[144 + b * 128 + c * 32 + r * 4 + k] = (uint8_t)(u[32 * b + 4 * c + k] | (u[32 * b + 16 + 4 * c + k] << 4));
            }
        }
    }
}

/// A Q5 block's qh (bit j: element j) rearranged for the packed layout (see the top of the file).
static uint32_t rp_q5_high(uint32_t qh) {
    uint32_t out = 0;
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < 4; c++) {
            out |= ((qh >> (4 * c + i)) & 1u) << (8 * i + 2 * c);
            out |= ((qh >> (16 + 4 * c + i)) & 1u) << (8 * i + 2 * c + 1);
        }
    return out;
}

void sq_repack_rows8(int type, const void *src, size_t row_bytes, int64_t rows, int64_t nb, void *dst) {
    size_t bb, hb, hib, qb;
    if (type == RP_Q3_K) { rp_repack_q3k((const uint8_t *)src, row_bytes, rows, nb, (uint8_t *)dst); return; }
    if (sq_rpk_has_type(type)) { sq_rpk_repack(type, src, row_bytes, rows, nb, dst); return; }
    if (!rp_layout(type, &bb, &hb, &hib, &qb)) return;
    const size_t gb = 8 * bb;
    const size_t qo = 8 * (hb + hib);  // offset of the quants in a group-block
    const uint8_t *s = (const uint8_t *)src;
    uint8_t *d = (uint8_t *)dst;
    for (int64_t g = 0; g < rows / 8; g++) {
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *o = d + (size_t)(g * nb + b) * gb;
            for (int r = 0; r < 8; r++) {
                const uint8_t *blk = s + (size_t)(g * 8 + r) * row_bytes + (size_t)b * bb;
                memcpy(o + 2 * r, blk, 2);                                  // d
                if (hb == 4) memcpy(o + 16 + 2 * r, blk + 2, 2);            // m (Q4_1, Q5_1)
                if (hib == 4) {                                             // qh (Q5), little-endian in both layouts
                    const uint8_t *h = blk + hb;
                    const uint32_t v = rp_q5_high((uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24);
                    for (int k = 0; k < 4; k++) o[8 * hb + 4 * r + k] = (uint8_t)(v >> (8 * k));
                }
                for (size_t c = 0; c < qb / 4; c++) memcpy(o + qo + c * 32 + r * 4, blk + hb + hib + 4 * c, 4);
            }
        }
    }
}


// ---------------------------------------------------------------------------------------------------------------
// Portable

/// Q3_K packed, portable: per block b and row, acc = fma(d sc_lo d_a, Σ_lo (u − 4) qa, acc), then the same for the
/// high half (d sc computed first, as the AVX2 code does).
static void packed_q3k_portable(const uint8_t *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb, int64_t nt,
                                float *y, int64_t ldy) {
    const int64_t nsb = nb / 8;
    for (int64_t g = g0; g < g1; g++) {
        for (int64_t t = 0; t < nt; t++) {
            float acc[8] = {0};
            for (int64_t i = 0; i < nsb; i++) {
                const uint8_t *sb = wp + (size_t)(g * nsb + i) * RP_Q3K_SB;
                for (int b = 0; b < 8; b++) {
                    const sq_block_q8 *x = a + t * nb + 8 * i + b;
                    const uint8_t *qs = sb + 144 + b * 128;
                    for (int r = 0; r < 8; r++) {
                        const float d = sq_f16_to_f32(sq_load_u16(sb + 2 * r));
                        int lo = 0, hi = 0;
                        for (int c = 0; c < 4; c++)
                            for (int k = 0; k < 4; k++) {
                                const uint8_t v = qs[c * 32 + r * 4 + k];
                                lo += ((int)(v & 15) - 4) * x->qs[4 * c + k];
                                hi += ((int)(v >> 4) - 4) * x->qs[16 + 4 * c + k];
                            }
                        const float dl = d * (float)(int8_t)sb[16 + b * 16 + r], dh = d * (float)(int8_t)sb[16 + b * 16 + 8 + r];
                        acc[r] = fmaf(dl * x->d, (float)lo, acc[r]);
                        acc[r] = fmaf(dh * x->d, (float)hi, acc[r]);
                    }
                }
            }
            for (int r = 0; r < 8; r++) y[t * ldy + g * 8 + r] = acc[r];
        }
    }
}

static void packed_portable(int type, const uint8_t *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb,
                            int64_t nt, float *y, int64_t ldy) {
    if (type == RP_Q3_K) { packed_q3k_portable(wp, g0, g1, a, nb, nt, y, ldy); return; }
    size_t bb, hb, hib, qb;
    rp_layout(type, &bb, &hb, &hib, &qb);
    const size_t gb = 8 * bb;
    const size_t qo = 8 * (hb + hib);
    for (int64_t g = g0; g < g1; g++) {
        for (int64_t t = 0; t < nt; t++) {
            const sq_block_q8 *x = a + t * nb;
            float acc[8] = {0};
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = wp + (size_t)(g * nb + b) * gb;
                const uint8_t *qs = blk + qo;
                for (int r = 0; r < 8; r++) {
                    const float d = sq_f16_to_f32(sq_load_u16(blk + 2 * r));
                    const uint8_t *qh = blk + 8 * hb + 4 * r;  // Q5: byte i, bits 2c and 2c + 1
                    int isum = 0;
                    for (size_t c = 0; c < qb / 4; c++) {
                        for (int i = 0; i < 4; i++) {
                            const uint8_t v = qs[c * 32 + r * 4 + i];
                            const int e = (int)(4 * c) + i;
                            if (type == SQ_TYPE_Q8_0) {
                                isum += (int)(int8_t)v * x[b].qs[e];
                            } else if (type == SQ_TYPE_IQ4_NL) {
                                isum += (int)sq_iq4nl_levels[v & 15] * x[b].qs[e] + (int)sq_iq4nl_levels[v >> 4] * x[b].qs[e + 16];
                            } else if (hib) {
                                const int lo = (v & 15) | (((qh[i] >> (2 * c)) & 1) << 4);
                                const int hi = (v >> 4) | (((qh[i] >> (2 * c + 1)) & 1) << 4);
                                isum += lo * x[b].qs[e] + hi * x[b].qs[e + 16];
                            } else {
                                isum += (int)(v & 15) * x[b].qs[e] + (int)(v >> 4) * x[b].qs[e + 16];
                            }
                        }
                    }
                    const float dx = d * x[b].d;
                    acc[r] = fmaf(dx, (float)isum, acc[r]);
                    if (type == SQ_TYPE_Q4_0) acc[r] = fmaf(d, -8.0f * x[b].s, acc[r]);
                    if (type == SQ_TYPE_Q5_0) acc[r] = fmaf(d, -16.0f * x[b].s, acc[r]);
                    if (type == SQ_TYPE_Q4_1 || type == SQ_TYPE_Q5_1)
                        acc[r] = fmaf(sq_f16_to_f32(sq_load_u16(blk + 16 + 2 * r)), x[b].s, acc[r]);
                }
            }
            for (int r = 0; r < 8; r++) y[t * ldy + g * 8 + r] = acc[r];
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C

#ifdef SQ_X86
#define RP_AVX2 __attribute__((target("avx2,fma,f16c")))
#define RP_INLINE __attribute__((always_inline)) static inline

/// Q5 fifth bits of chunk c at bit 4 of every byte: bit `from` of each byte of the rearranged qh moved to bit 4
/// (16-bit shifts; bits crossing into the neighbouring byte never land on its bit 4 for |4 − from| ≤ 4).
RP_AVX2 RP_INLINE __m256i rp_bit4(__m256i qh, const int from) {
    const __m256i b4 = _mm256_set1_epi8(0x10);
    if (from < 4) return _mm256_and_si256(_mm256_slli_epi16(qh, 4 - from), b4);
    if (from > 4) return _mm256_and_si256(_mm256_srli_epi16(qh, from - 4), b4);
    return _mm256_and_si256(qh, b4);
}

RP_AVX2 RP_INLINE __m256i rp_bcast4(const int8_t *p) {
    int v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/// 8 rows × NT tokens over all nb blocks of one group. x[t]: token t's nb activation blocks.
RP_AVX2 RP_INLINE void rp_group(const int type, const int NT, const uint8_t *gp, int64_t nb, const sq_block_q8 *const *x,
                                float *y, int64_t ldy) {
    const size_t gb = type == RP_Q3_K ? RP_Q3K_SB / 8 : sq_pk_group_bytes(type), qo = sq_pk_quants(type);
    const int q5 = type == SQ_TYPE_Q5_0 || type == SQ_TYPE_Q5_1;
    const int has_m = type == SQ_TYPE_Q4_1 || type == SQ_TYPE_Q5_1;
    const __m256i low4 = _mm256_set1_epi8(15);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = gp + (size_t)b * gb;
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        if (type == SQ_TYPE_Q8_0) {
            __m256i w[8], ws[8];
            for (int c = 0; c < 8; c++) {
                w[c] = _mm256_loadu_si256((const __m256i *)(blk + qo + 32 * c));
                ws[c] = _mm256_sign_epi8(w[c], w[c]);  // |w| (−128 → 128 as unsigned)
            }
            for (int t = 0; t < NT; t++) {
                const sq_block_q8 *xb = x[t] + b;
                __m256i s32 = _mm256_setzero_si256();
                for (int c = 0; c < 8; c++) {
                    const __m256i p = _mm256_maddubs_epi16(ws[c], _mm256_sign_epi8(rp_bcast4(xb->qs + 4 * c), w[c]));
                    s32 = _mm256_add_epi32(s32, _mm256_madd_epi16(p, ones));
                }
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb->d)), _mm256_cvtepi32_ps(s32), acc[t]);
            }
        } else if (type == SQ_TYPE_IQ4_NL) {
            const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sq_iq4nl_levels));
            __m256i s32[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
            // Chunk by chunk (4 columns and the 4 columns 16 further on), so that few registers hold weights.
            for (int c = 0; c < 4; c++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(blk + qo + 32 * c));
                const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(raw, low4));
                const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4));
                const __m256i alo = _mm256_abs_epi8(lo), ahi = _mm256_abs_epi8(hi);
                for (int t = 0; t < NT; t++) {
                    const int8_t *xq = x[t][b].qs;
                    const __m256i plo = _mm256_maddubs_epi16(alo, _mm256_sign_epi8(rp_bcast4(xq + 4 * c), lo));
                    const __m256i phi = _mm256_maddubs_epi16(ahi, _mm256_sign_epi8(rp_bcast4(xq + 16 + 4 * c), hi));
                    s32[t] = _mm256_add_epi32(s32[t], _mm256_add_epi32(_mm256_madd_epi16(plo, ones), _mm256_madd_epi16(phi, ones)));
                }
            }
            for (int t = 0; t < NT; t++)
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(x[t][b].d)), _mm256_cvtepi32_ps(s32[t]), acc[t]);
        } else {  // Q4_0, Q4_1, Q5_0, Q5_1: unsigned q
            __m256i lo[4], hi[4];
            const __m256i qh = q5 ? _mm256_loadu_si256((const __m256i *)(blk + (has_m ? 32 : 16))) : _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(blk + qo + 32 * c));
                lo[c] = _mm256_and_si256(raw, low4);
                hi[c] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
                if (q5) {
                    lo[c] = _mm256_or_si256(lo[c], rp_bit4(qh, 2 * c));
                    hi[c] = _mm256_or_si256(hi[c], rp_bit4(qh, 2 * c + 1));
                }
            }
            const __m256 m = has_m ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16))) : d;
            const float offset = type == SQ_TYPE_Q4_0 ? -8.0f : type == SQ_TYPE_Q5_0 ? -16.0f : 1.0f;
            for (int t = 0; t < NT; t++) {
                const sq_block_q8 *xb = x[t] + b;
                // |lane| ≤ 2·15·127 per maddubs for Q4, eight of them ≤ 30480: the int16 sums cannot overflow;
                // for Q5 (≤ 2·31·127 each) two sums of four, ≤ 31496 each, are widened separately.
                __m256i s16a = _mm256_maddubs_epi16(lo[0], rp_bcast4(xb->qs));
                s16a = _mm256_add_epi16(s16a, _mm256_maddubs_epi16(hi[0], rp_bcast4(xb->qs + 16)));
                s16a = _mm256_add_epi16(s16a, _mm256_maddubs_epi16(lo[1], rp_bcast4(xb->qs + 4)));
                s16a = _mm256_add_epi16(s16a, _mm256_maddubs_epi16(hi[1], rp_bcast4(xb->qs + 20)));
                __m256i s16b = _mm256_maddubs_epi16(lo[2], rp_bcast4(xb->qs + 8));
                s16b = _mm256_add_epi16(s16b, _mm256_maddubs_epi16(hi[2], rp_bcast4(xb->qs + 24)));
                s16b = _mm256_add_epi16(s16b, _mm256_maddubs_epi16(lo[3], rp_bcast4(xb->qs + 12)));
                s16b = _mm256_add_epi16(s16b, _mm256_maddubs_epi16(hi[3], rp_bcast4(xb->qs + 28)));
                const __m256i s32 = q5 ? _mm256_add_epi32(_mm256_madd_epi16(s16a, ones), _mm256_madd_epi16(s16b, ones))
                                       : _mm256_madd_epi16(_mm256_add_epi16(s16a, s16b), ones);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb->d)), _mm256_cvtepi32_ps(s32), acc[t]);
                acc[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(offset * xb->s), acc[t]);
            }
        }
    }
    for (int t = 0; t < NT; t++) _mm256_storeu_ps(y + t * ldy, acc[t]);
}

/// Q3_K: 8 rows × NT tokens over the nb / 8 super-blocks of one group.
RP_AVX2 RP_INLINE void rp_group_q3k(const int NT, const uint8_t *gp, int64_t nb, const sq_block_q8 *const *x, float *y,
                                    int64_t ldy) {
    static const int8_t levels[16] = { -4, -3, -2, -1, 0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0 };
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)levels));
    const __m256i low4 = _mm256_set1_epi8(15);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < nb / 8; i++) {
        const uint8_t *sb = gp + (size_t)i * RP_Q3K_SB;
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)sb));
        for (int b = 0; b < 8; b++) {
            const uint8_t *qs = sb + 144 + b * 128;
            const __m128i sc = _mm_loadu_si128((const __m128i *)(sb + 16 + b * 16));
            const __m256 dl = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)));
            const __m256 dh = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8))));
            __m256i slo[4], shi[4];
            for (int t = 0; t < NT; t++) slo[t] = shi[t] = _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(raw, low4));
                const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4));
                const __m256i alo = _mm256_abs_epi8(lo), ahi = _mm256_abs_epi8(hi);
                for (int t = 0; t < NT; t++) {
                    const int8_t *xq = x[t][8 * i + b].qs;
                    slo[t] = _mm256_add_epi32(slo[t], _mm256_madd_epi16(_mm256_maddubs_epi16(alo, _mm256_sign_epi8(rp_bcast4(xq + 4 * c), lo)), ones));
                    shi[t] = _mm256_add_epi32(shi[t], _mm256_madd_epi16(_mm256_maddubs_epi16(ahi, _mm256_sign_epi8(rp_bcast4(xq + 16 + 4 * c), hi)), ones));
                }
            }
            for (int t = 0; t < NT; t++) {
                const __m256 dx = _mm256_set1_ps(x[t][8 * i + b].d);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dl, dx), _mm256_cvtepi32_ps(slo[t]), acc[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dh, dx), _mm256_cvtepi32_ps(shi[t]), acc[t]);
            }
        }
    }
    for (int t = 0; t < NT; t++) _mm256_storeu_ps(y + t * ldy, acc[t]);
}

RP_AVX2 SQ_SPECIALIZED void packed_avx2_typed(const int type, const uint8_t *wp, int64_t g0, int64_t g1,
                                         const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    const size_t gb = type == RP_Q3_K ? RP_Q3K_SB / 8 : sq_pk_group_bytes(type);
    int64_t t = 0;
    for (; t + 4 <= nt; t += 4) {
        const sq_block_q8 *x[4] = {a + t * nb, a + (t + 1) * nb, a + (t + 2) * nb, a + (t + 3) * nb};
        for (int64_t g = g0; g < g1; g++) {
            if (type == RP_Q3_K) rp_group_q3k(4, wp + (size_t)g * nb * gb, nb, x, y + t * ldy + g * 8, ldy);
            else rp_group(type, 4, wp + (size_t)g * nb * gb, nb, x, y + t * ldy + g * 8, ldy);
        }
    }
    for (; t < nt; t++) {
        const sq_block_q8 *x[1] = {a + t * nb};
        for (int64_t g = g0; g < g1; g++) {
            if (type == RP_Q3_K) rp_group_q3k(1, wp + (size_t)g * nb * gb, nb, x, y + t * ldy + g * 8, ldy);
            else rp_group(type, 1, wp + (size_t)g * nb * gb, nb, x, y + t * ldy + g * 8, ldy);
        }
    }
}

RP_AVX2 static void packed_avx2(int type, const uint8_t *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb,
                                int64_t nt, float *y, int64_t ldy) {
    switch (type) {
    case SQ_TYPE_Q4_0: packed_avx2_typed(SQ_TYPE_Q4_0, wp, g0, g1, a, nb, nt, y, ldy); break;
    case SQ_TYPE_Q4_1: packed_avx2_typed(SQ_TYPE_Q4_1, wp, g0, g1, a, nb, nt, y, ldy); break;
    case RP_Q3_K: packed_avx2_typed(RP_Q3_K, wp, g0, g1, a, nb, nt, y, ldy); break;
    case SQ_TYPE_Q5_0: packed_avx2_typed(SQ_TYPE_Q5_0, wp, g0, g1, a, nb, nt, y, ldy); break;
    case SQ_TYPE_Q5_1: packed_avx2_typed(SQ_TYPE_Q5_1, wp, g0, g1, a, nb, nt, y, ldy); break;
    case SQ_TYPE_IQ4_NL: packed_avx2_typed(SQ_TYPE_IQ4_NL, wp, g0, g1, a, nb, nt, y, ldy); break;
    default: packed_avx2_typed(SQ_TYPE_Q8_0, wp, g0, g1, a, nb, nt, y, ldy); break;
    }
}
#endif

void sq_matmul_packed_portable(int type, const void *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb,
                               int64_t nt, float *y, int64_t ldy) {
    if (sq_rpk_has_type(type)) { sq_rpk_matmul(type, 0, wp, g0, g1, a, nb, nt, y, ldy); return; }
    packed_portable(type, (const uint8_t *)wp, g0, g1, a, nb, nt, y, ldy);
}

void sq_matmul_packed_avx2(int type, const void *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb,
                           int64_t nt, float *y, int64_t ldy) {
    if (sq_rpk_has_type(type)) { sq_rpk_matmul(type, sq_kernels_have_avx2(), wp, g0, g1, a, nb, nt, y, ldy); return; }
#ifdef SQ_X86
    if (sq_kernels_have_avx2()) { packed_avx2(type, (const uint8_t *)wp, g0, g1, a, nb, nt, y, ldy); return; }
#endif
    packed_portable(type, (const uint8_t *)wp, g0, g1, a, nb, nt, y, ldy);
}

void sq_matmul_packed(int type, const void *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb, int64_t nt,
                      float *y, int64_t ldy) {
    if (sq_kernels_have_vnni()) { sq_vnni_matmul_packed(type, wp, g0, g1, a, nb, nt, y, ldy); return; }
    sq_matmul_packed_avx2(type, wp, g0, g1, a, nb, nt, y, ldy);
}
