"""Reference token ids from the Hugging Face `tokenizers` package, for Squish's tokenizer tests.

Usage: tokenizer_reference.py MODEL.gguf OUT_DIR FILE...
Builds the default model's tokenizer exactly as its Hugging Face tokenizer.json describes it, from the GGUF's own
vocabulary and merges: BPE, pre-tokenizer Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False,
use_regex=True)], no post-processor. For each FILE (UTF-8), encodes every line (split on "\n", without the newline)
and writes OUT_DIR/<index>.ids: per line a little-endian u32 count followed by that many u32 ids.
"""
import struct
import sys

from gguf import GGUFReader
from tokenizers import Tokenizer, models, pre_tokenizers


def strings(reader, name):
    f = reader.fields[name]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def main():
    model, out_dir, *files = sys.argv[1:]
    r = GGUFReader(model)
    tokens = strings(r, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in strings(r, "tokenizer.ggml.merges")]
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    for index, path in enumerate(files):
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
        encodings = tk.encode_batch(lines, add_special_tokens=False)
        with open(f"{out_dir}/{index}.ids", "wb") as out:
            for e in encodings:
                out.write(struct.pack(f"<I{len(e.ids)}I", len(e.ids), *e.ids))


if __name__ == "__main__":
    main()
