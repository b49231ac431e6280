// The innermost loop of the memory-bandwidth benchmark (`squish bench --memory`).
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

#ifdef __cplusplus
}
#endif
#endif
