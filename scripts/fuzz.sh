#!/usr/bin/env bash
# Fuzzes Squish's parsers of untrusted files with libFuzzer: GGUF (with the tokenizer built from its metadata),
# safetensors headers, tokenizer.json and config.json. The targets live in Fuzz/ (a package that depends on this
# one by path) and are built with -sanitize=fuzzer,address (AddressSanitizer, with LeakSanitizer); each run stops at
# the first crash, leak, timeout or allocation above 100 MB. Seeds are written by Squish's own writers (with the
# cached default model's metadata when it is there) into .build-fuzz/seeds; what the fuzzer finds accumulates in
# .build-fuzz/corpus; a failing input is saved in .build-fuzz/artifacts.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 15)] [TARGET ...]   (targets: gguf safetensors tokenizer config)
# Extra libFuzzer flags: FUZZ_FLAGS="-runs=1000000" scripts/fuzz.sh 600 gguf
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-15}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gguf safetensors tokenizer config)

scratch=.build-fuzz
nice -n 5 swift build -c release --package-path Fuzz --scratch-path "$scratch" -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld 2>&1 | grep -v '^\[' || true
bin=$(swift build -c release --package-path Fuzz --scratch-path "$scratch" -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld --show-bin-path)
# The cache as Squish finds it ($SQUISH_CACHE, else $XDG_CACHE_HOME/squish, else ~/.cache/squish).
cache=${SQUISH_CACHE:-}
[ -n "$cache" ] || cache=${XDG_CACHE_HOME:+$XDG_CACHE_HOME/squish}
[ -n "$cache" ] || cache=$HOME/.cache/squish
model=${SQUISH_FUZZ_SEED_MODEL:-$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf}

executable() {
    case $1 in
        gguf) echo FuzzGGUF ;; safetensors) echo FuzzSafetensors ;; tokenizer) echo FuzzTokenizerJSON ;; config) echo FuzzHFConfig ;;
        *) echo "unknown target '$1' (gguf, safetensors, tokenizer, config)" >&2; exit 2 ;;
    esac
}

summary=()
status=0
for t in "${targets[@]}"; do
    exe=$bin/$(executable "$t")
    seeds=$scratch/seeds/$t corpus=$scratch/corpus/$t artifacts=$scratch/artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    SQUISH_FUZZ_SEEDS=$seeds SQUISH_FUZZ_SEED_MODEL=$model "$exe"
    log=$scratch/$t.log
    # detect_leaks: LeakSanitizer after every input that leaks; -malloc_limit_mb: any single allocation above 100 MB
    # is a failure (hostile sizes must be refused before allocating); -timeout: a hang of 10 s is a failure.
    # malloc_context_size: short allocation stacks (recording full ones took most of the time of the allocation-heavy
    # targets); rerun a failing input with ASAN_OPTIONS=malloc_context_size=30 for the full stack.
    if ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:malloc_context_size=4 "$exe" "$corpus" "$seeds" -max_total_time="$seconds" \
        -malloc_limit_mb=100 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="$artifacts/" \
        ${FUZZ_FLAGS:-} > "$log" 2>&1; then
        result=ok
    else
        result="FAILED (see $log and $artifacts)"
        status=1
        tail -40 "$log" >&2
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    last=$(grep -E '#[0-9]+.*cov: ' "$log" | tail -1)
    cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo '?')
    ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo '?')
    summary+=("$(printf '%-12s %12s executions  cov %6s  ft %6s  %s' "$t" "$runs" "$cov" "$ft" "$result")")
done
printf '%s\n' "fuzzing, ${seconds} s per target:" "${summary[@]}"
exit $status
