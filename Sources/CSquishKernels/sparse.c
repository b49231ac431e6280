// Matrix × activations for Squish's sparse block types SP<b>_K<k>: of every 64 weights of a row, k are kept.
//
// Block of 64 weights (10 + k · b / 8 bytes), the layout of SquishFormats' `SquishSparseBlock`:
//   mask u64 @0 (bit j: weight j kept) | d f16 @8 | k codes of b bits @10, LSB-first, the kept weights in position order
//   w[j] = d · (q_i − 2^(b−1)) for the i-th set bit j of the mask, 0 elsewhere (bits beyond the k-th set one: 0).
//
// The kernel reads the mask and the k codes (not 64 dense codes), expands them once per block into 64 signed bytes
// with zeros where pruned, and dots them with each token's int8 activations (two blocks of 32 per weight block). Each
// token keeps 8 float lanes per row; lane l of a half gets the exact integer dot product of its bytes 4l … 4l + 3:
//   acc_l = fma(d · a_{2g}.d, s0_l, acc_l), then acc_l = fma(d · a_{2g+1}.d, s1_l, acc_l), block after block,
//   y[r] = ((acc_0 + acc_4) + (acc_2 + acc_6)) + ((acc_1 + acc_5) + (acc_3 + acc_7)),
// so no horizontal sum or store is needed inside the row (the lanes are what maddubs + madd give in AVX2).
// AVX2: the codes of 4-bit and 8-bit types are unpacked with byte operations (other widths by the shared scalar
// unpacker), then expanded 16 positions at a time by one pshufb whose control comes from a 256-entry table indexed by
// each mask byte (entry p: index of the source byte for position p, 0x80 for a pruned position), the second byte's
// entries offset by the first byte's popcount; the dot products use maddubs on |w| and sign(a, w). The portable code
// computes the same integers and the same float operations (fmaf) in the same order, so both give bit-identical
// results.
#include "squish_sparse.h"
#include "kernels_ext.h"

#include <math.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__) || defined(_M_X64)
#define SQ_X86 1
#include <immintrin.h>
#endif

int sq_sparse_supported(int type, int *bits, int *kept) {
    if (((uint32_t)type & 0xffff0000u) != 0x53500000u) return 0;
    const int b = (type >> 8) & 0xff, k = type & 0xff;
    if (b < 2 || b > 8 || k < 8 || k > 56 || k % 8 != 0) return 0;
    if (bits) *bits = b;
    if (kept) *kept = k;
    return 1;
}

size_t sq_sparse_block_bytes(int bits, int kept) { return 10 + (size_t)kept * (size_t)bits / 8; }

/// The k codes of a block as signed values q − 2^(b−1) into v[0 ..< k] (LSB-first bit stream).
static inline void sparse_unpack_scalar(const uint8_t *codes, int bits, int kept, int8_t *v) {
    const uint32_t mask = (1u << bits) - 1;
    const int half = 1 << (bits - 1);
    uint32_t acc = 0;
    int have = 0, byte = 0;
    for (int i = 0; i < kept; i++) {
        while (have < bits) {
            acc |= (uint32_t)codes[byte++] << have;
            have += 8;
        }
        v[i] = (int8_t)((int)(acc & mask) - half);
        acc >>= bits;
        have -= bits;
    }
}

/// The block's 64 weights as signed bytes (0 where pruned, and beyond the k-th kept position).
static inline void sparse_expand_scalar(uint64_t mask, const int8_t *v, int kept, int8_t *w) {
    int i = 0;
    for (int j = 0; j < 64; j++) {
        if ((mask >> j) & 1 && i < kept) w[j] = v[i++];
        else w[j] = 0;
    }
}

static inline uint64_t sparse_load_mask(const uint8_t *blk) {
    uint64_t m;
    memcpy(&m, blk, 8);
    return m;  // little-endian hosts only (as every kernel file assumes)
}

/// A mask with at most k set bits (the k-th set bit and those after it dropped), as the decoder reads it.
static inline uint64_t sparse_clip_mask(uint64_t mask, int kept) {
    if (__builtin_popcountll(mask) <= kept) return mask;
    uint64_t m = mask;
    for (int i = 0; i < kept; i++) m &= m - 1;  // clear the k lowest set bits: what remains is dropped
    return mask & ~m;
}

