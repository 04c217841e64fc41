#!/usr/bin/env bash
# Issue #7 benchmark: `rollout export --format training` of a run of N trajectories (10
# messages, 2 tool calls each), next to the baseline in the same run: Python's sqlite3 + json
# reading the same warehouse and writing the same records (Benchmarks/export_baseline.py; the
# two files must have the same sha256). Measured at two sizes (SMALL and N) to show that peak
# RSS does not grow with the rows. The databases are generated in SQL (gen_export_db.py) on
# top of `rollout quickstart`, labeled (`rollout label`, timed from no labels), and read once
# before the rounds so both contenders find them in the page cache. Rounds alternate the
# contenders. Both write to OUTDIR (default /dev/shm, a tmpfs: this machine's shared disk
# takes writes at ~80 MB/s and would measure the disk, not the exporters); each output is
# checked and deleted after its round. Prints a markdown table: wall and CPU seconds (best,
# all), MB/s of output, peak RSS (/usr/bin/time).
# Usage: Benchmarks/export.sh [N=1000000] [SMALL=100000] [ROUNDS=3] [OUTDIR=/dev/shm]
# (databases under bench-data/, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
SMALL=${2:-100000}
ROUNDS=${3:-3}
OUT=${4:-/dev/shm}
DIR=bench-data/export
mkdir -p "$DIR"
swift build -c release --product rollout >/dev/null
BIN=$PWD/.build/release/rollout

prepare() { # n → makes $DIR/export-n.db (once)
  local n=$1 db=$DIR/export-$1.db
  [ -f "$db" ] && return
  rm -rf "$DIR/qs-$n" "$db" "$db-wal" "$db-shm"
  mkdir -p "$DIR/qs-$n"
  (cd "$DIR/qs-$n" && "$BIN" quickstart --db "../export-$n.db" >/dev/null)
  python3 Benchmarks/gen_export_db.py "$db" "$n"
}

label() { # n → labels the run from scratch, timed
  local db=$DIR/export-$1.db
  sqlite3 "$db" "DELETE FROM labels; DELETE FROM label_toolsets; DELETE FROM label_prompts;"
  /usr/bin/time -f "%e %U %S %M" -o "$DIR/label-$1.txt" "$BIN" label --run bench --db "$db" > "$DIR/label-$1.out"
}

run() { # name, n, command... ; appends "secs kb" to $DIR/name-n.runs
  local name=$1 n=$2; shift 2
  sync
  /usr/bin/time -f "%e %U %S %M" -o "$DIR/time.txt" "$@" > "$DIR/$name-$n.out" 2>&1 || { cat "$DIR/$name-$n.out"; exit 1; }
  cat "$DIR/time.txt" >> "$DIR/$name-$n.runs"
}

for n in "$SMALL" "$N"; do
  prepare "$n"
  label "$n"
  rm -f "$DIR"/*-"$n".runs
  cat "$DIR/export-$n.db" > /dev/null
  for _ in $(seq "$ROUNDS"); do
    run rollout "$n" "$BIN" export --run bench --format training --out "$OUT/out-rollout-$n.jsonl" --db "$DIR/export-$n.db"
    a=$(sha256sum "$OUT/out-rollout-$n.jsonl" | cut -d' ' -f1)
    # The sha256 the export recorded in its exports row is the file's.
    [ "$a" = "$(sqlite3 "$DIR/export-$n.db" 'SELECT sha256 FROM exports ORDER BY id DESC LIMIT 1')" ] || { echo "exports.sha256 differs"; exit 1; }
    stat -c %s "$OUT/out-rollout-$n.jsonl" > "$DIR/bytes-$n.txt"
    rm -f "$OUT/out-rollout-$n.jsonl"
    run python "$n" python3 Benchmarks/export_baseline.py "$DIR/export-$n.db" bench "$OUT/out-python-$n.jsonl"
    b=$(sha256sum "$OUT/out-python-$n.jsonl" | cut -d' ' -f1)
    rm -f "$OUT/out-python-$n.jsonl"
    [ "$a" = "$b" ] || { echo "outputs differ at n=$n: rollout $a, python $b"; exit 1; }
  done
done

echo "$(nproc) cores; $(uptime | sed 's/.*load average/load average/'); sqlite $(sqlite3 --version | cut -d' ' -f1); $(python3 --version); $ROUNDS rounds; outputs identical (sha256)"
echo
python3 - "$DIR" "$SMALL" "$N" <<'PY'
import sys
d, sizes = sys.argv[1], sys.argv[2:]
def runs(name, n):
    return [tuple(map(float, l.split())) for l in open(f"{d}/{name}-{n}.runs") if l.strip()]
print("| contender | trajectories | output MB | best wall s | all runs wall s | CPU s (user+sys, best) | MB/s (best wall) | peak RSS MB | vs Python (wall) |")
print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
for n in sizes:
    size = int(open(f"{d}/bytes-{n}.txt").read())
    base = min(r[0] for r in runs("python", n))
    for name in ["rollout", "python"]:
        r = runs(name, n)
        best = min(x[0] for x in r)
        cpu = min(x[1] + x[2] for x in r)
        rss = max(x[3] for x in r) / 1024
        print(f"| {name} | {int(n):,} | {size / 1e6:.0f} | {best:.2f} | {', '.join(f'{x[0]:.2f}' for x in r)} | {cpu:.2f} | "
              f"{size / 1e6 / best:.0f} | {rss:.0f} | {base / best:.2f}x |")
print()
for n in sizes:
    wall, user, sys_, kb = open(f"{d}/label-{n}.txt").read().split()
    print(f"`rollout label --run bench` ({int(n):,} rollouts, no labels before): {float(wall):.1f} s wall, "
          f"{float(user) + float(sys_):.1f} s CPU, peak RSS {int(kb) / 1024:.0f} MB  ")
PY
