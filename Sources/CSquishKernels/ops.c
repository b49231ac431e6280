// Attention for one query head over the cached positions: scores = scale · K q, softmax, out = Σ p_j v_j.
// The AVX2 path scores four positions at a time (one horizontal reduction per four), uses a vectorized exp and
// keeps the output in registers while it walks the values; the portable path is the plain definition.
// sq_attention_heads does the same for several query heads that share one KV head (multi-query and grouped-query
// attention), reading each key and value once for up to four heads; a lone head takes the one-head kernel.
#include "squish_kernels.h"

#include <math.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define SQ_AVX2 __attribute__((target("avx2,fma,f16c")))

/// e^x for x ≤ 0 lanes (softmax arguments), relative error ~1e-7: x = n ln2 + r, |r| ≤ ln2/2, e^r by a degree-6
/// polynomial (Cephes' expf coefficients), 2^n through the exponent bits. Arguments below −87 give ≈ 1.6e-38.
SQ_AVX2 static inline __m256 exp_ps(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 r2 = _mm256_mul_ps(r, r);
    const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

SQ_AVX2 static void attention_head_avx2(const float *q, const float *keys, const float *values, int64_t stride,
                                        int64_t n, int64_t head_dim, float scale, float *scores, float *out) {
    // Scores, four positions per step.
    int64_t j = 0;
    __m128 vmax = _mm_set1_ps(-INFINITY);
    for (; j + 4 <= n; j += 4) {
        const float *k0 = keys + j * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (int64_t i = 0; i < head_dim; i += 8) {
            const __m256 qv = _mm256_loadu_ps(q + i);
            a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + i), a0);
            a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + i), a1);
            a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + i), a2);
            a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + i), a3);
        }
        // [a0 a1 a2 a3] lane sums: two rounds of hadd, then the two 128-bit halves.
        const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        const __m128 s4 = _mm_mul_ps(_mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)), _mm_set1_ps(scale));
        _mm_storeu_ps(scores + j, s4);
        vmax = _mm_max_ps(vmax, s4);
    }
    __m128 m4 = _mm_max_ps(vmax, _mm_movehl_ps(vmax, vmax));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float mx = j > 0 ? _mm_cvtss_f32(m4) : -INFINITY;
    for (; j < n; j++) {
        const float *k = keys + j * stride;
        __m256 a = _mm256_setzero_ps();
        for (int64_t i = 0; i < head_dim; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), a);
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        const float v = _mm_cvtss_f32(s) * scale;
        scores[j] = v;
        if (v > mx) mx = v;
    }
    // Softmax weights (unnormalized) and their sum.
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 vsum = _mm256_setzero_ps();
    j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(scores + j), vm));
        _mm256_storeu_ps(scores + j, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(vsum), _mm256_extractf128_ps(vsum, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float sum = _mm_cvtss_f32(s);
    for (; j < n; j++) {
        const float e = expf(scores[j] - mx);
        scores[j] = e;
        sum += e;
    }
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    // Weighted sum of values, 64 output floats (eight registers) per pass over the positions.
    for (int64_t c = 0; c < head_dim; c += 64) {
        const int64_t w = head_dim - c < 64 ? head_dim - c : 64;
        __m256 o[8];
        for (int i = 0; i < 8; i++) o[i] = _mm256_setzero_ps();
        const float *v = values + c;
        if (w == 64) {
            for (int64_t p = 0; p < n; p++, v += stride) {
                const __m256 pv = _mm256_set1_ps(scores[p]);
                o[0] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v), o[0]);
                o[1] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 8), o[1]);
                o[2] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 16), o[2]);
                o[3] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 24), o[3]);
                o[4] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 32), o[4]);
                o[5] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 40), o[5]);
                o[6] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 48), o[6]);
                o[7] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 56), o[7]);
            }
        } else {
            for (int64_t p = 0; p < n; p++, v += stride) {
                const __m256 pv = _mm256_set1_ps(scores[p]);
                for (int64_t i = 0; i < w / 8; i++) o[i] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 8 * i), o[i]);
            }
        }
        for (int64_t i = 0; i < w / 8; i++) _mm256_storeu_ps(out + c + 8 * i, _mm256_mul_ps(o[i], inv));
    }
}

