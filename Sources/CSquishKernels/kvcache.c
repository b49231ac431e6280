// Kernels of the compressed KV caches (SquishModel's KVCache policies): attention scores and weighted value sums
// read straight from the cache's storage. Each position's key or value is decoded once into a small buffer in L1
// and used for every query head that shares the KV head; nothing else of the cache is expanded to f32.
//
// Token-row formats: one row is one position's key or value of one KV head, head_dim values, in groups of `group`
// channels (group divides head_dim and is a multiple of 8):
//   SQ_KV_F32: f32[head_dim]            SQ_KV_F16: f16[head_dim]          (group unused)
//   SQ_KV_Q8:  per group: f16 d, i8 q[group]                               x = d·q       (symmetric, q ∈ −127..127)
//   SQ_KV_U4:  per group: f16 d, f16 m, group/2 code bytes                 x = m + d·q   (q ∈ 0..15)
//   SQ_KV_U2:  per group: f16 d, f16 m, group/4 code bytes                 x = m + d·q   (q ∈ 0..3)
// Channel blocks (KIVI's keys, quantized per channel over `tokens` positions of one KV head; KIVI, Liu et al. 2024,
// section 3): f16 d[head_dim], f16 m[head_dim], then `tokens` rows of head_dim·bits/8 code bytes; x = m_c + d_c·q.
// Codes are packed least significant bit first: value c of a run occupies bits [c·b, (c+1)·b) of its little-endian
// bytes, so eight values are one u32 (4-bit) or one u16 (2-bit).
#include "squish_kernels.h"
#include "kernels_ext.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define SQ_AVX2 __attribute__((target("avx2,fma,f16c")))
#endif

/// IEEE half from float, rounding to nearest even (overflow to infinity, NaN kept a NaN).
static uint16_t kv_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // ≥ 65520 rounds to infinity
    if (ax < 0x38800000u) {  // below 2^-14: a subnormal half (units of 2^-24), or zero
        float v;
        memcpy(&v, &ax, 4);
        return (uint16_t)(sign | (uint32_t)lrintf(v * 0x1p24f));
    }
    uint32_t h = ((ax >> 23) - 112) << 10 | ((ax & 0x7fffffu) >> 13);
    const uint32_t rest = ax & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline void kv_store_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

static int kv_bits(int fmt) { return fmt == SQ_KV_U4 ? 4 : fmt == SQ_KV_U2 ? 2 : 8; }

size_t sq_kv_row_bytes(int fmt, int64_t head_dim, int64_t group) {
    switch (fmt) {
    case SQ_KV_F32: return (size_t)head_dim * 4;
    case SQ_KV_F16: return (size_t)head_dim * 2;
    case SQ_KV_Q8: return (size_t)(head_dim / group) * (size_t)(2 + group);
    case SQ_KV_U4: return (size_t)(head_dim / group) * (size_t)(4 + group / 2);
    case SQ_KV_U2: return (size_t)(head_dim / group) * (size_t)(4 + group / 4);
    default: return 0;
    }
}

size_t sq_kv_channel_block_bytes(int bits, int64_t head_dim, int64_t tokens) {
    return (size_t)head_dim * 4 + (size_t)tokens * (size_t)(head_dim * bits / 8);
}

/// Packs n codes of `bits` bits (LSB first) into dst (n·bits/8 bytes, n a multiple of 8).
static void kv_pack(const uint8_t *codes, int64_t n, int bits, uint8_t *dst) {
    memset(dst, 0, (size_t)(n * bits / 8));
    for (int64_t i = 0; i < n; i++) dst[i * bits / 8] |= (uint8_t)(codes[i] << (i * bits % 8));
}

static inline int kv_code(const uint8_t *src, int64_t i, int bits) {
    return (src[i * bits / 8] >> (i * bits % 8)) & ((1 << bits) - 1);
}

/// Asymmetric grid for values v[0..n) (stride apart) with `levels` steps: f16 d and m, and the codes.
static void kv_fit_asymmetric(const float *v, int64_t stride, int64_t n, int levels, uint16_t *d16, uint16_t *m16,
                              uint8_t *codes) {
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        lo = fminf(lo, v[i * stride]);
        hi = fmaxf(hi, v[i * stride]);
    }
    *m16 = kv_f32_to_f16(lo);
    *d16 = kv_f32_to_f16((hi - lo) / (float)levels);
    // Codes on the grid the reader sees (d and m as stored).
    const float m = sq_f16_to_f32(*m16), d = sq_f16_to_f32(*d16);
    const float inv = d > 0 ? 1.0f / d : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float q = rintf((v[i * stride] - m) * inv);
        q = q < 0 ? 0 : q > (float)levels ? (float)levels : q;
        codes[i] = (uint8_t)q;
    }
}

