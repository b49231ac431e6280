#!/usr/bin/env bash
# The main job on the default model, from a fresh machine: build Squish, fetch SmolLM2-135M-Instruct
# (Q4_1 GGUF) and the text corpora into the cache, inspect the model and tokenize a sample.
set -euo pipefail
cd "$(dirname "$0")/.."

swift build -c release --product squish
squish=.build/release/squish
$squish fetch
$squish inspect --limit 12
