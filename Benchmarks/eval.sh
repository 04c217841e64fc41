#!/usr/bin/env bash
# Issue #5 benchmark: pass@k at k = 1, 5, 10 grouped by domain over TASKS x SAMPLES graded
# rollouts (default 100,000 x 10 = 1,000,000), next to the numpy baseline in the same run.
#
# The warehouse (made once, kept under bench-data/eval/): created by `rollout ingest qa`, then
# filled in SQL with TASKS tasks in 10 domains and one imported run of SAMPLES rollouts per task
# (rewards from a per-task success rate, 1% of rollouts failed), then graded by the real path,
# `rollout grade --run bench --grader reward`, which writes one grade per rollout and keeps
# grade_counts (its time is reported: it is what the counts cost).
#
# Measured ROUNDS times each, interleaved (the machine is shared and noisy):
#   sql      queries/pass-at-k.sql in the stock sqlite3 shell (`.timer on`: the SQL alone)
#   query    `rollout query pass-at-k ... --json` (the whole process: start, open, SQL, print)
#   eval     `rollout eval --run bench --grader reward --k 1,5,10 --no-store --json` (adds the
#            coverage counts it prints)
#   numpy    Benchmarks/eval_baseline.py: the same graded rows read with Python's sqlite3, then
#            vectorised numpy (read + compute; the process's wall time too)
# and once: the first plain-SQL version (Benchmarks/pass_at_k_over_grades.sql, one k per run,
# over the grades themselves) for k = 1, 5 and 10.
# The SQL's and numpy's pass@k and pass^k per domain must agree to 1e-9, or the script fails.
# Usage: Benchmarks/eval.sh [TASKS=100000] [SAMPLES=10] [ROUNDS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${1:-100000}
SAMPLES=${2:-10}
ROUNDS=${3:-5}
DIR=bench-data/eval
mkdir -p "$DIR"
bash scripts/install-deps.sh --bench >/dev/null
swift build -c release --product rollout >/dev/null
BIN=.build/release/rollout
DB=$DIR/eval-$TASKS-$SAMPLES.db
T=(/usr/bin/time -f "%e %U %S")

if [ ! -f "$DB.done" ]; then
  rm -f "$DB" "$DB-wal" "$DB-shm"
  echo '{"question": "seed", "answer": "seed"}' > "$DIR/seed.jsonl"
  "$BIN" ingest qa "$DIR/seed.jsonl" --dataset bench --db "$DB" >/dev/null
  start=$(date +%s.%N)
  sqlite3 "$DB" <<SQL
PRAGMA foreign_keys = ON;
BEGIN;
WITH RECURSIVE d(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM d WHERE i < 9)
INSERT INTO domains(key, size, created_at, updated_at)
SELECT printf('Domain%02d', i), 1, strftime('%Y-%m-%dT%H:%M:%fZ'), strftime('%Y-%m-%dT%H:%M:%fZ') FROM d;
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $TASKS)
INSERT INTO tasks(dataset_id, external_id, domain_id, opening_text, answer, record, content_hash, created_ingest, changed_ingest, seen_ingest)
SELECT 1, 't' || i, (SELECT id FROM domains WHERE key = printf('Domain%02d', i % 10)), 'question ' || i, 'answer', '{}', i, 1, 1, 1 FROM s;
INSERT INTO runs(name, mode, status, created_at) VALUES ('bench', 'imported', 'completed', strftime('%Y-%m-%dT%H:%M:%fZ'));
WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < $TASKS * $SAMPLES - 1),
first(id) AS (SELECT id FROM tasks WHERE dataset_id = 1 AND external_id = 't1')
INSERT INTO rollouts(run_id, task_id, sample, attempt, status, reward, error, finished_at)
SELECT (SELECT id FROM runs WHERE name = 'bench'), first.id + s.i / $SAMPLES, s.i % $SAMPLES, 0,
       CASE WHEN s.i % 100 = 37 THEN 'failed' ELSE 'completed' END,
       CASE WHEN (s.i * 2654435761) % 1000 < ((1 + s.i / $SAMPLES) * 7919) % 1000 THEN 1.0 ELSE 0.0 END,
       CASE WHEN s.i % 100 = 37 THEN 'HTTP 500 after 5 attempts' END, '2026-01-01T00:00:00.000Z'
FROM s, first;
COMMIT;
SQL
  echo "generated $TASKS tasks x $SAMPLES samples in $(echo "$(date +%s.%N) - $start" | bc) s"
  "${T[@]}" -o "$DIR/grade.time" "$BIN" grade --run bench --grader reward --db "$DB" > "$DIR/grade.out"
  cp "$DIR/grade.time" "$DIR/grade-$TASKS-$SAMPLES.time"
  cp "$DIR/grade.out" "$DIR/grade-$TASKS-$SAMPLES.out"
  touch "$DB.done"
fi
GRADED=$(sqlite3 "$DB" "SELECT count(*) FROM grades WHERE grader = 'reward'")
COUNTS=$(sqlite3 "$DB" "SELECT count(*) FROM grade_counts WHERE grader = 'reward'")

