#!/usr/bin/env python3
"""Independent numpy GPTQ (Frantar et al. 2022, Algorithm 1 without lazy batching) into Q4_0 blocks of 32.

usage: gptq_reference.py W.f32 H.f64 ROWS COLS OUT.f32
W: [ROWS x COLS] float32, H: [COLS x COLS] float64 (sum of x^T x). Writes the quantized weights as float32.
Each block's scale is taken, when its first column is reached, from the block's current (error-compensated)
weights as Q4_0 does: d = f16(x[argmax |x|] / -8); q = clip(round_half_away(x / d) + 8, 0, 15); value d (q - 8).
"""
import sys
import numpy as np

wpath, hpath, rows, cols, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
W = np.fromfile(wpath, dtype=np.float32).reshape(rows, cols).astype(np.float64)
H = np.fromfile(hpath, dtype=np.float64).reshape(cols, cols).copy()

dead = np.diag(H) == 0
H[dead, dead] = 1
W[:, dead] = 0
H += 0.01 * np.mean(np.diag(H)) * np.eye(cols)
Hinv = np.linalg.cholesky(np.linalg.inv(H)).T  # upper factor of H^-1

Q = np.zeros_like(W)
d = np.zeros(rows)
for j in range(cols):
    if j % 32 == 0:
        block = W[:, j:j + 32]
        s = block[np.arange(rows), np.argmax(np.abs(block), axis=1)]
        d = (s / -8).astype(np.float32).astype(np.float16).astype(np.float64)
    safe = np.where(d == 0, 1, d)
    t = W[:, j] / safe
    q = np.clip(np.sign(t) * np.floor(np.abs(t) + 0.5) + 8, 0, 15)
    q = np.where(d == 0, 8, q)
    Q[:, j] = d * (q - 8)
    err = (W[:, j] - Q[:, j]) / Hinv[j, j]
    W[:, j:] -= np.outer(err, Hinv[j, j:])
Q.astype(np.float32).tofile(out)
