// Q4_K / Q5_K / Q6_K weights repacked at load time into groups of 8 output rows, like the 32-weight types in
// repack.c: one 256-bit register holds 4 consecutive quant bytes of each of the 8 rows, one maddubs + madd gives
// int32 sums for all 8 rows, scales stay per row (vectors of 8) and the 8 results are stored at once.
//
// One packed super-block: 8 rows × 256 columns (8 activation blocks of 32), laid out as
//   Q4_K (1184 B): f16 d[8] @0 | f16 dmin[8] @16 | u8 sc[8][8] @32 | u8 m[8][8] @96 | u8 qs[4][8][32] @160
//   Q5_K (1440 B): the same 160-byte head | 4 pairs j @160 + 320 j: u8 qh[2][32], then u8 qs[8][32]
//   Q6_K (1680 B): f16 d[8] @0 | i8 sc[16][8] @16 | 4 pairs j @144 + 384 j: 4 times u8 qh[32], u8 ql[2][32]
// sc[b][r] and m[b][r] are row r's six-bit scale and min of block b (32 columns); for Q6_K sc[s][r] is row r's scale
// of sub-block s (16 columns). With u the unsigned integer of a weight (0..15, 0..31, 0..63):
//   Q4_K/Q5_K: w = d·sc·u − dmin·m        Q6_K: w = d·sc·(u − 32)
// Quants: pair j (columns 64 j ... 64 j + 63) is 8 chunks c of 32 bytes; byte 4 r + i of chunk c holds row r's u of
// column 64 j + 4 c + i in its low nibble and of column 64 j + 32 + 4 c + i in its high nibble (Q6_K: u's low four
// bits), so a chunk's low nibbles meet activation block 2 j and its high nibbles block 2 j + 1, 4 columns at a time.
//   Q5_K: bit c of byte 4 r + i of qh[h] (pair j) is bit 4 of row r's u of column 64 j + 32 h + 4 c + i.
//   Q6_K: the chunks (ql) come in twos, 2 p and 2 p + 1, each two after their qh[32]: byte 4 r + i of that qh holds
//   bits 4-5 of u for chunk c = 2 p + e at bits 4 e, 4 e + 1 (the low-nibble column) and 4 e + 2, 4 e + 3 (the
//   high-nibble column).
// Everything is in the order the kernels read it (sequential streams keep the hardware prefetcher on). This is 32
// bytes more per 8 rows than the ggml blocks for Q4_K and Q5_K (the six-bit scales unpacked to bytes), and the same
// size for Q6_K.
//
// Arithmetic, per row r, token and super-block (activation blocks b: x ≈ d_a·qa, s_a = d_a·Σ qa):
//   Q4_K/Q5_K: acc = fma(d·d_a[b], (float)(sc[b]·Σ_32 u·qa), acc) for b = 0..7, then
//              macc = fma((float)m[b], s_a[b], macc) for b = 0..7 (macc from 0), acc = fma(−dmin, macc, acc)
//   Q6_K:      acc = fma(d·d_a[b], (float)I_b, acc), I_b = Σ_{h=0,1} sc[2b+h]·(Σ_16 u·qa − 32·Σ_16 qa)
// The integer sums are exact in every version (int16 partial sums stay below 2^15: Q4 eight chunks ≤ 8·2·15·127,
// Q5 four chunks ≤ 4·2·31·127, Q6 two chunks ≤ 2·2·63·127), and the float operations are the same, so the AVX2 and
// portable kernels give bit-identical results.
#include "kernels_ext.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define RK_X86 1
#include <immintrin.h>
#endif

enum { RK_Q4_K = SQ_PK_Q4_K, RK_Q5_K = SQ_PK_Q5_K, RK_Q6_K = SQ_PK_Q6_K };
enum { RK_Q4K_SB = SQ_PK_Q4_K_SB, RK_Q5K_SB = SQ_PK_Q5_K_SB, RK_Q6K_SB = SQ_PK_Q6_K_SB };

