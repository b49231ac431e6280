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


int sq_iqtq_has_type(int type) {
    return type == T_IQ4_NL || type == T_IQ4_XS || type == T_TQ1_0 || type == T_TQ2_0;
}



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
    const int high = (sq_load_u16(blk + 2) >> (2 * s)) & 3;
    return (low | (high << 4)) - 32;
}

/// TQ1_0 base-3 digit j of byte b.
static inline int tq1_digit(uint8_t b, int j) {
    static const uint8_t pow3[5] = { 1, 3, 9, 27, 81 };
    return (((unsigned)(uint8_t)(b * pow3[j])) * 3) >> 8;
}

/// Integer weights of one unit, in element order: IQ4 levels (-127..113) or ternary t - 1 (-1..1; TQ2_0's unused
/// code 3 gives 2, as in gguf-py), and one float scale per 32 weights (IQ4_NL: 1 scale, others: 8).
static inline void unpack_unit(int type, const uint8_t *blk, int8_t *q, float *scale) {
    switch (type) {
    case T_IQ4_NL:
        scale[0] = sq_f16_to_f32(sq_load_u16(blk));
        for (int k = 0; k < 16; k++) { q[k] = sq_iq4nl_levels[blk[2 + k] & 15]; q[k + 16] = sq_iq4nl_levels[blk[2 + k] >> 4]; }
        break;
    case T_IQ4_XS: {
        const float d = sq_f16_to_f32(sq_load_u16(blk));
        for (int s = 0; s < 8; s++) {
            scale[s] = d * (float)iq4xs_scale(blk, s);
            const uint8_t *qs = blk + 8 + 16 * s;
            for (int k = 0; k < 16; k++) { q[32 * s + k] = sq_iq4nl_levels[qs[k] & 15]; q[32 * s + k + 16] = sq_iq4nl_levels[qs[k] >> 4]; }
        }
        break;
    }
    case T_TQ1_0: {
        const float d = sq_f16_to_f32(sq_load_u16(blk + 52));
        for (int s = 0; s < 8; s++) scale[s] = d;
        for (int j = 0; j < 5; j++) {
            for (int k = 0; k < 32; k++) q[32 * j + k] = (int8_t)(tq1_digit(blk[k], j) - 1);
            for (int k = 0; k < 16; k++) q[160 + 16 * j + k] = (int8_t)(tq1_digit(blk[32 + k], j) - 1);
        }
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 4; k++) q[240 + 4 * j + k] = (int8_t)(tq1_digit(blk[48 + k], j) - 1);
        break;
    }
    default: {  // TQ2_0
        const float d = sq_f16_to_f32(sq_load_u16(blk + 64));
        for (int s = 0; s < 8; s++) scale[s] = d;
        for (int g = 0; g < 2; g++)
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < 32; k++) q[128 * g + 32 * j + k] = (int8_t)(((blk[32 * g + k] >> (2 * j)) & 3) - 1);
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
        for (int i = 0; i < uw; i++) out[i] = scale[i >> 5] * (float)q[i];
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Portable: exact integer dot per activation block, then float scaling.

static void matmul_portable(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                            const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    const int uw = unit_weights(type), sub = uw / 32;
    const size_t ub = unit_bytes(type);
    const int64_t nu = nb / sub;
    int8_t q[256];
    float scale[8];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
        for (int64_t t = 0; t < nt; t++) y[t * ldy + r] = 0.0f;
        // Each unit is unpacked once and used for every token.
        for (int64_t u = 0; u < nu; u++) {
            unpack_unit(type, row + (size_t)u * ub, q, scale);
            for (int64_t t = 0; t < nt; t++) {
                const sq_block_q8 *x = a + t * nb + u * sub;
                float acc = 0.0f;
                for (int s = 0; s < sub; s++) {
                    const int8_t *qs = q + 32 * s, *xq = x[s].qs;
                    int isum = 0;
                    for (int i = 0; i < 32; i++) isum += (int)qs[i] * (int)xq[i];
                    acc += scale[s] * x[s].d * (float)isum;
                }
                y[t * ldy + r] += acc;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C. The weights are taken in groups of 256 (one super-block; 8 IQ4_NL blocks), i.e. 8 activation
// blocks: the 8 per-block int32 dot products are reduced to one vector with one lane per block, converted once and
// scaled by the vector of (weight scale × activation scale) per block. IQ4 types mostly use a "paired" layout, where
// one register holds halves of two blocks, which shortens that reduction; the side that is shared (activations
// across 4 rows in decode, across all rows of a 4-token tile in prefill) is the one rearranged.

#ifdef SQ_X86
#define SQ_AVX2 __attribute__((target("avx2,fma,f16c")))
#define SQ_INLINE __attribute__((always_inline)) static inline

SQ_AVX2 static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// 256 weights unpacked: q[s] the 32 weights of activation block s as bytes (IQ4: signed levels; TQ: unsigned t),
/// lane s of sc their float scale, d the TQ super-block scale (for the offset correction − d · Σ s_a).
typedef struct {
    __m256i q[8];
    __m256 sc;
    float d;
} group_avx2;

/// The activation side of one group: lane s = scale of block s; s = Σ of the 8 blocks' s (TQ only).
typedef struct {
    __m256 d;
    float s;
} act_avx2;

static inline size_t group_bytes(int type) { return type == T_IQ4_NL ? 8 * 18 : unit_bytes(type); }

/// 16 packed nibbles → 32 signed IQ4 levels in element order (low nibbles first).
SQ_AVX2 SQ_INLINE __m256i iq4_levels_32(const uint8_t *qs) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sq_iq4nl_levels));
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
    const __m256i lo = _mm256_mullo_epi16(_mm256_slli_epi16(bytes, 8), pow3);                               // (b_lo·p mod 256) << 8
    const __m256i hi = _mm256_mullo_epi16(_mm256_and_si256(bytes, _mm256_set1_epi16((short)0xFF00)), pow3);  // (b_hi·p mod 256) << 8
    return _mm256_or_si256(_mm256_mulhi_epu16(lo, three), _mm256_slli_epi16(_mm256_mulhi_epu16(hi, three), 8));
}

/// Unpacks 256 weights. With `paired` (IQ4 types, decode), blocks 2k and 2k + 1 are unpacked together: q[2k] holds
/// the first 16 weights of both (block 2k in the low 128 bits), q[2k + 1] their last 16, and lane l of sc is the
/// scale of block (0, 2, 4, 6, 1, 3, 5, 7)[l], the order in which group_dot_paired's reduction leaves the blocks.
SQ_AVX2 SQ_INLINE void unpack_group(const int type, const int paired, const uint8_t *blk, group_avx2 *g) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sq_iq4nl_levels));
    const __m256i low4 = _mm256_set1_epi8(15);
    switch (type) {
    case T_IQ4_NL: {  // 8 blocks of 18 bytes
        if (paired) {
            for (int k = 0; k < 4; k++) {
                const __m256i v = _mm256_loadu2_m128i((const __m128i *)(blk + 18 * (2 * k + 1) + 2), (const __m128i *)(blk + 18 * (2 * k) + 2));
                g->q[2 * k] = _mm256_shuffle_epi8(table, _mm256_and_si256(v, low4));
                g->q[2 * k + 1] = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), low4));
            }
            const __m128i d = _mm_setr_epi16((short)sq_load_u16(blk), (short)sq_load_u16(blk + 36), (short)sq_load_u16(blk + 72),
                                             (short)sq_load_u16(blk + 108), (short)sq_load_u16(blk + 18), (short)sq_load_u16(blk + 54),
                                             (short)sq_load_u16(blk + 90), (short)sq_load_u16(blk + 126));
            g->sc = _mm256_cvtph_ps(d);
            g->d = 0.0f;
            break;
        }
        for (int s = 0; s < 8; s++) g->q[s] = iq4_levels_32(blk + 18 * s + 2);
        const __m128i d = _mm_setr_epi16((short)sq_load_u16(blk), (short)sq_load_u16(blk + 18), (short)sq_load_u16(blk + 36),
                                         (short)sq_load_u16(blk + 54), (short)sq_load_u16(blk + 72), (short)sq_load_u16(blk + 90),
                                         (short)sq_load_u16(blk + 108), (short)sq_load_u16(blk + 126));
        g->sc = _mm256_cvtph_ps(d);
        g->d = 0.0f;
        break;
    }
    case T_IQ4_XS: {
        if (paired) {
            for (int k = 0; k < 4; k++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 8 + 32 * k));  // sub-blocks 2k, 2k + 1
                g->q[2 * k] = _mm256_shuffle_epi8(table, _mm256_and_si256(v, low4));
                g->q[2 * k + 1] = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), low4));
            }
        } else {
            for (int s = 0; s < 8; s++) g->q[s] = iq4_levels_32(blk + 8 + 16 * s);
        }
        // ls_s = (bits 4s..4s+3 of scales_l as a u32 LE) | (bits 2s, 2s+1 of scales_h) << 4, minus 32; lane l takes
        // s = l, or s = (0, 2, 4, 6, 1, 3, 5, 7)[l] when paired.
        uint32_t scl;
        memcpy(&scl, blk + 4, 4);
        const __m256i shl = paired ? _mm256_setr_epi32(0, 8, 16, 24, 4, 12, 20, 28) : _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
        const __m256i shh = paired ? _mm256_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14) : _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        const __m256i lo = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)scl), shl), _mm256_set1_epi32(15));
        const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(sq_load_u16(blk + 2)), shh), _mm256_set1_epi32(3));
        const __m256i ls = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), _mm256_set1_epi32(32));
        g->sc = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(sq_load_u16(blk))), _mm256_cvtepi32_ps(ls));
        g->d = 0.0f;
        break;
    }
    case T_TQ1_0: {
        g->d = _cvtsh_ss(sq_load_u16(blk + 52));
        g->sc = _mm256_set1_ps(g->d);
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)blk);                                  // qs[0..32)
        g->q[0] = tq1_digits(b0, _mm256_set1_epi16(1));
        g->q[1] = tq1_digits(b0, _mm256_set1_epi16(3));
        g->q[2] = tq1_digits(b0, _mm256_set1_epi16(9));
        g->q[3] = tq1_digits(b0, _mm256_set1_epi16(27));
        g->q[4] = tq1_digits(b0, _mm256_set1_epi16(81));
        const __m256i b1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(blk + 32)));  // qs[32..48) twice
        g->q[5] = tq1_digits(b1, _mm256_setr_epi16(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3));    // weights 160..191
        g->q[6] = tq1_digits(b1, _mm256_setr_epi16(9, 9, 9, 9, 9, 9, 9, 9, 27, 27, 27, 27, 27, 27, 27, 27));  // 192..223
        int32_t qh;
        memcpy(&qh, blk + 48, 4);
        // Weights 224..239 (digit 4 of qs[32..48)) in the low half, 240..255 (qh[k] digit j at 4 j + k) in the high half.
        const __m256i b2 = _mm256_inserti128_si256(b1, _mm_set1_epi32(qh), 1);
        g->q[7] = tq1_digits(b2, _mm256_setr_epi16(81, 81, 81, 81, 81, 81, 81, 81, 1, 1, 3, 3, 9, 9, 27, 27));
        break;
    }
    default: {  // TQ2_0
        g->d = _cvtsh_ss(sq_load_u16(blk + 64));
        g->sc = _mm256_set1_ps(g->d);
        const __m256i three = _mm256_set1_epi8(3);
        for (int h = 0; h < 2; h++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 32 * h));
            g->q[4 * h + 0] = _mm256_and_si256(v, three);
            g->q[4 * h + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 2), three);
            g->q[4 * h + 2] = _mm256_and_si256(_mm256_srli_epi16(v, 4), three);
            g->q[4 * h + 3] = _mm256_and_si256(_mm256_srli_epi16(v, 6), three);
        }
        break;
    }
    }
}

