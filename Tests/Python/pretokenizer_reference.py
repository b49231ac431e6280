"""Reference pre-tokenization from the Hugging Face `tokenizers` package, for Squish's pre-tokenizer tests.

Usage: pretokenizer_reference.py IN.json OUT.json
IN.json is a list of strings. OUT.json maps each pre-tokenizer kind (gpt2, smollm, llama3, qwen2) to a list with,
per input string, the list of piece boundaries as [start, end] offsets counted in Unicode scalars.

The pre-tokenizers are the published ones:
- gpt2: ByteLevel(add_prefix_space=False, use_regex=True) (GPT-2's regular expression)
- smollm: Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)]
  (SmolLM2's tokenizer.json)
- llama3: Split on the Llama 3 regular expression (Meta's tiktoken pattern), behavior "isolated"
- qwen2: Split on Qwen2's regular expression (Llama 3's with single digits), behavior "isolated"
ByteLevel keeps offsets in the original string, so the boundaries compare directly.
"""
import json
import sys

from tokenizers import Regex, pre_tokenizers

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def kinds():
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return {
        "gpt2": byte_level,
        "smollm": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level]),
        "llama3": pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
        "qwen2": pre_tokenizers.Split(Regex(QWEN2), behavior="isolated", invert=False),
    }


def main():
    src, dst = sys.argv[1:]
    with open(src, encoding="utf-8") as f:
        strings = json.load(f)
    out = {}
    for name, pre in kinds().items():
        out[name] = [[[a, b] for _, (a, b) in pre.pre_tokenize_str(s)] for s in strings]
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
