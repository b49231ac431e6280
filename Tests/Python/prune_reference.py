"""Independent references for `squish prune` (NumPy only).

  prune_reference.py forward DIR PLAN.json TOKENS.i32 OUT.f32
      Cuts the tiny checkpoint DIR (config.json + model.safetensors) down to PLAN (JSON: keptLayers, ffnChannels,
      kvGroups, as Squish's StructurePlan: kept blocks by input index; per kept block the FFN channels and the KV
      groups kept, a KV group being one KV head with the query heads that share it), runs tiny_model_numpy's forward
      pass (float64) on the tokens (int32) and writes the logits [tokens x vocab] as float32.
  prune_reference.py mask W.f32 DIAG.f32 ROWS COLUMNS N M OUT.u8
      Wanda's mask (Sun et al. 2023, eq. 1: score |W_ij| * ||X_j||, ||X_j|| = sqrt(DIAG_j)): in every row, within
      every M consecutive weights the N of largest score are kept. Writes 1 (kept) / 0 per weight, row-major.
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_model_numpy  # noqa: E402


def cut(config, w, plan):
    """The checkpoint's tensors for the pruned model (renumbered blocks) and its config."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    kv_heads = config["num_key_value_heads"]
    d = config.get("head_dim") or hidden // heads
    group = heads // kv_heads
    out = {k: v for k, v in w.items() if not k.startswith("model.layers.")}
    for i, o in enumerate(plan["keptLayers"]):
        src, dst = f"model.layers.{o}.", f"model.layers.{i}."
        groups = plan["kvGroups"][i]
        q_rows = [h * d + j for g in groups for h in range(g * group, (g + 1) * group) for j in range(d)]
        kv_rows = [g * d + j for g in groups for j in range(d)]
        channels = plan["ffnChannels"][i]
        for name, t in w.items():
            if not name.startswith(src):
                continue
            rest = name[len(src):]
            if rest in ("self_attn.q_proj.weight", "self_attn.q_proj.bias"):
                t = t[q_rows]
            elif rest.startswith(("self_attn.k_proj.", "self_attn.v_proj.")):
                t = t[kv_rows]
            elif rest == "self_attn.o_proj.weight":
                t = t[:, q_rows]
            elif rest in ("mlp.gate_proj.weight", "mlp.up_proj.weight"):
                t = t[channels]
            elif rest == "mlp.down_proj.weight":
                t = t[:, channels]
            out[dst + rest] = t
    config = dict(config)
    config["num_hidden_layers"] = len(plan["keptLayers"])
    if "layer_types" in config:
        config["layer_types"] = [config["layer_types"][o] for o in plan["keptLayers"]]
    return config, out


def main():
    if sys.argv[1] == "forward":
        directory, plan_path, tokens_path, out_path = sys.argv[2:6]
        with open(os.path.join(directory, "config.json")) as f:
            config = json.load(f)
        with open(plan_path) as f:
            plan = json.load(f)
        config, weights = cut(config, load_file(os.path.join(directory, "model.safetensors")), plan)
        tokens = np.fromfile(tokens_path, dtype=np.int32).astype(np.int64)
        tiny_model_numpy.forward(config, weights, tokens).astype(np.float32).tofile(out_path)
    elif sys.argv[1] == "mask":
        w_path, diag_path, rows, columns, n, m, out_path = sys.argv[2:9]
        rows, columns, n, m = int(rows), int(columns), int(n), int(m)
        w = np.fromfile(w_path, dtype=np.float32).reshape(rows, columns).astype(np.float64)
        score = np.abs(w) * np.sqrt(np.fromfile(diag_path, dtype=np.float32).astype(np.float64))[None, :]
        groups = score.reshape(rows, columns // m, m)
        # Stable sort of the negated scores: among equal scores the earlier position is kept.
        order = np.argsort(-groups, axis=-1, kind="stable")[..., :n]
        mask = np.zeros_like(groups, dtype=np.uint8)
        np.put_along_axis(mask, order, 1, axis=-1)
        mask.reshape(rows, columns).tofile(out_path)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