SQ_AVX2 SQ_INLINE act_avx2 load_act(const int type, const sq_block_q8 *x) {
    act_avx2 a;
    a.d = _mm256_setr_ps(x[0].d, x[1].d, x[2].d, x[3].d, x[4].d, x[5].d, x[6].d, x[7].d);
    a.s = (type == T_TQ1_0 || type == T_TQ2_0)
        ? ((x[0].s + x[1].s) + (x[2].s + x[3].s)) + ((x[4].s + x[5].s) + (x[6].s + x[7].s)) : 0.0f;
    return a;
}

/// Σ over 32 byte pairs as 8 int32 lanes (exact): q signed (IQ4, via |q| and sign transfer) or unsigned (TQ).
SQ_AVX2 SQ_INLINE __m256i dot32_i32(const int is_signed, __m256i q, const int8_t *xq) {
    const __m256i x = _mm256_loadu_si256((const __m256i *)xq);
    const __m256i p = is_signed ? _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q))
                                : _mm256_maddubs_epi16(q, x);
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/// One group against one token: *acc += lanes whose sum is Σ_s sc_s · d_s · Σ q qa; *corr += d · Σ s (TQ).
SQ_AVX2 SQ_INLINE void group_dot(const int type, const group_avx2 *g, const sq_block_q8 *x, const act_avx2 *act,
                                 __m256 *acc, float *corr) {
    const int is_signed = type == T_IQ4_NL || type == T_IQ4_XS;
    __m256i m[8];
    for (int s = 0; s < 8; s++) m[s] = dot32_i32(is_signed, g->q[s], x[s].qs);
    // Horizontal sums: after two rounds of hadd, lane k of 128-bit half h holds half h of block k (k < 4) or
    // block 4 + k; the 128-bit permutes line the halves up so that lane s = block s.
    const __m256i h0123 = _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]), _mm256_hadd_epi32(m[2], m[3]));
    const __m256i h4567 = _mm256_hadd_epi32(_mm256_hadd_epi32(m[4], m[5]), _mm256_hadd_epi32(m[6], m[7]));
    const __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                                         _mm256_permute2x128_si256(h0123, h4567, 0x31));
    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(g->sc, act->d), *acc);
    if (!is_signed) *corr += g->d * act->s;
}