int sq_rpk_has_type(int type) { return type == RK_Q4_K || type == RK_Q5_K || type == RK_Q6_K; }

size_t sq_rpk_superblock_bytes(int type) {
    switch (type) {
    case RK_Q4_K: return RK_Q4K_SB;
    case RK_Q5_K: return RK_Q5K_SB;
    case RK_Q6_K: return RK_Q6K_SB;
    default: return 0;
    }
}

/// One ggml block's integers: u[256] (0..15 / 0..31 / 0..63), Q4_K/Q5_K scales sc[8] and mins m[8], Q6_K scales
/// sc6[16].
static void rk_unpack_block(int type, const uint8_t *blk, uint8_t u[256], uint8_t sc[8], uint8_t m[8], int8_t sc6[16]) {
    if (type == RK_Q6_K) {
        for (int i = 0; i < 256; i++) {
            const int g = i >> 7, r = i & 127;
            const int low = (blk[64 * g + (r & 63)] >> (4 * (r >> 6))) & 15;
            const int high = (blk[128 + 32 * g + (r & 31)] >> (2 * (r >> 5))) & 3;
            u[i] = (uint8_t)(low | (high << 4));
        }
        for (int s = 0; s < 16; s++) sc6[s] = (int8_t)blk[192 + s];
        return;
    }
    uint64_t sc8, m8;
    sq_kquant_scale_min_k4(blk + 4, &sc8, &m8);
    for (int s = 0; s < 8; s++) { sc[s] = (uint8_t)(sc8 >> (8 * s)); m[s] = (uint8_t)(m8 >> (8 * s)); }
    const uint8_t *qs = blk + (type == RK_Q4_K ? 16 : 48);
    for (int i = 0; i < 256; i++) {
        const int s = i >> 5, k = i & 31;
        int v = (qs[32 * (s >> 1) + k] >> (4 * (s & 1))) & 15;
        if (type == RK_Q5_K) v |= ((blk[16 + k] >> s) & 1) << 4;
        u[i] = (uint8_t)v;
    }
}

void sq_rpk_repack(int type, const void *src, size_t row_bytes, int64_t rows, int64_t nb, void *dst) {
    const size_t bb = type == RK_Q4_K ? 144 : type == RK_Q5_K ? 176 : 210;
    const size_t sbb = sq_rpk_superblock_bytes(type);
    const int64_t nsb = nb / 8;
    for (int64_t g = 0; g < rows / 8; g++) {
        for (int64_t i = 0; i < nsb; i++) {
            uint8_t *o = (uint8_t *)dst + (size_t)(g * nsb + i) * sbb;
            memset(o, 0, sbb);
            for (int r = 0; r < 8; r++) {
                const uint8_t *blk = (const uint8_t *)src + (size_t)(g * 8 + r) * row_bytes + (size_t)i * bb;
                uint8_t u[256], sc[8], m[8];
                int8_t sc6[16];
                rk_unpack_block(type, blk, u, sc, m, sc6);
                if (type == RK_Q6_K) {
                    memcpy(o + 2 * r, blk + 208, 2);
                    for (int s = 0; s < 16; s++) o[16 + 8 * s + r] = (uint8_t)sc6[s];
                    for (int j = 0; j < 4; j++)
                        for (int c = 0; c < 8; c++)
                            for (int k = 0; k < 4; k++) {
                                const int lo = u[64 * j + 4 * c + k], hi = u[64 * j + 32 + 4 * c + k];
                                uint8_t *pp = o + sq_pk_q6_pair(j) + 96 * (c / 2);
                                pp[4 * r + k] |= (uint8_t)(((lo >> 4) | ((hi >> 4) << 2)) << (4 * (c % 2)));
                                pp[32 + 32 * (c % 2) + 4 * r + k] = (uint8_t)((lo & 15) | ((hi & 15) << 4));
                            }
                } else {
                    memcpy(o + 2 * r, blk, 2);
                    memcpy(o + 16 + 2 * r, blk + 2, 2);
                    for (int b = 0; b < 8; b++) { o[32 + 8 * b + r] = sc[b]; o[96 + 8 * b + r] = m[b]; }
                    for (int j = 0; j < 4; j++) {
                        uint8_t *qs = o + sq_pk_q45_quants(type, j);
                        for (int c = 0; c < 8; c++)
                            for (int k = 0; k < 4; k++)
                                qs[32 * c + 4 * r + k] = (uint8_t)((u[64 * j + 4 * c + k] & 15) | ((u[64 * j + 32 + 4 * c + k] & 15) << 4));
                        if (type == RK_Q5_K)
                            for (int h = 0; h < 2; h++)
                                for (int c = 0; c < 8; c++)
                                    for (int k = 0; k < 4; k++)
                                        o[sq_pk_q5_high(j) + 32 * h + 4 * r + k] |= (uint8_t)(((u[64 * j + 32 * h + 4 * c + k] >> 4) & 1) << c);
                    }
                }
            }
        }
    }
}