/// Tokens whose accumulators one pass over a row keeps (each block is expanded once per pass).
#define SQ_SPARSE_TOKENS 8

/// y[r] from the 8 lanes, in the order the AVX2 kernel adds them.
static inline float sparse_lane_sum(const float *l) {
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

void sq_matmul_sparse_portable(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                               const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    int bits = 0, kept = 0;
    if (!sq_sparse_supported(type, &bits, &kept)) return;
    const size_t bb = sq_sparse_block_bytes(bits, kept);
    const int64_t ng = nb / 2;
    int8_t v[64], e[64];
    float acc[SQ_SPARSE_TOKENS][8];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + r * row_bytes;
        for (int64_t t0 = 0; t0 < nt; t0 += SQ_SPARSE_TOKENS) {
            const int64_t n = nt - t0 < SQ_SPARSE_TOKENS ? nt - t0 : SQ_SPARSE_TOKENS;
            memset(acc, 0, sizeof acc);
            for (int64_t g = 0; g < ng; g++) {
                const uint8_t *blk = row + g * bb;
                const float d = sq_f16_to_f32(sq_load_u16(blk + 8));
                sparse_unpack_scalar(blk + 10, bits, kept, v);
                sparse_expand_scalar(sparse_clip_mask(sparse_load_mask(blk), kept), v, kept, e);
                for (int64_t t = 0; t < n; t++) {
                    const sq_block_q8 *a0 = a + (t0 + t) * nb + 2 * g, *a1 = a0 + 1;
                    const float d0 = d * a0->d, d1 = d * a1->d;
                    for (int l = 0; l < 8; l++) {
                        int32_t s0 = 0, s1 = 0;
                        for (int j = 4 * l; j < 4 * l + 4; j++) {
                            s0 += (int32_t)e[j] * a0->qs[j];
                            s1 += (int32_t)e[32 + j] * a1->qs[j];
                        }
                        acc[t][l] = fmaf(d0, (float)s0, acc[t][l]);
                        acc[t][l] = fmaf(d1, (float)s1, acc[t][l]);
                    }
                }
            }
            for (int64_t t = 0; t < n; t++) y[(t0 + t) * ldy + r] = sparse_lane_sum(acc[t]);
        }
    }
}

#ifdef SQ_X86
#define SQ_AVX2 __attribute__((target("avx2,fma,f16c")))

/// Entry m, byte p: for mask byte m, the index among the byte's kept positions of position p (0x80: pruned).
static uint8_t sparse_expand_table[256][8];

__attribute__((constructor)) static void sparse_build_table(void) {
    for (int m = 0; m < 256; m++) {
        int i = 0;
        for (int p = 0; p < 8; p++) sparse_expand_table[m][p] = (m >> p) & 1 ? (uint8_t)i++ : 0x80;
    }
}

/// 16 positions (mask bits 16c ... 16c + 15) expanded from the values starting at the chunk's first kept one.
SQ_AVX2 static inline __m128i sparse_expand16(const int8_t *v, uint32_t mask16, int start) {
    const uint32_t m0 = mask16 & 0xff, m1 = mask16 >> 8;
    const __m128i t0 = _mm_loadl_epi64((const __m128i *)sparse_expand_table[m0]);
    __m128i t1 = _mm_loadl_epi64((const __m128i *)sparse_expand_table[m1]);
    // Pruned entries (0x80) stay negative after adding at most 8.
    t1 = _mm_add_epi8(t1, _mm_set1_epi8((char)__builtin_popcount(m0)));
    const __m128i ctrl = _mm_unpacklo_epi64(t0, t1);
    return _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(v + start)), ctrl);
}

/// The 8 int32 lanes of Σ w[j] · a[j] over 32 signed bytes each (lane l: bytes 4l … 4l + 3), exact (|w| ≤ 128,
/// |a| ≤ 127: pairs fit int16), as floats.
SQ_AVX2 static inline __m256 dot32_lanes_avx2(__m256i w, __m256i a) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/// `sparse_lane_sum` of the 8 lanes.
SQ_AVX2 static inline float lane_sum_avx2(__m256 x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));  // l, l + 4
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                          // (0 + 4) + (2 + 6), (1 + 5) + (3 + 7)
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

