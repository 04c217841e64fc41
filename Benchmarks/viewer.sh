#!/usr/bin/env bash
# Issue #8 benchmark: the pages of `rollout serve` over a warehouse of N rollouts (10 messages
# and 2 tool calls each, one grade and two LLM calls each, a realistic mix of stop reasons,
# statuses, domains, verdicts and reviews), against the target of 200 ms a page.
#
# The data: `rollout quickstart`, then Benchmarks/gen_export_db.py (the run `bench`, as in
# Benchmarks/export.sh) and Benchmarks/viewer_db.py extras, all at schema 0007 (the schema of
# the viewer, 0008, is taken out of the fresh quickstart warehouse first, so that the
# migration 0007 -> 0008 is timed on the full database, as an existing warehouse meets it).
# SEED=PATH starts instead from a copy of a gen_export_db.py warehouse at schema 0007 (e.g.
# bench-data/export/export-1000000.db of Benchmarks/export.sh). Then: the migration (timed:
# `rollout db status` opens and migrates it), reviews, a check of the counters the migration
# filled, and the background search index of `rollout serve` timed from the server's start
# until it covers every message (pages are sampled meanwhile). The migrated, indexed
# database is kept and reused by later runs (FRESH=1 rebuilds it from the 0007 copy).
#
# The pages: a new server start, one request per case (cold: the first after the start), then
# ROUNDS rounds of every case (warm) with new parameters each time. Each response's
# Server-Timing header is the time inside the server; the client's is from sending the request
# to the last byte (Python urllib, loopback).
# Usage: Benchmarks/viewer.sh [N=1000000] [ROUNDS=30] [PORT=8790]   (data under bench-data/viewer, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
ROUNDS=${2:-30}
PORT=${3:-8790}
DIR=bench-data/viewer
mkdir -p "$DIR"
swift build -c release --product rollout >/dev/null
BIN=$PWD/.build/release/rollout
PRE=$DIR/pre-$N.db     # schema 0007, every row but the reviews: the migration's input
DB=$DIR/viewer-$N.db   # migrated and indexed
URL=http://127.0.0.1:$PORT
SERVER=

stop_server() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; SERVER=; fi
}
trap stop_server EXIT

start_server() { # log name → $SERVER, once the server has said it listens
  local log=$DIR/$1
  : > "$log.out"
  "$BIN" serve --db "$DB" --port "$PORT" > "$log.out" 2> "$log.log" &
  SERVER=$!
  for _ in $(seq 600); do
    grep -q "rollout viewer:" "$log.out" 2>/dev/null && return
    kill -0 "$SERVER" 2>/dev/null || { cat "$log.log"; exit 1; }
    sleep 0.1
  done
  echo "the server did not start"; exit 1
}

if [ ! -f "$PRE" ]; then
  rm -f "$PRE" "$PRE-wal" "$PRE-shm"
  if [ -n "${SEED:-}" ]; then
    cp "$SEED" "$PRE"
  else
    rm -rf "$DIR/qs-$N"
    mkdir -p "$DIR/qs-$N"
    (cd "$DIR/qs-$N" && "$BIN" quickstart --db "../pre-$N.db" >/dev/null)
    python3 Benchmarks/viewer_db.py downgrade "$PRE"
    python3 Benchmarks/gen_export_db.py "$PRE" "$N"
  fi
  /usr/bin/time -f "%e" -o "$DIR/extras.txt" python3 Benchmarks/viewer_db.py extras "$PRE"
fi

if [ ! -f "$DB" ] || [ "${FRESH:-0}" = 1 ]; then
  rm -f "$DB" "$DB-wal" "$DB-shm" "$DIR/migrate.txt" "$DIR/index.json"
  cp "$PRE" "$DB"
  cat "$DB" > /dev/null
  /usr/bin/time -f "%e %U %S %M" -o "$DIR/migrate.txt" "$BIN" db status --db "$DB" > "$DIR/migrate.out"
  python3 Benchmarks/viewer_db.py reviews "$DB"
  python3 Benchmarks/viewer_db.py check "$DB"
  start_server serve-index
  python3 Benchmarks/viewer_bench.py index "$URL" "$DB" "$DIR/index.json" > "$DIR/index.txt"
  sleep 1
  stop_server
  # The server's own account of the build.
  sed 's/^/  server: /' "$DIR/serve-index.log" >> "$DIR/index.txt"
fi

python3 Benchmarks/viewer_db.py shape "$DB" > "$DIR/shape.json"
cat "$DB" > /dev/null
start_server serve-pages
python3 Benchmarks/viewer_bench.py pages "$URL" "$DB" "$ROUNDS" "$DIR/pages.json" > "$DIR/pages.md"
stop_server

echo "$(nproc) cores; $(uptime | sed 's/.*load average/load average/'); sqlite $(sqlite3 --version | cut -d' ' -f1); $(python3 --version); $ROUNDS warm rounds"
python3 - "$DIR" <<'PY'
import json, sys
d = sys.argv[1]
s = json.load(open(f"{d}/shape.json"))
print(f"database: {s['rollouts']:,} rollouts, {s['messages']:,} messages, {s['tool_calls']:,} tool calls, {s['grades']:,} grades, "
      f"{s['llm_calls']:,} LLM calls, {s['tasks']:,} tasks, {s['reviews']:,} reviews; {s['bytes'] / 1e9:.2f} GB"
      + (f" ({s['search_index_bytes'] / 1e9:.2f} GB of it the search index)" if s.get('search_index_bytes') else ""))
try:
    wall, user, sys_, kb = open(f"{d}/migrate.txt").read().split()
    print(f"migration 0007 -> 0008 (`rollout db status` on the 0007 copy): {float(wall):.1f} s wall, {float(user) + float(sys_):.1f} s CPU, peak RSS {int(kb) / 1024:.0f} MB")
except FileNotFoundError:
    pass
PY
echo "search index (built when $DB was made):"
cat "$DIR/index.txt" 2>/dev/null || true
echo
cat "$DIR/pages.md"
