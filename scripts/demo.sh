#!/usr/bin/env bash
# The main job on the default model, from a fresh machine: build Squish, fetch SmolLM2-135M-Instruct
# (Q4_1 GGUF, 98 MB) and the text corpora into the cache, compress the model to a 70 MB budget
# (per-tensor levels chosen by importance and an evolutionary search on KL), evaluate it against
# the original on the first 60 kB of Pride and Prejudice (a text the search never sees), print a
# short table, and generate a sample with the compressed model.
set -euo pipefail
cd "$(dirname "$0")/.."

swift build -c release --product squish
squish=.build/release/squish
cache="${SQUISH_CACHE:-$HOME/.cache/squish}"
out="$cache/compressed/SmolLM2-135M-Instruct.70MB.gguf"
mkdir -p "$(dirname "$out")"

$squish fetch
echo; $squish compress --target-size 70MB --budget-minutes 10 --out "$out" --report "$cache/compressed/report-70MB"
echo; $squish run --model "$out" --prompt "The three most useful things to pack for a long hike are" -n 48
