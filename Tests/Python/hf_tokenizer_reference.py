"""Hugging Face tokenizer.json files and their reference encodings, for Squish's tokenizer tests.

Usage: hf_tokenizer_reference.py MODEL.gguf OUT_DIR STRINGS.json
From the GGUF's vocabulary and merges, builds one byte-level BPE tokenizer per pre-tokenizer kind with the
`tokenizers` package:
- gpt2:   ByteLevel(add_prefix_space=False, use_regex=True)
- smollm: Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)]
- llama3: Sequence[Split(Regex(Llama 3 pattern), "isolated"), ByteLevel(add_prefix_space=False, use_regex=False)],
          plus a TemplateProcessing post-processor that puts <|im_start|> (id 1) before the text
- qwen2:  as llama3 with Qwen2's pattern, no post-processor
The GGUF's control tokens are added as special tokens (so their text is always matched). Writes OUT_DIR/<kind>.json
(merges as ["a", "b"] pairs, as `tokenizers` saves them), OUT_DIR/smollm-string-merges.json (the same tokenizer with
"a b" merges), and OUT_DIR/<kind>.ids.json: the ids of every string of STRINGS.json (a JSON list), encoded with
add_special_tokens=True.
"""
import json
import sys

from gguf import GGUFReader
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from pretokenizer_reference import LLAMA3, QWEN2  # noqa: E402


def field(reader, name):
    f = reader.fields[name]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def main():
    model, out_dir, strings_path = sys.argv[1:]
    r = GGUFReader(model)
    tokens = field(r, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in field(r, "tokenizer.ggml.merges")]
    tf = r.fields["tokenizer.ggml.token_type"]
    types = [int(tf.parts[i][0]) for i in tf.data]
    specials = [t for t, ty in zip(tokens, types) if ty == 3]
    with open(strings_path, encoding="utf-8") as f:
        strings = json.load(f)

    def split(pattern):
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])

    kinds = {
        "gpt2": pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        "smollm": pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]),
        "llama3": split(LLAMA3),
        "qwen2": split(QWEN2),
    }
    for name, pre in kinds.items():
        tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
        tk.pre_tokenizer = pre
        tk.decoder = decoders.ByteLevel()
        tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
        if name == "llama3":
            tk.post_processor = processors.TemplateProcessing(
                single="<|im_start|> $A", special_tokens=[("<|im_start|>", tokens.index("<|im_start|>"))])
        text = tk.to_str()
        with open(f"{out_dir}/{name}.json", "w", encoding="utf-8") as f:
            f.write(text)
        if name == "smollm":
            j = json.loads(text)
            j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
            with open(f"{out_dir}/smollm-string-merges.json", "w", encoding="utf-8") as f:
                json.dump(j, f)
        ids = [e.ids for e in tk.encode_batch(strings, add_special_tokens=True)]
        with open(f"{out_dir}/{name}.ids.json", "w") as f:
            json.dump(ids, f)


if __name__ == "__main__":
    main()
