"""Reference block (de)quantization from the `gguf` package's numpy code, for Squish's codec tests.

Usage: codec_reference.py OUT_DIR [MODEL.gguf]
Writes, for each case NAME:
  NAME.in   the input: f32 values (quantize cases) or raw block bytes (dequantize cases)
  NAME.q    quantized bytes (quantize cases only)
  NAME.f32  dequantized f32 values
and OUT_DIR/cases.txt with one line per case: NAME TYPE KIND COUNT (KIND: quant | dequant; COUNT: values).
Random data is deterministic (fixed seeds); blocks of dequantize-only types are random bytes with finite f16 scales.
With MODEL, the model's tensors (a few rows of each, every type present) are added as dequantize cases.
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFReader
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

QUANT = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.TQ1_0, T.TQ2_0]
DEQUANT_ONLY = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS]
# Byte offsets of f16 scales inside each block (kept finite and moderate so values are finite).
F16_FIELDS = {T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208], T.IQ4_NL: [0],
              T.IQ4_XS: [0], T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0], T.TQ1_0: [52],
              T.TQ2_0: [64]}


def distributions(rng, n):
    yield "normal", rng.standard_normal(n).astype(np.float32)
    yield "uniform", rng.uniform(-3, 3, n).astype(np.float32)
    x = rng.standard_normal(n).astype(np.float32)
    x[rng.integers(0, n, n // 50)] *= 100
    yield "outliers", x
    yield "zeros", np.zeros(n, dtype=np.float32)
    x = np.repeat(rng.standard_normal(n // 256).astype(np.float32), 256)
    yield "constant-blocks", x
    yield "tiny", (rng.standard_normal(n) * 1e-6).astype(np.float32)
    yield "positive", np.abs(rng.standard_normal(n)).astype(np.float32)
    x = rng.standard_normal(n).astype(np.float32)
    x[::7] = 0
    x[::11] = -x[::11]
    yield "ties", np.round(x * 8) / 8


def main():
    out = sys.argv[1]
    model = sys.argv[2] if len(sys.argv) > 2 else None
    cases = []
    rng = np.random.default_rng(1234)
    n = 256 * 64
    for qt in QUANT:
        for name, x in distributions(rng, n):
            case = f"quant-{qt.name}-{name}"
            q = quantize(x, qt)
            y = dequantize(q, qt)
            x.astype("<f4").tofile(f"{out}/{case}.in")
            np.asarray(q).view(np.uint8).tofile(f"{out}/{case}.q")
            np.asarray(y, dtype="<f4").tofile(f"{out}/{case}.f32")
            cases.append(f"{case} {qt.name} quant {n}")
    for qt in DEQUANT_ONLY + [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.TQ1_0, T.TQ2_0]:
        bs, ts = GGML_QUANT_SIZES[qt]
        blocks = 512
        raw = rng.integers(0, 256, (blocks, ts), dtype=np.uint8)
        for off in F16_FIELDS[qt]:
            raw[:, off:off + 2] = rng.uniform(-2, 2, blocks).astype(np.float16).view(np.uint8).reshape(blocks, 2)
        y = dequantize(raw.reshape(-1), qt)
        case = f"dequant-{qt.name}-random"
        raw.tofile(f"{out}/{case}.in")
        np.asarray(y, dtype="<f4").tofile(f"{out}/{case}.f32")
        cases.append(f"{case} {qt.name} dequant {blocks * bs}")
    if model:
        r = GGUFReader(model)
        seen = {}
        for t in r.tensors:
            k = seen.get(t.tensor_type, 0)
            if k >= 3:
                continue
            seen[t.tensor_type] = k + 1
            data = np.asarray(t.data)
            rows = data.reshape(-1, data.shape[-1])[:64] if data.ndim > 1 else data.reshape(1, -1)
            raw = np.ascontiguousarray(rows).view(np.uint8)
            y = dequantize(np.ascontiguousarray(rows), t.tensor_type)
            case = f"model-{t.name}"
            raw.tofile(f"{out}/{case}.in")
            np.asarray(y, dtype="<f4").tofile(f"{out}/{case}.f32")
            cases.append(f"{case} {t.tensor_type.name} dequant {np.asarray(y).size}")
    with open(f"{out}/cases.txt", "w") as f:
        f.write("\n".join(cases) + "\n")


if __name__ == "__main__":
    main()
