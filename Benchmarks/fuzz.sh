#!/usr/bin/env bash
# libFuzzer runs over RolloutKit's parsers and decoders (issue 14). Not run in CI.
#
#   Benchmarks/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 600, the issue's minimum). TARGETs default to all of them, in the
# order below. For each target it seeds from the test fixtures (Benchmarks/Fuzz/seed.py), runs the
# fuzzer on the committed corpus (Benchmarks/Fuzz/corpus/TARGET) plus a working corpus outside the
# repo, then minimizes everything it has back into the committed corpus with -merge=1.
#
# Prints per target: seconds, executions, exec/s, coverage (cov = edges, ft = features), corpus
# size and crashes; appends the same lines to Benchmarks/Fuzz/runs.log (the numbers RELIABILITY.md
# cites). Full libFuzzer output and crash artifacts stay in $FUZZ_WORK.
#
# Environment:
#   FUZZ_JOBS=N     targets run at once (default 1; each fuzzer uses one core)
#   FUZZ_WORK=DIR   build, working corpora, logs and artifacts (default /tmp/rollout-fuzz)
#   FUZZ_BUILD=DIR  the build's scratch path (default $FUZZ_WORK/build)
#   FUZZ_NICE=N     nice level of the build and the fuzzers (default 15)
#   FUZZ_NO_BUILD=1 use the binaries already built
#
# Needs Linux (the toolchain's libFuzzer runtime, `swiftc -sanitize=fuzzer`) and python3.
# A checkout whose folder is named "fuzz" clashes with the fuzz package's own identity
# (Benchmarks/Fuzz): run it from a checkout with another name.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PKG="$ROOT/Benchmarks/Fuzz"
SECONDS_PER_TARGET="${1:-600}"
shift || true
ALL=(FuzzJSON FuzzOpenAI FuzzAnthropic FuzzSSE FuzzEditBlocks FuzzYAML FuzzTrajectories FuzzBatchLine FuzzIngestFiles)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
WORK="${FUZZ_WORK:-/tmp/rollout-fuzz}"
JOBS="${FUZZ_JOBS:-1}"
NICE="${FUZZ_NICE:-15}"
SCRATCH="${FUZZ_BUILD:-$WORK/build}"
mkdir -p "$WORK/logs"

# The longest input a target is given: a bit above its largest realistic record.
max_len() {
    case "$1" in
        FuzzYAML) echo 4096 ;;
        FuzzAnthropic|FuzzEditBlocks) echo 8192 ;;
        FuzzJSON|FuzzOpenAI|FuzzSSE) echo 16384 ;;
        *) echo 32768 ;;
    esac
}

if [ "${FUZZ_NO_BUILD:-}" != 1 ]; then
    echo "building the fuzz targets (release, -sanitize=fuzzer) into $SCRATCH"
    # -enable-testing: the record decoders are internal; the targets reach them with
    # @testable import, so RolloutKit gains no API for fuzzing.
    (cd "$PKG" && nice -n "$NICE" swift build -c release \
        -Xswiftc -sanitize=fuzzer -Xswiftc -enable-testing --scratch-path "$SCRATCH")
fi
BIN="$(cd "$PKG" && swift build -c release --scratch-path "$SCRATCH" --show-bin-path)"

run_target() {
    local t="$1"
    local len; len="$(max_len "$t")"
    local corpus="$PKG/corpus/$t" working="$WORK/corpus/$t" seeds="$WORK/seeds/$t"
    local artifacts="$WORK/artifacts/$t/" log="$WORK/logs/$t.log"
    rm -rf "$seeds"
    mkdir -p "$corpus" "$working" "$artifacts"
    python3 "$PKG/seed.py" "$t" "$seeds" > /dev/null
    local marker="$WORK/logs/$t.start"; touch "$marker"
    local start; start="$(date +%s)"
    # The first folder receives new inputs; a crash stops the run and leaves its input in
    # $artifacts (crash-*, timeout-* for an input over 10 s, oom-* over 2 GB).
    SWIFT_BACKTRACE=interactive=no nice -n "$NICE" "$BIN/$t" "$working" "$corpus" "$seeds" \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -max_len="$len" -timeout=10 \
        -artifact_prefix="$artifacts" -print_final_stats=1 > "$log" 2>&1 || true
    local elapsed=$(( $(date +%s) - start ))
    # Minimize everything found so far into the committed corpus.
    local merged="$WORK/merged/$t"
    rm -rf "$merged"; mkdir -p "$merged"
    nice -n "$NICE" "$BIN/$t" -merge=1 -max_len="$len" -rss_limit_mb=2048 -timeout=10 \
        "$merged" "$corpus" "$working" "$seeds" > "$WORK/logs/$t.merge.log" 2>&1 || true
    if [ -n "$(ls "$merged")" ]; then rm -rf "$corpus"; mv "$merged" "$corpus"; fi
    local execs rate cov ft crashes
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
    ft="$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
    crashes="$(find "$artifacts" -type f -newer "$marker" -printf '%f ')"
    printf '%-17s %5ss  execs %-10s %6s/s  cov %-6s ft %-6s corpus %4s files %6s  crashes: %s\n' \
        "$t" "$elapsed" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" \
        "$(ls "$corpus" | wc -l)" "$(du -sh "$corpus" | cut -f1)" "${crashes:-none}"
}

{
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC')  commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')  ${SECONDS_PER_TARGET}s per target, $JOBS at once, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$PKG/runs.log"

running=0
for t in "${TARGETS[@]}"; do
    if [ "$running" -ge "$JOBS" ]; then wait -n || true; running=$((running - 1)); fi
    (run_target "$t" | tee -a "$PKG/runs.log") &
    running=$((running + 1))
done
wait
echo "logs and crash inputs: $WORK/logs, $WORK/artifacts"
