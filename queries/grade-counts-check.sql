-- Checks grade_counts against a recount from grades, and grade_histogram against grade_counts
-- folded by domain and dataset: prints the rows that differ (none when the warehouse is
-- consistent). Both are kept by triggers; this is the proof.
-- Run: rollout query grade-counts-check    or    sqlite3 rollout.db < queries/grade-counts-check.sql
WITH recount AS (
    SELECT r.run_id, r.task_id, g.grader, g.grader_version, count(*) AS n, sum(g.passed IS 1) AS c,
           sum(g.passed IS NULL) AS u, sum(r.status = 'failed') AS f,
           sum(r.status = 'failed' AND g.passed IS 1) AS fc, sum(r.status = 'failed' AND g.passed IS NULL) AS fu
    FROM grades g JOIN latest_rollouts r ON r.id = g.rollout_id
    GROUP BY r.run_id, r.task_id, g.grader, g.grader_version
),
stored AS (SELECT run_id, task_id, grader, grader_version, n, c, u, f, fc, fu FROM grade_counts),
folded AS (
    SELECT gc.grader, gc.grader_version, gc.run_id, coalesce(t.domain_id, 0) AS domain_id, t.dataset_id,
           gc.n, gc.c, gc.u, gc.f, gc.fc, gc.fu, count(*) AS tasks
    FROM grade_counts gc JOIN tasks t ON t.id = gc.task_id
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
),
histogram AS (SELECT * FROM grade_histogram)
SELECT 'missing or different in grade_counts' AS problem, * FROM (SELECT * FROM recount EXCEPT SELECT * FROM stored)
UNION ALL
SELECT 'not in grades', * FROM (SELECT * FROM stored EXCEPT SELECT * FROM recount)
UNION ALL
SELECT 'grade_histogram misses or miscounts (task = its count; domain ' || domain_id || ', dataset ' || dataset_id || ')',
       run_id, tasks, grader, grader_version, n, c, u, f, fc, fu
FROM (SELECT * FROM folded EXCEPT SELECT * FROM histogram)
UNION ALL
SELECT 'grade_histogram has extra (task = its count; domain ' || domain_id || ', dataset ' || dataset_id || ')',
       run_id, tasks, grader, grader_version, n, c, u, f, fc, fu
FROM (SELECT * FROM histogram EXCEPT SELECT * FROM folded);