SQLFILE=queries/pass-at-k.sql
sql_run() { # prints the shell's real, user and sys seconds; result rows into $DIR/sql.out
  { echo ".parameter init"
    echo ".parameter set :run \"'bench'\""
    echo ".parameter set :grader \"'reward'\""
    echo ".parameter set :k \"'1,5,10'\""
    echo ".mode list"
    echo ".timer on"
    cat "$SQLFILE"; } | sqlite3 "$DB" > "$DIR/sql.out"
  grep '^Run Time' "$DIR/sql.out" | awk '{print $4, $6, $8}'
}
wall() { # command... ; prints wall, user and sys seconds
  "${T[@]}" -o "$DIR/wall.time" "$@" > "$DIR/cmd.out" 2>&1 || { cat "$DIR/cmd.out"; exit 1; }
  cat "$DIR/wall.time"
}

rm -f "$DIR"/*.runs
cat "$DB" > /dev/null
for _ in $(seq "$ROUNDS"); do
  sql_run >> "$DIR/sql.runs"
  wall "$BIN" query pass-at-k --db "$DB" --param run=bench --param grader=reward --param k=1,5,10 --json >> "$DIR/query.runs"
  wall "$BIN" eval --db "$DB" --run bench --grader reward --k 1,5,10 --no-store --json >> "$DIR/eval.runs"
  python3 Benchmarks/eval_baseline.py "$DB" bench reward 1,5,10 > "$DIR/numpy.json"
  python3 -c "import json; d = json.load(open('$DIR/numpy.json')); print(d['read_s'], d['compute_s'], d['total_s'], d['cpu_s'])" >> "$DIR/numpy.runs"
  wall python3 Benchmarks/eval_baseline.py "$DB" bench reward 1,5,10 >> "$DIR/numpy-wall.runs"
done
for k in 1 5 10; do
  { echo ".parameter init"; echo ".parameter set :run \"'bench'\""; echo ".parameter set :grader \"'reward'\""
    echo ".parameter set :k $k"; echo ".timer on"; cat Benchmarks/pass_at_k_over_grades.sql; } | sqlite3 "$DB" | grep '^Run Time' | awk '{print $4, $6, $8}' >> "$DIR/old.runs"
done

# The SQL's numbers are numpy's.
grep -v '^Run Time' "$DIR/sql.out" > "$DIR/sql.rows"
python3 - "$DIR" <<'PY'
import json, sys
d = sys.argv[1]
ref = json.load(open(f"{d}/numpy.json"))["results"]
checked = 0
for line in open(f"{d}/sql.rows"):
    f = line.rstrip("\n").split("|")
    key, k = f[0], f[1]
    if key == "all":
        continue
    r = ref[k][key]
    assert int(f[3]) == r["tasks"], (line, r)
    for value, want in ((float(f[6]), r["pass_at_k"]), (float(f[7]), r["pass_hat_k"])):
        assert abs(value - want) <= 1e-9, (line, want)
    checked += 1
print(f"checked: {checked} (domain, k) rows agree with numpy to 1e-9")
PY

echo "input: $TASKS tasks x $SAMPLES samples = $GRADED graded rollouts (reward grader), $COUNTS grade_counts rows; 10 domains; $(nproc) cores; sqlite $(sqlite3 --version | cut -d' ' -f1); $ROUNDS rounds; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "grading (once, when the warehouse was made): $(awk '{printf "%s s wall, %.2f s CPU", $1, $2 + $3}' "$DIR/grade-$TASKS-$SAMPLES.time") — $(cat "$DIR/grade-$TASKS-$SAMPLES.out")"
echo
python3 - "$DIR" <<'PY'
import statistics, sys
d = sys.argv[1]
def runs(name):
    return [[float(x) for x in l.split()] for l in open(f"{d}/{name}.runs") if l.strip()]
def timed(name):  # (wall, cpu = user + sys)
    return [(r[0], r[1] + r[2]) for r in runs(name)]
numpy = runs("numpy")
old = timed("old")
rows = [
    ("**SQL: queries/pass-at-k.sql in sqlite3** (over grade_counts)", timed("sql")),
    ("rollout query pass-at-k (whole process)", timed("query")),
    ("rollout eval --k 1,5,10 (whole process)", timed("eval")),
    ("numpy baseline: read + compute (in-process)", [(r[2], r[3]) for r in numpy]),
    ("  of which reading the rows with sqlite3", [(r[0], None) for r in numpy]),
    ("  of which numpy", [(r[1], None) for r in numpy]),
    ("numpy baseline (whole process)", timed("numpy-wall")),
    ("first plain SQL over grades, k = 1, 5, 10 (one run each, summed)", [(sum(w for w, _ in old), sum(c for _, c in old))]),
]
base = min(w for w, _ in rows[3][1])
base_cpu = min(c for _, c in rows[3][1])
print("| contender | best wall s | median wall s | best CPU s | all runs, wall s | best wall vs numpy | best CPU vs numpy |")
print("| --- | ---: | ---: | ---: | --- | ---: | ---: |")
for name, r in rows:
    walls = [w for w, _ in r]
    cpus = [c for _, c in r if c is not None]
    cpu = f"{min(cpus):.3f}" if cpus else "–"
    ratio = f"{min(cpus) / base_cpu:.2f}x" if cpus else "–"
    print(f"| {name} | {min(walls):.3f} | {statistics.median(walls):.3f} | {cpu} | {', '.join(f'{x:.3f}' for x in walls)} | {min(walls) / base:.2f}x | {ratio} |")
PY
