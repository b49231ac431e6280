// Squish innermost loops. Layouts of the ggml blocks (32 weights each), see ggml's docs and the GGUF spec:
//   Q4_0: f16 d, u8 qs[16]           w = d * (q - 8)     q of element j: qs[j] & 15, of element j+16: qs[j] >> 4
//   Q4_1: f16 d, f16 m, u8 qs[16]    w = d * q + m
//   Q5_0: f16 d, u32 qh, u8 qs[16]   w = d * (q - 16)    bit 4 of element i's q is bit i of qh
//   Q5_1: f16 d, f16 m, u32 qh, u8 qs[16]   w = d * q + m
//   Q8_0: f16 d, i8 qs[32]           w = d * q
// With activations x ≈ d_a * qa (sq_block_q8), a block's contribution to a dot product is
//   Σ w x = d * d_a * Σ q qa  (+ m * s_a, or − offset * d * s_a)     where s_a = d_a * Σ qa.
#include "squish_kernels.h"
#include "kernels_ext.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define SQ_X86 1
#include <immintrin.h>
#endif

// ---------------------------------------------------------------------------------------------------------------
// Portable code



int sq_type_has_q8_kernel(int type) {
    switch (type) {
    case SQ_TYPE_Q4_0: case SQ_TYPE_Q4_1: case SQ_TYPE_Q5_0: case SQ_TYPE_Q5_1: case SQ_TYPE_Q8_0: return 1;
    default: return sq_kquants_has_type(type) || sq_iqtq_has_type(type);
    }
}

static void quantize_q8_portable(const float *x, sq_block_q8 *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++) {
        const float *v = x + b * 32;
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(v[i]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int i = 0; i < 32; i++) {
            const int q = (int)nearbyintf(v[i] * id);
            y[b].qs[i] = (int8_t)q;
            sum += q;
        }
        y[b].d = d;
        y[b].s = d * (float)sum;
    }
}

/// Integer weights of one block (0..15 / 0..31 / -128..127) and its scale, min, and offset.
static inline void unpack_block(int type, const uint8_t *blk, int8_t q[32], float *d, float *m, int *offset) {
    *m = 0.0f;
    *offset = 0;
    switch (type) {
    case SQ_TYPE_Q4_0:
    case SQ_TYPE_Q4_1: {
        const uint8_t *qs = blk + (type == SQ_TYPE_Q4_0 ? 2 : 4);
        *d = sq_f16_to_f32(sq_load_u16(blk));
        if (type == SQ_TYPE_Q4_1) *m = sq_f16_to_f32(sq_load_u16(blk + 2)); else *offset = 8;
        for (int j = 0; j < 16; j++) { q[j] = (int8_t)(qs[j] & 15); q[j + 16] = (int8_t)(qs[j] >> 4); }
        break;
    }
    case SQ_TYPE_Q5_0:
    case SQ_TYPE_Q5_1: {
        const int hoff = type == SQ_TYPE_Q5_0 ? 2 : 4;
        *d = sq_f16_to_f32(sq_load_u16(blk));
        if (type == SQ_TYPE_Q5_1) *m = sq_f16_to_f32(sq_load_u16(blk + 2)); else *offset = 16;
        const uint32_t qh = sq_load_u32(blk + hoff);
        const uint8_t *qs = blk + hoff + 4;
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((qs[j] & 15) | (((qh >> j) & 1) << 4));
            q[j + 16] = (int8_t)((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        }
        break;
    }
    default: {  // Q8_0
        *d = sq_f16_to_f32(sq_load_u16(blk));
        memcpy(q, blk + 2, 32);
        break;
    }
    }
}

static size_t block_bytes(int type) {
    switch (type) {
    case SQ_TYPE_Q4_0: return 18;
    case SQ_TYPE_Q4_1: return 20;
    case SQ_TYPE_Q5_0: return 22;
    case SQ_TYPE_Q5_1: return 24;
    default: return 34;
    }
}

static void matmul_q8_portable(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                               const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    const size_t bb = block_bytes(type);
    int8_t q[32];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
        for (int64_t t = 0; t < nt; t++) {
            const sq_block_q8 *x = a + t * nb;
            float acc = 0.0f, accs = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                float d, m;
                int offset;
                unpack_block(type, row + (size_t)b * bb, q, &d, &m, &offset);
                int isum = 0;
                for (int i = 0; i < 32; i++) isum += (int)q[i] * (int)x[b].qs[i];
                acc += d * x[b].d * (float)isum;
                accs += (m - (float)offset * d) * x[b].s;
            }
            y[t * ldy + r] = acc + accs;
        }
    }
}

