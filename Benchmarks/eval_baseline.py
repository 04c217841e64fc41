"""Issue #5 baseline: pass@k by domain with numpy over the graded rows, read with Python's sqlite3.

Reads the same rows the SQL counts (the latest attempt of each sample of the run, graded by the
grader's highest version; failed rollouts count as incorrect), one row per graded rollout:
(domain key, task id, passed). Then, vectorised: n and c per task with numpy.unique/bincount,
pass@k = 1 - prod_{i<k} (n-c-i)/(n-i) per task (a product over k terms, vectorised over
tasks; the same estimator as Chen et al.'s numpy function), the mean per domain with bincount.
Prints one JSON object: seconds spent reading, computing, in all, the CPU seconds, and the results.

Usage: python3 eval_baseline.py DB RUN GRADER K[,K...]
"""
import json
import sqlite3
import sys
import time

import numpy as np

db, run, grader, ks = sys.argv[1], sys.argv[2], sys.argv[3], [int(k) for k in sys.argv[4].split(",")]
t0 = time.perf_counter()
c0 = time.process_time()
con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
version = con.execute(
    "SELECT max(g.grader_version) FROM grades g JOIN rollouts r ON r.id = g.rollout_id JOIN runs ru ON ru.id = r.run_id "
    "WHERE ru.name = ? AND g.grader = ?", (run, grader)).fetchone()[0]
rows = con.execute("""
    SELECT coalesce(d.key, '(none)'), r.task_id, CASE WHEN r.status = 'failed' THEN 0 ELSE coalesce(g.passed, 0) END
    FROM grades g JOIN latest_rollouts r ON r.id = g.rollout_id JOIN runs ru ON ru.id = r.run_id
    JOIN tasks t ON t.id = r.task_id LEFT JOIN domains d ON d.id = t.domain_id
    WHERE ru.name = ? AND g.grader = ? AND g.grader_version = ?
    """, (run, grader, version)).fetchall()
t1 = time.perf_counter()
domain_names = np.array([r[0] for r in rows])
task = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
passed = np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows))
tasks, inverse = np.unique(task, return_inverse=True)
n = np.bincount(inverse).astype(np.float64)
c = np.bincount(inverse, weights=passed)
first = np.zeros(len(tasks), dtype=np.int64)
first[inverse[::-1]] = np.arange(len(rows))[::-1]
domains, task_domain = np.unique(domain_names[first], return_inverse=True)
per_domain = np.bincount(task_domain)
results = {}
for k in ks:
    ok = n >= k
    miss = np.ones(len(tasks))
    hit = np.ones(len(tasks))
    for i in range(k):
        miss *= np.clip(n - c - i, 0, None) / np.maximum(n - i, 1)
        hit *= np.clip(c - i, 0, None) / np.maximum(n - i, 1)
    at = np.where(ok, 1.0 - miss, 0.0)
    hat = np.where(ok, hit, 0.0)
    counted = np.bincount(task_domain, weights=ok)
    results[k] = {str(d): {"tasks": int(counted[j]), "pass_at_k": float(np.bincount(task_domain, weights=at)[j] / counted[j]),
                          "pass_hat_k": float(np.bincount(task_domain, weights=hat)[j] / counted[j])}
                  for j, d in enumerate(domains)}
t2 = time.perf_counter()
print(json.dumps({"rows": len(rows), "tasks": int(len(tasks)), "read_s": t1 - t0, "compute_s": t2 - t1, "total_s": t2 - t0,
                  "cpu_s": time.process_time() - c0,
                  "results": results}))
