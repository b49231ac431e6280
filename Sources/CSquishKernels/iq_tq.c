// IQ4_NL, IQ4_XS, TQ1_0 and TQ2_0 against int8 activations. (Kernels to come; until then no type is claimed and the Swift side uses
// the codec-row path.)
#include "kernels_ext.h"

int sq_iqtq_has_type(int type) { (void)type; return 0; }

void sq_iqtq_matmul(int type, int avx2, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                       const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    (void)type; (void)avx2; (void)w; (void)row_bytes; (void)r0; (void)r1; (void)a; (void)nb; (void)nt; (void)y; (void)ldy;
}

void sq_iqtq_dequantize_row(int type, const void *src, float *dst, int64_t n) {
    (void)type; (void)src; (void)dst; (void)n;
}