/// Per-thread scratch for the half sums, grown as needed (never inside the loops).
static _Thread_local int32_t *rk_scratch;
static _Thread_local size_t rk_scratch_count;

#ifdef RK_X86
/// The half sums of `count` blocks, 16 bytes at a time (maddubs with ones, then madd and two horizontal adds).
__attribute__((target("avx2"))) static void rk_half_sums_avx2(const sq_block_q8 *a, size_t count, int32_t *out) {
    const __m128i ones8 = _mm_set1_epi8(1), ones16 = _mm_set1_epi16(1);
    for (size_t i = 0; i < count; i++) {
        const __m128i lo = _mm_madd_epi16(_mm_maddubs_epi16(ones8, _mm_loadu_si128((const __m128i *)a[i].qs)), ones16);
        const __m128i hi = _mm_madd_epi16(_mm_maddubs_epi16(ones8, _mm_loadu_si128((const __m128i *)(a[i].qs + 16))), ones16);
        const __m128i s = _mm_hadd_epi32(_mm_hadd_epi32(lo, hi), _mm_setzero_si128());  // [Σ lo, Σ hi, 0, 0]
        out[i] = (int32_t)(((uint32_t)_mm_extract_epi32(s, 0) & 0xFFFFu) | ((uint32_t)_mm_extract_epi32(s, 1) << 16));
    }
}
#endif

const int32_t *sq_pk_half_sums(const sq_block_q8 *a, int64_t nb, int64_t nt) {
    const size_t count = (size_t)(nt * nb);
    if (count > rk_scratch_count) {
        free(rk_scratch);
        rk_scratch = (int32_t *)malloc(count * sizeof(int32_t));
        rk_scratch_count = rk_scratch ? count : 0;
        if (!rk_scratch) return NULL;
    }
#ifdef RK_X86
    if (sq_kernels_have_avx2()) {
        rk_half_sums_avx2(a, count, rk_scratch);
        return rk_scratch;
    }
#endif
    for (size_t i = 0; i < count; i++) {
        int lo = 0, hi = 0;
        for (int k = 0; k < 16; k++) { lo += a[i].qs[k]; hi += a[i].qs[16 + k]; }
        rk_scratch[i] = (int32_t)(((uint32_t)(uint16_t)(int16_t)lo) | ((uint32_t)(uint16_t)(int16_t)hi << 16));
    }
    return rk_scratch;
}

// ---------------------------------------------------------------------------------------------------------------
// Portable

/// Row r's u of column 64 j + 4 c + k (hi = 0) or 64 j + 32 + 4 c + k (hi = 1) in a packed super-block.
static inline int rk_u(int type, const uint8_t *sb, int r, int j, int c, int k, int hi) {
    if (type == RK_Q6_K) {
        const uint8_t *pp = sb + sq_pk_q6_pair(j) + 96 * (c / 2);
        const uint8_t b = pp[32 + 32 * (c % 2) + 4 * r + k], h = pp[4 * r + k];
        return ((hi ? b >> 4 : b & 15)) | (((h >> (4 * (c % 2) + 2 * hi)) & 3) << 4);
    }
    const uint8_t b = sb[sq_pk_q45_quants(type, j) + 32 * c + 4 * r + k];
    int v = hi ? b >> 4 : b & 15;
    if (type == RK_Q5_K) v |= ((sb[sq_pk_q5_high(j) + 32 * hi + 4 * r + k] >> c) & 1) << 4;
    return v;
}

