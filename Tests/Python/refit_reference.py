#!/usr/bin/env python3
"""Independent numpy least-squares refit of Q4_1 block parameters with the codes fixed.

usage: refit_reference.py W.f32 H.f64 BLOCKS.q4_1 ROWS COLS
W: [ROWS x COLS] float32 original weights, H: [COLS x COLS] float64 (sum of x^T x), BLOCKS: Q4_1 blocks of the
quantized rows (f16 d, f16 m, 16 bytes of nibbles: weight j in the low nibble of byte j, weight j + 16 in the high).
Reads every block's codes, solves min_theta (w - A theta)^T (H + lambda I) (w - A theta) per row with np.linalg.lstsq
on the Cholesky-weighted system (lambda = 1% of H's mean diagonal, as GPTQ damps), rounds the parameters to f16 and
prints the total error tr((W - Q) H (W - Q)^T) of those refitted rows.
"""
import sys
import numpy as np

wpath, hpath, bpath, rows, cols = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
W = np.fromfile(wpath, dtype=np.float32).reshape(rows, cols).astype(np.float64)
H = np.fromfile(hpath, dtype=np.float64).reshape(cols, cols)
raw = np.fromfile(bpath, dtype=np.uint8).reshape(rows, cols // 32, 20)
nib = raw[:, :, 4:]
codes = np.concatenate([nib & 15, nib >> 4], axis=2).reshape(rows, cols).astype(np.float64)

Hd = H + 0.01 * np.mean(np.diag(H)) * np.eye(cols)
L = np.linalg.cholesky(Hd)  # Hd = L L^T, so the weighted error is |L^T (w - A theta)|^2
groups = cols // 32
total = 0.0
for r in range(rows):
    A = np.zeros((cols, 2 * groups))
    for g in range(groups):
        A[g * 32:(g + 1) * 32, 2 * g] = codes[r, g * 32:(g + 1) * 32]
        A[g * 32:(g + 1) * 32, 2 * g + 1] = 1
    theta = np.linalg.lstsq(L.T @ A, L.T @ W[r], rcond=None)[0]
    theta = theta.astype(np.float16).astype(np.float64)
    e = W[r] - A @ theta
    total += e @ H @ e
print(repr(float(total)))