/// Sums of a0's and of a1's lanes: (Σ a0, Σ a1) in lanes 0 and 1.
SQ_AVX2 static inline __m128 hsum2_ps(__m256 a0, __m256 a1) {
    const __m256 h = _mm256_hadd_ps(a0, a1);  // [a0 01, a0 23, a1 01, a1 23 | a0 45, a0 67, a1 45, a1 67]
    const __m128 t = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    return _mm_hadd_ps(t, t);
}

/// A row's softmax weights in place, unnormalized: s[j] = e^(s[j] − max s) over n scores; returns 1 / Σ s[j]. The
/// exponentials are summed eight lanes at a time from s[0], the tail one by one.
SQ_AVX2 static inline float row_softmax(float *s, int64_t n) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) mx = fmaxf(mx, s[j]);
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 vsum = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
        _mm256_storeu_ps(s + j, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float sum = _mm_cvtss_f32(hsum2_ps(vsum, vsum));
    for (; j < n; j++) {
        const float e = expf(s[j] - mx);
        s[j] = e;
        sum += e;
    }
    return 1.0f / sum;
}

/// Scores S[r][j − base] = scale · q_r · k_j of NR (1..4) rows for keys j0 ..< j1 (rows ld floats apart), two keys
/// per step (a score's reduction order is the same in the paired and the single-key step: see hsum2_ps).
SQ_AVX2 __attribute__((always_inline)) static inline void tile_scores(const int NR, const float *const *qr,
                                                                     const float *keys, int64_t stride, int64_t j0,
                                                                     int64_t j1, int64_t base, int64_t head_dim,
                                                                     float scale, float *S, int64_t ld) {
    int64_t j = j0;
    for (; j + 2 <= j1; j += 2) {
        const float *k0 = keys + j * stride, *k1 = k0 + stride;
        __m256 a[4][2];
        for (int r = 0; r < NR; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
        for (int64_t d = 0; d < head_dim; d += 8) {
            const __m256 kv0 = _mm256_loadu_ps(k0 + d), kv1 = _mm256_loadu_ps(k1 + d);
            for (int r = 0; r < NR; r++) {
                const __m256 qv = _mm256_loadu_ps(qr[r] + d);
                a[r][0] = _mm256_fmadd_ps(qv, kv0, a[r][0]);
                a[r][1] = _mm256_fmadd_ps(qv, kv1, a[r][1]);
            }
        }
        for (int r = 0; r < NR; r++)
            _mm_storel_pi((__m64 *)(S + r * ld + (j - base)), _mm_mul_ps(hsum2_ps(a[r][0], a[r][1]), _mm_set1_ps(scale)));
    }
    if (j < j1) {
        const float *k0 = keys + j * stride;
        __m256 a[4];
        for (int r = 0; r < NR; r++) a[r] = _mm256_setzero_ps();
        for (int64_t d = 0; d < head_dim; d += 8) {
            const __m256 kv0 = _mm256_loadu_ps(k0 + d);
            for (int r = 0; r < NR; r++) a[r] = _mm256_fmadd_ps(_mm256_loadu_ps(qr[r] + d), kv0, a[r]);
        }
        for (int r = 0; r < NR; r++)
            S[r * ld + (j - base)] = _mm_cvtss_f32(_mm_mul_ps(hsum2_ps(a[r], a[r]), _mm_set1_ps(scale)));
    }
}

/// O_r += Σ_j P[r][j − base] v_j over j0 ..< j1 for NR (1..4) rows (P rows ld floats apart), 16 columns per pass over
/// the keys, in position order.
SQ_AVX2 __attribute__((always_inline)) static inline void tile_values(const int NR, const float *P, int64_t ld,
                                                                     float *O, const float *values, int64_t stride,
                                                                     int64_t j0, int64_t j1, int64_t base,
                                                                     int64_t head_dim) {
    int64_t c = 0;
    for (; c + 16 <= head_dim; c += 16) {
        __m256 o[4][2];
        for (int r = 0; r < NR; r++) {
            o[r][0] = _mm256_loadu_ps(O + r * head_dim + c);
            o[r][1] = _mm256_loadu_ps(O + r * head_dim + c + 8);
        }
        const float *v = values + j0 * stride + c;
        for (int64_t j = j0; j < j1; j++, v += stride) {
            const __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8);
            for (int r = 0; r < NR; r++) {
                const __m256 p = _mm256_broadcast_ss(P + r * ld + (j - base));
                o[r][0] = _mm256_fmadd_ps(p, v0, o[r][0]);
                o[r][1] = _mm256_fmadd_ps(p, v1, o[r][1]);
            }
        }
        for (int r = 0; r < NR; r++) {
            _mm256_storeu_ps(O + r * head_dim + c, o[r][0]);
            _mm256_storeu_ps(O + r * head_dim + c + 8, o[r][1]);
        }
    }
    if (c < head_dim) {  // head_dim % 16 == 8
        __m256 o[4];
        for (int r = 0; r < NR; r++) o[r] = _mm256_loadu_ps(O + r * head_dim + c);
        const float *v = values + j0 * stride + c;
        for (int64_t j = j0; j < j1; j++, v += stride) {
            const __m256 v0 = _mm256_loadu_ps(v);
            for (int r = 0; r < NR; r++) o[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(P + r * ld + (j - base)), v0, o[r]);
        }
        for (int r = 0; r < NR; r++) _mm256_storeu_ps(O + r * head_dim + c, o[r]);
    }
}

