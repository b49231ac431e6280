"""Cross-checks Squish's safetensors files with the reference `safetensors` package.

Usage:
  safetensors_reference.py write OUT.safetensors    writes tensors of every dtype Squish reads (deterministic values)
  safetensors_reference.py read FILE.safetensors    prints "name dtype shape sum-of-float64-values" per tensor, sorted
"""
import sys

import numpy as np
from safetensors.numpy import load_file, save_file


def main():
    mode, path = sys.argv[1:3]
    if mode == "write":
        rng = np.random.default_rng(7)
        tensors = {
            "f32": rng.standard_normal((3, 5)).astype(np.float32),
            "f16": rng.standard_normal((4, 2, 2)).astype(np.float16),
            "i8": rng.integers(-128, 128, (7,)).astype(np.int8),
            "u8": rng.integers(0, 256, (2, 3)).astype(np.uint8),
            "i16": rng.integers(-30000, 30000, (5,)).astype(np.int16),
            "i32": rng.integers(-2**31, 2**31 - 1, (2, 2)).astype(np.int32),
            "empty": np.zeros((0, 4), dtype=np.float32),
        }
        save_file(tensors, path, metadata={"format": "pt", "note": "reference"})
    else:
        for name, t in sorted(load_file(path).items()):
            print(name, t.dtype, list(t.shape), float(np.asarray(t, dtype=np.float64).sum()))


if __name__ == "__main__":
    main()