void sq_kv_quantize_row(int fmt, const float *x, int64_t head_dim, int64_t group, void *dst) {
    uint8_t *o = (uint8_t *)dst;
    if (fmt == SQ_KV_F32) { memcpy(o, x, (size_t)head_dim * 4); return; }
    if (fmt == SQ_KV_F16) {
        for (int64_t i = 0; i < head_dim; i++) kv_store_u16(o + 2 * i, kv_f32_to_f16(x[i]));
        return;
    }
    uint8_t codes[SQ_KV_MAX_HEAD_DIM];
    for (int64_t g0 = 0; g0 < head_dim; g0 += group) {
        const float *v = x + g0;
        if (fmt == SQ_KV_Q8) {
            float amax = 0;
            for (int64_t i = 0; i < group; i++) amax = fmaxf(amax, fabsf(v[i]));
            const uint16_t d16 = kv_f32_to_f16(amax / 127.0f);
            const float d = sq_f16_to_f32(d16), inv = d > 0 ? 1.0f / d : 0.0f;
            kv_store_u16(o, d16);
            for (int64_t i = 0; i < group; i++) {
                float q = rintf(v[i] * inv);
                q = q < -127 ? -127 : q > 127 ? 127 : q;
                ((int8_t *)o)[2 + i] = (int8_t)q;
            }
            o += 2 + group;
        } else {
            const int bits = kv_bits(fmt);
            uint16_t d16, m16;
            kv_fit_asymmetric(v, 1, group, (1 << bits) - 1, &d16, &m16, codes);
            kv_store_u16(o, d16);
            kv_store_u16(o + 2, m16);
            kv_pack(codes, group, bits, o + 4);
            o += 4 + group * bits / 8;
        }
    }
}

void sq_kv_dequantize_row(int fmt, const void *src, int64_t head_dim, int64_t group, float *dst) {
    const uint8_t *p = (const uint8_t *)src;
    if (fmt == SQ_KV_F32) { memcpy(dst, p, (size_t)head_dim * 4); return; }
    if (fmt == SQ_KV_F16) {
        for (int64_t i = 0; i < head_dim; i++) dst[i] = sq_f16_to_f32(sq_load_u16(p + 2 * i));
        return;
    }
    for (int64_t g0 = 0; g0 < head_dim; g0 += group) {
        const float d = sq_f16_to_f32(sq_load_u16(p));
        if (fmt == SQ_KV_Q8) {
            for (int64_t i = 0; i < group; i++) dst[g0 + i] = d * (float)((const int8_t *)p)[2 + i];
            p += 2 + group;
        } else {
            const int bits = kv_bits(fmt);
            const float m = sq_f16_to_f32(sq_load_u16(p + 2));
            for (int64_t i = 0; i < group; i++) dst[g0 + i] = m + d * (float)kv_code(p + 4, i, bits);
            p += 4 + group * bits / 8;
        }
    }
}

void sq_kv_quantize_channels(int bits, const float *keys, int64_t stride, int64_t tokens, int64_t head_dim, void *dst) {
    uint8_t *o = (uint8_t *)dst;
    uint8_t *rows = o + head_dim * 4;
    const int64_t row_bytes = head_dim * bits / 8;
    memset(rows, 0, (size_t)(tokens * row_bytes));
    uint8_t codes[SQ_KV_MAX_GROUP];
    for (int64_t c = 0; c < head_dim; c++) {
        uint16_t d16, m16;
        kv_fit_asymmetric(keys + c, stride, tokens, (1 << bits) - 1, &d16, &m16, codes);
        kv_store_u16(o + 2 * c, d16);
        kv_store_u16(o + 2 * head_dim + 2 * c, m16);
        for (int64_t t = 0; t < tokens; t++) rows[t * row_bytes + c * bits / 8] |= (uint8_t)(codes[t] << (c * bits % 8));
    }
}

void sq_kv_dequantize_channels(int bits, const void *block, int64_t head_dim, int64_t token, float *dst) {
    const uint8_t *b = (const uint8_t *)block;
    const uint8_t *row = b + head_dim * 4 + token * (head_dim * bits / 8);
    for (int64_t c = 0; c < head_dim; c++) {
        const float d = sq_f16_to_f32(sq_load_u16(b + 2 * c)), m = sq_f16_to_f32(sq_load_u16(b + 2 * head_dim + 2 * c));
        dst[c] = m + d * (float)kv_code(row, c, bits);
    }
}

// Allocated channel blocks: per-channel quantization as above, but each channel of the block takes its own width
// w_c ∈ {0, 2, 3, …, 8} bits with Σ_c w_c = bits · head_dim (the same bytes as a plain channel block, plus the
// widths). Layout: f16 d[head_dim], f16 m[head_dim], u8 widths[head_dim / 2] (channel c in the low nibble of byte
// c/2 when c is even, the high one when odd), then the channels' codes one after another, channel c taking
// tokens·w_c/8 bytes (LSB first, position t at bits [t·w_c, (t+1)·w_c)). x = m_c + d_c·q; a width-0 channel is its
// range's midpoint (d = 0).

