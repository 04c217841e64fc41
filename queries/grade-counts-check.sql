-- Checks grade_counts against a recount from grades: prints the rows that differ (none when
-- the warehouse is consistent). grade_counts is kept by triggers; this is the proof.
-- Run: rollout query grade-counts-check    or    sqlite3 rollout.db < queries/grade-counts-check.sql
WITH recount AS (
    SELECT r.run_id, r.task_id, g.grader, g.grader_version, count(*) AS n, sum(g.passed IS 1) AS c,
           sum(g.passed IS NULL) AS u, sum(r.status = 'failed') AS f,
           sum(r.status = 'failed' AND g.passed IS 1) AS fc, sum(r.status = 'failed' AND g.passed IS NULL) AS fu
    FROM grades g JOIN latest_rollouts r ON r.id = g.rollout_id
    GROUP BY r.run_id, r.task_id, g.grader, g.grader_version
),
stored AS (SELECT run_id, task_id, grader, grader_version, n, c, u, f, fc, fu FROM grade_counts)
SELECT 'missing or different in grade_counts' AS problem, * FROM (SELECT * FROM recount EXCEPT SELECT * FROM stored)
UNION ALL
SELECT 'not in grades', * FROM (SELECT * FROM stored EXCEPT SELECT * FROM recount);