static void rk_portable(int type, const uint8_t *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb,
                        int64_t nt, float *y, int64_t ldy) {
    const size_t sbb = sq_rpk_superblock_bytes(type);
    const int64_t nsb = nb / 8;
    for (int64_t g = g0; g < g1; g++) {
        for (int64_t t = 0; t < nt; t++) {
            const sq_block_q8 *x = a + t * nb;
            float acc[8] = {0};
            for (int64_t i = 0; i < nsb; i++) {
                const uint8_t *sb = wp + (size_t)(g * nsb + i) * sbb;
                for (int b = 0; b < 8; b++) {
                    const sq_block_q8 *xb = x + 8 * i + b;
                    const int j = b / 2, hi = b % 2;
                    for (int r = 0; r < 8; r++) {
                        const float d = sq_f16_to_f32(sq_load_u16(sb + 2 * r));
                        int32_t I;
                        if (type == RK_Q6_K) {
                            int dot[2] = {0, 0}, sum[2] = {0, 0};
                            for (int c = 0; c < 8; c++)
                                for (int k = 0; k < 4; k++) {
                                    const int q = xb->qs[4 * c + k];
                                    dot[c / 4] += rk_u(type, sb, r, j, c, k, hi) * q;
                                    sum[c / 4] += q;
                                }
                            const int s0 = (int8_t)sb[16 + 8 * (2 * b) + r], s1 = (int8_t)sb[16 + 8 * (2 * b + 1) + r];
                            I = s0 * dot[0] + s1 * dot[1] - 32 * (s0 * sum[0] + s1 * sum[1]);
                        } else {
                            int dot = 0;
                            for (int c = 0; c < 8; c++)
                                for (int k = 0; k < 4; k++) dot += rk_u(type, sb, r, j, c, k, hi) * xb->qs[4 * c + k];
                            I = (int32_t)sb[32 + 8 * b + r] * dot;
                        }
                        acc[r] = fmaf(d * xb->d, (float)I, acc[r]);
                    }
                }
                if (type != RK_Q6_K) {
                    for (int r = 0; r < 8; r++) {
                        float macc = 0.0f;
                        for (int b = 0; b < 8; b++) macc = fmaf((float)sb[96 + 8 * b + r], x[8 * i + b].s, macc);
                        acc[r] = fmaf(-sq_f16_to_f32(sq_load_u16(sb + 16 + 2 * r)), macc, acc[r]);
                    }
                }
            }
            for (int r = 0; r < 8; r++) y[t * ldy + g * 8 + r] = acc[r];
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C

#ifdef RK_X86
#define RK_AVX2 __attribute__((target("avx2,fma,f16c")))
#define RK_INLINE __attribute__((always_inline)) static inline

RK_AVX2 RK_INLINE __m256i rk_bcast4(const int8_t *p) {
    int v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/// 8 unsigned bytes (one per row) as int16 pairs (v, v) per 32-bit lane: madd's multiplier for a row's two pair sums.
RK_AVX2 RK_INLINE __m256i rk_pairs_u8(const uint8_t *p) {
    const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    return _mm256_or_si256(v, _mm256_slli_epi32(v, 16));
}
/// The same for 8 signed bytes.
RK_AVX2 RK_INLINE __m256i rk_pairs_i8(const uint8_t *p) {
    const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
    return _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(v, 16));
}
/// Two signed bytes per row (p0[r], p1[r]) as the int16 pair of lane r.
RK_AVX2 RK_INLINE __m256i rk_pairs_i8x2(const uint8_t *p0, const uint8_t *p1) {
    const __m256i v0 = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p0));
    const __m256i v1 = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p1));
    return _mm256_or_si256(_mm256_and_si256(v0, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(v1, 16));
}