size_t sq_kv_allocated_block_bytes(int bits, int64_t head_dim, int64_t tokens) {
    return (size_t)head_dim * 4 + (size_t)(head_dim / 2) + (size_t)(tokens * head_dim * bits / 8);
}

/// Widths that minimize Σ_c weight_c · (range_c / (2^w_c − 1))² (the expected squared error of channel c's
/// contribution to q·k, range²/12 per step² up to a common factor; width 0 counts as one step over the range) under
/// Σ w_c = budget: greedy by error removed per bit, which is optimal for these convex steps (0 → 2 is one step of
/// two bits, as one bit removes nothing from a range's midpoint). Ties go to the lower channel.
static void kv_allocate_widths(const double *err0, int64_t head_dim, int64_t budget, int max_width, uint8_t *width) {
    for (int64_t c = 0; c < head_dim; c++) width[c] = 0;
    while (budget > 0) {
        int64_t best = -1;
        double best_gain = -1;
        int best_step = 0;
        for (int64_t c = 0; c < head_dim; c++) {
            if (width[c] >= max_width) continue;
            const int step = width[c] == 0 ? 2 : 1;
            if (step > budget) continue;
            const double s0 = width[c] == 0 ? 1.0 : (double)((1 << width[c]) - 1), s1 = (double)((1 << (width[c] + step)) - 1);
            const double gain = err0[c] * (1.0 / (s0 * s0) - 1.0 / (s1 * s1)) / step;
            if (gain > best_gain) { best_gain = gain; best = c; best_step = step; }
        }
        if (best < 0) break;
        width[best] = (uint8_t)(width[best] + best_step);
        budget -= best_step;
    }
}

void sq_kv_quantize_channels_allocated(int bits, const float *keys, int64_t stride, int64_t tokens, int64_t head_dim,
                                       const float *weight, void *dst) {
    uint8_t *o = (uint8_t *)dst;
    uint8_t width[SQ_KV_MAX_HEAD_DIM], codes[SQ_KV_MAX_GROUP];
    double err0[SQ_KV_MAX_HEAD_DIM];
    for (int64_t c = 0; c < head_dim; c++) {
        float lo = INFINITY, hi = -INFINITY;
        for (int64_t t = 0; t < tokens; t++) {
            lo = fminf(lo, keys[t * stride + c]);
            hi = fmaxf(hi, keys[t * stride + c]);
        }
        const double range = (double)hi - (double)lo;
        err0[c] = (weight ? (double)weight[c] : 1.0) * range * range;
    }
    kv_allocate_widths(err0, head_dim, (int64_t)bits * head_dim, 8, width);
    uint8_t *widths = o + head_dim * 4, *run = widths + head_dim / 2;
    memset(widths, 0, (size_t)(head_dim / 2));
    for (int64_t c = 0; c < head_dim; c++) {
        widths[c / 2] |= (uint8_t)(width[c] << (c % 2 * 4));
        uint16_t d16 = 0, m16;
        if (width[c] == 0) {
            float lo = INFINITY, hi = -INFINITY;
            for (int64_t t = 0; t < tokens; t++) {
                lo = fminf(lo, keys[t * stride + c]);
                hi = fmaxf(hi, keys[t * stride + c]);
            }
            m16 = kv_f32_to_f16(0.5f * lo + 0.5f * hi);
        } else {
            kv_fit_asymmetric(keys + c, stride, tokens, (1 << width[c]) - 1, &d16, &m16, codes);
            const int64_t n = tokens * width[c] / 8;
            memset(run, 0, (size_t)n);
            for (int64_t t = 0; t < tokens; t++) {
                const int64_t bit = t * width[c];
                const uint32_t v = (uint32_t)codes[t] << (bit % 8);
                run[bit / 8] |= (uint8_t)v;
                if (bit % 8 + width[c] > 8) run[bit / 8 + 1] |= (uint8_t)(v >> 8);
            }
            run += n;
        }
        kv_store_u16(o + 2 * c, d16);
        kv_store_u16(o + 2 * head_dim + 2 * c, m16);
    }
}

