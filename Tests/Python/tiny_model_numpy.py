"""A second, independent reference for the tiny models: each family's forward pass written out in NumPy (float64)
from config.json and model.safetensors, compared with the logits transformers stored in reference.safetensors.

Usage: tiny_model_numpy.py [DIR ...]   (default: every family under Tests/Fixtures/tiny-models)
Prints the largest |difference| per family and exits non-zero when one exceeds 1e-4 (× max |logit|). Needs only
numpy and safetensors. Meant as readable documentation of what each family computes, and as a debugging aid: `layer`
outputs can be printed by editing `forward`.
"""
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file


def rms_norm(x, w, eps, offset):
    """RMSNorm over the last axis; Gemma scales by (1 + w), the others by w."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * (offset + w)


def inverse_frequencies(head_dim, theta, scaling):
    f = theta ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if scaling is None:
        return f
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "linear":
        return f / scaling["factor"]
    if kind == "llama3":
        # Llama 3.1: keep short wavelengths, divide long ones by the factor, interpolate in between.
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        original = scaling["original_max_position_embeddings"]
        wavelength = 2 * math.pi / f
        smooth = (original / wavelength - low) / (high - low)
        scaled = np.where(wavelength > original / low, f / factor, f)
        middle = (wavelength >= original / high) & (wavelength <= original / low)
        return np.where(middle, (1 - smooth) * f / factor + smooth * f, scaled)
    raise ValueError(f"rope type {kind}")


def rope(x, positions, inv_freq):
    """x [heads, T, d]: rotate the two halves of each head (Hugging Face's rotate_half layout)."""
    angles = positions[:, None] * inv_freq[None, :]          # [T, d/2]
    cos, sin = np.cos(angles), np.sin(angles)
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1 + np.exp(-x))


def forward(config, w, tokens):
    family = config["model_type"]
    gemma = family in ("gemma", "gemma3_text")  # (1 + w) norms, embedding × √width, GeGLU
    gemma3 = family == "gemma3_text"              # and: sliding windows, query_pre_attn_scalar, sandwich norms
    hidden, n_layers = config["hidden_size"], config["num_hidden_layers"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    eps, offset = config["rms_norm_eps"], (1.0 if gemma else 0.0)
    g = lambda name: w[name].astype(np.float64)  # noqa: E731
    T = len(tokens)
    positions = np.arange(T, dtype=np.float64)

    x = g("model.embed_tokens.weight")[tokens]                 # [T, hidden]
    if gemma:
        x = x * np.float32(hidden ** 0.5)
    for layer in range(n_layers):
        p = f"model.layers.{layer}."
        if gemma3:
            sliding = config["layer_types"][layer] == "sliding_attention"
            theta = config["rope_local_base_freq"] if sliding else config["rope_theta"]
            scaling = None if sliding else config.get("rope_scaling")
            window = config["sliding_window"] if sliding else None
            scale = config["query_pre_attn_scalar"] ** -0.5
        else:
            theta, scaling, window, scale = config["rope_theta"], config.get("rope_scaling"), None, head_dim ** -0.5
        inv_freq = inverse_frequencies(head_dim, theta, scaling)

        # Head counts from the weights' shapes: structurally pruned models have per-layer widths.
        heads, kv_heads = w[p + "self_attn.q_proj.weight"].shape[0] // head_dim, w[p + "self_attn.k_proj.weight"].shape[0] // head_dim
        h = rms_norm(x, g(p + "input_layernorm.weight"), eps, offset)
        q, k, v = (h @ g(p + f"self_attn.{n}_proj.weight").T for n in "qkv")
        if p + "self_attn.q_proj.bias" in w:
            q, k, v = (t + g(p + f"self_attn.{n}_proj.bias") for t, n in zip((q, k, v), "qkv"))
        q = q.reshape(T, heads, head_dim).transpose(1, 0, 2)     # [heads, T, d]
        k = k.reshape(T, kv_heads, head_dim).transpose(1, 0, 2)  # [kv_heads, T, d]
        v = v.reshape(T, kv_heads, head_dim).transpose(1, 0, 2)
        if p + "self_attn.q_norm.weight" in w:
            q = rms_norm(q, g(p + "self_attn.q_norm.weight"), eps, offset)
            k = rms_norm(k, g(p + "self_attn.k_norm.weight"), eps, offset)
        q, k = rope(q, positions, inv_freq), rope(k, positions, inv_freq)
        i, j = np.arange(T)[:, None], np.arange(T)[None, :]
        allowed = j <= i
        if window is not None:
            allowed &= j > i - window
        out = np.empty((heads, T, head_dim))
        for hd in range(heads):
            kv = hd // (heads // kv_heads)
            scores = np.where(allowed, q[hd] @ k[kv].T * scale, -np.inf)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            out[hd] = (scores / scores.sum(axis=-1, keepdims=True)) @ v[kv]
        attention = out.transpose(1, 0, 2).reshape(T, heads * head_dim) @ g(p + "self_attn.o_proj.weight").T
        if gemma3:
            x = x + rms_norm(attention, g(p + "post_attention_layernorm.weight"), eps, offset)
            h = rms_norm(x, g(p + "pre_feedforward_layernorm.weight"), eps, offset)
        else:
            x = x + attention
            h = rms_norm(x, g(p + "post_attention_layernorm.weight"), eps, offset)
        act = gelu_tanh if gemma else silu
        mlp = (act(h @ g(p + "mlp.gate_proj.weight").T) * (h @ g(p + "mlp.up_proj.weight").T)) @ g(p + "mlp.down_proj.weight").T
        if gemma3:
            mlp = rms_norm(mlp, g(p + "post_feedforward_layernorm.weight"), eps, offset)
        x = x + mlp
    x = rms_norm(x, g("model.norm.weight"), eps, offset)
    output = g("lm_head.weight") if "lm_head.weight" in w else g("model.embed_tokens.weight")
    return x @ output.T                                       # [T, vocab]


def check(directory):
    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    weights = load_file(os.path.join(directory, "model.safetensors"))
    reference = load_file(os.path.join(directory, "reference.safetensors"))
    logits = forward(config, weights, reference["tokens"].astype(np.int64))
    diff = np.abs(logits - reference["logits"]).max()
    scale = np.abs(reference["logits"]).max()
    print(f"{os.path.basename(directory)}: max |numpy - transformers| = {diff:.2e} (max |logit| {scale:.2f})")
    return diff <= 1e-4 * scale


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.join(here, "..", "Fixtures", "tiny-models")
    dirs = sys.argv[1:] or sorted(os.path.join(root, d) for d in os.listdir(root)
                                  if os.path.isdir(os.path.join(root, d)))
    ok = [check(d) for d in dirs]
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
