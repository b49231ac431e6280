// Internal interface between the dispatcher in kernels.c and the kernels for further block types, each family in
// its own file (kquants.c: Q2_K..Q6_K; iq_tq.c: IQ4_NL, IQ4_XS, TQ1_0, TQ2_0). Not part of the public header.
#ifndef SQUISH_KERNELS_EXT_H
#define SQUISH_KERNELS_EXT_H

#include "squish_kernels.h"

#include <stdint.h>
#include <string.h>

/// A dispatcher's per-type copy of a kernel, called with a constant type: inlined when optimizing, so that the type
/// folds into a specialized kernel; a call of its own without optimization (debug builds), where inlining every
/// copy into the dispatcher gave it a stack frame of up to 1.3 MB, more than a worker thread's stack.
#if defined(__OPTIMIZE__)
#define SQ_SPECIALIZED __attribute__((always_inline)) static inline
#else
#define SQ_SPECIALIZED __attribute__((noinline)) static
#endif

/// IEEE half to float, exact (subnormals, infinities and NaN payloads kept); shared by every kernel file.
static inline float sq_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1F;
    const uint32_t man = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal: man * 2^-24, exact in f32
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

/// Little-endian u16 / u32 at any alignment.
static inline uint16_t sq_load_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t sq_load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/// Q4_K/Q5_K: the 8 six-bit scales and mins from 12 bytes b (as three little-endian words w0, w1, w2):
/// s < 4: sc = b[s] & 63, m = b[s + 4] & 63; s >= 4: sc = (b[s + 4] & 15) | (b[s - 4] >> 6) << 4,
/// m = (b[s + 4] >> 4) | (b[s] >> 6) << 4. Byte s of the results is sub-block s's value.
static inline void sq_kquant_scale_min_k4(const uint8_t *b, uint64_t *sc, uint64_t *m) {
    const uint32_t w0 = sq_load_u32(b), w1 = sq_load_u32(b + 4), w2 = sq_load_u32(b + 8);
    const uint32_t sc_hi = (w2 & 0x0f0f0f0fu) | (((w0 >> 6) & 0x03030303u) << 4);
    const uint32_t m_hi = ((w2 >> 4) & 0x0f0f0f0fu) | (((w1 >> 6) & 0x03030303u) << 4);
    *sc = (uint64_t)(w0 & 0x3f3f3f3fu) | ((uint64_t)sc_hi << 32);
    *m = (uint64_t)(w1 & 0x3f3f3f3fu) | ((uint64_t)m_hi << 32);
}

/// ggml's kvalues_iq4nl: the 16 non-uniform levels of IQ4_NL and IQ4_XS.
static const int8_t sq_iq4nl_levels[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };

/// Each family answers for the types it knows and returns 0 for the others.
int sq_kquants_has_type(int type);
int sq_iqtq_has_type(int type);

/// Same contract as sq_matmul_q8 (a: nt rows of nb blocks of 32 activations; nb = columns / 32, so a 256-weight
/// super-block spans 8 activation blocks). `avx2` is 1 to use AVX2+FMA+F16C code (the caller checked the CPU),
/// 0 for the portable code; both give the same results up to float summation order.
void sq_kquants_matmul(int type, int avx2, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                       const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy);
void sq_iqtq_matmul(int type, int avx2, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                    const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy);

/// Packed (8-row interleaved) layouts, shared by the kernels in repack.c, repack_kquants.c and repack_vnni.c (each
/// layout is documented at the top of repack.c or repack_kquants.c). Bytes of a 32-column group-block, and the
/// offset of its quants (Q4_1: after d and m; Q5_0: after d and qh; Q5_1: after d, m and qh).
static inline size_t sq_pk_group_bytes(int type) {
    switch (type) {
    case SQ_TYPE_Q4_1: return 160;
    case SQ_TYPE_Q5_0: return 176;
    case SQ_TYPE_Q5_1: return 192;
    case SQ_TYPE_Q8_0: return 272;
    default: return 144;  // Q4_0, IQ4_NL
    }
}
static inline size_t sq_pk_quants(int type) {
    switch (type) {
    case SQ_TYPE_Q4_1: return 32;
    case SQ_TYPE_Q5_0: return 48;
    case SQ_TYPE_Q5_1: return 64;
    default: return 16;
    }
}
/// K-quant packed super-blocks (8 rows × 256 columns): bytes, and the offsets of Q4_K/Q5_K pair j's quant chunks, of
/// Q5_K pair j's fifth bits and of Q6_K pair j.
enum { SQ_PK_Q3_K = 11, SQ_PK_Q4_K = 12, SQ_PK_Q5_K = 13, SQ_PK_Q6_K = 14 };
enum { SQ_PK_Q3_K_SB = 1168, SQ_PK_Q4_K_SB = 1184, SQ_PK_Q5_K_SB = 1440, SQ_PK_Q6_K_SB = 1680 };
static inline size_t sq_pk_q45_quants(int type, int j) { return type == SQ_PK_Q4_K ? 160 + 256 * (size_t)j : 160 + 320 * (size_t)j + 64; }
static inline size_t sq_pk_q5_high(int j) { return 160 + 320 * (size_t)j; }
static inline size_t sq_pk_q6_pair(int j) { return 144 + 384 * (size_t)j; }

/// Σ qa over each half of every activation block of a (nt rows of nb blocks), in per-thread scratch that stays valid
/// until this thread's next call: [t * nb + b] = (Σ qs[0..15]) as int16 | (Σ qs[16..31]) << 16. NULL when the
/// scratch cannot be allocated.
const int32_t *sq_pk_half_sums(const sq_block_q8 *a, int64_t nb, int64_t nt);

/// The packed matmul with AVX512-VNNI (256-bit vectors), bit-identical to the AVX2 and portable ones; any packed type.
void sq_vnni_matmul_packed(int type, const void *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb,
                           int64_t nt, float *y, int64_t ldy);

/// Row-interleaved Q4_K / Q5_K / Q6_K (repack_kquants.c): 1 for those types; bytes of one packed super-block
/// (8 rows × 256 columns); the repacking of `rows` (a multiple of 8) ggml rows of nb / 8 super-blocks; and the
/// matmul over groups [g0, g1) with sq_matmul_packed's contract (`avx2` as for sq_kquants_matmul; both versions give
/// bit-identical results).
int sq_rpk_has_type(int type);
size_t sq_rpk_superblock_bytes(int type);
void sq_rpk_repack(int type, const void *src, size_t row_bytes, int64_t rows, int64_t nb, void *dst);
void sq_rpk_matmul(int type, int avx2, const void *wp, int64_t g0, int64_t g1, const sq_block_q8 *a, int64_t nb,
                   int64_t nt, float *y, int64_t ldy);

/// One row of n weights to f32, bit-exact with the gguf package's numpy dequantizers.
void sq_kquants_dequantize_row(int type, const void *src, float *dst, int64_t n);
void sq_iqtq_dequantize_row(int type, const void *src, float *dst, int64_t n);

#endif
