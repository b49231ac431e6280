// IQ4_NL, IQ4_XS, TQ1_0 and TQ2_0 weights against int8 activations (sq_block_q8, 32 per block).
// Block layouts (ggml-common.h; the Swift codecs in SquishFormats/Codecs/IQ4.swift and Ternary.swift decode the same):
//   IQ4_NL (32 weights, 18 bytes):  f16 d @0 | u8 qs[16] @2        w[j] = d * L[qs[j] & 15], w[j+16] = d * L[qs[j] >> 4]
//   IQ4_XS (256 weights, 136 bytes): f16 d @0 | u16 scales_h @2 | u8 scales_l[4] @4 | u8 qs[128] @8
//            sub-block s (32 weights): ls = (4 bits of scales_l[s/2] at 4*(s%2) | 2 bits of scales_h at 2s << 4) - 32,
//            w = (d * ls) * L[q], q from qs[16s + k] (low nibble: weight k, high nibble: weight k + 16)
//   TQ1_0 (256 weights, 54 bytes):  u8 qs[48] @0 | u8 qh[4] @48 | f16 d @52        w = d * (t - 1), t in {0, 1, 2}
//            t = digit j of byte b = ((u8)(b * 3^j) * 3) >> 8 (five base-3 digits per byte as a fixed-point fraction);
//            qs[k], k < 32: weights 32 j + k (j < 5); qs[32 + k], k < 16: weights 160 + 16 j + k (j < 5);
//            qh[k], k < 4: weights 240 + 4 j + k (j < 4)
//   TQ2_0 (256 weights, 66 bytes):  u8 qs[64] @0 | f16 d @64                          w = d * (t - 1)
//            weight 128 g + 32 j + k has t = (qs[32 g + k] >> 2 j) & 3
// L is ggml's IQ4 level table kvalues_iq4nl. A 256-weight super-block spans 8 consecutive activation blocks.
// Per activation block (scale d_a, ints qa, s_a = d_a Σ qa):
//   IQ4: Σ w x = (d [* ls]) * d_a * Σ L[q] qa
//   TQ:  Σ w x = d * d_a * Σ (t - 1) qa = d * (d_a * Σ t qa − s_a)
#include "kernels_ext.h"

#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define SQ_X86 1
#include <immintrin.h>
#endif

enum { T_IQ4_NL = 20, T_IQ4_XS = 23, T_TQ1_0 = 34, T_TQ2_0 = 35 };

/// ggml's kvalues_iq4nl: the 16 non-uniform IQ4 levels.
static const int8_t iq4_levels[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };

int sq_iqtq_has_type(int type) {
    return type == T_IQ4_NL || type == T_IQ4_XS || type == T_TQ1_0 || type == T_TQ2_0;
}

static inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1F;
    const uint32_t man = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal: man * 2^-24
            float f = (float)man * 0x1p-24f;
            memcpy(&bits, &f, 4);
            bits |= sign;
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t load_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/// Weights per unit (one weight block) and bytes per unit.
static inline int unit_weights(int type) { return type == T_IQ4_NL ? 32 : 256; }
static inline size_t unit_bytes(int type) {
    switch (type) {
    case T_IQ4_NL: return 18;
    case T_IQ4_XS: return 136;
    case T_TQ1_0: return 54;
    default: return 66;
    }
}

/// IQ4_XS sub-block scale ls in -32..31.
static inline int iq4xs_scale(const uint8_t *blk, int s) {
    const int low = (blk[4 + (s >> 1)] >> (4 * (s & 1))) & 15;
    const int high = (load_u16(blk + 2) >> (2 * s)) & 3;
    return (low | (high << 4)) - 32;
}

/// TQ1_0 base-3 digit j of byte b.
static inline int tq1_digit(uint8_t b, int j) {
    static const uint8_t pow3[5] = { 1, 3, 9, 27, 81 };
    return (((unsigned)(uint8_t)(b * pow3[j])) * 3) >> 8;
}