/// Bit `from` of every byte moved to bit 4 (16-bit shifts: a bit crossing into the neighbouring byte never lands on
/// its bit 4 for |4 − from| ≤ 4).
RK_AVX2 RK_INLINE __m256i rk_bit4(__m256i h, const int from) {
    const __m256i b4 = _mm256_set1_epi8(0x10);
    if (from < 4) return _mm256_and_si256(_mm256_slli_epi16(h, 4 - from), b4);
    if (from > 4) return _mm256_and_si256(_mm256_srli_epi16(h, from - 4), b4);
    return _mm256_and_si256(h, b4);
}

/// Bits `from`, `from + 1` of every byte moved to bits 4-5 (from in 0..6, even; the same argument as rk_bit4).
RK_AVX2 RK_INLINE __m256i rk_bits45(__m256i h, const int from) {
    const __m256i m = _mm256_set1_epi8(0x30);
    if (from < 4) return _mm256_and_si256(_mm256_slli_epi16(h, 4 - from), m);
    if (from > 4) return _mm256_and_si256(_mm256_srli_epi16(h, from - 4), m);
    return _mm256_and_si256(h, m);
}

/// Q4_K / Q5_K: 8 rows × NT tokens over the nsb super-blocks of one group. x[t]: token t's activation blocks.
RK_AVX2 RK_INLINE void rk_group_q45(const int type, const int NT, const uint8_t *gp, int64_t nsb,
                                    const sq_block_q8 *const *x, float *y, int64_t ldy) {
    const int q5 = type == RK_Q5_K;
    const size_t sbb = q5 ? RK_Q5K_SB : RK_Q4K_SB;
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *sb = gp + (size_t)i * sbb;
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)sb));
        for (int j = 0; j < 4; j++) {
            const uint8_t *qs = sb + sq_pk_q45_quants(type, j);
            const __m256i h0 = q5 ? _mm256_loadu_si256((const __m256i *)(sb + sq_pk_q5_high(j))) : _mm256_setzero_si256();
            const __m256i h1 = q5 ? _mm256_loadu_si256((const __m256i *)(sb + sq_pk_q5_high(j) + 32)) : _mm256_setzero_si256();
            const __m256i sclo = rk_pairs_u8(sb + 32 + 8 * (2 * j)), schi = rk_pairs_u8(sb + 32 + 8 * (2 * j + 1));
            __m256i ilo[4], ihi[4];
            // Q4: one int16 sum over the 8 chunks; Q5: one per 4 chunks, widened separately.
            for (int half = 0; half < (q5 ? 2 : 1); half++) {
                __m256i slo[4], shi[4];
                const int c0 = q5 ? 4 * half : 0, c1 = q5 ? c0 + 4 : 8;
                for (int c = c0; c < c1; c++) {
                    const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                    __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                    if (q5) {
                        lo = _mm256_or_si256(lo, rk_bit4(h0, c));
                        hi = _mm256_or_si256(hi, rk_bit4(h1, c));
                    }
                    for (int t = 0; t < NT; t++) {
                        const __m256i pl = _mm256_maddubs_epi16(lo, rk_bcast4(x[t][8 * i + 2 * j].qs + 4 * c));
                        const __m256i ph = _mm256_maddubs_epi16(hi, rk_bcast4(x[t][8 * i + 2 * j + 1].qs + 4 * c));
                        slo[t] = c == c0 ? pl : _mm256_add_epi16(slo[t], pl);
                        shi[t] = c == c0 ? ph : _mm256_add_epi16(shi[t], ph);
                    }
                }
                for (int t = 0; t < NT; t++) {
                    const __m256i vl = _mm256_madd_epi16(slo[t], sclo), vh = _mm256_madd_epi16(shi[t], schi);
                    ilo[t] = half == 0 ? vl : _mm256_add_epi32(ilo[t], vl);
                    ihi[t] = half == 0 ? vh : _mm256_add_epi32(ihi[t], vh);
                }
            }
            for (int t = 0; t < NT; t++) {
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(x[t][8 * i + 2 * j].d)), _mm256_cvtepi32_ps(ilo[t]), acc[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(x[t][8 * i + 2 * j + 1].d)), _mm256_cvtepi32_ps(ihi[t]), acc[t]);
            }
        }
        // The mins, for all 8 blocks: acc −= dmin · Σ_b m[b] s_a[b].
        __m256 macc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int b = 0; b < 8; b++) {
            const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sb + 96 + 8 * b))));
            for (int t = 0; t < NT; t++) macc[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(x[t][8 * i + b].s), macc[t]);
        }
        const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sb + 16)));
        for (int t = 0; t < NT; t++) acc[t] = _mm256_fnmadd_ps(dmin, macc[t], acc[t]);
    }
    for (int t = 0; t < NT; t++) _mm256_storeu_ps(y + t * ldy, acc[t]);
}