static float dot_f32_portable(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void matmul_f_portable(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                              const float *x, int64_t ldx, int64_t n, int64_t nt, float *y, int64_t ldy) {
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
        for (int64_t t = 0; t < nt; t++) {
            const float *xt = x + t * ldx;
            float s = 0.0f;
            if (type == SQ_TYPE_F32) {
                const float *wr = (const float *)row;
                for (int64_t i = 0; i < n; i++) s += wr[i] * xt[i];
            } else {
                for (int64_t i = 0; i < n; i++) s += sq_f16_to_f32(sq_load_u16(row + 2 * i)) * xt[i];
            }
            y[t * ldy + r] = s;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C

#ifdef SQ_X86
#define SQ_AVX2 __attribute__((target("avx2,fma,f16c")))

SQ_AVX2 static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

SQ_AVX2 static void quantize_q8_avx2(const float *x, sq_block_q8 *y, int64_t n) {
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / 32; b++) {
        const float *v = x + b * 32;
        __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8), v2 = _mm256_loadu_ps(v + 16), v3 = _mm256_loadu_ps(v + 24);
        __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(signbit, v0), _mm256_andnot_ps(signbit, v1)),
                                  _mm256_max_ps(_mm256_andnot_ps(signbit, v2), _mm256_andnot_ps(signbit, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 127.0f / amax : 0.0f;
        const __m256 mul = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_hadd_epi32(s4, s4);
        s4 = _mm_hadd_epi32(s4, s4);
        // Pack 32-bit → 16-bit → 8-bit; the packs interleave 128-bit lanes, a final permute restores element order.
        __m256i p01 = _mm256_packs_epi32(i0, i1);
        __m256i p23 = _mm256_packs_epi32(i2, i3);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[b].qs, p);
        y[b].d = d;
        y[b].s = d * (float)_mm_cvtsi128_si32(s4);
    }
}

/// 32 weights of one block as bytes (unsigned 0..31 for Q4/Q5, signed for Q8_0), with scale, min and offset.
SQ_AVX2 __attribute__((always_inline)) static inline __m256i unpack_block_avx2(int type, const uint8_t *blk, float *d, float *m, float *offset) {
    const __m128i low4 = _mm_set1_epi8(15);
    *m = 0.0f;
    *offset = 0.0f;
    *d = _cvtsh_ss(sq_load_u16(blk));
    switch (type) {
    case SQ_TYPE_Q4_0:
    case SQ_TYPE_Q4_1: {
        const int qo = type == SQ_TYPE_Q4_0 ? 2 : 4;
        if (type == SQ_TYPE_Q4_1) *m = _cvtsh_ss(sq_load_u16(blk + 2)); else *offset = 8.0f;
        const __m128i raw = _mm_loadu_si128((const __m128i *)(blk + qo));
        const __m128i lo = _mm_and_si128(raw, low4);
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low4);
        return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
    }
    case SQ_TYPE_Q5_0:
    case SQ_TYPE_Q5_1: {
        const int ho = type == SQ_TYPE_Q5_0 ? 2 : 4;
        if (type == SQ_TYPE_Q5_1) *m = _cvtsh_ss(sq_load_u16(blk + 2)); else *offset = 16.0f;
        const __m128i raw = _mm_loadu_si128((const __m128i *)(blk + ho + 4));
        const __m128i lo = _mm_and_si128(raw, low4);
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low4);
        __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
        // Spread bit i of qh to byte i: broadcast byte i/8 to position i, test bit i%8.
        const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)sq_load_u32(blk + ho)),
            _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                             2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
        return _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(16)));
    }
    default:
        return _mm256_loadu_si256((const __m256i *)(blk + 2));
    }
}

SQ_AVX2 static inline __m256 block_dot_x(__m256i q, int is_signed, __m256i x) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i p = is_signed ? _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q)) : _mm256_maddubs_epi16(q, x);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
}

/// Σ over 32 byte pairs as 8 int32 lanes: w unsigned (Q4/Q5) or signed (Q8_0, via |w| and sign transfer).
SQ_AVX2 static inline __m256 block_dot(__m256i q, int is_signed, const int8_t *xq) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i x = _mm256_loadu_si256((const __m256i *)xq);
    __m256i p;
    if (is_signed) {
        p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
    } else {
        p = _mm256_maddubs_epi16(q, x);
    }
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
}