/// The activation side of one group in the paired layout (see unpack_group): xq[2k] = first halves of blocks 2k and
/// 2k + 1, xq[2k + 1] = their second halves; lane l of d = scale of block (0, 2, 4, 6, 1, 3, 5, 7)[l].
typedef struct {
    __m256i xq[8];
    __m256 d;
} act_paired_avx2;

SQ_AVX2 SQ_INLINE void load_act_paired(const sq_block_q8 *x, act_paired_avx2 *a) {
    for (int k = 0; k < 4; k++) {
        const int8_t *e = x[2 * k].qs, *o = x[2 * k + 1].qs;
        a->xq[2 * k] = _mm256_loadu2_m128i((const __m128i *)o, (const __m128i *)e);
        a->xq[2 * k + 1] = _mm256_loadu2_m128i((const __m128i *)(o + 16), (const __m128i *)(e + 16));
    }
    a->d = _mm256_setr_ps(x[0].d, x[2].d, x[4].d, x[6].d, x[1].d, x[3].d, x[5].d, x[7].d);
}

/// IQ4 group (paired layout) against one token: m[k] has block 2k's partial sums in its low half, 2k + 1's in its
/// high half; two rounds of hadd leave lane l = block (0, 2, 4, 6, 1, 3, 5, 7)[l].
SQ_AVX2 SQ_INLINE void group_dot_paired(const group_avx2 *g, const act_paired_avx2 *a, __m256 *acc) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i m[4];
    for (int k = 0; k < 4; k++) {
        const __m256i q0 = g->q[2 * k], q1 = g->q[2 * k + 1];
        const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(q0, q0), _mm256_sign_epi8(a->xq[2 * k], q0)), ones);
        const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(q1, q1), _mm256_sign_epi8(a->xq[2 * k + 1], q1)), ones);
        m[k] = _mm256_add_epi32(p0, p1);
    }
    const __m256i sum = _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]), _mm256_hadd_epi32(m[2], m[3]));
    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(g->sc, a->d), *acc);
}

