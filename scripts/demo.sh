#!/usr/bin/env bash
# The main job on the default model, from a fresh machine: build Squish, fetch SmolLM2-135M-Instruct
# (Q4_1 GGUF) and the text corpora into the cache, inspect the model, tokenize a sample, generate
# text, measure perplexity on Pride and Prejudice and benchmark prompt processing and generation.
set -euo pipefail
cd "$(dirname "$0")/.."

swift build -c release --product squish
squish=.build/release/squish
cache="${SQUISH_CACHE:-$HOME/.cache/squish}"

$squish fetch
echo; $squish inspect --limit 12
echo; $squish tokenize "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife."
echo; $squish run --prompt "The three most useful things to pack for a long hike are" -n 64
echo; $squish perplexity --text "$cache/corpora/austen/prideprejudice.txt" --bytes 60000 --context 512
echo; $squish bench -p 512 -n 128 -r 3