/// Q6_K: 8 rows × NT tokens over the nsb super-blocks of one group; bs[t]: token t's half sums (sq_pk_half_sums).
RK_AVX2 RK_INLINE void rk_group_q6(const int NT, const uint8_t *gp, int64_t nsb, const sq_block_q8 *const *x,
                                   const int32_t *const *bs, float *y, int64_t ldy) {
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *sb = gp + (size_t)i * RK_Q6K_SB;
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)sb));
        for (int j = 0; j < 4; j++) {
            const uint8_t *pj = sb + sq_pk_q6_pair(j);
            // Sub-blocks of block 2 j (low nibbles): 4 j, 4 j + 1; of block 2 j + 1 (high nibbles): 4 j + 2, 4 j + 3.
            const uint8_t *sc = sb + 16 + 8 * (4 * j);
            __m256i ilo[4], ihi[4];
            for (int p = 0; p < 4; p++) {
                const __m256i h = _mm256_loadu_si256((const __m256i *)(pj + 96 * p));
                __m256i slo[4], shi[4];
                for (int e = 0; e < 2; e++) {
                    const int c = 2 * p + e;
                    const __m256i raw = _mm256_loadu_si256((const __m256i *)(pj + 96 * p + 32 + 32 * e));
                    const __m256i lo = _mm256_or_si256(_mm256_and_si256(raw, m4), rk_bits45(h, 4 * e));
                    const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), rk_bits45(h, 4 * e + 2));
                    for (int t = 0; t < NT; t++) {
                        const __m256i pl = _mm256_maddubs_epi16(lo, rk_bcast4(x[t][8 * i + 2 * j].qs + 4 * c));
                        const __m256i ph = _mm256_maddubs_epi16(hi, rk_bcast4(x[t][8 * i + 2 * j + 1].qs + 4 * c));
                        slo[t] = e == 0 ? pl : _mm256_add_epi16(slo[t], pl);
                        shi[t] = e == 0 ? ph : _mm256_add_epi16(shi[t], ph);
                    }
                }
                const int half = p / 2;
                const __m256i scl = rk_pairs_i8(sc + 8 * half), sch = rk_pairs_i8(sc + 8 * (2 + half));
                for (int t = 0; t < NT; t++) {
                    const __m256i vl = _mm256_madd_epi16(slo[t], scl), vh = _mm256_madd_epi16(shi[t], sch);
                    ilo[t] = p == 0 ? vl : _mm256_add_epi32(ilo[t], vl);
                    ihi[t] = p == 0 ? vh : _mm256_add_epi32(ihi[t], vh);
                }
            }
            // Offsets: 32 · (sc[first half] Σ qa + sc[second half] Σ qa) per row.
            const __m256i olo = rk_pairs_i8x2(sc, sc + 8), ohi = rk_pairs_i8x2(sc + 16, sc + 24);
            for (int t = 0; t < NT; t++) {
                const __m256i bl = _mm256_set1_epi32(bs[t][8 * i + 2 * j]), bh = _mm256_set1_epi32(bs[t][8 * i + 2 * j + 1]);
                ilo[t] = _mm256_sub_epi32(ilo[t], _mm256_slli_epi32(_mm256_madd_epi16(olo, bl), 5));
                ihi[t] = _mm256_sub_epi32(ihi[t], _mm256_slli_epi32(_mm256_madd_epi16(ohi, bh), 5));
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(x[t][8 * i + 2 * j].d)), _mm256_cvtepi32_ps(ilo[t]), acc[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(x[t][8 * i + 2 * j + 1].d)), _mm256_cvtepi32_ps(ihi[t]), acc[t]);
            }
        }
    }
    for (int t = 0; t < NT; t++) _mm256_storeu_ps(y + t * ldy, acc[t]);
}

