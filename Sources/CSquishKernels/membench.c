// Memory read bandwidth: stream through a buffer with the widest loads available and as few other instructions as
// possible, so that the loop is limited by DRAM and not by the core (the way STREAM-like read tests are built).
// Then the int8 multiply-add peak the int8 matmuls are measured against (`squish bench --kernels`).
#include "squish_membench.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

uint64_t sq_read_sum_portable(const void *p, size_t n) {
    const uint64_t *w = (const uint64_t *)p;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= n / 8; i += 4) {
        s0 += w[i];
        s1 += w[i + 1];
        s2 += w[i + 2];
        s3 += w[i + 3];
    }
    return s0 + s1 + s2 + s3;
}

#if defined(__x86_64__) || defined(_M_X64)
__attribute__((target("avx2"))) static uint64_t read_sum_avx2(const void *p, size_t n) {
    const __m256i *v = (const __m256i *)p;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 4 <= n / 32; i += 4) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(v + i));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(v + i + 1));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(v + i + 2));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(v + i + 3));
    }
    const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

uint64_t sq_read_sum(const void *p, size_t n) {
    static int avx2 = -1;
    if (avx2 < 0) avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    return avx2 ? read_sum_avx2(p, n) : sq_read_sum_portable(p, n);
}
#else
uint64_t sq_read_sum(const void *p, size_t n) { return sq_read_sum_portable(p, n); }
#endif

// ---------------------------------------------------------------------------------------------------------------
// Int8 multiply-add peak: independent chains of the instructions the int8 matmuls are built from, with operands in
// registers, so that the loop is limited by the core's multiply-add throughput alone.

/// The portable loop: 32 int8 products per step summed into int32 chains (what scalar code can reach).
static int64_t int8_peak_portable(int64_t steps, const int8_t *x, const uint8_t *w) {
    int32_t a[8] = {0};
    for (int64_t s = 0; s < steps; s++)
        for (int k = 0; k < 32; k++) a[k & 7] += (int32_t)w[k] * x[k];
    return (int64_t)a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

#if defined(__x86_64__) || defined(_M_X64)
/// AVX2: per step and chain one maddubs (32 u8 × s8 products into 16 int16 pairs), one madd (to 8 int32) and an add,
/// as in the AVX2 int8 kernels; 12 chains.
__attribute__((target("avx2"))) static int64_t int8_peak_avx2(int64_t steps, const int8_t *x, const uint8_t *w) {
    __m256i xv = _mm256_loadu_si256((const __m256i *)x); const __m256i wv = _mm256_loadu_si256((const __m256i *)w);
    const __m256i one = _mm256_set1_epi16(1);
    __m256i a[12];
    for (int k = 0; k < 12; k++) a[k] = _mm256_setzero_si256();
    for (int64_t s = 0; s < steps; s++) {
        __asm__ volatile("" : "+x"(xv));  // opaque to the compiler: the products are computed every step, not hoisted
        for (int k = 0; k < 12; k++) a[k] = _mm256_add_epi32(a[k], _mm256_madd_epi16(_mm256_maddubs_epi16(wv, xv), one));
    }
    __m256i t = a[0];
    for (int k = 1; k < 12; k++) t = _mm256_add_epi32(t, a[k]);
    int32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, t);
    return (int64_t)lanes[0] + lanes[7];
}

/// AVX512-VNNI on 256-bit vectors: one vpdpbusd (32 u8 × s8 products added into 8 int32) per step and chain, as in
/// the VNNI kernels; 12 chains cover its latency at two per cycle.
__attribute__((target("avx2,avx512f,avx512vl,avx512bw,avx512vnni"))) static int64_t int8_peak_vnni(int64_t steps, const int8_t *x,
                                                                                                  const uint8_t *w) {
    __m256i xv = _mm256_loadu_si256((const __m256i *)x); const __m256i wv = _mm256_loadu_si256((const __m256i *)w);
    __m256i a[12];
    for (int k = 0; k < 12; k++) a[k] = _mm256_setzero_si256();
    for (int64_t s = 0; s < steps; s++) {
        __asm__ volatile("" : "+x"(xv));
        for (int k = 0; k < 12; k++) a[k] = _mm256_dpbusd_epi32(a[k], wv, xv);
    }
    __m256i t = a[0];
    for (int k = 1; k < 12; k++) t = _mm256_add_epi32(t, a[k]);
    int32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, t);
    return (int64_t)lanes[0] + lanes[7];
}
#endif

int64_t sq_int8_peak(int path, int64_t steps, const int8_t *x, const uint8_t *w) {
#if defined(__x86_64__) || defined(_M_X64)
    if (path == 2) return int8_peak_vnni(steps, x, w);
    if (path == 1) return int8_peak_avx2(steps, x, w);
#endif
    return int8_peak_portable(steps, x, w);
}

int64_t sq_int8_peak_products_per_step(int path) { return path == 0 ? 32 : 12 * 32; }
