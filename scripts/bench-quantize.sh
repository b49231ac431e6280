#!/usr/bin/env bash
# Times `squish quantize` on the default model: one warm-up run, then R timed runs (default 3); prints each run's
# seconds (from the command's own JSON) and the median. Extra arguments go to `squish quantize`
# (default: --method gptq --type Q4_0). Example: scripts/bench-quantize.sh 3 --method gptq --bits 4 --group 64
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--method gptq --type Q4_0)
swift build -c release --product squish >&2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
seconds=()
for i in $(seq 0 "$runs"); do
  s=$(.build/release/squish quantize "${args[@]}" --no-kl --json --out "$out/q.gguf" |
      python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["seconds"])')
  if [ "$i" -eq 0 ]; then echo "warm-up: $s s" >&2; else echo "run $i: $s s" >&2; seconds+=("$s"); fi
done
printf '%s\n' "${seconds[@]}" | sort -n | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; print("median %.1f s over %d runs (%s)" % (sorted(v)[len(v)//2], len(v), " ".join(sys.argv[1:])))' "${args[@]}"
