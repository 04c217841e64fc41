#!/usr/bin/env bash
# Issue #2 benchmark: ingest an N-line Rollout-framework queries JSONL (~1.1 KB a record) into
# a fresh database, next to two baselines run on the same file in the same run:
#   - the sqlite3 shell loading the raw lines into a one-column table (.mode ascii / .import),
#   - sqlite-utils insert --nl --pk id (PyPI).
# sqlite3 and rollout run ROUNDS times each, interleaved (the machine is shared and noisy);
# sqlite-utils, ~10x slower, runs once. Every run starts from a fresh database, with the
# input in the page cache and dirty pages synced. Prints a markdown table: wall seconds (best
# and all runs), MB/s of input, peak RSS (from /usr/bin/time).
# Usage: Benchmarks/ingest.sh [N=1000000] [ROUNDS=3]   (writes under bench-data/, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
ROUNDS=${2:-3}
DIR=bench-data
mkdir -p "$DIR"
FILE="$DIR/queries-$N.jsonl"
bash scripts/install-deps.sh --bench >/dev/null
[ -f "$FILE" ] || python3 Benchmarks/gen_queries.py "$N" "$FILE"
swift build -c release --product rollout >/dev/null
BIN=.build/release/rollout
BYTES=$(stat -c %s "$FILE")

run() { # name, db, command... ; appends "secs kb" to $DIR/name.runs
  local name=$1 db=$2; shift 2
  rm -f "$db" "$db-wal" "$db-shm" "$db-journal"
  cat "$FILE" > /dev/null
  sync
  /usr/bin/time -f "%e %M" -o "$DIR/time.txt" "$@" > "$DIR/$name.out" 2>&1 || { cat "$DIR/$name.out"; exit 1; }
  cat "$DIR/time.txt" >> "$DIR/$name.runs"
}

rm -f "$DIR"/*.runs
for _ in $(seq "$ROUNDS"); do
  run sqlite3-import "$DIR/raw.db" sqlite3 "$DIR/raw.db" '.mode ascii' '.separator "\037" "\n"' \
    'CREATE TABLE lines(line TEXT);' ".import $FILE lines"
  run rollout "$DIR/rollout.db" "$BIN" ingest queries "$FILE" --domain Bench --dataset bench --db "$DIR/rollout.db"
  ROWS=$(sqlite3 "$DIR/rollout.db" 'SELECT count(*) FROM tasks')
  [ "$ROWS" = "$N" ] || { echo "rollout stored $ROWS tasks, expected $N"; exit 1; }
done
run sqlite-utils "$DIR/su.db" sqlite-utils insert "$DIR/su.db" queries "$FILE" --nl --pk id

echo "input: $N lines, $((BYTES / 1000000)) MB ($FILE); $(nproc) cores; sqlite $(sqlite3 --version | cut -d' ' -f1); $ROUNDS rounds"
echo
python3 - "$DIR" "$BYTES" <<'PY'
import sys
d, size = sys.argv[1], int(sys.argv[2])
def runs(name):
    return [tuple(map(float, l.split())) for l in open(f"{d}/{name}.runs") if l.strip()]
base = min(s for s, _ in runs("sqlite3-import"))
print("| contender | best wall s | all runs s | MB/s (best) | peak RSS MB | best vs sqlite3 best |")
print("| --- | ---: | --- | ---: | ---: | ---: |")
for name in ["sqlite3-import", "rollout", "sqlite-utils"]:
    r = runs(name)
    best = min(s for s, _ in r)
    rss = max(k for _, k in r) / 1024
    print(f"| {name} | {best:.2f} | {', '.join(f'{s:.2f}' for s, _ in r)} | {size / 1e6 / best:.0f} | {rss:.0f} | {best / base:.2f}x |")
PY