/// Integer weights of one unit, in element order: IQ4 levels (-127..113) or ternary t (0..3; t - 1 is the weight),
/// and one float scale per 32 weights (IQ4_NL: 1 scale, others: 8).
static inline void unpack_unit(int type, const uint8_t *blk, int8_t *q, float *scale) {
    switch (type) {
    case T_IQ4_NL:
        scale[0] = f16_to_f32(load_u16(blk));
        for (int k = 0; k < 16; k++) { q[k] = iq4_levels[blk[2 + k] & 15]; q[k + 16] = iq4_levels[blk[2 + k] >> 4]; }
        break;
    case T_IQ4_XS: {
        const float d = f16_to_f32(load_u16(blk));
        for (int s = 0; s < 8; s++) {
            scale[s] = d * (float)iq4xs_scale(blk, s);
            const uint8_t *qs = blk + 8 + 16 * s;
            for (int k = 0; k < 16; k++) { q[32 * s + k] = iq4_levels[qs[k] & 15]; q[32 * s + k + 16] = iq4_levels[qs[k] >> 4]; }
        }
        break;
    }
    case T_TQ1_0: {
        const float d = f16_to_f32(load_u16(blk + 52));
        for (int s = 0; s < 8; s++) scale[s] = d;
        for (int j = 0; j < 5; j++) {
            for (int k = 0; k < 32; k++) q[32 * j + k] = (int8_t)tq1_digit(blk[k], j);
            for (int k = 0; k < 16; k++) q[160 + 16 * j + k] = (int8_t)tq1_digit(blk[32 + k], j);
        }
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 4; k++) q[240 + 4 * j + k] = (int8_t)tq1_digit(blk[48 + k], j);
        break;
    }
    default: {  // TQ2_0
        const float d = f16_to_f32(load_u16(blk + 64));
        for (int s = 0; s < 8; s++) scale[s] = d;
        for (int i = 0; i < 256; i++) q[i] = (int8_t)((blk[32 * (i >> 7) + (i & 31)] >> (2 * ((i >> 5) & 3))) & 3);
        break;
    }
    }
}

