"""Tiny random-weight reference models, one per family, with Hugging Face `transformers`' logits.

Run once by a developer (not by CI) after `squish fetch` (the tokenizers are trained on the cached Austen corpus):

    pip install torch transformers tokenizers safetensors numpy   # torch: the CPU build is enough
    python3 Tests/Python/make_tiny_models.py [--out Tests/Fixtures/tiny-models] [--families llama,qwen2,qwen3,gemma3,gemma]

Writes, per family, Tests/Fixtures/tiny-models/<family>/:
- config.json          the real model's config.json layout (legacy keys: rope_theta, rope_scaling, rope_local_base_freq,
                       as the published checkpoints have them), tiny dimensions
- model.safetensors    F32 weights under Hugging Face names (no lm_head.weight when the embeddings are tied)
- tokenizer.json       a small tokenizer of the family's kind, trained on a few kB of Austen
- tokenizer_config.json  special tokens and the family's real chat template
- reference.safetensors  tokens (I32 [T]) and logits (F32 [T, vocab], every position) from transformers (eager
                       attention, float32), with string metadata: family, seed, text, transformers and torch versions,
                       logits_max_abs, logits_std
Then it checks its own output: the saved directory reloads with AutoModelForCausalLM and AutoTokenizer and gives the
same logits bit for bit and the same tokens, the tokenizer.json alone (the `tokenizers` package) gives the same
tokens, and tiny_model_numpy.py's forward pass (NumPy, float64, written from the families' definitions) agrees with
the logits to 1e-4 of their largest magnitude. Deterministic for a given seed and library versions.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import save_file as save_torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pretokenizer_reference import LLAMA3, QWEN2  # noqa: E402

SEED = 20250617
SEQUENCE = 40

# The text whose tokens are fed to the models: Austen with a few characters outside the training alphabet (byte
# fallback / byte-level pieces), cut to SEQUENCE tokens.
REFERENCE_TEXT = ("\u201cMy dear Mr. Bennet,\u201d said his lady to him one day, \u201chave you heard that Netherfield "
                  "Park is let at last?\u201d \u2014 caf\u00e9 \u00fcber na\u00efve 42 \U0001F600 It is a truth "
                  "universally acknowledged.")

# The published chat templates (tokenizer_config.json of Meta-Llama-3-8B-Instruct, Qwen2.5-*-Instruct, Qwen3-0.6B,
# gemma-3-*-it, gemma-7b-it), one file each.
TEMPLATES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chat_templates")


def template(name):
    with open(os.path.join(TEMPLATES_DIR, name), encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------------------------------------------------------
# Tokenizers


def training_lines(austen_dir, limit=12_000):
    """The first `limit` bytes of Pride and Prejudice after its title page, as lines."""
    with open(os.path.join(austen_dir, "prideprejudice.txt"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("It is a truth")
    return [line for line in text[start:start + limit].split("\n") if line.strip()]


def byte_level_tokenizer(lines, pattern, merges_wanted, specials, normalizer=None, bos=None):
    """Byte-level BPE (Llama 3 / Qwen2 layout): Split(pattern, isolated) + ByteLevel(use_regex=False); the 256 byte
    tokens, then the merges, then the special tokens at the end of the vocabulary."""
    tk = Tokenizer(models.BPE())
    if normalizer is not None:
        tk.normalizer = normalizer
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=256 + merges_wanted, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tk.train_from_iterator(lines, trainer)
    trained = json.loads(tk.to_str())
    vocab = trained["model"]["vocab"]
    merges = trained["model"]["merges"]
    out = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m) for m in merges], fuse_unk=False, byte_fallback=False,
                               continuing_subword_prefix="", end_of_word_suffix=""))
    if normalizer is not None:
        out.normalizer = normalizer
    out.pre_tokenizer = tk.pre_tokenizer
    out.decoder = decoders.ByteLevel()
    out.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if bos is not None:
        out.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                          special_tokens=[(bos, out.token_to_id(bos))]),
        ])
    return out


def gemma_tokenizer(lines, pieces_wanted, specials):
    """SentencePiece-style BPE as Gemma's tokenizer.json has it: normalizer Replace(" " -> "▁"), the no-op
    Split(" ", merged_with_previous) pre-tokenizer transformers' GemmaTokenizer installs, byte fallback to the 256
    <0xXX> tokens, <bos> added in front. Ids: the special tokens first (<pad> 0, <eos> 1, <bos> 2, <unk> 3, as
    Gemma's), then the byte tokens, then the learned pieces (characters and merges)."""
    tk = Tokenizer(models.BPE())
    tk.normalizer = normalizers.Replace(" ", "\u2581")
    # Training splits at ▁ (kept at the start of each word) so that merges do not cross words, like SentencePiece's.
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True)
    trainer = trainers.BpeTrainer(vocab_size=pieces_wanted, show_progress=False, limit_alphabet=80)
    tk.train_from_iterator(lines, trainer)
    trained = json.loads(tk.to_str())
    learned = sorted(trained["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {}
    for s in specials:
        vocab[s] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in learned:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = [tuple(m) for m in trained["model"]["merges"]]
    out = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    out.normalizer = normalizers.Replace(" ", "\u2581")
    out.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    out.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    out.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    out.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B",
                                                       special_tokens=[("<bos>", vocab["<bos>"])])
    return out


# ---------------------------------------------------------------------------------------------------------------
# Families: tokenizer, tokenizer_config.json and config.json (the published files' keys, tiny values)


def family_llama(lines):
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tk = byte_level_tokenizer(lines, LLAMA3, 140, specials, bos="<|begin_of_text|>")
    vocab = tk.get_vocab_size()
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False, "hidden_act": "silu",
        "bos_token_id": tk.token_to_id("<|begin_of_text|>"), "eos_token_id": tk.token_to_id("<|eot_id|>"),
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "max_position_embeddings": 512, "initializer_range": 0.02, "rms_norm_eps": 1e-05,
        "pretraining_tp": 1, "rope_theta": 500000.0,
        # Llama 3.1's factors with a small original context, so that the 8 frequencies of a 16-wide head fall in
        # all three bands: wavelength < 64/4 kept, > 64 divided by 8, in between smoothly interpolated.
        "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 64, "rope_type": "llama3"},
        "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True, "vocab_size": vocab,
    }
    tok_config = {
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "clean_up_tokenization_spaces": True,
        "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 512,
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": template("llama3.jinja"),
    }
    return tk, config, tok_config


