// Attention for one query head over the cached positions: scores = scale · K q, softmax, out = Σ p_j v_j.
// The AVX2 path scores four positions at a time (one horizontal reduction per four), uses a vectorized exp and
// keeps the output in registers while it walks the values; the portable path is the plain definition.
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
#endif

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

void sq_attention_head(const float *q, const float *keys, const float *values, int64_t stride, int64_t n,
                       int64_t head_dim, float scale, float *scores, float *out) {
#if defined(__x86_64__) || defined(_M_X64)
    if (sq_kernels_have_avx2() && head_dim % 8 == 0 && n > 0) {
        attention_head_avx2(q, keys, values, stride, n, head_dim, scale, scores, out);
        return;
    }
#endif
    sq_attention_head_portable(q, keys, values, stride, n, head_dim, scale, scores, out);
}