void sq_kv_dequantize_channels_allocated_portable(const void *block, int64_t head_dim, int64_t tokens, int64_t j0,
                                                  int64_t j1, float *dst, int64_t stride) {
    const uint8_t *b = (const uint8_t *)block, *widths = b + head_dim * 4, *run = widths + head_dim / 2;
    for (int64_t c = 0; c < head_dim; c++) {
        const int w = (widths[c / 2] >> (c % 2 * 4)) & 15;
        const float d = sq_f16_to_f32(sq_load_u16(b + 2 * c)), m = sq_f16_to_f32(sq_load_u16(b + 2 * head_dim + 2 * c));
        const uint32_t mask = (1u << w) - 1;
        float *out = dst + c;
        switch (w) {  // the byte-aligned widths without the general extraction
        case 0:
            for (int64_t t = j0; t < j1; t++) out[(t - j0) * stride] = m;
            break;
        case 2:
        case 4:
            for (int64_t t = j0; t < j1; t++) out[(t - j0) * stride] = m + d * (float)((run[t * w / 8] >> (t * w % 8)) & mask);
            break;
        case 8:
            for (int64_t t = j0; t < j1; t++) out[(t - j0) * stride] = m + d * (float)run[t];
            break;
        default:
            for (int64_t t = j0; t < j1; t++) {
                const int64_t bit = t * w;
                uint32_t q = run[bit / 8] | (bit % 8 + w > 8 ? (uint32_t)run[bit / 8 + 1] << 8 : 0);
                out[(t - j0) * stride] = m + d * (float)((q >> (bit % 8)) & mask);
            }
        }
        run += tokens * w / 8;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Portable attention pieces: the definitions, one decoded row at a time.

void sq_kv_scores_portable(int fmt, const float *q, int64_t nq, int64_t head_dim, int64_t group, const void *rows,
                           int64_t row_stride, int64_t n, float scale, float *scores, int64_t ld) {
    float row[SQ_KV_MAX_HEAD_DIM];
    for (int64_t j = 0; j < n; j++) {
        sq_kv_dequantize_row(fmt, (const uint8_t *)rows + j * row_stride, head_dim, group, row);
        for (int64_t r = 0; r < nq; r++) {
            float s = 0;
            for (int64_t i = 0; i < head_dim; i++) s += q[r * head_dim + i] * row[i];
            scores[r * ld + j] = s * scale;
        }
    }
}

void sq_kv_accumulate_portable(int fmt, const float *p, int64_t nq, int64_t ld, const void *rows, int64_t row_stride,
                               int64_t n, int64_t head_dim, int64_t group, float *out) {
    float row[SQ_KV_MAX_HEAD_DIM];
    for (int64_t j = 0; j < n; j++) {
        sq_kv_dequantize_row(fmt, (const uint8_t *)rows + j * row_stride, head_dim, group, row);
        for (int64_t r = 0; r < nq; r++) {
            const float w = p[r * ld + j];
            for (int64_t i = 0; i < head_dim; i++) out[r * head_dim + i] += w * row[i];
        }
    }
}

void sq_kv_channel_scores_portable(int bits, const float *q, int64_t nq, int64_t head_dim, const void *block,
                                   int64_t j0, int64_t j1, float scale, float *scores, int64_t ld) {
    float row[SQ_KV_MAX_HEAD_DIM];
    for (int64_t j = j0; j < j1; j++) {
        sq_kv_dequantize_channels(bits, block, head_dim, j, row);
        for (int64_t r = 0; r < nq; r++) {
            float s = 0;
            for (int64_t i = 0; i < head_dim; i++) s += q[r * head_dim + i] * row[i];
            scores[r * ld + (j - j0)] = s * scale;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// AVX2: rows decoded eight values per step (F16C for f16; sign/zero extension and a variable shift for the codes).

#if defined(__x86_64__) || defined(_M_X64)
SQ_AVX2 static inline float kv_hsum(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// Eight codes of `bits` (4 or 2) bits from p (4 or 2 bytes), as floats.
SQ_AVX2 static inline __m256 kv_codes8(const uint8_t *p, int bits) {
    if (bits == 4) {
        const __m256i w = _mm256_set1_epi32((int)sq_load_u32(p));
        const __m256i v = _mm256_srlv_epi32(w, _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
        return _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(15)));
    }
    const __m256i w = _mm256_set1_epi32((int)sq_load_u16(p));
    const __m256i v = _mm256_srlv_epi32(w, _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
    return _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(3)));
}

/// Where the eight values from column c of a token row live: their codes, and their group's f16 scale and minimum
/// (byte offsets within the row; the same for every row, so computed once per kernel call).
typedef struct { int32_t code, param; } kv_lane;

static kv_lane kv_lane_at(int fmt, int64_t c, int64_t group) {
    kv_lane o = {0, 0};
    switch (fmt) {
    case SQ_KV_F32: o.code = (int32_t)(4 * c); break;
    case SQ_KV_F16: o.code = (int32_t)(2 * c); break;
    case SQ_KV_Q8: o.param = (int32_t)(c / group * (2 + group)); o.code = o.param + 2 + (int32_t)(c % group); break;
    default: {
        const int bits = kv_bits(fmt);
        o.param = (int32_t)(c / group * (4 + group * bits / 8));
        o.code = o.param + 4 + (int32_t)(c % group * bits / 8);
    }
    }
    return o;
}

/// The eight values of a row at lane `l` (see kv_lane), as floats; `fmt` is a constant in each specialization.
SQ_AVX2 __attribute__((always_inline)) static inline __m256 kv_load8(const int fmt, const uint8_t *row, kv_lane l) {
    switch (fmt) {
    case SQ_KV_F32: return _mm256_loadu_ps((const float *)(row + l.code));
    case SQ_KV_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + l.code)));
    case SQ_KV_Q8: {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(sq_load_u16(row + l.param)));
        return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + l.code)))));
    }
    default: {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(sq_load_u16(row + l.param)));
        const __m256 m = _mm256_set1_ps(_cvtsh_ss(sq_load_u16(row + l.param + 2)));
        return _mm256_fmadd_ps(d, kv_codes8(row + l.code, fmt == SQ_KV_U4 ? 4 : 2), m);
    }
    }
}

