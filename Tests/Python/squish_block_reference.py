#!/usr/bin/env python3
"""Reference decoding of Squish's own block types with numpy, written from the documented layouts only.

usage: squish_block_reference.py OUTDIR

For every bits b in 2..8, group g in {16, 32, 64, 128, 256} and kind (affine "SQ<b>_G<g>", symmetric
"SQ<b>S_G<g>") writes random blocks and their values:
  affine:    d f16 @0 | m f16 @2 | codes @4,  w = d * q + m
  symmetric: d f16 @0 | codes @2,             w = d * (q - 2^(b-1))
  sparse "SP<b>_K<k>" (64 weights, k kept): mask u64 @0 | d f16 @8 | codes @10; the i-th set bit of the mask (in
             increasing position, at most the first k of them) takes w = d * (q_i - 2^(b-1)), every other weight 0
  non-linear "SQ4N_G<g>" (g in 64, 128, 256): d f16 @0 | 16 bytes per 32 weights @2 + 16 s; byte j of group s holds
             in its low nibble q of weight 32 s + j and in its high nibble q of weight 32 s + j + 16; w = d * L[q] with
             L = IQ4_NL's levels (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)
  non-linear with sub-scales "SQ4NX_G<g>" (g in 128, 256): d f16 @0 | 3 bytes per 4 groups of 32 @2 + 3 t, a
             little-endian 24-bit word holding m_s + 32 (6 bits) of group s = 4 t + k in bits [6 k, 6 k + 6) | 16 bytes
             per 32 weights @2 + 3 g / 128 + 16 s as in SQ4N; w = float16(d * m_s) * L[q] (the product in float32,
             rounded to float16, widened)
codes: code j occupies bits [j*b, j*b + b) of the little-endian bit stream (bit i = bit i % 8 of byte i // 8).
All arithmetic in float32, one rounding per operation (product, then sum).

Writes OUTDIR/manifest.json, a list of {"type", "count", "bytes", "output"}: raw little-endian files.
"""
import json
import os
import sys

import numpy as np

BLOCKS = 24


def decode(raw, bits, group, symmetric):
    header = 2 if symmetric else 4
    nb = raw.shape[0]
    d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)  # [nb, 1]
    bitstream = np.unpackbits(raw[:, header:], axis=1, bitorder="little")  # [nb, group * bits]
    weights = (1 << np.arange(bits)).astype(np.int64)
    q = (bitstream.reshape(nb, group, bits).astype(np.int64) * weights).sum(axis=2)  # [nb, group]
    if symmetric:
        return (d * (q - (1 << (bits - 1))).astype(np.float32)).astype(np.float32)
    m = raw[:, 2:4].copy().view(np.float16).astype(np.float32)
    return (d * q.astype(np.float32) + m).astype(np.float32)


def decode_sparse(raw, bits, kept):
    nb = raw.shape[0]
    mask = raw[:, 0:8].copy().view("<u8")[:, 0]  # [nb]
    d = raw[:, 8:10].copy().view(np.float16).astype(np.float32)[:, 0]  # [nb]
    bitstream = np.unpackbits(raw[:, 10:], axis=1, bitorder="little")  # [nb, kept * bits]
    weights = (1 << np.arange(bits)).astype(np.int64)
    q = (bitstream.reshape(nb, kept, bits).astype(np.int64) * weights).sum(axis=2)  # [nb, kept]
    out = np.zeros((nb, 64), dtype=np.float32)
    for b in range(nb):
        i = 0
        for j in range(64):
            if (int(mask[b]) >> j) & 1 and i < kept:
                out[b, j] = np.float32(d[b] * np.float32(q[b, i] - (1 << (bits - 1))))
                i += 1
    return out


IQ4_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32)