void sq_iqtq_dequantize_row(int type, const void *src, float *dst, int64_t n) {
    const uint8_t *p = (const uint8_t *)src;
    const int uw = unit_weights(type);
    const size_t ub = unit_bytes(type);
    int8_t q[256];
    float scale[8];
    for (int64_t u = 0; u < n / uw; u++) {
        unpack_unit(type, p + (size_t)u * ub, q, scale);
        float *out = dst + u * uw;
        // Same float operations as gguf-py: (d [* ls]) * level, or d * (t - 1).
        if (type == T_IQ4_NL || type == T_IQ4_XS) {
            for (int i = 0; i < uw; i++) out[i] = scale[i >> 5] * (float)q[i];
        } else {
            for (int i = 0; i < uw; i++) out[i] = scale[0] * (float)(q[i] - 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Portable: exact integer dot per activation block, then float scaling.

static void matmul_portable(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                            const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    const int uw = unit_weights(type), sub = uw / 32;
    const size_t ub = unit_bytes(type);
    const int offset = (type == T_TQ1_0 || type == T_TQ2_0) ? 1 : 0;  // weight = q - offset
    const int64_t nu = nb / sub;
    int8_t q[256];
    float scale[8];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
        for (int64_t t = 0; t < nt; t++) {
            const sq_block_q8 *x = a + t * nb;
            float acc = 0.0f;
            for (int64_t u = 0; u < nu; u++) {
                unpack_unit(type, row + (size_t)u * ub, q, scale);
                for (int s = 0; s < sub; s++) {
                    const sq_block_q8 *xb = &x[u * sub + s];
                    int isum = 0;
                    for (int i = 0; i < 32; i++) isum += ((int)q[32 * s + i] - offset) * (int)xb->qs[i];
                    acc += scale[s] * xb->d * (float)isum;
                }
            }
            y[t * ldy + r] = acc;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C

#ifdef SQ_X86
#define SQ_AVX2 __attribute__((target("avx2,fma,f16c")))
#define SQ_INLINE __attribute__((always_inline)) static inline

SQ_AVX2 static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// One unit unpacked: q[s] holds the 32 weights of sub-block s as bytes (IQ4: signed levels; TQ: unsigned t),
/// sc[s] its float scale; for TQ, the Σ t·qa dot is corrected by − d·s_a per activation block.
typedef struct {
    __m256i q[8];
    float sc[8];
} unit_avx2;

/// 16 packed nibbles → 32 signed IQ4 levels in element order (low nibbles first).
SQ_AVX2 SQ_INLINE __m256i iq4_levels_32(const uint8_t *qs) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)iq4_levels));
    const __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    const __m128i low4 = _mm_set1_epi8(15);
    const __m128i lo = _mm_and_si128(raw, low4);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low4);
    return _mm256_shuffle_epi8(table, _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
}

/// TQ1_0 digits of 32 bytes, byte i multiplied by 3^j for the j given per 16-bit lane in `pow3` (both bytes of a lane
/// share the power): (u8)(b·3^j) goes to the high byte of a 16-bit lane, where mulhi by 3 gives (m·3) >> 8.
SQ_AVX2 SQ_INLINE __m256i tq1_digits(__m256i bytes, __m256i pow3) {
    const __m256i three = _mm256_set1_epi16(3);
    const __m256i lo = _mm256_mullo_epi16(_mm256_slli_epi16(bytes, 8), pow3);                       // (b_lo·p mod 256) << 8
    const __m256i hi = _mm256_mullo_epi16(_mm256_and_si256(bytes, _mm256_set1_epi16((short)0xFF00)), pow3);  // (b_hi·p mod 256) << 8
    return _mm256_or_si256(_mm256_mulhi_epu16(lo, three), _mm256_slli_epi16(_mm256_mulhi_epu16(hi, three), 8));
}

SQ_AVX2 SQ_INLINE void unpack_unit_avx2(const int type, const uint8_t *blk, unit_avx2 *u) {
    switch (type) {
    case T_IQ4_NL:
        u->sc[0] = _cvtsh_ss(load_u16(blk));
        u->q[0] = iq4_levels_32(blk + 2);
        break;
    case T_IQ4_XS: {
        const float d = _cvtsh_ss(load_u16(blk));
        const unsigned sh = load_u16(blk + 2);
        for (int s = 0; s < 8; s++) {
            const int ls = (int)(((blk[4 + (s >> 1)] >> (4 * (s & 1))) & 15) | (((sh >> (2 * s)) & 3) << 4)) - 32;
            u->sc[s] = d * (float)ls;
            u->q[s] = iq4_levels_32(blk + 8 + 16 * s);
        }
        break;
    }
    case T_TQ1_0: {
        const float d = _cvtsh_ss(load_u16(blk + 52));
        for (int s = 0; s < 8; s++) u->sc[s] = d;
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)blk);                                  // qs[0..32)
        u->q[0] = tq1_digits(b0, _mm256_set1_epi16(1));
        u->q[1] = tq1_digits(b0, _mm256_set1_epi16(3));
        u->q[2] = tq1_digits(b0, _mm256_set1_epi16(9));
        u->q[3] = tq1_digits(b0, _mm256_set1_epi16(27));
        u->q[4] = tq1_digits(b0, _mm256_set1_epi16(81));
        const __m256i b1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(blk + 32)));  // qs[32..48) twice
        u->q[5] = tq1_digits(b1, _mm256_setr_epi16(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3));    // weights 160..191
        u->q[6] = tq1_digits(b1, _mm256_setr_epi16(9, 9, 9, 9, 9, 9, 9, 9, 27, 27, 27, 27, 27, 27, 27, 27));  // 192..223
        int32_t qh;
        memcpy(&qh, blk + 48, 4);
        // Weights 224..239 (digit 4 of qs[32..48)) in the low half, 240..255 (qh[k] digit j at 4 j + k) in the high half.
        const __m256i b2 = _mm256_inserti128_si256(b1, _mm_set1_epi32(qh), 1);
        u->q[7] = tq1_digits(b2, _mm256_setr_epi16(81, 81, 81, 81, 81, 81, 81, 81, 1, 1, 3, 3, 9, 9, 27, 27));
        break;
    }
    default: {  // TQ2_0
        const float d = _cvtsh_ss(load_u16(blk + 64));
        for (int s = 0; s < 8; s++) u->sc[s] = d;
        const __m256i three = _mm256_set1_epi8(3);
        for (int g = 0; g < 2; g++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 32 * g));
            u->q[4 * g + 0] = _mm256_and_si256(v, three);
            u->q[4 * g + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 2), three);
            u->q[4 * g + 2] = _mm256_and_si256(_mm256_srli_epi16(v, 4), three);
            u->q[4 * g + 3] = _mm256_and_si256(_mm256_srli_epi16(v, 6), three);
        }
        break;
    }
    }
}