def family_qwen2(lines):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tk = byte_level_tokenizer(lines, QWEN2, 140, specials, normalizer=normalizers.NFC())
    vocab = tk.get_vocab_size()
    config = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "attention_dropout": 0.0,
        "bos_token_id": tk.token_to_id("<|endoftext|>"), "eos_token_id": tk.token_to_id("<|im_end|>"),
        "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
        "max_window_layers": 2, "initializer_range": 0.02, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "sliding_window": 512, "use_sliding_window": False, "tie_word_embeddings": True, "torch_dtype": "float32",
        "use_cache": True,
        # As in the published Qwen2.5 models, the embedding has more rows than the tokenizer has tokens.
        "vocab_size": (vocab + 63) // 64 * 64,
    }
    tok_config = {
        "add_prefix_space": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "errors": "replace", "split_special_tokens": False, "model_max_length": 512,
        "clean_up_tokenization_spaces": False, "tokenizer_class": "Qwen2Tokenizer",
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "chat_template": template("qwen2.5-instruct.jinja"),
    }
    return tk, config, tok_config


def family_qwen3(lines):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tk = byte_level_tokenizer(lines, QWEN2, 140, specials, normalizer=normalizers.NFC())
    # Qwen3's <think> and </think> are added tokens that are not special.
    tk.add_tokens([AddedToken("<think>", special=False, normalized=False),
                   AddedToken("</think>", special=False, normalized=False)])
    vocab = tk.get_vocab_size()
    config = {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": tk.token_to_id("<|endoftext|>"),
        "eos_token_id": tk.token_to_id("<|im_end|>"), "hidden_act": "silu", "hidden_size": 64,
        # head_dim is its own setting: 4 heads of 24 make q 96 wide, more than hidden_size.
        "head_dim": 24, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 512, "max_window_layers": 2,
        "initializer_range": 0.02, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000.0,
        "sliding_window": None, "use_sliding_window": False, "tie_word_embeddings": True, "torch_dtype": "float32",
        "use_cache": True, "vocab_size": (vocab + 63) // 64 * 64,
    }
    tok_config = {
        "add_prefix_space": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "errors": "replace", "split_special_tokens": False, "model_max_length": 512,
        "clean_up_tokenization_spaces": False, "tokenizer_class": "Qwen2Tokenizer",
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "chat_template": template("qwen3.jinja"),
    }
    return tk, config, tok_config


