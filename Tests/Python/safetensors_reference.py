"""Cross-checks Squish's safetensors reader/writer against the reference `safetensors` package.

  write PATH   writes a file with several dtypes via safetensors.numpy.save_file and prints its tensors as JSON
  read PATH    loads PATH via safetensors.numpy.load_file and prints its tensors and metadata as JSON

Printed JSON: {"metadata": {...}, "tensors": {name: {"dtype": "F32", "shape": [...], "hex": raw little-endian bytes}}}
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

NAMES = {
    np.dtype("bool"): "BOOL", np.dtype("uint8"): "U8", np.dtype("int8"): "I8",
    np.dtype("int16"): "I16", np.dtype("uint16"): "U16", np.dtype("float16"): "F16",
    np.dtype("int32"): "I32", np.dtype("uint32"): "U32", np.dtype("float32"): "F32",
    np.dtype("float64"): "F64", np.dtype("int64"): "I64", np.dtype("uint64"): "U64",
}


def describe(tensors, metadata):
    out = {}
    for name, a in tensors.items():
        # tobytes() is C order; np.ascontiguousarray would turn a scalar into shape [1].
        out[name] = {"dtype": NAMES[a.dtype], "shape": list(a.shape), "hex": a.astype(a.dtype.newbyteorder("<")).tobytes(order="C").hex()}
    return {"metadata": metadata or {}, "tensors": out}


def sample():
    rng = np.random.default_rng(1234)
    return {
        "model.embed_tokens.weight": rng.standard_normal((5, 4)).astype(np.float32),
        "model.norm.weight": rng.standard_normal(7).astype(np.float16),
        "lm_head.scales": rng.standard_normal((2, 3)).astype(np.float64),
        "ids": rng.integers(-2**62, 2**62, size=3, dtype=np.int64),
        "counts": rng.integers(0, 2**63, size=2, dtype=np.uint64),
        "i32": rng.integers(-2**31, 2**31, size=(2, 2), dtype=np.int32),
        "u32": rng.integers(0, 2**32, size=3, dtype=np.uint32),
        "i16": rng.integers(-2**15, 2**15, size=5, dtype=np.int16),
        "u16": rng.integers(0, 2**16, size=1, dtype=np.uint16),
        "q.int8": rng.integers(-128, 128, size=(3, 3), dtype=np.int8),
        "bytes": rng.integers(0, 256, size=9, dtype=np.uint8),
        "mask": rng.integers(0, 2, size=4).astype(np.bool_),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def main():
    command, path = sys.argv[1], sys.argv[2]
    if command == "write":
        tensors = sample()
        metadata = {"format": "pt"}
        save_file(tensors, path, metadata=metadata)
        print(json.dumps(describe(tensors, metadata)))
    elif command == "read":
        tensors = load_file(path)
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata()
        print(json.dumps(describe(tensors, metadata)))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