/// Σ over 32 byte pairs as 8 float lanes (exact int32 sums converted): q signed (IQ4, via |q| and sign transfer)
/// or unsigned (TQ).
SQ_AVX2 SQ_INLINE __m256 dot32(const int is_signed, __m256i q, const int8_t *xq) {
    const __m256i x = _mm256_loadu_si256((const __m256i *)xq);
    const __m256i p = is_signed ? _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q))
                                : _mm256_maddubs_epi16(q, x);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/// Adds one unit's contribution for one token: float lanes to *acc, the TQ offset correction to *corr.
SQ_AVX2 SQ_INLINE void unit_dot(const int type, const unit_avx2 *u, const sq_block_q8 *x, __m256 *acc, float *corr) {
    const int sub = type == T_IQ4_NL ? 1 : 8;
    const int is_signed = type == T_IQ4_NL || type == T_IQ4_XS;
    for (int s = 0; s < sub; s++) *acc = _mm256_fmadd_ps(_mm256_set1_ps(u->sc[s] * x[s].d), dot32(is_signed, u->q[s], x[s].qs), *acc);
    if (!is_signed) {
        *corr += u->sc[0] * (((x[0].s + x[1].s) + (x[2].s + x[3].s)) + ((x[4].s + x[5].s) + (x[6].s + x[7].s)));
    }
}

/// One token against four consecutive rows (decode): independent accumulators and a prefetch ahead.
SQ_AVX2 SQ_INLINE void rows4_token1(const int type, const uint8_t *row, size_t row_bytes, const sq_block_q8 *x,
                                    int64_t nu, float out[4]) {
    const size_t ub = unit_bytes(type);
    const int sub = type == T_IQ4_NL ? 1 : 8;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    float c0 = 0, c1 = 0, c2 = 0, c3 = 0;
    const uint8_t *w0 = row, *w1 = row + row_bytes, *w2 = w1 + row_bytes, *w3 = w2 + row_bytes;
    for (int64_t i = 0; i < nu; i++) {
        const size_t o = (size_t)i * ub;
        const sq_block_q8 *xu = x + i * sub;
        _mm_prefetch((const char *)(w0 + o + 4 * row_bytes), _MM_HINT_T0);
        _mm_prefetch((const char *)(w3 + o + 4 * row_bytes), _MM_HINT_T0);
        unit_avx2 u;
        unpack_unit_avx2(type, w0 + o, &u); unit_dot(type, &u, xu, &acc0, &c0);
        unpack_unit_avx2(type, w1 + o, &u); unit_dot(type, &u, xu, &acc1, &c1);
        unpack_unit_avx2(type, w2 + o, &u); unit_dot(type, &u, xu, &acc2, &c2);
        unpack_unit_avx2(type, w3 + o, &u); unit_dot(type, &u, xu, &acc3, &c3);
    }
    out[0] = hsum_ps(acc0) - c0;
    out[1] = hsum_ps(acc1) - c1;
    out[2] = hsum_ps(acc2) - c2;
    out[3] = hsum_ps(acc3) - c3;
}