/// R (1..4) query heads over the same n keys and values (see sq_attention_heads): the scores of all R queries, two
/// keys per step; each row's softmax; then the weighted values, 16 columns of all R outputs per pass over the keys.
SQ_AVX2 __attribute__((always_inline)) static inline void attention_heads_pass(
    const int R, const float *q, const float *keys, const float *values, int64_t stride, int64_t n, int64_t head_dim,
    float scale, float *scores, float *out) {
    const float *qr[4];
    for (int r = 0; r < R; r++) qr[r] = q + r * head_dim;
    tile_scores(R, qr, keys, stride, 0, n, 0, head_dim, scale, scores, n);
    float inv[4];
    for (int r = 0; r < R; r++) inv[r] = row_softmax(scores + r * n, n);
    for (int64_t x = 0; x < R * head_dim; x++) out[x] = 0.0f;
    tile_values(R, scores, n, out, values, stride, 0, n, 0, head_dim);
    for (int r = 0; r < R; r++) {
        const __m256 vi = _mm256_set1_ps(inv[r]);
        for (int64_t d = 0; d < head_dim; d += 8)
            _mm256_storeu_ps(out + r * head_dim + d, _mm256_mul_ps(_mm256_loadu_ps(out + r * head_dim + d), vi));
    }
}

SQ_AVX2 static void attention_heads_avx2(const float *q, int64_t nq, const float *keys, const float *values,
                                         int64_t stride, int64_t n, int64_t head_dim, float scale, float *scores,
                                         float *out) {
    for (int64_t h = 0; h < nq; h += 4) {
        const float *qh = q + h * head_dim;
        float *oh = out + h * head_dim;
        switch (nq - h) {
        case 1: attention_head_avx2(qh, keys, values, stride, n, head_dim, scale, scores, oh); break;
        case 2: attention_heads_pass(2, qh, keys, values, stride, n, head_dim, scale, scores, oh); break;
        case 3: attention_heads_pass(3, qh, keys, values, stride, n, head_dim, scale, scores, oh); break;
        default: attention_heads_pass(4, qh, keys, values, stride, n, head_dim, scale, scores, oh); break;
        }
    }
}
#endif

void sq_attention_heads_portable(const float *q, int64_t nq, const float *keys, const float *values, int64_t stride,
                                 int64_t n, int64_t head_dim, float scale, float *scores, float *out) {
    for (int64_t h = 0; h < nq; h++)
        sq_attention_head_portable(q + h * head_dim, keys, values, stride, n, head_dim, scale, scores, out + h * head_dim);
}

void sq_attention_heads(const float *q, int64_t nq, const float *keys, const float *values, int64_t stride, int64_t n,
                        int64_t head_dim, float scale, float *scores, float *out) {
#if defined(__x86_64__) || defined(_M_X64)
    if (sq_kernels_have_avx2() && head_dim % 8 == 0 && n > 0) {
        attention_heads_avx2(q, nq, keys, values, stride, n, head_dim, scale, scores, out);
        return;
    }
#endif
    sq_attention_heads_portable(q, nq, keys, values, stride, n, head_dim, scale, scores, out);
}

