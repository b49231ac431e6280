// Internal interface between the dispatcher in kernels.c and the kernels for further block types, each family in
// its own file (kquants.c: Q2_K..Q6_K; iq_tq.c: IQ4_NL, IQ4_XS, TQ1_0, TQ2_0). Not part of the public header.
#ifndef SQUISH_KERNELS_EXT_H
#define SQUISH_KERNELS_EXT_H

#include "squish_kernels.h"

#include <stdint.h>
#include <string.h>

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

/// Little-endian u16 at any alignment.
static inline uint16_t sq_load_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

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

/// One row of n weights to f32, bit-exact with the gguf package's numpy dequantizers.
void sq_kquants_dequantize_row(int type, const void *src, float *dst, int64_t n);
void sq_iqtq_dequantize_row(int type, const void *src, float *dst, int64_t n);

#endif
