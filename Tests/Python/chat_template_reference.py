"""Reference chat prompts rendered by Jinja2, for Squish's ChatTemplate tests.

Usage: chat_template_reference.py IN.json OUT.json
IN.json: {"templates": {name: jinja source}, "conversations": [[{"role", "content"}, ...], ...]}. OUT.json maps each
template name to the list of prompts (one per conversation, add_generation_prompt=True, bos_token "<|begin_of_text|>")
rendered the way Hugging Face's apply_chat_template does (trim_blocks and lstrip_blocks on).
"""
import json
import sys

from jinja2.sandbox import ImmutableSandboxedEnvironment


def main():
    src, dst = sys.argv[1:]
    with open(src, encoding="utf-8") as f:
        spec = json.load(f)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    out = {}
    for name, source in spec["templates"].items():
        template = env.from_string(source)
        out[name] = [template.render(messages=c, add_generation_prompt=True, bos_token="<|begin_of_text|>")
                     for c in spec["conversations"]]
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
