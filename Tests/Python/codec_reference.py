#!/usr/bin/env python3
"""Reference data for Squish's block codec tests, produced by gguf-py's numpy (de)quantizers.

usage: codec_reference.py synthetic OUTDIR     random inputs, quantized and dequantized by gguf.quants,
                                                plus random valid blocks of every decodable type
       codec_reference.py model GGUF OUTDIR     raw bytes and dequantized values of a few tensors of
                                                every type present in a GGUF file

Writes OUTDIR/manifest.json, a list of cases:
  {"name", "type" (ggml name), "count" (values), "input" (f32 file or null),
   "bytes" (encoded blocks), "output" (f32 file: gguf.quants.dequantize(bytes))}
A case with an "input" checks quantization (Swift must produce "bytes" from "input");
every case checks dequantization ("bytes" -> "output"). All files are raw little-endian arrays.
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize, dequantize

QUANTIZABLE = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "TQ1_0", "TQ2_0", "MXFP4"]

# Byte offsets of the f16 scale fields inside one block, per decodable block type.
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "IQ4_NL": [0], "IQ4_XS": [0], "TQ1_0": [52], "TQ2_0": [64],
    "MXFP4": [],  # its scale is a u8 exponent: random bytes cover every value
}

N = 4096  # values per synthetic input: 16 blocks of 256, 128 blocks of 32


class Writer:
    def __init__(self, outdir):
        self.outdir = outdir
        self.cases = []
        os.makedirs(outdir, exist_ok=True)

    def file(self, name, array):
        path = name.replace("/", "_")
        with open(os.path.join(self.outdir, path), "wb") as f:
            f.write(np.ascontiguousarray(array).tobytes())
        return path

    def case(self, name, qtype, count, blocks, output, inputs=None):
        assert output.dtype == np.float32 and output.size == count, name
        self.cases.append({
            "name": name, "type": qtype, "count": int(count),
            "input": None if inputs is None else self.file(name + ".in.f32", inputs.astype(np.float32)),
            "bytes": self.file(name + ".bytes", blocks.view(np.uint8)),
            "output": self.file(name + ".out.f32", output),
        })

    def finish(self):
        with open(os.path.join(self.outdir, "manifest.json"), "w") as f:
            json.dump(self.cases, f, indent=1)


def distributions(rng):
    """Named f32 inputs of N values each, meant to hit every branch of the quantizers."""
    blocks32 = N // 32
    d = {}
    d["normal"] = rng.standard_normal(N)
    d["uniform"] = rng.uniform(-3, 3, N)
    x = rng.standard_normal(N) * 0.02
    idx = rng.choice(N, N // 50, replace=False)
    x[idx] *= rng.choice([-1, 1], idx.size) * rng.uniform(50, 500, idx.size)
    d["outliers"] = x
    d["zeros"] = np.zeros(N)
    # All-equal blocks of 32 (and so of 256 too), both signs, including zero.
    d["constant_blocks"] = np.repeat(rng.choice([-2.5, -1, 0, 0.25, 1, 7], blocks32), 32)
    # One non-zero value per block of 32.
    x = np.zeros(N)
    x[np.arange(blocks32) * 32 + rng.integers(0, 32, blocks32)] = rng.standard_normal(blocks32) * 10
    d["one_hot"] = x
    # Multiples of 1/2 with a +-127 in every block: exact ties for round-half-away and trunc(x + .5).
    x = rng.integers(-254, 255, N) / 2.0
    x[np.arange(blocks32) * 32] = rng.choice([-127.0, 127.0], blocks32)
    d["halves"] = x
    # Small integers: ties for Q4/Q5 as well.
    d["small_integers"] = rng.integers(-16, 17, N).astype(np.float64)
    d["positive"] = rng.exponential(1.0, N)
    d["negative_max"] = -np.abs(rng.standard_normal(N))
    d["tiny"] = rng.standard_normal(N) * 1e-6  # f16 scales underflow to subnormal / zero
    d["large"] = rng.standard_normal(N) * 1e6  # f16 scales overflow to infinity
    d["f32_subnormal"] = rng.standard_normal(N) * 1e-39  # 1 / d overflows in f32
    return {k: v.astype(np.float32) for k, v in d.items()}


def float_specials(rng):
    """Values for the plain float codecs: infinities, NaNs, signed zeros, f16 rounding ties and overflow."""
    specials = np.array([0.0, -0.0, np.inf, -np.inf, 65504, 65519.99, 65520, -65520, 1e-8, -1e-8,
                         2 ** -24, 2 ** -25, 3 * 2 ** -26, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1e30, -1e-45],
                        dtype=np.float32)
    nans = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FA00000, 0xFF812345, 0x7F803FFF, 0x7FFFFFFF],
                    dtype=np.uint32).view(np.float32)
    ties = (rng.integers(0, 2 ** 31, 256, dtype=np.uint32) & ~np.uint32(0xFFFF)) | np.uint32(0x8000)
    rand_bits = rng.integers(0, 2 ** 32, 1024, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([specials, nans, ties.view(np.float32), rand_bits.view(np.float32),
                        rng.standard_normal(512).astype(np.float32)])
    return x.astype(np.float32)


def random_f16(rng, n):
    """Finite f16 scales spread over many binades, a few zeros, negative zeros, subnormals and extremes."""
    v = rng.standard_normal(n) * np.exp2(rng.uniform(-24, 12, n))
    v = v.astype(np.float16)
    v[~np.isfinite(v)] = np.float16(65504)
    special = np.array([0.0, -0.0, 6e-8, -6e-8, 65504, -65504, 1.0, -1.0], dtype=np.float16)
    k = min(n, special.size)
    v[:k] = special[:k]
    return v


def random_blocks(rng, qtype, n_blocks, scales=None):
    block_size, type_size = gguf.GGML_QUANT_SIZES[T[qtype]]
    raw = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        f = random_f16(rng, n_blocks) if scales is None else rng.choice(scales, n_blocks).astype(np.float16)
        raw[:, off:off + 2] = f.view(np.uint8).reshape(n_blocks, 2)
    return raw, block_size


def synthetic(outdir):
    rng = np.random.default_rng(20240601)
    w = Writer(outdir)
    inputs = distributions(rng)
    for qtype in QUANTIZABLE:
        cases = dict(inputs)
        if qtype in ("F32", "F16", "BF16"):
            cases["specials"] = float_specials(rng)
        for dist, x in cases.items():
            q = quantize(x, T[qtype])
            w.case(f"quantize-{qtype}-{dist}", qtype, x.size, q, dequantize(q, T[qtype]).reshape(-1), inputs=x)
    # Every f16 and bf16 bit pattern, and random f32 bit patterns.
    every = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    for qtype in ("F16", "BF16"):
        w.case(f"dequantize-{qtype}-all-patterns", qtype, 65536, every, dequantize(every.view(np.uint8), T[qtype]).reshape(-1))
    bits = rng.integers(0, 2 ** 32, 4096, dtype=np.uint64).astype(np.uint32)
    w.case("dequantize-F32-random-bits", "F32", 4096, bits, dequantize(bits.view(np.uint8), T.F32).reshape(-1))
    # Random valid blocks of every block type, with sane scales, then with infinite / NaN scales.
    for qtype in F16_FIELDS:
        block_size = gguf.GGML_QUANT_SIZES[T[qtype]][0]
        n_blocks = 1024 if block_size == 256 else 2048
        raw, _ = random_blocks(rng, qtype, n_blocks)
        w.case(f"dequantize-{qtype}-random-blocks", qtype, n_blocks * block_size, raw, dequantize(raw, T[qtype]).reshape(-1))
        raw, _ = random_blocks(rng, qtype, 16, scales=np.array([np.inf, -np.inf, np.nan, 0.0, 1.0], dtype=np.float32))
        with np.errstate(invalid="ignore"):
            out = dequantize(raw, T[qtype]).reshape(-1)
        w.case(f"dequantize-{qtype}-special-scales", qtype, 16 * block_size, raw, out)
    w.finish()


def model(path, outdir, per_type=3, max_values=1 << 16):
    w = Writer(outdir)
    reader = gguf.GGUFReader(path)
    taken = {}
    for t in reader.tensors:
        name = t.tensor_type.name
        if taken.get(name, 0) >= per_type:
            continue
        taken[name] = taken.get(name, 0) + 1
        data = np.asarray(t.data)
        data = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
        row_values = int(t.shape[0])  # ggml order: shape[0] is the row length
        rows = max(1, min(data.shape[0], max_values // row_values))
        raw = np.ascontiguousarray(data[:rows]).view(np.uint8)
        out = dequantize(raw, t.tensor_type).reshape(-1).astype(np.float32, copy=False)
        w.case(f"model-{name}-{t.name}", name, rows * row_values, raw, out)
    w.finish()


if __name__ == "__main__":
    np.seterr(all="ignore")  # overflow / invalid operations are part of what the edge cases exercise
    if len(sys.argv) == 3 and sys.argv[1] == "synthetic":
        synthetic(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "model":
        model(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
