#!/usr/bin/env python3
"""Reference checks for Squish's K-quant encoders (gguf-py 0.19.0 can decode K-quants but not encode them).

usage: kquant_reference.py DIR
       kquant_reference.py model GGUF OUTDIR [MAX]

DIR/manifest.json lists cases {"name", "type" (ggml name), "count", "input" (f32 file), "bytes" (Squish's blocks)}.
For every case writes DIR/<name>.gguf.f32 = gguf.quants.dequantize(bytes) and DIR/<name>.naive.f32, the
dequantized output of a naive K-quant encoder written here: per sub-block min/max (or max |x|) scale, sub-block
scales quantized to the format's integers relative to an f16 super-block d (and dmin), weights rounded again.

model: for up to MAX (default 3) K-quant tensors of GGUF, writes OUTDIR/<name>.bytes (raw rows) and
OUTDIR/<name>.out.f32 (gguf.quants.dequantize of them) and OUTDIR/manifest.json [{"name", "type", "count",
"bytes", "output"}]. The header is parsed here because gguf-py's reader rejects Squish's own block types.
"""
import json
import struct
import os
import sys

import numpy as np
import gguf
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


def gguf_tensors(path):
    """(name, ggml type id, shape, absolute byte offset) of every tensor, from the GGUF header (spec: ggml docs/gguf.md)."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos:pos + n].decode("utf-8")
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(scalar[t])

    assert data[:4] == b"GGUF"
    pos = 4
    take("I")
    n_tensors, n_kv = take("Q"), take("Q")
    alignment = 32
    for _ in range(n_kv):
        key = string()
        v = value(take("I"))
        if key == "general.alignment":
            alignment = v
    infos = []
    for _ in range(n_tensors):
        name = string()
        shape = [take("Q") for _ in range(take("I"))]
        infos.append((name, take("I"), shape, take("Q")))
    start = (pos + alignment - 1) // alignment * alignment
    return data, [(n, t, s, start + o) for n, t, s, o in infos]


def model(path, outdir, limit):
    os.makedirs(outdir, exist_ok=True)
    data, infos = gguf_tensors(path)
    cases = []
    for name, type_id, shape, offset in infos:
        if len(cases) >= limit:
            break
        qtype = next((k for k in FORMATS if T[k].value == type_id), None)
        if qtype is None:
            continue
        count = int(np.prod(shape))
        nbytes = count // 256 * gguf.GGML_QUANT_SIZES[T[qtype]][1]
        raw = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=offset)
        out = dequantize(raw, T[qtype]).reshape(-1).astype(np.float32)
        raw.tofile(os.path.join(outdir, name + ".bytes"))
        out.tofile(os.path.join(outdir, name + ".out.f32"))
        cases.append({"name": name, "type": qtype, "count": count, "bytes": name + ".bytes", "output": name + ".out.f32"})
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(cases, f)


if __name__ == "__main__":
    np.seterr(all="ignore")
    if len(sys.argv) == 2:
        main(sys.argv[1])
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "model":
        model(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) == 5 else 3)
    else:
        sys.exit(__doc__)