void sq_attention_head_portable(const float *q, const float *keys, const float *values, int64_t stride, int64_t n,
                                int64_t head_dim, float scale, float *scores, float *out) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        const float *k = keys + j * stride;
        float s = 0.0f;
        for (int64_t i = 0; i < head_dim; i++) s += q[i] * k[i];
        s *= scale;
        scores[j] = s;
        if (s > mx) mx = s;
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        const float e = expf(scores[j] - mx);
        scores[j] = e;
        sum += e;
    }
    const float inv = 1.0f / sum;
    for (int64_t i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        const float p = scores[j] * inv;
        const float *v = values + j * stride;
        for (int64_t i = 0; i < head_dim; i++) out[i] += p * v[i];
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Tiled causal attention (prefill): the query rows of several consecutive tokens on one KV head are scored against
// the keys in blocks of SQ_ATTENTION_BLOCK positions (each key block read once per tile, for all rows), then each
// row's softmax is taken over its own range, then the values are summed in blocks for all rows. Every row does the
// arithmetic of sq_attention_heads' grouped pass in the same order (scores, their maximum, the exponentials summed
// eight lanes at a time from the row's first position, the weighted values from zero in position order, one final
// scale): a row gives the same bits in any tile, a one-token tile (decoding) included, and the same bits as before
// tiling, so tiling changes speed, not results.

enum { SQ_ATTENTION_BLOCK = 32 };

int64_t sq_attention_tile_scratch(int64_t rows, int64_t head_dim, int64_t positions) {
    return rows * (head_dim + positions + 8);
}

void sq_attention_tile_portable(const float *q, int64_t q_stride, int64_t tokens, int64_t heads, const float *keys,
                                const float *values, int64_t stride, const int64_t *lo, const int64_t *hi,
                                int64_t head_dim, float scale, float *scratch, float *out, int64_t out_stride) {
    for (int64_t i = 0; i < tokens; i++)
        for (int64_t h = 0; h < heads; h++)
            sq_attention_head_portable(q + i * q_stride + h * head_dim, keys + lo[i] * stride, values + lo[i] * stride,
                                       stride, hi[i] - lo[i], head_dim, scale, scratch, out + i * out_stride + h * head_dim);
}

#if defined(__x86_64__) || defined(_M_X64)
SQ_AVX2 static void attention_tile_avx2(const float *q, int64_t q_stride, int64_t tokens, int64_t heads,
                                        const float *keys, const float *values, int64_t stride, const int64_t *lo,
                                        const int64_t *hi, int64_t head_dim, float scale, float *scratch, float *out,
                                        int64_t out_stride) {
    enum { B = SQ_ATTENTION_BLOCK };
    const int64_t R = tokens * heads;  // rows: token i's head h is row i·heads + h
    int64_t ulo = lo[0], uhi = hi[0];
    for (int64_t i = 1; i < tokens; i++) {
        if (lo[i] < ulo) ulo = lo[i];
        if (hi[i] > uhi) uhi = hi[i];
    }
    const int64_t ld = uhi - ulo;   // S: [R × ld] scores of positions ulo ..< uhi, then softmax weights
    float *O = scratch;             // [R × head_dim] unnormalized outputs
    float *S = O + R * head_dim;
    float *inv = S + R * ld;        // [R] 1 / Σ weights
    const float *qr[4];
    for (int64_t b0 = ulo; b0 < uhi; b0 += B) {
        const int64_t b1 = b0 + B < uhi ? b0 + B : uhi;
        for (int64_t r0 = 0; r0 < R; r0 += 4) {
            const int nr = R - r0 < 4 ? (int)(R - r0) : 4;
            for (int k = 0; k < nr; k++) qr[k] = q + (r0 + k) / heads * q_stride + (r0 + k) % heads * head_dim;
            float *Sr = S + r0 * ld;
            switch (nr) {
            case 1: tile_scores(1, qr, keys, stride, b0, b1, ulo, head_dim, scale, Sr, ld); break;
            case 2: tile_scores(2, qr, keys, stride, b0, b1, ulo, head_dim, scale, Sr, ld); break;
            case 3: tile_scores(3, qr, keys, stride, b0, b1, ulo, head_dim, scale, Sr, ld); break;
            default: tile_scores(4, qr, keys, stride, b0, b1, ulo, head_dim, scale, Sr, ld); break;
            }
        }
    }
    // Each row's softmax weights over its own positions (row_softmax, as the grouped kernel takes them);
    // the positions of the tile outside the row's range get weight zero, which adds exactly nothing to its sums.
    for (int64_t r = 0; r < R; r++) {
        const int64_t i = r / heads, n = hi[i] - lo[i];
        float *row = S + r * ld, *s = row + (lo[i] - ulo);
        inv[r] = row_softmax(s, n);
        for (float *z = row; z < s; z++) *z = 0.0f;
        for (float *z = s + n; z < row + ld; z++) *z = 0.0f;
    }
    for (int64_t x = 0; x < R * head_dim; x++) O[x] = 0.0f;
    for (int64_t b0 = ulo; b0 < uhi; b0 += B) {
        const int64_t b1 = b0 + B < uhi ? b0 + B : uhi;
        for (int64_t r0 = 0; r0 < R; r0 += 4) {
            const int nr = R - r0 < 4 ? (int)(R - r0) : 4;
            const float *Pr = S + r0 * ld;
            float *Or = O + r0 * head_dim;
            switch (nr) {
            case 1: tile_values(1, Pr, ld, Or, values, stride, b0, b1, ulo, head_dim); break;
            case 2: tile_values(2, Pr, ld, Or, values, stride, b0, b1, ulo, head_dim); break;
            case 3: tile_values(3, Pr, ld, Or, values, stride, b0, b1, ulo, head_dim); break;
            default: tile_values(4, Pr, ld, Or, values, stride, b0, b1, ulo, head_dim); break;
            }
        }
    }
    for (int64_t r = 0; r < R; r++) {
        const __m256 vi = _mm256_set1_ps(inv[r]);
        float *y = out + r / heads * out_stride + r % heads * head_dim;
        for (int64_t d = 0; d < head_dim; d += 8) _mm256_storeu_ps(y + d, _mm256_mul_ps(_mm256_loadu_ps(O + r * head_dim + d), vi));
    }
}
#endif

void sq_attention_tile(const float *q, int64_t q_stride, int64_t tokens, int64_t heads, const float *keys,
                       const float *values, int64_t stride, const int64_t *lo, const int64_t *hi, int64_t head_dim,
                       float scale, float *scratch, float *out, int64_t out_stride) {
#if defined(__x86_64__) || defined(_M_X64)
    if (sq_kernels_have_avx2() && head_dim % 8 == 0) {
        attention_tile_avx2(q, q_stride, tokens, heads, keys, values, stride, lo, hi, head_dim, scale, scratch, out,
                            out_stride);
        return;
    }
#endif
    sq_attention_tile_portable(q, q_stride, tokens, heads, keys, values, stride, lo, hi, head_dim, scale, scratch, out,
                               out_stride);
}

// ---------------------------------------------------------------------------------------------------------------
// Element-wise steps of a transformer block: gated activations, RMSNorm, a finiteness check.

#if defined(__x86_64__) || defined(_M_X64)
/// g = act(g) · u, 8 lanes at a time: SiLU g / (1 + e^−g); GELU (tanh form) 0.5 g (1 + tanh y) = g / (1 + e^−2y)
/// with y = √(2/π) (g + 0.044715 g³).
SQ_AVX2 static void gated_avx2(int gelu, float *g, const float *u, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    const __m256 c0 = _mm256_set1_ps(-2.0f * 0.7978845608028654f), c1 = _mm256_set1_ps(0.044715f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        // Exponent argument: −x (SiLU) or −2y (GELU).
        const __m256 arg = gelu ? _mm256_mul_ps(c0, _mm256_fmadd_ps(_mm256_mul_ps(c1, x), _mm256_mul_ps(x, x), x))
                                : _mm256_sub_ps(zero, x);
        const __m256 act = _mm256_div_ps(x, _mm256_add_ps(one, exp_ps(arg)));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(act, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) {
        const float x = g[i];
        const float arg = gelu ? -2.0f * 0.7978845608028654f * (x + 0.044715f * x * x * x) : -x;
        g[i] = x / (1.0f + expf(arg)) * u[i];
    }
}

SQ_AVX2 static int all_finite_avx2(const float *x, int64_t n) {
    const __m256i expo = _mm256_set1_epi32(0x7f800000);
    __m256i bad = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), expo);
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(v, expo));
    }
    if (!_mm256_testz_si256(bad, bad)) return 0;
    for (; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

SQ_AVX2 static double sum_squares_avx2(const float *x, int64_t n) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), b = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        s0 = _mm256_fmadd_pd(a, a, s0);
        s1 = _mm256_fmadd_pd(b, b, s1);
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
    double s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for (; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}
