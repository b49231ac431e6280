"""Independent f32 numpy forward pass of a Llama-family GGUF model, for Squish's runtime tests.

Usage: llama_reference.py MODEL.gguf IDS_JSON OUT.bin
IDS_JSON holds a list of prompts (lists of token ids). OUT.bin receives, for each prompt, the logits of every
position as little-endian float32 [tokens x vocab], prompts concatenated.

Weights are dequantized with the `gguf` package's numpy dequantizers; everything else is written here from the
Llama architecture description: RMSNorm, RoPE on adjacent pairs (GGUF's layout for llama), grouped-query causal
attention, SwiGLU feed-forward, tied output embedding when output.weight is absent.
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def main():
    model_path, ids_path, out_path = sys.argv[1:4]
    prompts = json.load(open(ids_path))
    r = GGUFReader(model_path)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()

    def meta(key, default=None):
        f = r.fields.get(f"{arch}.{key}")
        if f is None:
            return default
        return f.parts[-1][0].item()

    dim = meta("embedding_length")
    n_layers = meta("block_count")
    n_heads = meta("attention.head_count")
    n_kv = meta("attention.head_count_kv", n_heads)
    eps = meta("attention.layer_norm_rms_epsilon", 1e-5)
    base = meta("rope.freq_base", 10000.0)
    hd = dim // n_heads
    tensors = {t.name: t for t in r.tensors}

    def w(name):
        t = tensors[name]
        # ggml shape [ne0 = columns, ne1 = rows] -> numpy [rows, columns]
        shape = [int(x) for x in t.shape][::-1]
        return dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)

    emb = w("token_embd.weight")
    out_w = w("output.weight") if "output.weight" in tensors else emb
    norm_out = w("output_norm.weight")
    layers = []
    for i in range(n_layers):
        p = f"blk.{i}."
        layers.append({k: w(p + k + ".weight") for k in
                       ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]})

    def rmsnorm(x, g):
        return (x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True) + eps)).astype(np.float32) * g

    def rope(x, n):  # x: [T, heads, hd]; rotate pairs (2i, 2i+1) by pos * base^(-2i/hd)
        pos = np.arange(n, dtype=np.float64)[:, None]
        theta = base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        ang = pos * theta[None, :]
        c = np.cos(ang).astype(np.float32)[:, None, :]
        s = np.sin(ang).astype(np.float32)[:, None, :]
        a, b = x[..., 0::2], x[..., 1::2]
        y = np.empty_like(x)
        y[..., 0::2] = a * c - b * s
        y[..., 1::2] = a * s + b * c
        return y

    outputs = []
    for ids in prompts:
        n = len(ids)
        x = emb[ids]
        mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
        for L in layers:
            h = rmsnorm(x, L["attn_norm"])
            q = rope((h @ L["attn_q"].T).reshape(n, n_heads, hd), n)
            k = rope((h @ L["attn_k"].T).reshape(n, n_kv, hd), n)
            v = (h @ L["attn_v"].T).reshape(n, n_kv, hd)
            rep = n_heads // n_kv
            k = np.repeat(k, rep, axis=1)
            v = np.repeat(v, rep, axis=1)
            att = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask[None]
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            o = np.einsum("hqk,khd->qhd", att, v).reshape(n, n_heads * hd)
            x = x + o @ L["attn_output"].T
            h = rmsnorm(x, L["ffn_norm"])
            g = h @ L["ffn_gate"].T
            u = h @ L["ffn_up"].T
            x = x + ((g / (1 + np.exp(-g))) * u) @ L["ffn_down"].T
        logits = rmsnorm(x, norm_out) @ out_w.T
        outputs.append(logits.astype("<f4"))
    with open(out_path, "wb") as f:
        for o in outputs:
            f.write(o.tobytes())


if __name__ == "__main__":
    main()