/// One IQ4_NL block (the tail of a row whose block count is not a multiple of 8) against one token.
SQ_AVX2 SQ_INLINE __m256 iq4nl_block(const uint8_t *blk, const sq_block_q8 *x, __m256 acc) {
    const __m256i m = dot32_i32(1, iq4_levels_32(blk + 2), x->qs);
    return _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(sq_load_u16(blk)) * x->d), _mm256_cvtepi32_ps(m), acc);
}

/// One token against four consecutive rows (decode): independent accumulators, the activation side of each group
/// built once for the four rows, and prefetches for the next four rows.
SQ_AVX2 SQ_INLINE void rows4_token1(const int type, const uint8_t *row, size_t row_bytes, const sq_block_q8 *x,
                                    int64_t nb, float out[4]) {
    const size_t gb = group_bytes(type);
    const int64_t ng = nb / 8;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    float c0 = 0, c1 = 0, c2 = 0, c3 = 0;
    const uint8_t *w0 = row, *w1 = row + row_bytes, *w2 = w1 + row_bytes, *w3 = w2 + row_bytes;
    for (int64_t i = 0; i < ng; i++) {
        const size_t o = (size_t)i * gb;
        const sq_block_q8 *xg = x + 8 * i;
        for (size_t l = 0; l < gb; l += 64) {
            _mm_prefetch((const char *)(w0 + 4 * row_bytes + o + l), _MM_HINT_T0);
            _mm_prefetch((const char *)(w1 + 4 * row_bytes + o + l), _MM_HINT_T0);
            _mm_prefetch((const char *)(w2 + 4 * row_bytes + o + l), _MM_HINT_T0);
            _mm_prefetch((const char *)(w3 + 4 * row_bytes + o + l), _MM_HINT_T0);
        }
        group_avx2 g;
        if (type == T_IQ4_NL || type == T_IQ4_XS) {
            // Paired layout: the activations are rearranged once for the four rows instead of the weights per row.
            act_paired_avx2 ap;
            load_act_paired(xg, &ap);
            unpack_group(type, 1, w0 + o, &g); group_dot_paired(&g, &ap, &acc0);
            unpack_group(type, 1, w1 + o, &g); group_dot_paired(&g, &ap, &acc1);
            unpack_group(type, 1, w2 + o, &g); group_dot_paired(&g, &ap, &acc2);
            unpack_group(type, 1, w3 + o, &g); group_dot_paired(&g, &ap, &acc3);
        } else {
            const act_avx2 act = load_act(type, xg);
            unpack_group(type, 0, w0 + o, &g); group_dot(type, &g, xg, &act, &acc0, &c0);
            unpack_group(type, 0, w1 + o, &g); group_dot(type, &g, xg, &act, &acc1, &c1);
            unpack_group(type, 0, w2 + o, &g); group_dot(type, &g, xg, &act, &acc2, &c2);
            unpack_group(type, 0, w3 + o, &g); group_dot(type, &g, xg, &act, &acc3, &c3);
        }
    }
    if (type == T_IQ4_NL) {
        for (int64_t b = 8 * ng; b < nb; b++) {
            acc0 = iq4nl_block(w0 + 18 * b, x + b, acc0);
            acc1 = iq4nl_block(w1 + 18 * b, x + b, acc1);
            acc2 = iq4nl_block(w2 + 18 * b, x + b, acc2);
            acc3 = iq4nl_block(w3 + 18 * b, x + b, acc3);
        }
    }
    out[0] = hsum_ps(acc0) - c0;
    out[1] = hsum_ps(acc1) - c1;
    out[2] = hsum_ps(acc2) - c2;
    out[3] = hsum_ps(acc3) - c3;
}