def decode_nonlinear(raw, group):
    nb = raw.shape[0]
    d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)  # [nb, 1]
    qs = raw[:, 2:].reshape(nb, group // 32, 16)
    q = np.concatenate([qs & 15, qs >> 4], axis=2).reshape(nb, group)  # per 32: low nibbles, then high nibbles
    return (d * IQ4_LEVELS[q]).astype(np.float32)


def decode_nonlinear_x(raw, group):
    nb, subs = raw.shape[0], group // 32
    d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)  # [nb, 1]
    words = raw[:, 2:2 + 3 * group // 128].reshape(nb, group // 128, 3).astype(np.int64)
    words = words[:, :, 0] | words[:, :, 1] << 8 | words[:, :, 2] << 16  # [nb, group / 128]
    m = np.stack([(words >> (6 * k)) & 63 for k in range(4)], axis=2).reshape(nb, subs) - 32  # [nb, subs]
    scale = (d * m.astype(np.float32)).astype(np.float16).astype(np.float32)  # [nb, subs]
    qs = raw[:, 2 + 3 * group // 128:].reshape(nb, subs, 16)
    q = np.concatenate([qs & 15, qs >> 4], axis=2)  # [nb, subs, 32]
    return (scale[:, :, None] * IQ4_LEVELS[q]).astype(np.float32).reshape(nb, group)


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(6)
    cases = []
    for symmetric in (False, True):
        for bits in range(2, 9):
            for group in (16, 32, 64, 128, 256):
                name = "SQ%d%s_G%d" % (bits, "S" if symmetric else "", group)
                header = 2 if symmetric else 4
                size = header + group * bits // 8
                raw = rng.integers(0, 256, size=(BLOCKS, size), dtype=np.uint8)
                # Finite f16 scales (either sign) and minima.
                raw[:, 0:2] = rng.uniform(-0.1, 0.1, size=(BLOCKS, 1)).astype(np.float16).view(np.uint8)
                if not symmetric:
                    raw[:, 2:4] = rng.uniform(-1, 1, size=(BLOCKS, 1)).astype(np.float16).view(np.uint8)
                out = decode(raw, bits, group, symmetric).reshape(-1)
                raw.tofile(os.path.join(outdir, name + ".bytes"))
                out.astype("<f4").tofile(os.path.join(outdir, name + ".f32"))
                cases.append({"type": name, "count": int(out.size), "bytes": name + ".bytes", "output": name + ".f32"})
    for bits in (2, 3, 4, 5, 6, 8):
        for kept in (16, 32, 48):
            name = "SP%d_K%d" % (bits, kept)
            raw = rng.integers(0, 256, size=(BLOCKS, 10 + kept * bits // 8), dtype=np.uint8)
            raw[:, 8:10] = rng.uniform(-0.1, 0.1, size=(BLOCKS, 1)).astype(np.float16).view(np.uint8)
            for b in range(BLOCKS):
                # Exactly k positions kept in most blocks; fewer in some, more (invalid: the rest read as zero) in one.
                count = kept if b < BLOCKS - 4 else (64 if b == BLOCKS - 1 else int(rng.integers(0, kept)))
                positions = rng.choice(64, size=count, replace=False)
                raw[b, 0:8] = np.array([sum(1 << int(j) for j in positions)], dtype="<u8").view(np.uint8)
            out = decode_sparse(raw, bits, kept).reshape(-1)
            raw.tofile(os.path.join(outdir, name + ".bytes"))
            out.astype("<f4").tofile(os.path.join(outdir, name + ".f32"))
            cases.append({"type": name, "count": int(out.size), "bytes": name + ".bytes", "output": name + ".f32"})
    for group in (64, 128, 256):
        name = "SQ4N_G%d" % group
        raw = rng.integers(0, 256, size=(BLOCKS, 2 + group // 2), dtype=np.uint8)
        raw[:, 0:2] = rng.uniform(-0.1, 0.1, size=(BLOCKS, 1)).astype(np.float16).view(np.uint8)
        out = decode_nonlinear(raw, group).reshape(-1)
        raw.tofile(os.path.join(outdir, name + ".bytes"))
        out.astype("<f4").tofile(os.path.join(outdir, name + ".f32"))
        cases.append({"type": name, "count": int(out.size), "bytes": name + ".bytes", "output": name + ".f32"})
    for group in (128, 256):
        name = "SQ4NX_G%d" % group
        raw = rng.integers(0, 256, size=(BLOCKS, 2 + 3 * group // 128 + group // 2), dtype=np.uint8)
        raw[:, 0:2] = rng.uniform(-0.01, 0.01, size=(BLOCKS, 1)).astype(np.float16).view(np.uint8)
        out = decode_nonlinear_x(raw, group).reshape(-1)
        raw.tofile(os.path.join(outdir, name + ".bytes"))
        out.astype("<f4").tofile(os.path.join(outdir, name + ".f32"))
        cases.append({"type": name, "count": int(out.size), "bytes": name + ".bytes", "output": name + ".f32"})
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(cases, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