#endif

static void gated_portable(int gelu, float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        g[i] = gelu ? 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))) * u[i]
                    : x / (1.0f + expf(-x)) * u[i];
    }
}

void sq_gated_activation_portable(int gelu, float *g, const float *u, int64_t n) { gated_portable(gelu, g, u, n); }

void sq_gated_activation(int gelu, float *g, const float *u, int64_t n) {
#if defined(__x86_64__) || defined(_M_X64)
    if (sq_kernels_have_avx2()) { gated_avx2(gelu, g, u, n); return; }
#endif
    gated_portable(gelu, g, u, n);
}

int sq_all_finite(const float *x, int64_t n) {
#if defined(__x86_64__) || defined(_M_X64)
    if (sq_kernels_have_avx2()) return all_finite_avx2(x, n);
#endif
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

void sq_rms_norm(const float *x, const float *w, float *y, int64_t n, float eps) {
    double ss = 0.0;
#if defined(__x86_64__) || defined(_M_X64)
    if (sq_kernels_have_avx2()) ss = sum_squares_avx2(x, n);
    else
#endif
        for (int64_t i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    const float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

#if defined(__x86_64__) || defined(_M_X64)
/// Index of the largest of x[0 ..< n] (the first one on ties; NaN never wins): 8 lanes of running maxima and their
/// indices, then the lanes compared in index order.
SQ_AVX2 static int64_t argmax_avx2(const float *x, int64_t n) {
    __m256 best = _mm256_set1_ps(-INFINITY);
    __m256i where = _mm256_set1_epi32(-1), idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i step = _mm256_set1_epi32(8);
    int64_t i = 0;
    for (; i + 8 <= n && i + 8 <= 0x7fffffff; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 gt = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
        best = _mm256_blendv_ps(best, v, gt);
        where = _mm256_blendv_epi8(where, idx, _mm256_castps_si256(gt));
        idx = _mm256_add_epi32(idx, step);
    }
    float bv[8];
    int32_t bi[8];
    _mm256_storeu_ps(bv, best);
    _mm256_storeu_si256((__m256i *)bi, where);
    int64_t arg = -1;
    float mx = -INFINITY;
    for (int l = 0; l < 8; l++)
        if (bi[l] >= 0 && (bv[l] > mx || (bv[l] == mx && bi[l] < arg))) { mx = bv[l]; arg = bi[l]; }
    for (; i < n; i++)
        if (x[i] > mx) { mx = x[i]; arg = i; }
    return arg < 0 ? 0 : arg;
}
#endif

int64_t sq_argmax(const float *x, int64_t n) {
#if defined(__x86_64__) || defined(_M_X64)
    if (sq_kernels_have_avx2()) return argmax_avx2(x, n);
#endif
    int64_t arg = 0;
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > mx) { mx = x[i]; arg = i; }
    return arg;
}

// ---------------------------------------------------------------------------------------------------------------
// Softmax of score rows in place (the compressed KV caches score their storage segments first, then normalize).

#if defined(__x86_64__) || defined(_M_X64)
SQ_AVX2 static void softmax_rows_avx2(float *x, int64_t rows, int64_t n, int64_t ld) {
    for (int64_t r = 0; r < rows; r++) {
        float *s = x + r * ld;
        __m256 vmax = _mm256_set1_ps(-INFINITY);
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + i));
        float lanes[8];
        _mm256_storeu_ps(lanes, vmax);
        float mx = -INFINITY;
        for (int k = 0; k < 8; k++) mx = fmaxf(mx, lanes[k]);
        for (; i < n; i++) mx = fmaxf(mx, s[i]);
        const __m256 vm = _mm256_set1_ps(mx);
        __m256 vsum = _mm256_setzero_ps();
        for (i = 0; i + 8 <= n; i += 8) {
            const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm));
            _mm256_storeu_ps(s + i, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        float sum = _mm_cvtss_f32(hsum2_ps(vsum, vsum));
        for (; i < n; i++) {
            const float e = expf(s[i] - mx);
            s[i] = e;
            sum += e;
        }
        const __m256 inv = _mm256_set1_ps(1.0f / sum);
        for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(s + i, _mm256_mul_ps(_mm256_loadu_ps(s + i), inv));
        for (; i < n; i++) s[i] *= 1.0f / sum;
    }
}
#endif