/// Scores of R (1..4) query heads, two positions per step (one horizontal reduction per two positions and head).
/// Channel blocks take fmt = -bits: codes only, with the queries already multiplied by the per-channel scales (qd) and
/// `bias` (scale · q·m) added.
SQ_AVX2 __attribute__((always_inline)) static inline void kv_scores_pass(
    const int fmt, const int R, const float *q, int64_t head_dim, const kv_lane *lanes, const uint8_t *rows,
    int64_t row_stride, int64_t n, float scale, const float *bias, float *scores, int64_t ld) {
    int64_t j = 0;
    for (; j + 2 <= n; j += 2) {
        const uint8_t *r0 = rows + j * row_stride, *r1 = r0 + row_stride;
        __m256 a[4][2];
        for (int r = 0; r < R; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
        for (int64_t k = 0; k < head_dim / 8; k++) {
            __m256 v0, v1;
            if (fmt < 0) {
                v0 = kv_codes8(r0 + lanes[k].code, -fmt);
                v1 = kv_codes8(r1 + lanes[k].code, -fmt);
            } else {
                v0 = kv_load8(fmt, r0, lanes[k]);
                v1 = kv_load8(fmt, r1, lanes[k]);
            }
            for (int r = 0; r < R; r++) {
                const __m256 qv = _mm256_loadu_ps(q + r * head_dim + 8 * k);
                a[r][0] = _mm256_fmadd_ps(qv, v0, a[r][0]);
                a[r][1] = _mm256_fmadd_ps(qv, v1, a[r][1]);
            }
        }
        for (int r = 0; r < R; r++) {
            const __m256 h = _mm256_hadd_ps(a[r][0], a[r][1]);
            __m128 t = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            t = _mm_hadd_ps(t, t);
            float two[4];
            _mm_storeu_ps(two, t);
            scores[r * ld + j] = two[0] * scale + (bias ? bias[r] : 0.0f);
            scores[r * ld + j + 1] = two[1] * scale + (bias ? bias[r] : 0.0f);
        }
    }
    if (j < n) {
        const uint8_t *r0 = rows + j * row_stride;
        __m256 a[4];
        for (int r = 0; r < R; r++) a[r] = _mm256_setzero_ps();
        for (int64_t k = 0; k < head_dim / 8; k++) {
            const __m256 v0 = fmt < 0 ? kv_codes8(r0 + lanes[k].code, -fmt) : kv_load8(fmt, r0, lanes[k]);
            for (int r = 0; r < R; r++) a[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * head_dim + 8 * k), v0, a[r]);
        }
        for (int r = 0; r < R; r++) scores[r * ld + j] = kv_hsum(a[r]) * scale + (bias ? bias[r] : 0.0f);
    }
}

/// Weighted sums of R (1..4) heads over n rows: 16 output columns of every head in registers per pass over the rows.
SQ_AVX2 __attribute__((always_inline)) static inline void kv_accumulate_pass(
    const int fmt, const int R, const float *p, int64_t ld, const uint8_t *rows, int64_t row_stride, int64_t n,
    int64_t head_dim, int64_t group, float *out) {
    for (int64_t c = 0; c < head_dim; c += 16) {
        const int two = c + 16 <= head_dim;
        const kv_lane l0 = kv_lane_at(fmt, c, group), l1 = two ? kv_lane_at(fmt, c + 8, group) : l0;
        __m256 o[4][2];
        for (int r = 0; r < R; r++) o[r][0] = o[r][1] = _mm256_setzero_ps();
        const uint8_t *row = rows;
        for (int64_t j = 0; j < n; j++, row += row_stride) {
            const __m256 v0 = kv_load8(fmt, row, l0);
            if (two) {
                const __m256 v1 = kv_load8(fmt, row, l1);
                for (int r = 0; r < R; r++) {
                    const __m256 w = _mm256_broadcast_ss(p + r * ld + j);
                    o[r][0] = _mm256_fmadd_ps(w, v0, o[r][0]);
                    o[r][1] = _mm256_fmadd_ps(w, v1, o[r][1]);
                }
            } else {
                for (int r = 0; r < R; r++) o[r][0] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + r * ld + j), v0, o[r][0]);
            }
        }
        for (int r = 0; r < R; r++) {
            float *dst = out + r * head_dim + c;
            _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), o[r][0]));
            if (two) _mm256_storeu_ps(dst + 8, _mm256_add_ps(_mm256_loadu_ps(dst + 8), o[r][1]));
        }
    }
}

