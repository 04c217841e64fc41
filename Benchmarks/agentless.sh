#!/usr/bin/env bash
# The Agentless benchmark (issue #6): localize for N instances with a real structure each
# (psf__requests-2317's, 1.6 MB) and finalize over R repair answers, against the Python
# baseline on the same data in the same run. Release build.
#   Benchmarks/agentless.sh [INSTANCES=2294] [RESPONSES=10000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2294}
R=${2:-10000}
BIN=.build/release/rollout
WORK=${WORK:-/tmp/rollout-bench-agentless}
swift build -c release >/dev/null
rm -rf "$WORK"; mkdir -p "$WORK"
DB=$WORK/bench.db
STRUCT=Tests/RolloutKitTests/Fixtures/agentless/psf__requests-2317.json
PROBLEMS=Tests/RolloutKitTests/Fixtures/swebench/swebench_lite_5.jsonl
echo "== setup: $N instances, $R answers"
/usr/bin/time -f "setup: %e s, peak RSS %M KB" $BIN bench agentless-setup --db "$DB" --structure "$STRUCT" --problems "$PROBLEMS" \
  --instances "$N" --responses "$R" --dir "$WORK/data"
ls -la "$DB" | awk '{print "database bytes:", $5}'
sync
echo "== localize (rollout), memory against the number of instances"
for n in 250 1000 "$N"; do
  /usr/bin/time -f "  wall %e s, peak RSS %M KB" $BIN bench agentless-localize --db "$DB" --instances "$n" --dir "$WORK/loc"
done
echo "== localize (Python baseline)"
for n in 250 "$N"; do
  /usr/bin/time -f "  wall %e s, peak RSS %M KB" python3 Benchmarks/agentless_baseline.py localize "$DB" "$WORK/baseline-loc" "$n"
done
echo "== finalize (rollout), twice"
for i in 1 2; do
  /usr/bin/time -f "  wall %e s, peak RSS %M KB" $BIN bench agentless-finalize --db "$DB" --dir "$WORK/results"
done
echo "== finalize (Python baseline)"
/usr/bin/time -f "  wall %e s, peak RSS %M KB" python3 Benchmarks/agentless_baseline.py finalize "$DB" "$WORK/data/bench.repair.output.jsonl" "$WORK/baseline-results"
wc -l "$WORK"/results/output_*_processed.jsonl | tail -1
uptime