SQ_AVX2 static void sq_matmul_sparse_avx2(int bits, int kept, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                                          const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
    const size_t bb = sq_sparse_block_bytes(bits, kept);
    const int64_t ng = nb / 2;
    // v: the kept values; read 16 at a time from any chunk's start (at most kept ≤ 56), so padded to 80 bytes.
    int8_t v[80] __attribute__((aligned(32)));
    memset(v, 0, sizeof v);
    const __m128i low4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    __m256 acc[SQ_SPARSE_TOKENS];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + r * row_bytes;
        for (int64_t t0 = 0; t0 < nt; t0 += SQ_SPARSE_TOKENS) {
            const int64_t n = nt - t0 < SQ_SPARSE_TOKENS ? nt - t0 : SQ_SPARSE_TOKENS;
            for (int64_t t = 0; t < n; t++) acc[t] = _mm256_setzero_ps();
            for (int64_t g = 0; g < ng; g++) {
                const uint8_t *blk = row + g * bb;
                const float d = _cvtsh_ss(sq_load_u16(blk + 8));
                const uint8_t *codes = blk + 10;
                if (bits == 4) {
                    for (int i = 0; i < kept; i += 16) {  // 8 bytes → 16 codes in order (low nibble first)
                        const __m128i b8 = _mm_loadl_epi64((const __m128i *)(codes + i / 2));
                        const __m128i lo = _mm_and_si128(b8, low4), hi = _mm_and_si128(_mm_srli_epi16(b8, 4), low4);
                        _mm_storeu_si128((__m128i *)(v + i), _mm_sub_epi8(_mm_unpacklo_epi8(lo, hi), eight));
                    }
                } else if (bits == 8) {
                    for (int i = 0; i < kept; i += 16) {
                        const __m128i b16 = _mm_loadu_si128((const __m128i *)(codes + i));
                        _mm_storeu_si128((__m128i *)(v + i), _mm_xor_si128(b16, _mm_set1_epi8((char)0x80)));
                    }
                } else {
                    sparse_unpack_scalar(codes, bits, kept, v);
                }
                const uint64_t mask = sparse_clip_mask(sparse_load_mask(blk), kept);
                const int c0 = __builtin_popcount((uint32_t)(mask & 0xffff));
                const int c1 = c0 + __builtin_popcount((uint32_t)(mask >> 16 & 0xffff));
                const int c2 = c1 + __builtin_popcount((uint32_t)(mask >> 32 & 0xffff));
                const __m256i e0 = _mm256_setr_m128i(sparse_expand16(v, (uint32_t)(mask & 0xffff), 0),
                                                     sparse_expand16(v, (uint32_t)(mask >> 16 & 0xffff), c0));
                const __m256i e1 = _mm256_setr_m128i(sparse_expand16(v, (uint32_t)(mask >> 32 & 0xffff), c1),
                                                     sparse_expand16(v, (uint32_t)(mask >> 48), c2));
                for (int64_t t = 0; t < n; t++) {
                    const sq_block_q8 *a0 = a + (t0 + t) * nb + 2 * g, *a1 = a0 + 1;
                    const __m256 p0 = dot32_lanes_avx2(e0, _mm256_loadu_si256((const __m256i *)a0->qs));
                    const __m256 p1 = dot32_lanes_avx2(e1, _mm256_loadu_si256((const __m256i *)a1->qs));
                    acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * a0->d), p0, acc[t]);
                    acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * a1->d), p1, acc[t]);
                }
            }
            for (int64_t t = 0; t < n; t++) y[(t0 + t) * ldy + r] = lane_sum_avx2(acc[t]);
        }
    }
}
#endif

void sq_matmul_sparse(int type, const void *w, size_t row_bytes, int64_t r0, int64_t r1,
                      const sq_block_q8 *a, int64_t nb, int64_t nt, float *y, int64_t ldy) {
#ifdef SQ_X86
    int bits = 0, kept = 0;
    if (sq_kernels_have_avx2() && sq_sparse_supported(type, &bits, &kept)) {
        sq_matmul_sparse_avx2(bits, kept, w, row_bytes, r0, r1, a, nb, nt, y, ldy);
        return;
    }
#endif
    sq_matmul_sparse_portable(type, w, row_bytes, r0, r1, a, nb, nt, y, ldy);
}