#define KV_SPECIALIZE_R(CALL) \
    switch (R) { case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break; default: CALL(4); break; }

SQ_AVX2 static void kv_scores_avx2(int fmt, const float *q, int64_t nq, int64_t head_dim, int64_t group,
                                   const uint8_t *rows, int64_t row_stride, int64_t n, float scale, float *scores,
                                   int64_t ld) {
    kv_lane lanes[SQ_KV_MAX_HEAD_DIM / 8];
    for (int64_t k = 0; k < head_dim / 8; k++) lanes[k] = kv_lane_at(fmt, 8 * k, group);
    for (int64_t r0 = 0; r0 < nq; r0 += 4) {
        const int R = nq - r0 < 4 ? (int)(nq - r0) : 4;
        const float *qr = q + r0 * head_dim;
        float *sr = scores + r0 * ld;
#define KV_S(F, RR) kv_scores_pass(F, RR, qr, head_dim, lanes, rows, row_stride, n, scale, NULL, sr, ld)
#define KV_S_F32(RR) KV_S(SQ_KV_F32, RR)
#define KV_S_F16(RR) KV_S(SQ_KV_F16, RR)
#define KV_S_Q8(RR) KV_S(SQ_KV_Q8, RR)
#define KV_S_U4(RR) KV_S(SQ_KV_U4, RR)
#define KV_S_U2(RR) KV_S(SQ_KV_U2, RR)
        switch (fmt) {
        case SQ_KV_F32: KV_SPECIALIZE_R(KV_S_F32) break;
        case SQ_KV_F16: KV_SPECIALIZE_R(KV_S_F16) break;
        case SQ_KV_Q8: KV_SPECIALIZE_R(KV_S_Q8) break;
        case SQ_KV_U4: KV_SPECIALIZE_R(KV_S_U4) break;
        default: KV_SPECIALIZE_R(KV_S_U2) break;
        }
    }
}

SQ_AVX2 static void kv_accumulate_avx2(int fmt, const float *p, int64_t nq, int64_t ld, const uint8_t *rows,
                                       int64_t row_stride, int64_t n, int64_t head_dim, int64_t group, float *out) {
    for (int64_t r0 = 0; r0 < nq; r0 += 4) {
        const int R = nq - r0 < 4 ? (int)(nq - r0) : 4;
        const float *pr = p + r0 * ld;
        float *orr = out + r0 * head_dim;
#define KV_A(F, RR) kv_accumulate_pass(F, RR, pr, ld, rows, row_stride, n, head_dim, group, orr)
#define KV_A_F32(RR) KV_A(SQ_KV_F32, RR)
#define KV_A_F16(RR) KV_A(SQ_KV_F16, RR)
#define KV_A_Q8(RR) KV_A(SQ_KV_Q8, RR)
#define KV_A_U4(RR) KV_A(SQ_KV_U4, RR)
#define KV_A_U2(RR) KV_A(SQ_KV_U2, RR)
        switch (fmt) {
        case SQ_KV_F32: KV_SPECIALIZE_R(KV_A_F32) break;
        case SQ_KV_F16: KV_SPECIALIZE_R(KV_A_F16) break;
        case SQ_KV_Q8: KV_SPECIALIZE_R(KV_A_Q8) break;
        case SQ_KV_U4: KV_SPECIALIZE_R(KV_A_U4) break;
        default: KV_SPECIALIZE_R(KV_A_U2) break;
        }
    }
}

