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
#   FUZZ_QUICK=1    only the Foundation-only targets, built with plain swiftc (see below)
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
        FuzzJSON) echo 4096 ;;
        FuzzOpenAI|FuzzSSE) echo 16384 ;;
        *) echo 32768 ;;
    esac
}

# FUZZ_QUICK=1: the five targets whose code needs only Foundation, built straight with swiftc
# from the RolloutKit files they use (a couple of CPU-minutes instead of the whole dependency
# graph in release with fuzzer instrumentation). Same sources, same -O -sanitize=fuzzer.
QUICK_TARGETS=(FuzzJSON FuzzOpenAI FuzzAnthropic FuzzSSE FuzzEditBlocks)
QUICK_SOURCES=(JSON/JSONParser.swift JSON/JSONValue.swift JSON/JSONWriter.swift LLM/OpenAICodec.swift
    LLM/AnthropicCodec.swift LLM/SSE.swift LLM/LLMError.swift LLM/ChatTypes.swift Store/ChatMessage.swift
    Agentless/EditBlocks.swift Support/LineReader.swift Ingest/IngestError.swift)

if [ "${FUZZ_QUICK:-}" = 1 ]; then
    BIN="$WORK/quick"
    [ "$#" -eq 0 ] && TARGETS=("${QUICK_TARGETS[@]}")
    if [ "${FUZZ_NO_BUILD:-}" != 1 ]; then
        echo "building ${TARGETS[*]} with swiftc into $BIN"
        mkdir -p "$BIN"
        (cd "$ROOT/Sources/RolloutKit" && nice -n "$NICE" swiftc -O -sanitize=fuzzer -enable-testing \
            -parse-as-library -module-name RolloutKit -emit-module -emit-module-path "$BIN/RolloutKit.swiftmodule" \
            -emit-library -static -o "$BIN/libRolloutKit.a" "${QUICK_SOURCES[@]}")
        nice -n "$NICE" swiftc -O -sanitize=fuzzer -parse-as-library -module-name FuzzDriver -emit-module \
            -emit-module-path "$BIN/FuzzDriver.swiftmodule" -emit-library -static -o "$BIN/libFuzzDriver.a" \
            "$PKG/Sources/FuzzDriver/FuzzDriver.swift"
        # swiftc links libFuzzer's whole runtime, its main included: the target's @main is renamed
        # out of the way and libFuzzer calls LLVMFuzzerTestOneInput itself.
        for t in "${TARGETS[@]}"; do
            nice -n "$NICE" swiftc -O -sanitize=fuzzer -parse-as-library -use-ld=lld -I "$BIN" -L "$BIN" \
                -Xfrontend -entry-point-function-name -Xfrontend "${t}_main" \
                -lRolloutKit -lFuzzDriver "$PKG/Sources/$t/$t.swift" -o "$BIN/$t"
        done
    fi
else
    BIN="$SCRATCH/release"
    if [ "${FUZZ_NO_BUILD:-}" != 1 ]; then
        echo "building the fuzz targets (release, -sanitize=fuzzer) into $SCRATCH"
        # -enable-testing: the record decoders are internal; the targets reach them with
        # @testable import, so RolloutKit gains no API for fuzzing. lld: the flags reach the root
        # package's EmbedFiles build tool too, and gold fails on its link (an internal error).
        (cd "$PKG" && nice -n "$NICE" swift build -c release -Xswiftc -sanitize=fuzzer \
            -Xswiftc -enable-testing -Xswiftc -use-ld=lld --scratch-path "$SCRATCH")
    fi
fi

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
    # (|| true: a run that printed nothing, e.g. a binary that is not a fuzzer, still gets its line.)
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    cov="$( (grep -o 'cov: [0-9]*' "$log" || true) | tail -1 | cut -d' ' -f2)"
    ft="$( (grep -o 'ft: [0-9]*' "$log" || true) | tail -1 | cut -d' ' -f2)"
    crashes="$(find "$artifacts" -type f -newer "$marker" -printf '%f ')"
    printf '%-17s %5ss  execs %-10s %6s/s  cov %-6s ft %-6s corpus %4s files %7s B  crashes: %s\n' \
        "$t" "$elapsed" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" \
        "$(ls "$corpus" | wc -l)" "$(cat "$corpus"/* 2>/dev/null | wc -c)" "${crashes:-none}"
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