SQ_AVX2 SQ_INLINE void matmul_avx2_typed(const int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                                         const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    const size_t ub = unit_bytes(type);
    const int sub = type == T_IQ4_NL ? 1 : 8;
    const int64_t nu = nb / sub;
    // Tokens in tiles of four against one row: each unit is unpacked once and used four times.
    int64_t t = 0;
    for (; t + 4 <= nt; t += 4) {
        const sq_block_q8 *x0 = a + t * nb, *x1 = x0 + nb, *x2 = x1 + nb, *x3 = x2 + nb;
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
            float c0 = 0, c1 = 0, c2 = 0, c3 = 0;
            for (int64_t i = 0; i < nu; i++) {
                unit_avx2 u;
                unpack_unit_avx2(type, row + (size_t)i * ub, &u);
                unit_dot(type, &u, x0 + i * sub, &acc0, &c0);
                unit_dot(type, &u, x1 + i * sub, &acc1, &c1);
                unit_dot(type, &u, x2 + i * sub, &acc2, &c2);
                unit_dot(type, &u, x3 + i * sub, &acc3, &c3);
            }
            y[(t + 0) * ldy + r] = hsum_ps(acc0) - c0;
            y[(t + 1) * ldy + r] = hsum_ps(acc1) - c1;
            y[(t + 2) * ldy + r] = hsum_ps(acc2) - c2;
            y[(t + 3) * ldy + r] = hsum_ps(acc3) - c3;
        }
    }
    // Remaining tokens (all of them in decode): four rows at a time, then single rows.
    for (; t < nt; t++) {
        const sq_block_q8 *x = a + t * nb;
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) {
            float out[4];
            rows4_token1(type, (const uint8_t *)w + (size_t)r * row_bytes, row_bytes, x, nu, out);
            y[t * ldy + r] = out[0]; y[t * ldy + r + 1] = out[1]; y[t * ldy + r + 2] = out[2]; y[t * ldy + r + 3] = out[3];
        }
        for (; r < r1; r++) {
            const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
            __m256 acc = _mm256_setzero_ps();
            float c = 0;
            for (int64_t i = 0; i < nu; i++) {
                unit_avx2 u;
                unpack_unit_avx2(type, row + (size_t)i * ub, &u);
                unit_dot(type, &u, x + i * sub, &acc, &c);
            }
            y[t * ldy + r] = hsum_ps(acc) - c;
        }
    }
}

SQ_AVX2 static void matmul_avx2(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                                const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    // One specialized copy per block type (the type is a constant inside each).
    switch (type) {
    case T_IQ4_NL: matmul_avx2_typed(T_IQ4_NL, w, row_bytes, r0, r1, a, nb, nt, y, ldy); break;
    case T_IQ4_XS: matmul_avx2_typed(T_IQ4_XS, w, row_bytes, r0, r1, a, nb, nt, y, ldy); break;
    case T_TQ1_0: matmul_avx2_typed(T_TQ1_0, w, row_bytes, r0, r1, a, nb, nt, y, ldy); break;
    default: matmul_avx2_typed(T_TQ2_0, w, row_bytes, r0, r1, a, nb, nt, y, ldy); break;
    }
}
#endif

void sq_iqtq_matmul(int type, int avx2, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                    const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    if (!sq_iqtq_has_type(type)) return;
#ifdef SQ_X86
    if (avx2) { matmul_avx2(type, w, row_bytes, r0, r1, a, nb, nt, y, ldy); return; }
#else
    (void)avx2;
#endif
    matmul_portable(type, w, row_bytes, r0, r1, a, nb, nt, y, ldy);
}