/// Per-channel keys: q·k = Σ_c q_c m_c + Σ_c (q_c d_c) code_c, so each query is scaled by d once per block and each
/// position costs its codes' conversion and one multiply-add per value and query head.
SQ_AVX2 static void kv_channel_scores_avx2(int bits, const float *q, int64_t nq, int64_t head_dim, const uint8_t *block,
                                           int64_t j0, int64_t j1, float scale, float *scores, int64_t ld) {
    float qd[4 * SQ_KV_MAX_HEAD_DIM], bias[4];
    kv_lane lanes[SQ_KV_MAX_HEAD_DIM / 8];
    for (int64_t k = 0; k < head_dim / 8; k++) lanes[k].code = (int32_t)(8 * k * bits / 8), lanes[k].param = 0;
    const int64_t row_bytes = head_dim * bits / 8;
    const uint8_t *rows = block + head_dim * 4 + j0 * row_bytes;
    for (int64_t r0 = 0; r0 < nq; r0 += 4) {
        const int R = nq - r0 < 4 ? (int)(nq - r0) : 4;
        for (int r = 0; r < R; r++) {
            const float *qr = q + (r0 + r) * head_dim;
            __m256 b = _mm256_setzero_ps();
            for (int64_t i = 0; i < head_dim; i += 8) {
                const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(block + 2 * i)));
                const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(block + 2 * head_dim + 2 * i)));
                const __m256 qv = _mm256_mul_ps(_mm256_loadu_ps(qr + i), _mm256_set1_ps(scale));
                _mm256_storeu_ps(qd + r * head_dim + i, _mm256_mul_ps(qv, d));
                b = _mm256_fmadd_ps(qv, m, b);
            }
            bias[r] = kv_hsum(b);
        }
        float *sr = scores + r0 * ld;
#define KV_C(F, RR) kv_scores_pass(F, RR, qd, head_dim, lanes, rows, row_bytes, j1 - j0, 1.0f, bias, sr, ld)
#define KV_C4(RR) KV_C(-4, RR)
#define KV_C2(RR) KV_C(-2, RR)
        if (bits == 4) { KV_SPECIALIZE_R(KV_C4) } else { KV_SPECIALIZE_R(KV_C2) }
    }
}
#endif

// ---------------------------------------------------------------------------------------------------------------
// Dispatch.

static int kv_avx2_ok(int64_t head_dim, int64_t group) {
    return sq_kernels_have_avx2() && head_dim % 8 == 0 && group % 8 == 0 && head_dim <= SQ_KV_MAX_HEAD_DIM;
}

void sq_kv_scores(int fmt, const float *q, int64_t nq, int64_t head_dim, int64_t group, const void *rows,
                  int64_t row_stride, int64_t n, float scale, float *scores, int64_t ld) {
#if defined(__x86_64__) || defined(_M_X64)
    if (kv_avx2_ok(head_dim, fmt == SQ_KV_F32 || fmt == SQ_KV_F16 ? 8 : group)) {
        kv_scores_avx2(fmt, q, nq, head_dim, group, (const uint8_t *)rows, row_stride, n, scale, scores, ld);
        return;
    }
#endif
    sq_kv_scores_portable(fmt, q, nq, head_dim, group, rows, row_stride, n, scale, scores, ld);
}

void sq_kv_accumulate(int fmt, const float *p, int64_t nq, int64_t ld, const void *rows, int64_t row_stride, int64_t n,
                      int64_t head_dim, int64_t group, float *out) {
#if defined(__x86_64__) || defined(_M_X64)
    if (kv_avx2_ok(head_dim, fmt == SQ_KV_F32 || fmt == SQ_KV_F16 ? 8 : group)) {
        kv_accumulate_avx2(fmt, p, nq, ld, (const uint8_t *)rows, row_stride, n, head_dim, group, out);
        return;
    }
#endif
    sq_kv_accumulate_portable(fmt, p, nq, ld, rows, row_stride, n, head_dim, group, out);
}

void sq_kv_channel_scores(int bits, const float *q, int64_t nq, int64_t head_dim, const void *block, int64_t j0,
                          int64_t j1, float scale, float *scores, int64_t ld) {
#if defined(__x86_64__) || defined(_M_X64)
    if (kv_avx2_ok(head_dim, 8)) {
        kv_channel_scores_avx2(bits, q, nq, head_dim, (const uint8_t *)block, j0, j1, scale, scores, ld);
        return;
    }
#endif
    sq_kv_channel_scores_portable(bits, q, nq, head_dim, block, j0, j1, scale, scores, ld);
}

// ---------------------------------------------------------------------------------------------------------------
// Allocated channel blocks, AVX2: eight positions of eight channels at a time. Each channel's eight codes come from
// its w bytes at position t0 (t0 a multiple of 8, so byte-aligned): the low four from the low 32 bits, the high four
// from the bits after 4w, shifted by 0, w, 2w, 3w in each half; the 8 × 8 tile (channels × positions) is transposed in
// registers and stored as rows.

