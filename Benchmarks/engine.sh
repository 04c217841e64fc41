#!/usr/bin/env bash
# Issue #4 benchmark: multi-turn dialogue rollouts against `rollout mock-server` (100 ms latency,
# its own process). For each SIZE N:C (N rollouts at concurrency C), in the same run:
#   (a) the baseline, Benchmarks/engine_baseline.py: the Python pattern rollout replaces
#       (asyncio + a semaphore + the official openai SDK, one JSONL line per rollout, tools as
#       an in-process Python function);
#   (b) the rollout engine: a fresh database with the N Library queries, policy and tool list
#       ingested, then `rollout run --config BENCH.yml --db DB --concurrency C --quiet`.
# Both under /usr/bin/time -v. Prints a markdown table per size: ideal s (mean LLM calls per
# rollout, as the baseline counted them, x latency x ceil(N/C)), wall s, wall/ideal, CPU s
# (user+sys), peak RSS MB, mock-server CPU s during the run, rows written, speed-up vs baseline.
# Usage: Benchmarks/engine.sh [SIZES=2000:256,20000:2048]   (writes under bench-data/engine/)
# Environment: PORT (18478), MOCK_THREADS (mock-server event-loop threads, 2), ROLLOUT_BIN (use
# this binary instead of building), ENGINE_TOOL_SERVER (a command line registered as the
# Library MCP server with `rollout ingest server`; default: the bundled example server,
# `rollout mcp-server example --domain Library`, i.e. the engine calls a real MCP process).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${1:-2000:256,20000:2048}
PORT=${PORT:-18478}
LATENCY_MS=100
MOCK_THREADS=${MOCK_THREADS:-2}
DIR=bench-data/engine
LAYOUT=examples/rollout-layout/single_domain
mkdir -p "$DIR"
ABS="$PWD/$DIR"
bash scripts/install-deps.sh --bench >/dev/null
if [ -n "${ROLLOUT_BIN:-}" ]; then
  BIN=$ROLLOUT_BIN
else
  swift build -c release --product rollout >/dev/null
  BIN=.build/release/rollout
fi
# 2,048 dialogues in flight need as many sockets on each side, plus files.
[ "$(ulimit -n)" -ge 8192 ] || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

"$BIN" mock-server --port "$PORT" --latency-ms "$LATENCY_MS" --threads "$MOCK_THREADS" 2>"$DIR/mock-server.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { echo "mock-server did not start"; cat "$DIR/mock-server.log"; exit 1; }
URL="http://127.0.0.1:$PORT/v1"

server_cpu() { # the mock server's user+sys CPU so far, in clock ticks
  awk '{ print $14 + $15 }' "/proc/$SERVER/stat"
}

HAVE_ENGINE=1
"$BIN" run --help >/dev/null 2>&1 || HAVE_ENGINE=0

cat > "$DIR/models.yml" <<EOF
models:
  bench/agent:
    provider: openai
    api_base: $URL
    api_key: \${ROLLOUT_BENCH_KEY:-none}
  bench/user:
    provider: openai
    api_base: $URL
    api_key: \${ROLLOUT_BENCH_KEY:-none}
EOF

echo "mock-server: $MOCK_THREADS event-loop thread(s), $LATENCY_MS ms latency; $(nproc) cores;" \
  "$(python3 --version), openai $(python3 -c 'import openai; print(openai.__version__)')"
echo "baseline tools: an in-process Python function (favours the baseline; the engine calls an MCP server)"