/// One token against four consecutive rows: four independent accumulation chains and a prefetch ahead keep the
/// memory system busy in decode, where every weight byte is read once per token.
SQ_AVX2 __attribute__((always_inline)) static inline void rows4_token1(const int type, const uint8_t *row, size_t row_bytes,
                                                                       const sq_block_q8 *x, int64_t nb, float out[4]) {
    const size_t bb = block_bytes(type);
    const int is_signed = type == SQ_TYPE_Q8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    const uint8_t *w0 = row, *w1 = row + row_bytes, *w2 = w1 + row_bytes, *w3 = w2 + row_bytes;
    for (int64_t b = 0; b < nb; b++) {
        const size_t o = (size_t)b * bb;
        _mm_prefetch((const char *)(w3 + o + 4 * row_bytes), _MM_HINT_T0);
        float d, m, off;
        __m256i q;
        const __m256i xq = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const float xd = x[b].d, xs = x[b].s;
#define SQ_ROW(W, ACC, S)                                                                                 \
        q = unpack_block_avx2(type, W + o, &d, &m, &off);                                                \
        ACC = _mm256_fmadd_ps(_mm256_set1_ps(d * xd), block_dot_x(q, is_signed, xq), ACC);               \
        S += (m - off * d) * xs;
        SQ_ROW(w0, acc0, s0)
        SQ_ROW(w1, acc1, s1)
        SQ_ROW(w2, acc2, s2)
        SQ_ROW(w3, acc3, s3)
#undef SQ_ROW
    }
    out[0] = hsum_ps(acc0) + s0;
    out[1] = hsum_ps(acc1) + s1;
    out[2] = hsum_ps(acc2) + s2;
    out[3] = hsum_ps(acc3) + s3;
}

SQ_AVX2 SQ_SPECIALIZED void matmul_q8_avx2_typed(
    const int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
    const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    const size_t bb = block_bytes(type);
    const int is_signed = type == SQ_TYPE_Q8_0;
    // Tokens in tiles of four against one row: each weight block is unpacked once and used four times.
    int64_t t = 0;
    for (; t + 4 <= nt; t += 4) {
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
            const sq_block_q8 *x0 = a + t * nb, *x1 = x0 + nb, *x2 = x1 + nb, *x3 = x2 + nb;
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int64_t b = 0; b < nb; b++) {
                float d, m, off;
                const __m256i q = unpack_block_avx2(type, row + (size_t)b * bb, &d, &m, &off);
                const float c = m - off * d;
                acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d * x0[b].d), block_dot(q, is_signed, x0[b].qs), acc0);
                acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d * x1[b].d), block_dot(q, is_signed, x1[b].qs), acc1);
                acc2 = _mm256_fmadd_ps(_mm256_set1_ps(d * x2[b].d), block_dot(q, is_signed, x2[b].qs), acc2);
                acc3 = _mm256_fmadd_ps(_mm256_set1_ps(d * x3[b].d), block_dot(q, is_signed, x3[b].qs), acc3);
                s0 += c * x0[b].s; s1 += c * x1[b].s; s2 += c * x2[b].s; s3 += c * x3[b].s;
            }
            y[(t + 0) * ldy + r] = hsum_ps(acc0) + s0;
            y[(t + 1) * ldy + r] = hsum_ps(acc1) + s1;
            y[(t + 2) * ldy + r] = hsum_ps(acc2) + s2;
            y[(t + 3) * ldy + r] = hsum_ps(acc3) + s3;
        }
    }
    // Remaining tokens (all of them in decode): four rows at a time.
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
            float s = 0;
            for (int64_t b = 0; b < nb; b++) {
                float d, m, off;
                const __m256i q = unpack_block_avx2(type, row + (size_t)b * bb, &d, &m, &off);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * x[b].d), block_dot(q, is_signed, x[b].qs), acc);
                s += (m - off * d) * x[b].s;
            }
            y[t * ldy + r] = hsum_ps(acc) + s;
        }
    }
}

SQ_AVX2 static void matmul_q8_avx2(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                                   const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    // One specialized copy per block type (the type is a constant inside each).
    switch (type) {
    case SQ_TYPE_Q4_0: matmul_q8_avx2_typed(SQ_TYPE_Q4_0, w, row_bytes, r0, r1, a, nb, nt, y, ldy); break;
    case SQ_TYPE_Q4_1: matmul_q8_avx2_typed(SQ_TYPE_Q4_1, w, row_bytes, r0, r1, a, nb, nt, y, ldy); break;
    case SQ_TYPE_Q5_0: matmul_q8_avx2_typed(SQ_TYPE_Q5_0, w, row_bytes, r0, r1, a, nb, nt, y, ldy); break;
    case SQ_TYPE_Q5_1: matmul_q8_avx2_typed(SQ_TYPE_Q5_1, w, row_bytes, r0, r1, a, nb, nt, y, ldy); break;
    default: matmul_q8_avx2_typed(SQ_TYPE_Q8_0, w, row_bytes, r0, r1, a, nb, nt, y, ldy); break;
    }
}

