#!/usr/bin/env bash
# Runs Squish's whole test suite on a fresh machine: installs the Python references the tests
# compare against, fetches the models (the default SmolLM2 and Gemma-3-270M) and corpora into the cache, then runs
# `swift test`.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r Tests/Python/requirements.txt
swift build -c release --product squish
.build/release/squish fetch --model smollm2-135m --model gemma3-270m
swift test -c release "$@"
