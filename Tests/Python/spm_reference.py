"""A synthetic SentencePiece vocabulary and its reference encodings, for Squish's SentencePiece tests.

Usage: spm_reference.py MODEL.gguf OUT_DIR STRINGS.json
The default model is byte-level BPE, so this builds a Llama-style SentencePiece vocabulary from its tokens:
<unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then every normal token that decodes to valid UTF-8 with
spaces written as U+2581, scored -rank (distinct, so no ties), then any single character used by a piece but
missing. Writes OUT_DIR/spm.json ({"tokens", "scores", "types"} with GGUF token types).

The reference is the `tokenizers` package configured the way Hugging Face converts SentencePiece models: BPE with
byte_fallback, whose merges are every split (left, right) of every piece into two pieces, ordered by the piece's
score (highest first); normalizer Prepend("▁") then Replace(" ", "▁"); no pre-tokenizer. Merging the pair whose
result has the highest score is exactly llama.cpp's SPM algorithm when scores are distinct. Writes
OUT_DIR/spm-hf.json (that tokenizer) and OUT_DIR/spm.ids.json: the ids of every string of STRINGS.json, without
special tokens.
"""
import json
import sys

from gguf import GGUFReader
from tokenizers import Tokenizer, models, normalizers

sys.path.insert(0, __file__.rsplit("/", 1)[0])


def byte_decoder():
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[chr(b)] = b
        else:
            table[chr(256 + n)] = b
            n += 1
    return table


def main():
    model, out_dir, strings_path = sys.argv[1:]
    r = GGUFReader(model)
    f = r.fields["tokenizer.ggml.tokens"]
    gguf_tokens = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    tf = r.fields["tokenizer.ggml.token_type"]
    gguf_types = [int(tf.parts[i][0]) for i in tf.data]
    dec = byte_decoder()

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    pieces = []
    seen = set()
    for t, ty in zip(gguf_tokens, gguf_types):
        if ty != 1:
            continue
        try:
            text = bytes(dec[c] for c in t).decode("utf-8")
        except (UnicodeDecodeError, KeyError):
            continue
        piece = text.replace(" ", "\u2581")
        if piece and piece not in seen:
            seen.add(piece)
            pieces.append(piece)
    chars = sorted({c for p in pieces for c in p} - seen)
    pieces += chars
    tokens += pieces
    types += [1] * len(pieces)
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    with open(f"{out_dir}/spm.json", "w", encoding="utf-8") as out:
        json.dump({"tokens": tokens, "scores": scores, "types": types}, out)

    vocab = {t: i for i, t in enumerate(tokens)}
    merges = []
    for p in pieces:  # already in descending score order
        for k in range(1, len(p)):
            if p[:k] in vocab and p[k:] in vocab:
                merges.append((p[:k], p[k:]))
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=False))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    with open(f"{out_dir}/spm-hf.json", "w", encoding="utf-8") as out:
        out.write(tk.to_str())
    with open(strings_path, encoding="utf-8") as fh:
        strings = json.load(fh)
    ids = [e.ids for e in tk.encode_batch(strings, add_special_tokens=False)]
    with open(f"{out_dir}/spm.ids.json", "w") as out:
        json.dump(ids, out)


if __name__ == "__main__":
    main()
