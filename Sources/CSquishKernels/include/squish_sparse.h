// Matrix products with Squish's sparse block types SP<b>_K<k> (see sparse.c for the layout): of every 64 weights of a
// row, k are kept as symmetric b-bit codes, the others are zero; a 64-bit mask says which.
#ifndef SQUISH_SPARSE_H
#define SQUISH_SPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "squish_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when `type` (a ggml/Squish type id) is a sparse type SP<b>_K<k> with a kernel (b = 2 ... 8, k = 8 ... 56 in
/// steps of 8); sets bits and kept.
int sq_sparse_supported(int type, int *bits, int *kept);

/// Bytes of one block of 64 weights: 10 + kept · bits / 8.
size_t sq_sparse_block_bytes(int bits, int kept);

/// y[t * ldy + r] = Σ_k W[r, k] · x_t[k] for rows r in [r0, r1) and tokens t in [0, nt).
/// W: rows of `row_bytes` bytes (nb / 2 blocks of 64 weights each); a: nt rows of nb activation blocks of 32.
/// Each block's codes are expanded once to 64 signed bytes (zeros where pruned) and multiplied with every token.
void sq_matmul_sparse(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                      const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy);
/// The portable version (bit-identical results).
void sq_matmul_sparse_portable(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                               const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy);

#ifdef __cplusplus
}
#endif
#endif