SQ_AVX2 static float dot_f32_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum_ps(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

SQ_AVX2 static void axpy_f32_avx2(float alpha, const float *x, float *y, int64_t n) {
    const __m256 va = _mm256_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += alpha * x[i];
}

SQ_AVX2 static void matmul_f_avx2(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                                  const float *x, int64_t ldx, int64_t n, int64_t nt, float *y, int64_t ldy) {
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
        for (int64_t t = 0; t < nt; t++) {
            const float *xt = x + t * ldx;
            if (type == SQ_TYPE_F32) {
                y[t * ldy + r] = dot_f32_avx2((const float *)row, xt, n);
                continue;
            }
            __m256 acc = _mm256_setzero_ps();
            int64_t i = 0;
            for (; i + 8 <= n; i += 8) {
                const __m256 wv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * i)));
                acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xt + i), acc);
            }
            float s = hsum_ps(acc);
            for (; i < n; i++) s += _cvtsh_ss(sq_load_u16(row + 2 * i)) * xt[i];
            y[t * ldy + r] = s;
        }
    }
}
#endif

// ---------------------------------------------------------------------------------------------------------------
// Dispatch

static int sq_use_avx2 = -1;  // -1: not decided yet

static inline int use_avx2(void) {
#ifdef SQ_X86
    if (sq_use_avx2 < 0) {
        __builtin_cpu_init();
        sq_use_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return sq_use_avx2;
#else
    return 0;
#endif
}

int sq_kernels_have_avx2(void) { return use_avx2(); }

void sq_quantize_q8_portable(const float *x, sq_block_q8 *y, int64_t n) { quantize_q8_portable(x, y, n); }

static int ext_matmul(int type, int avx2, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                      const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    if (sq_kquants_has_type(type)) { sq_kquants_matmul(type, avx2, w, row_bytes, r0, r1, a, nb, nt, y, ldy); return 1; }
    if (sq_iqtq_has_type(type)) { sq_iqtq_matmul(type, avx2, w, row_bytes, r0, r1, a, nb, nt, y, ldy); return 1; }
    return 0;
}

void sq_matmul_q8_portable(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                           const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    if (ext_matmul(type, 0, w, row_bytes, r0, r1, a, nb, nt, y, ldy)) return;
    matmul_q8_portable(type, w, row_bytes, r0, r1, a, nb, nt, y, ldy);
}

void sq_matmul_f_portable(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                          const float *x, int64_t ldx, int64_t n, int64_t nt, float *y, int64_t ldy) {
    matmul_f_portable(type, w, row_bytes, r0, r1, x, ldx, n, nt, y, ldy);
}

void sq_quantize_q8(const float *x, sq_block_q8 *y, int64_t n) {
#ifdef SQ_X86
    if (use_avx2()) { quantize_q8_avx2(x, y, n); return; }
#endif
    quantize_q8_portable(x, y, n);
}

void sq_matmul_q8(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                  const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    if (ext_matmul(type, use_avx2(), w, row_bytes, r0, r1, a, nb, nt, y, ldy)) return;
#ifdef SQ_X86
    if (use_avx2()) { matmul_q8_avx2(type, w, row_bytes, r0, r1, a, nb, nt, y, ldy); return; }
#endif
    matmul_q8_portable(type, w, row_bytes, r0, r1, a, nb, nt, y, ldy);
}

void sq_matmul_f(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                 const float *x, int64_t ldx, int64_t n, int64_t nt, float *y, int64_t ldy) {
#ifdef SQ_X86
    if (use_avx2()) { matmul_f_avx2(type, w, row_bytes, r0, r1, x, ldx, n, nt, y, ldy); return; }
#endif
    matmul_f_portable(type, w, row_bytes, r0, r1, x, ldx, n, nt, y, ldy);
}

float sq_dot_f32(const float *a, const float *b, int64_t n) {
#ifdef SQ_X86
    if (use_avx2()) return dot_f32_avx2(a, b, n);
#endif
    return dot_f32_portable(a, b, n);
}

void sq_axpy_f32(float alpha, const float *x, float *y, int64_t n) {
#ifdef SQ_X86
    if (use_avx2()) { axpy_f32_avx2(alpha, x, y, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

void sq_dequantize_row(int type, const void *src, float *dst, int64_t n) {
    const uint8_t *p = (const uint8_t *)src;
    if (type == SQ_TYPE_F32) { memcpy(dst, src, (size_t)n * 4); return; }
    if (type == SQ_TYPE_F16) { for (int64_t i = 0; i < n; i++) dst[i] = sq_f16_to_f32(sq_load_u16(p + 2 * i)); return; }
    if (sq_kquants_has_type(type)) { sq_kquants_dequantize_row(type, src, dst, n); return; }
    if (sq_iqtq_has_type(type)) { sq_iqtq_dequantize_row(type, src, dst, n); return; }
    const size_t bb = block_bytes(type);
    int8_t q[32];
    for (int64_t b = 0; b < n / 32; b++) {
        float d, m;
        int offset;
        unpack_block(type, p + (size_t)b * bb, q, &d, &m, &offset);
        for (int i = 0; i < 32; i++) dst[b * 32 + i] = d * (float)(q[i] - offset) + m;
    }
}