RK_AVX2 SQ_SPECIALIZED void rk_avx2_typed(const int type, const uint8_t *wp, int64_t g0, int64_t g1, const sq_block_q8 *a,
                                     int64_t nb, int64_t nt, const int32_t *bsum, float *y, int64_t ldy) {
    const int64_t nsb = nb / 8;
    const size_t gb = (size_t)nsb * sq_rpk_superblock_bytes(type);
    int64_t t = 0;
    for (; t + 4 <= nt; t += 4) {
        const sq_block_q8 *x[4] = {a + t * nb, a + (t + 1) * nb, a + (t + 2) * nb, a + (t + 3) * nb};
        const int32_t *bs[4] = {bsum + t * nb, bsum + (t + 1) * nb, bsum + (t + 2) * nb, bsum + (t + 3) * nb};
        for (int64_t g = g0; g < g1; g++) {
            if (type == RK_Q6_K) rk_group_q6(4, wp + (size_t)g * gb, nsb, x, bs, y + t * ldy + g * 8, ldy);
            else rk_group_q45(type, 4, wp + (size_t)g * gb, nsb, x, y + t * ldy + g * 8, ldy);
        }
    }
    for (; t < nt; t++) {
        const sq_block_q8 *x[1] = {a + t * nb};
        const int32_t *bs[1] = {bsum + t * nb};
        for (int64_t g = g0; g < g1; g++) {
            if (type == RK_Q6_K) rk_group_q6(1, wp + (size_t)g * gb, nsb, x, bs, y + t * ldy + g * 8, ldy);
            else rk_group_q45(type, 1, wp + (size_t)g * gb, nsb, x, y + t * ldy + g * 8, ldy);
        }
    }
}

RK_AVX2 static void rk_avx2(int type, const uint8_t *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb,
                            int64_t nt, const int32_t *bs, float *y, int64_t ldy) {
    switch (type) {
    case RK_Q4_K: rk_avx2_typed(RK_Q4_K, wp, g0, g1, a, nb, nt, bs, y, ldy); break;
    case RK_Q5_K: rk_avx2_typed(RK_Q5_K, wp, g0, g1, a, nb, nt, bs, y, ldy); break;
    default: rk_avx2_typed(RK_Q6_K, wp, g0, g1, a, nb, nt, bs, y, ldy); break;
    }
}
#endif

void sq_rpk_matmul(int type, int avx2, const void *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb,
                   int64_t nt, float *y, int64_t ldy) {
#ifdef RK_X86
    if (avx2) {
        const int32_t *bs = NULL;
        if (type == RK_Q6_K) {
            bs = sq_pk_half_sums(a, nb, nt);
            if (!bs) { rk_portable(type, (const uint8_t *)wp, g0, g1, a, nb, nt, y, ldy); return; }
        }
        rk_avx2(type, (const uint8_t *)wp, g0, g1, a, nb, nt, bs, y, ldy);
        return;
    }
#else
    (void)avx2;
#endif
    rk_portable(type, (const uint8_t *)wp, g0, g1, a, nb, nt, y, ldy);
}
