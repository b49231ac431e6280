#!/usr/bin/env bash
# Runs Squish's whole test suite on a fresh machine: installs the Python references the tests
# compare against (and Chromium for the web page test), fetches the models (the default SmolLM2 and
# Gemma-3-270M) and corpora into the cache, runs `swift test`, the server tests in Python (Tests/Python/serve),
# builds the example package that embeds Squish (Examples/EmbedSquish), then fuzzes the file parsers briefly
# (scripts/fuzz.sh; FUZZ_SECONDS per target, default 15, 0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r Tests/Python/requirements.txt
# GNU time measures the peak memory of the CLI tests' hostile-file runs.
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }
# The chat page is tested in a real headless Chromium (Debian's package); the test skips, saying so, without it.
if ! command -v chromium > /dev/null && command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium > /dev/null 2>&1 \
        || (apt-get update -q > /dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium > /dev/null 2>&1) \
        || echo "test.sh: could not install chromium; the web page test will be skipped" >&2
fi
swift build -c release --product squish
.build/release/squish fetch --model smollm2-135m --model gemma3-270m
swift test -c release "$@"
# `squish serve` as a process: the openai client, bad input, SIGTERM under load, schemathesis (250 cases per operation), the page.
python3 -m pytest -q Tests/Python/serve
# A package depending on Squish by path builds.
swift build --package-path Examples/EmbedSquish
seconds=${FUZZ_SECONDS:-15}
if [ "$seconds" -gt 0 ]; then ./scripts/fuzz.sh "$seconds"; fi