def family_gemma3(lines):
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
    tk = gemma_tokenizer(lines, 130, specials)
    vocab = tk.get_vocab_size()
    config = {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "attention_bias": False,
        "attention_dropout": 0.0, "attn_logit_softcapping": None, "final_logit_softcapping": None,
        "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
        "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 24,
        # Scores are scaled by query_pre_attn_scalar^-1/2, not head_dim^-1/2.
        "query_pre_attn_scalar": 40,
        "max_position_embeddings": 512, "initializer_range": 0.02, "rms_norm_eps": 1e-06,
        # Sliding layers see the last 8 positions (themselves included), shorter than the 40-token sequence.
        "sliding_window": 8, "sliding_window_pattern": 3,
        "layer_types": ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
        # As Gemma 3 4B and larger: linear scaling (positions / 8) on the full-attention layers only.
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "use_bidirectional_attention": False, "tie_word_embeddings": True, "torch_dtype": "float32",
        "use_cache": True, "vocab_size": vocab,
    }
    tok_config = {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<bos>", "eos_token": "<eos>",
        "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>", "spaces_between_special_tokens": False,
        "clean_up_tokenization_spaces": False, "model_max_length": 512, "tokenizer_class": "GemmaTokenizer",
        "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"],
        "chat_template": template("gemma3.jinja"),
    }
    return tk, config, tok_config