void sq_softmax_rows_portable(float *x, int64_t rows, int64_t n, int64_t ld) {
    for (int64_t r = 0; r < rows; r++) {
        float *s = x + r * ld;
        float mx = -INFINITY;
        for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, s[i]);
        float sum = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            s[i] = expf(s[i] - mx);
            sum += s[i];
        }
        const float inv = 1.0f / sum;
        for (int64_t i = 0; i < n; i++) s[i] *= inv;
    }
}

void sq_softmax_rows(float *x, int64_t rows, int64_t n, int64_t ld) {
#if defined(__x86_64__) || defined(_M_X64)
    if (sq_kernels_have_avx2()) { softmax_rows_avx2(x, rows, n, ld); return; }
#endif
    sq_softmax_rows_portable(x, rows, n, ld);
}

// Randomized block Hadamard rotation (HadamardRotation in Swift): dst = H·diag(signs)·src / √block on each block of
// `block` consecutive values, butterflies in the order h = 1, 2, 4, ... . Each butterfly output is one addition or
// subtraction (the AVX2 path's u·(±1) + v is exact in its product), so both paths give the same bits.
static void hadamard_portable(const float *src, float *dst, const float *signs, int64_t n, int64_t block) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i] * signs[i];
    for (int64_t b = 0; b < n; b += block) {
        for (int64_t h = 1; h < block; h *= 2) {
            for (int64_t i = b; i < b + block; i += 2 * h) {
                for (int64_t j = i; j < i + h; j++) {
                    const float u = dst[j], v = dst[j + h];
                    dst[j] = u + v;
                    dst[j + h] = u - v;
                }
            }
        }
    }
    const float norm = 1.0f / sqrtf((float)block);
    for (int64_t i = 0; i < n; i++) dst[i] *= norm;
}