#if defined(__x86_64__) || defined(_M_X64)
SQ_AVX2 static void kv_dequantize_allocated_avx2(const uint8_t *b, int64_t head_dim, int64_t tokens, int64_t j0, int64_t j1,
                                                 float *dst, int64_t stride) {
    const uint8_t *widths = b + head_dim * 4, *runs = widths + head_dim / 2;
    int64_t offset[SQ_KV_MAX_HEAD_DIM];
    int width[SQ_KV_MAX_HEAD_DIM];
    int64_t o = 0;
    for (int64_t c = 0; c < head_dim; c++) {
        width[c] = (widths[c / 2] >> (c % 2 * 4)) & 15;
        offset[c] = o;
        o += tokens * width[c] / 8;
    }
    const int64_t a0 = (j0 + 7) / 8 * 8, a1 = j1 / 8 * 8;
    if (a0 >= a1) {
        sq_kv_dequantize_channels_allocated_portable(b, head_dim, tokens, j0, j1, dst, stride);
        return;
    }
    if (j0 < a0) sq_kv_dequantize_channels_allocated_portable(b, head_dim, tokens, j0, a0, dst, stride);
    if (a1 < j1) sq_kv_dequantize_channels_allocated_portable(b, head_dim, tokens, a1, j1, dst + (a1 - j0) * stride, stride);
    for (int64_t c0 = 0; c0 < head_dim; c0 += 8) {
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 2 * c0)));
        const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 2 * head_dim + 2 * c0)));
        float dl[8], ml[8];
        _mm256_storeu_ps(dl, d);
        _mm256_storeu_ps(ml, m);
        for (int64_t t0 = a0; t0 < a1; t0 += 8) {
            __m256 r[8];
            for (int k = 0; k < 8; k++) {
                const int w = width[c0 + k];
                if (w == 0) { r[k] = _mm256_set1_ps(ml[k]); continue; }
                // Eight bytes at once where the block has them (bits past the channel's 8w are masked off below).
                const int64_t at = offset[c0 + k] + t0 * w / 8;
                uint64_t x = 0;
                if (at + 8 <= o) memcpy(&x, runs + at, 8); else memcpy(&x, runs + at, (size_t)w);
                const uint32_t lo = (uint32_t)x, hi = (uint32_t)(x >> (4 * w));
                const __m256i v = _mm256_setr_epi32((int)lo, (int)lo, (int)lo, (int)lo, (int)hi, (int)hi, (int)hi, (int)hi);
                const __m256i sh = _mm256_setr_epi32(0, w, 2 * w, 3 * w, 0, w, 2 * w, 3 * w);
                const __m256i q = _mm256_and_si256(_mm256_srlv_epi32(v, sh), _mm256_set1_epi32((1 << w) - 1));
                // m + d·q rounded as the portable code rounds it (no fused multiply-add).
                r[k] = _mm256_add_ps(_mm256_set1_ps(ml[k]), _mm256_mul_ps(_mm256_set1_ps(dl[k]), _mm256_cvtepi32_ps(q)));
            }
            const __m256 t0v = _mm256_unpacklo_ps(r[0], r[1]), t1v = _mm256_unpackhi_ps(r[0], r[1]);
            const __m256 t2v = _mm256_unpacklo_ps(r[2], r[3]), t3v = _mm256_unpackhi_ps(r[2], r[3]);
            const __m256 t4v = _mm256_unpacklo_ps(r[4], r[5]), t5v = _mm256_unpackhi_ps(r[4], r[5]);
            const __m256 t6v = _mm256_unpacklo_ps(r[6], r[7]), t7v = _mm256_unpackhi_ps(r[6], r[7]);
            const __m256 u0 = _mm256_shuffle_ps(t0v, t2v, 0x44), u1 = _mm256_shuffle_ps(t0v, t2v, 0xEE);
            const __m256 u2 = _mm256_shuffle_ps(t1v, t3v, 0x44), u3 = _mm256_shuffle_ps(t1v, t3v, 0xEE);
            const __m256 u4 = _mm256_shuffle_ps(t4v, t6v, 0x44), u5 = _mm256_shuffle_ps(t4v, t6v, 0xEE);
            const __m256 u6 = _mm256_shuffle_ps(t5v, t7v, 0x44), u7 = _mm256_shuffle_ps(t5v, t7v, 0xEE);
            float *row = dst + (t0 - j0) * stride + c0;
            _mm256_storeu_ps(row + 0 * stride, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(row + 1 * stride, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(row + 2 * stride, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(row + 3 * stride, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(row + 4 * stride, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(row + 5 * stride, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(row + 6 * stride, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(row + 7 * stride, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    }
}
#endif

void sq_kv_dequantize_channels_allocated(const void *block, int64_t head_dim, int64_t tokens, int64_t j0, int64_t j1,
                                         float *dst, int64_t stride) {
#if defined(__x86_64__) || defined(_M_X64)
    if (kv_avx2_ok(head_dim, 8)) {
        kv_dequantize_allocated_avx2((const uint8_t *)block, head_dim, tokens, j0, j1, dst, stride);
        return;
    }
#endif
    sq_kv_dequantize_channels_allocated_portable(block, head_dim, tokens, j0, j1, dst, stride);
}
