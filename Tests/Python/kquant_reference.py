#!/usr/bin/env python3
"""Reference checks for Squish's K-quant encoders (gguf-py 0.19.0 can decode K-quants but not encode them).

usage: kquant_reference.py DIR

DIR/manifest.json lists cases {"name", "type" (ggml name), "count", "input" (f32 file), "bytes" (Squish's blocks)}.
For every case writes DIR/<name>.gguf.f32 = gguf.quants.dequantize(bytes) and DIR/<name>.naive.f32, the
dequantized output of a naive K-quant encoder written here: per sub-block min/max (or max |x|) scale, sub-block
scales quantized to the format's integers relative to an f16 super-block d (and dmin), weights rounded again.
"""
import json
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

# type: (sub-block size, lowest code, highest code, lowest integer scale, highest integer scale, has minimum)
FORMATS = {
    "Q2_K": (16, 0, 3, 0, 15, True),
    "Q3_K": (16, -4, 3, -32, 31, False),
    "Q4_K": (32, 0, 15, 0, 63, True),
    "Q5_K": (32, 0, 31, 0, 63, True),
    "Q6_K": (16, -32, 31, -128, 127, False),
}


def f16(v):
    return np.clip(v, -65504, 65504).astype(np.float16).astype(np.float32)


def safe_div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(b != 0, a / np.where(b != 0, b, 1), 0)
    return r


def naive(x, qtype):
    sub, qlo, qhi, slo, shi, has_min = FORMATS[qtype]
    x = x.astype(np.float32).reshape(-1, 256 // sub, sub)  # [super-blocks, sub-blocks, sub]
    if has_min:
        lo = np.minimum(x.min(axis=2), 0)
        hi = x.max(axis=2)
        scale = (hi - lo) / qhi
        mins = -lo
        d = f16(scale.max(axis=1) / shi)[:, None]
        dmin = f16(mins.max(axis=1) / shi)[:, None]
        sc = np.clip(np.round(safe_div(scale, d)), 0, shi)
        m = np.clip(np.round(safe_div(mins, dmin)), 0, shi)
        step = (d * sc)[:, :, None]
        off = (dmin * m)[:, :, None]
    else:
        idx = np.abs(x).argmax(axis=2)
        vmax = np.take_along_axis(x, idx[:, :, None], axis=2)[:, :, 0]
        scale = vmax / qlo
        big = np.take_along_axis(scale, np.abs(scale).argmax(axis=1)[:, None], axis=1)
        d = f16(big / slo)
        sc = np.clip(np.round(safe_div(scale, d)), slo, shi)
        step = (d * sc)[:, :, None]
        off = np.zeros_like(step)
    q = np.clip(np.round(safe_div(x + off, step)), qlo, qhi)
    return (step * q - off).astype(np.float32).reshape(-1)


def main(d):
    with open(os.path.join(d, "manifest.json")) as f:
        cases = json.load(f)
    for c in cases:
        x = np.fromfile(os.path.join(d, c["input"]), dtype=np.float32)
        raw = np.fromfile(os.path.join(d, c["bytes"]), dtype=np.uint8)
        out = dequantize(raw, T[c["type"]]).reshape(-1).astype(np.float32)
        assert out.size == c["count"] == x.size, c["name"]
        out.tofile(os.path.join(d, c["name"] + ".gguf.f32"))
        naive(x, c["type"]).tofile(os.path.join(d, c["name"] + ".naive.f32"))


if __name__ == "__main__":
    np.seterr(all="ignore")
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
