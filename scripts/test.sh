#!/usr/bin/env bash
# Runs Squish's whole test suite on a fresh machine: installs the Python references the tests
# compare against, fetches the models (the default SmolLM2 and Gemma-3-270M) and corpora into the cache, runs
# `swift test`, then fuzzes the file parsers briefly (scripts/fuzz.sh; FUZZ_SECONDS per target, default 15, 0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r Tests/Python/requirements.txt
# GNU time measures the peak memory of the CLI tests' hostile-file runs.
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }
swift build -c release --product squish
.build/release/squish fetch --model smollm2-135m --model gemma3-270m
swift test -c release "$@"
seconds=${FUZZ_SECONDS:-15}
if [ "$seconds" -gt 0 ]; then ./scripts/fuzz.sh "$seconds"; fi