#if defined(__x86_64__) || defined(_M_X64)
// The first three stages within one register of 8 (pairs, quads, halves swapped and combined), the rest as
// whole-register butterflies. Needs block ≥ 8.
SQ_AVX2 static void hadamard_avx2(const float *src, float *dst, const float *signs, int64_t n, int64_t block) {
    const __m256 s1 = _mm256_setr_ps(1, -1, 1, -1, 1, -1, 1, -1);
    const __m256 s2 = _mm256_setr_ps(1, 1, -1, -1, 1, 1, -1, -1);
    const __m256 s4 = _mm256_setr_ps(1, 1, 1, 1, -1, -1, -1, -1);
    const __m256 norm = _mm256_set1_ps(1.0f / sqrtf((float)block));
    const int last = block == 8;  // the scaling goes with the last stage
    for (int64_t i = 0; i < n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(src + i), _mm256_loadu_ps(signs + i));
        v = _mm256_fmadd_ps(v, s1, _mm256_permute_ps(v, 0xB1));  // [a1, a0, a3, a2, ...]
        v = _mm256_fmadd_ps(v, s2, _mm256_permute_ps(v, 0x4E));  // [a2, a3, a0, a1, ...]
        v = _mm256_fmadd_ps(v, s4, _mm256_permute2f128_ps(v, v, 1));
        _mm256_storeu_ps(dst + i, last ? _mm256_mul_ps(v, norm) : v);
    }
    for (int64_t b = 0; b < n; b += block) {
        for (int64_t h = 8; h < block; h *= 2) {
            const int scale = 2 * h == block;
            for (int64_t i = b; i < b + block; i += 2 * h) {
                for (int64_t j = i; j < i + h; j += 8) {
                    const __m256 u = _mm256_loadu_ps(dst + j), v = _mm256_loadu_ps(dst + j + h);
                    __m256 p = _mm256_add_ps(u, v), m = _mm256_sub_ps(u, v);
                    if (scale) { p = _mm256_mul_ps(p, norm); m = _mm256_mul_ps(m, norm); }
                    _mm256_storeu_ps(dst + j, p);
                    _mm256_storeu_ps(dst + j + h, m);
                }
            }
        }
    }
}
#endif

void sq_hadamard_rotate_portable(const float *src, float *dst, const float *signs, int64_t n, int64_t block) {
    hadamard_portable(src, dst, signs, n, block);
}

void sq_hadamard_rotate(const float *src, float *dst, const float *signs, int64_t n, int64_t block) {
#if defined(__x86_64__) || defined(_M_X64)
    if (sq_kernels_have_avx2() && block >= 8 && n % block == 0) { hadamard_avx2(src, dst, signs, n, block); return; }
#endif
    hadamard_portable(src, dst, signs, n, block);
}