SQ_AVX2 SQ_SPECIALIZED void matmul_avx2_typed(const int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                                         const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    const size_t gb = group_bytes(type);
    const int64_t ng = nb / 8;
    // Tokens in tiles of four against one row: each group is unpacked once and used four times. The activation side
    // of the groups is built once per tile for up to `pass` groups (columns beyond that in further passes, which add
    // to y); IQ4 types use the paired layout (see unpack_group), whose activation side is larger.
    enum { TILE_GROUPS = 64, TILE_GROUPS_PAIRED = 16 };
    const int paired = type == T_IQ4_NL || type == T_IQ4_XS;
    const int64_t pass = paired ? TILE_GROUPS_PAIRED : TILE_GROUPS;
    union {
        act_avx2 plain[4][TILE_GROUPS];                 // [token in tile][group in pass]
        act_paired_avx2 paired[4][TILE_GROUPS_PAIRED];  // [token in tile][group in pass]
    } acts;
    int64_t t = 0;
    for (; t + 4 <= nt; t += 4) {
        const sq_block_q8 *x0 = a + t * nb, *x1 = x0 + nb, *x2 = x1 + nb, *x3 = x2 + nb;
        for (int64_t p0 = 0; p0 == 0 || p0 < ng; p0 += pass) {
            const int64_t p1 = p0 + pass < ng ? p0 + pass : ng;
            const int last = p1 == ng;
            for (int64_t i = p0; i < p1; i++) {
                if (paired) {
                    load_act_paired(x0 + 8 * i, &acts.paired[0][i - p0]);
                    load_act_paired(x1 + 8 * i, &acts.paired[1][i - p0]);
                    load_act_paired(x2 + 8 * i, &acts.paired[2][i - p0]);
                    load_act_paired(x3 + 8 * i, &acts.paired[3][i - p0]);
                } else {
                    acts.plain[0][i - p0] = load_act(type, x0 + 8 * i);
                    acts.plain[1][i - p0] = load_act(type, x1 + 8 * i);
                    acts.plain[2][i - p0] = load_act(type, x2 + 8 * i);
                    acts.plain[3][i - p0] = load_act(type, x3 + 8 * i);
                }
            }
            for (int64_t r = r0; r < r1; r++) {
                const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
                __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
                float c0 = 0, c1 = 0, c2 = 0, c3 = 0;
                for (int64_t i = p0; i < p1; i++) {
                    group_avx2 g;
                    unpack_group(type, paired, row + (size_t)i * gb, &g);
                    if (paired) {
                        group_dot_paired(&g, &acts.paired[0][i - p0], &acc0);
                        group_dot_paired(&g, &acts.paired[1][i - p0], &acc1);
                        group_dot_paired(&g, &acts.paired[2][i - p0], &acc2);
                        group_dot_paired(&g, &acts.paired[3][i - p0], &acc3);
                    } else {
                        const int64_t b = 8 * i;
                        group_dot(type, &g, x0 + b, &acts.plain[0][i - p0], &acc0, &c0);
                        group_dot(type, &g, x1 + b, &acts.plain[1][i - p0], &acc1, &c1);
                        group_dot(type, &g, x2 + b, &acts.plain[2][i - p0], &acc2, &c2);
                        group_dot(type, &g, x3 + b, &acts.plain[3][i - p0], &acc3, &c3);
                    }
                }
                if (type == T_IQ4_NL && last) {
                    for (int64_t b = 8 * ng; b < nb; b++) {
                        acc0 = iq4nl_block(row + 18 * b, x0 + b, acc0);
                        acc1 = iq4nl_block(row + 18 * b, x1 + b, acc1);
                        acc2 = iq4nl_block(row + 18 * b, x2 + b, acc2);
                        acc3 = iq4nl_block(row + 18 * b, x3 + b, acc3);
                    }
                }
                const float v0 = hsum_ps(acc0) - c0, v1 = hsum_ps(acc1) - c1, v2 = hsum_ps(acc2) - c2, v3 = hsum_ps(acc3) - c3;
                if (p0 == 0) {
                    y[(t + 0) * ldy + r] = v0; y[(t + 1) * ldy + r] = v1; y[(t + 2) * ldy + r] = v2; y[(t + 3) * ldy + r] = v3;
                } else {
                    y[(t + 0) * ldy + r] += v0; y[(t + 1) * ldy + r] += v1; y[(t + 2) * ldy + r] += v2; y[(t + 3) * ldy + r] += v3;
                }
            }
        }
    }
    // Remaining tokens (all of them in decode): four rows at a time, then single rows.
    for (; t < nt; t++) {
        const sq_block_q8 *x = a + t * nb;
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) {
            float out[4];
            rows4_token1(type, (const uint8_t *)w + (size_t)r * row_bytes, row_bytes, x, nb, out);
            y[t * ldy + r] = out[0]; y[t * ldy + r + 1] = out[1]; y[t * ldy + r + 2] = out[2]; y[t * ldy + r + 3] = out[3];
        }
        for (; r < r1; r++) {
            const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
            __m256 acc = _mm256_setzero_ps();
            float c = 0;
            for (int64_t i = 0; i < ng; i++) {
                group_avx2 g;
                unpack_group(type, 0, row + (size_t)i * gb, &g);
                const act_avx2 act = load_act(type, x + 8 * i);
                group_dot(type, &g, x + 8 * i, &act, &acc, &c);
            }
            if (type == T_IQ4_NL)
                for (int64_t b = 8 * ng; b < nb; b++) acc = iq4nl_block(row + 18 * b, x + b, acc);
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