def family_gemma(lines):
    """Gemma (the first generation) as gemma-2b/-7b's config.json: multi-query attention, a head size of its own
    (4 heads of 24 make q 96 wide on a width of 64, as the 7B's 16 × 256 on 3072), `hidden_act` "gelu" (the
    released configs' name, which transformers runs as the tanh approximation) and Gemma 1.1's
    `hidden_activation`, RoPE θ 10000, tied output; no sliding window, QK-norm or post-norms."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
    tk = gemma_tokenizer(lines, 130, specials)
    vocab = tk.get_vocab_size()
    config = {
        "architectures": ["GemmaForCausalLM"], "model_type": "gemma", "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
        "hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 24,
        "max_position_embeddings": 512, "initializer_range": 0.02, "rms_norm_eps": 1e-06, "rope_scaling": None,
        "rope_theta": 10000.0, "tie_word_embeddings": True, "torch_dtype": "float32", "use_cache": True,
        "vocab_size": vocab,
    }
    tok_config = {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<bos>", "eos_token": "<eos>",
        "pad_token": "<pad>", "unk_token": "<unk>", "spaces_between_special_tokens": False,
        "clean_up_tokenization_spaces": False, "model_max_length": 512, "tokenizer_class": "GemmaTokenizer",
        "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"],
        "chat_template": template("gemma.jinja"),
    }
    return tk, config, tok_config


FAMILIES = {"llama": family_llama, "qwen2": family_qwen2, "qwen3": family_qwen3, "gemma3": family_gemma3,
            "gemma": family_gemma}


# ---------------------------------------------------------------------------------------------------------------
# Weights


def randomize(model, family, generator):
    """Random weights whose logits have a standard deviation of a few units: linear layers N(0, 1/in), embeddings
    N(0, 0.25²) (tied: they are also the output matrix), biases N(0, 0.3²), RMSNorm weights around their neutral
    value with spread 0.3 (Gemma stores w for a (1 + w) scale, the others the scale itself)."""
    config = model.config
    with torch.no_grad():
        for name, p in model.named_parameters():
            def normal(std, mean=0.0):
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float32) * std + mean)
            if name.endswith("embed_tokens.weight"):
                normal(0.25)
            elif "norm" in name:
                normal(0.3, 0.0 if family in ("gemma", "gemma3") else 1.0)
            elif name.endswith(".bias"):
                normal(0.3)
            elif name == "lm_head.weight":
                normal(2.0 / math.sqrt(config.hidden_size))
            elif name.endswith(".weight") and p.dim() == 2:
                normal(1.0 / math.sqrt(p.shape[1]))
            else:
                raise ValueError(f"no rule for parameter {name} {tuple(p.shape)}")


def write_safetensors(path, arrays, metadata):
    """A safetensors file with its header's keys sorted, so that the same arrays give the same bytes (the
    `safetensors` package writes the metadata in hash order)."""
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, a in arrays.items():
        blob = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        dtype = {np.dtype(np.int32): "I32", np.dtype(np.float32): "F32"}[a.dtype]
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def logits_of(model, tokens):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([tokens], dtype=torch.long), use_cache=False)
    return out.logits[0].to(torch.float32).numpy()


def build(family, out_root, lines):
    directory = os.path.join(out_root, family)
    os.makedirs(directory, exist_ok=True)
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    tk, config, tok_config = FAMILIES[family](lines)

    tk.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tok_config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")

    tokens = tk.encode(REFERENCE_TEXT, add_special_tokens=True).ids
    if len(tokens) < SEQUENCE:
        raise SystemExit(f"{family}: the reference text gives only {len(tokens)} tokens")
    tokens = tokens[:SEQUENCE]
    text = tk.decode(tokens, skip_special_tokens=True)

    hf_config = transformers.AutoConfig.from_pretrained(directory)
    model = AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager", dtype=torch.float32).eval()
    randomize(model, family, generator)
    logits = logits_of(model, tokens)

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if config["tie_word_embeddings"]:
        state.pop("lm_head.weight", None)
    save_torch(state, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})

    metadata = {
        "family": family, "seed": str(SEED), "text": text, "sequence": str(len(tokens)),
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "attention": "eager, float32", "logits_max_abs": repr(float(np.abs(logits).max())),
        "logits_std": repr(float(logits.std())),
    }
    write_safetensors(os.path.join(directory, "reference.safetensors"),
                      {"tokens": np.asarray(tokens, dtype=np.int32), "logits": np.asarray(logits, dtype=np.float32)},
                      metadata)

    check(family, directory, tokens, text, logits, model)
    sizes = {name: os.path.getsize(os.path.join(directory, name)) for name in sorted(os.listdir(directory))}
    print(f"{family}: vocab {config['vocab_size']} (tokenizer {tk.get_vocab_size()}), {len(tokens)} tokens, logits std "
          f"{logits.std():.3f}, max |logit| {np.abs(logits).max():.3f}; files: "
          + ", ".join(f"{n} {s:,}" for n, s in sizes.items()) + f"; total {sum(sizes.values()):,} bytes")


def check(family, directory, tokens, text, logits, model):
    """The saved files reproduce the reference with transformers and tokenizers alone."""
    reloaded = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager", dtype=torch.float32).eval()
    assert type(reloaded).__name__ == json.load(open(os.path.join(directory, "config.json")))["architectures"][0]
    again = logits_of(reloaded, tokens)
    if not np.array_equal(again, logits):
        raise SystemExit(f"{family}: reloaded model differs, max |Δ| {np.abs(again - logits).max()}")
    sdpa = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="sdpa", dtype=torch.float32).eval()
    print(f"{family}: sdpa attention differs from eager by at most {np.abs(logits_of(sdpa, tokens) - logits).max():.2e}")
    # The parameters are the ones that were randomized (nothing re-initialized on load, tied weights shared).
    for (n, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        if not torch.equal(a, b):
            raise SystemExit(f"{family}: parameter {n} changed on reload")
    saved = load_numpy(os.path.join(directory, "reference.safetensors"))
    if saved["tokens"].tolist() != tokens or not np.array_equal(saved["logits"], logits):
        raise SystemExit(f"{family}: reference.safetensors does not read back")
    fast = Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(directory)
    samples = [REFERENCE_TEXT, text, "  two  spaces, tabs\tand\nnewlines\n\n", "ünïcödé 漢字 😀 <unk>", ""]
    for s in samples:
        a = fast.encode(s, add_special_tokens=True).ids
        b = auto(s, add_special_tokens=True)["input_ids"]
        if a != b:
            raise SystemExit(f"{family}: AutoTokenizer and tokenizers disagree on {s!r}: {b} vs {a}")
    if fast.encode(text, add_special_tokens=True).ids != tokens:
        raise SystemExit(f"{family}: the metadata's text does not encode to the reference tokens")
    rendered = auto.apply_chat_template([{"role": "user", "content": "Hello"}], tokenize=False,
                                        add_generation_prompt=True)
    if not rendered:
        raise SystemExit(f"{family}: the chat template rendered nothing")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.normpath(os.path.join(here, "..", "Fixtures", "tiny-models"))
    cache = os.environ.get("SQUISH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "squish")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=default_out)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--austen", default=os.path.join(cache, "corpora", "austen"),
                        help="directory with prideprejudice.txt (from `squish fetch`)")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    lines = training_lines(args.austen)
    for family in args.families.split(","):
        build(family, args.out, lines)
    # The independent NumPy forward pass agrees with transformers' logits.
    import tiny_model_numpy
    if not all(tiny_model_numpy.check(os.path.join(args.out, f)) for f in args.families.split(",")):
        raise SystemExit("the NumPy forward pass disagrees with transformers")


if __name__ == "__main__":
    main()
