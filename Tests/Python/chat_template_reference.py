"""Reference chat prompts rendered by Jinja2, for Squish's ChatTemplate tests.

Usage: chat_template_reference.py IN.json OUT.json
IN.json: {"templates": {name: jinja source, or {"source": jinja source, "bos_token": text}},
          "conversations": [[{"role", "content"}, ...], ...],
          "variants": [{"add_generation_prompt": bool, "enable_thinking": bool or null}, ...]   (optional)}
OUT.json maps each template name to one entry per conversation: without "variants" the prompt rendered with
add_generation_prompt=True; with them, the list of prompts, one per variant (enable_thinking null: not passed, as
Hugging Face's apply_chat_template leaves it undefined unless asked). A prompt the template refuses (its
raise_exception, e.g. Gemma 1's "System role not supported") is null. Rendered the way apply_chat_template does:
a sandboxed environment with trim_blocks and lstrip_blocks on, `raise_exception` and `tojson` available,
bos_token "<|begin_of_text|>" unless the template gives its own.
"""
import json
import sys

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def main():
    src, dst = sys.argv[1:]
    with open(src, encoding="utf-8") as f:
        spec = json.load(f)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    variants = spec.get("variants")
    out = {}
    for name, entry in spec["templates"].items():
        source = entry["source"] if isinstance(entry, dict) else entry
        bos = entry.get("bos_token", "<|begin_of_text|>") if isinstance(entry, dict) else "<|begin_of_text|>"
        template = env.from_string(source)

        def render(messages, add_generation_prompt=True, enable_thinking=None):
            extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
            try:
                return template.render(messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos,
                                       **extra)
            except TemplateError:
                return None

        if variants is None:
            out[name] = [render(c) for c in spec["conversations"]]
        else:
            out[name] = [[render(c, v["add_generation_prompt"], v.get("enable_thinking")) for v in variants]
                         for c in spec["conversations"]]
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
