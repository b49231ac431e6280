// The innermost loops of the hardware benchmarks: memory bandwidth (`squish bench --memory`) and the int8
// multiply-add peak (`squish bench --kernels`).
#ifndef SQUISH_MEMBENCH_H
#define SQUISH_MEMBENCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Reads n bytes (n a multiple of 128, p 32-byte aligned) and returns their sum as 64-bit words, so that no load can
/// be skipped. AVX2 (32-byte loads, four independent accumulators) where the CPU has it, portable C otherwise.
uint64_t sq_read_sum(const void *p, size_t n);
/// The portable version (tests compare the two).
uint64_t sq_read_sum_portable(const void *p, size_t n);

/// Runs `steps` steps of independent int8 multiply-add chains on the 32 bytes at x (signed) and w (unsigned) and
/// returns a sum of the chains (so that no step can be skipped). path 2: AVX512-VNNI vpdpbusd on 256-bit vectors
/// (12 chains); 1: AVX2 maddubs + madd + add (12 chains); 0: portable C. The caller picks a path the CPU has.
int64_t sq_int8_peak(int path, int64_t steps, const int8_t *x, const uint8_t *w);
/// int8 products (multiply-adds) one step of sq_int8_peak's `path` computes.
int64_t sq_int8_peak_products_per_step(int path);

#ifdef __cplusplus
}
#endif
#endif
