#!/usr/bin/env bash
# Issue #2 benchmark: ingest an N-line Rollout-framework queries JSONL (~1.1 KB a record) into
# a fresh database, next to two baselines run on the same file in the same run:
#   - the sqlite3 shell loading the raw lines into a one-column table (.mode ascii / .import),
#   - sqlite-utils insert --nl --pk id (PyPI).
# Prints a markdown table: wall seconds, MB/s of input, peak RSS (from /usr/bin/time).
# Usage: Benchmarks/ingest.sh [N=1000000]   (writes under bench-data/, which git ignores)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
DIR=bench-data
mkdir -p "$DIR"
FILE="$DIR/queries-$N.jsonl"
bash scripts/install-deps.sh --bench >/dev/null
[ -f "$FILE" ] || python3 Benchmarks/gen_queries.py "$N" "$FILE"
swift build -c release --product rollout >/dev/null
BIN=.build/release/rollout
BYTES=$(stat -c %s "$FILE")
MB=$(python3 -c "print(round($BYTES/1e6, 1))")

measure() { # name, command...
  local name=$1; shift
  cat "$FILE" > /dev/null   # same page-cache state for every contender
  sync
  /usr/bin/time -f "%e %M" -o "$DIR/time.txt" "$@" > "$DIR/$name.out" 2>&1 || { cat "$DIR/$name.out"; exit 1; }
  read -r secs kb < "$DIR/time.txt"
  echo "$name $secs $kb"
}

rm -f "$DIR"/raw.db* "$DIR"/su.db* "$DIR"/rollout.db*
R1=$(measure sqlite3-import sqlite3 "$DIR/raw.db" '.mode ascii' '.separator "\037" "\n"' \
  'CREATE TABLE lines(line TEXT);' ".import $FILE lines")
R2=$(measure sqlite-utils sqlite-utils insert "$DIR/su.db" queries "$FILE" --nl --pk id)
R3=$(measure rollout "$BIN" ingest queries "$FILE" --domain Bench --dataset bench --db "$DIR/rollout.db")
ROWS=$(sqlite3 "$DIR/rollout.db" 'SELECT count(*) FROM tasks')
[ "$ROWS" = "$N" ] || { echo "rollout stored $ROWS tasks, expected $N"; exit 1; }

echo "input: $N lines, $MB MB ($FILE); $(nproc) cores; $(sqlite3 --version | cut -d' ' -f1) sqlite3"
echo
echo "| contender | wall s | MB/s | peak RSS MB | vs sqlite3 .import |"
echo "| --- | ---: | ---: | ---: | ---: |"
base=$(echo "$R1" | cut -d' ' -f2)
for r in "$R1" "$R2" "$R3"; do
  set -- $r
  python3 -c "print(f'| $1 | {$2:.2f} | {$MB/$2:.0f} | {$3/1024:.0f} | {$2/$base:.2f}x |')"
done