IFS=, read -ra SIZE_LIST <<< "$SIZES"
for size in "${SIZE_LIST[@]}"; do
  N=${size%%:*}
  C=${size##*:}
  QUERIES="$DIR/queries-$N.jsonl"
  [ -f "$QUERIES" ] || python3 Benchmarks/gen_dialogue_queries.py "$N" "$QUERIES"

  # (a) the Python baseline
  s0=$(server_cpu)
  /usr/bin/time -v -o "$DIR/time-baseline-$N-$C.txt" \
    python3 Benchmarks/engine_baseline.py "$URL" "$QUERIES" "$DIR/baseline-$N-$C.jsonl" "$C" \
    > "$DIR/baseline-$N-$C.json" 2> "$DIR/baseline-$N-$C.err" || { cat "$DIR/baseline-$N-$C.err"; exit 1; }
  echo $(( $(server_cpu) - s0 )) > "$DIR/server-baseline-$N-$C.ticks"
  wc -l < "$DIR/baseline-$N-$C.jsonl" > "$DIR/rows-baseline-$N-$C.txt"

  # (b) the rollout engine
  rm -f "$DIR/time-engine-$N-$C.txt" "$DIR/rows-engine-$N-$C.txt"
  if [ "$HAVE_ENGINE" = 1 ]; then
    L="$DIR/layout-$N/single_domain"
    rm -rf "$DIR/layout-$N"
    mkdir -p "$L/queries" "$L/policies" "$L/tool_lists"
    cp "$QUERIES" "$L/queries/Library.jsonl"
    cp "$LAYOUT/policies/Library.md" "$L/policies/Library.md"
    cp "$LAYOUT/tool_lists/Library.json" "$L/tool_lists/Library.json"
    DB="$DIR/engine-$N-$C.db"
    rm -f "$DB" "$DB-wal" "$DB-shm" "$DB-journal"
    "$BIN" ingest dir "$DIR/layout-$N" --db "$DB" >/dev/null
    ENGINE_TOOL_SERVER=${ENGINE_TOOL_SERVER-rollout mcp-server example --domain Library}
    if [ -n "${ENGINE_TOOL_SERVER:-}" ]; then
      read -ra TS <<< "$ENGINE_TOOL_SERVER"
      TS_ARGS=()
      for a in "${TS[@]:1}"; do TS_ARGS+=(--arg "$a"); done
      "$BIN" ingest server Library --command "${TS[0]}" "${TS_ARGS[@]}" --domain Library --db "$DB" >/dev/null
    fi
    cat > "$DIR/bench-$N-$C.yml" <<EOF
# Written by Benchmarks/engine.sh
max_workers: $C
resume: false
models_config_file: $ABS/models.yml
datasets:
  Library:
    path: $ABS/layout-$N/single_domain/queries/Library.jsonl
    output_path: $ABS/engine-$N-$C.out.jsonl
    mcp_domain: Library
    tools: $ABS/layout-$N/single_domain/tool_lists/Library.json
    agent: {model: bench/agent, temperature: 0.7}
    user: {model: bench/user, temperature: 1.0}
    max_turns: 8
    max_steps_per_turn: 6
    mode: dialogue
    samples: 1
EOF
    s0=$(server_cpu)
    if /usr/bin/time -v -o "$DIR/time-engine-$N-$C.txt" \
        "$BIN" run --config "$DIR/bench-$N-$C.yml" --db "$DB" --concurrency "$C" --quiet \
        > "$DIR/engine-$N-$C.out" 2>&1; then
      echo $(( $(server_cpu) - s0 )) > "$DIR/server-engine-$N-$C.ticks"
      for t in rollouts messages tool_calls llm_calls; do
        printf '%s=%s ' "$t" "$(sqlite3 "$DB" "SELECT count(*) FROM $t")"
      done > "$DIR/rows-engine-$N-$C.txt"
    else
      echo "engine: failed at $N:$C (see $DIR/engine-$N-$C.out):"
      tail -5 "$DIR/engine-$N-$C.out"
      rm -f "$DIR/time-engine-$N-$C.txt"
    fi
  fi

  echo
  echo "### $N rollouts at concurrency $C"
  [ "$HAVE_ENGINE" = 1 ] || echo "engine: not available in this build"
  python3 - "$DIR" "$N" "$C" "$LATENCY_MS" "$(getconf CLK_TCK)" <<'PY'
import json, math, os, sys
d, n, c, latency_ms, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

def gnu_time(path):
    t = {}
    for line in open(path):
        k, _, v = line.strip().rpartition(": ")
        t[k] = v
    h, m, s = ([0, 0] + t["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":"))[-3:]
    wall = int(h) * 3600 + int(m) * 60 + float(s)
    cpu = float(t["User time (seconds)"]) + float(t["System time (seconds)"])
    return wall, cpu, int(t["Maximum resident set size (kbytes)"]) / 1024

summary = json.load(open(f"{d}/baseline-{n}-{c}.json"))
per_rollout = summary["calls_per_rollout"]  # over the baseline's completed rollouts
ideal = per_rollout * latency_ms / 1000 * math.ceil(n / c)
print(f"LLM calls per rollout (baseline count): {per_rollout:.2f}; baseline errors: {summary['errors']}; "
      f"ideal = {per_rollout:.2f} x {latency_ms / 1000} s x ceil({n}/{c}) = {ideal:.2f} s")
if summary["errors"]:
    print(f"WARNING: {summary['errors']} of {n} baseline rollouts failed (see the lines with \"error\" in "
          f"{d}/baseline-{n}-{c}.jsonl); its wall time is not comparable")
print()
print("| contender | ideal s | wall s | wall/ideal | CPU s | peak RSS MB | mock-server CPU s | rows written | speed-up vs baseline |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
base_wall = None
for name, label in [("baseline", "Python (asyncio + openai SDK)"), ("engine", "**rollout run**")]:
    tp = f"{d}/time-{name}-{n}-{c}.txt"
    if not os.path.exists(tp):
        print(f"| {label} | {ideal:.2f} | – | – | – | – | – | not available | – |")
        continue
    wall, cpu, rss = gnu_time(tp)
    srv = int(open(f"{d}/server-{name}-{n}-{c}.ticks").read()) / hz
    rows = open(f"{d}/rows-{name}-{n}-{c}.txt").read().strip()
    rows = f"{rows} JSONL lines" if name == "baseline" else rows.replace(" ", ", ")
    base_wall = base_wall or wall
    print(f"| {label} | {ideal:.2f} | {wall:.2f} | {wall / ideal:.2f}x | {cpu:.2f} | {rss:.0f} | {srv:.2f} | {rows} | "
          f"{base_wall / wall:.2f}x |")
PY
done
