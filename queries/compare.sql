-- Two runs task by task: each side's n, c and success rate, the difference, and which tasks
-- flipped.
--
-- Parameters (unbound or NULL = the default in brackets):
--   :a, :b                  the runs' names (required)
--   :grader                 whose verdicts count                  ['stop-reason']
--   :version_a, :version_b  that grader's version for each run    [each run's highest version of it]
--   :failed                 incorrect | exclude                   ['incorrect']
--   :undecided              incorrect | exclude                   ['incorrect']
--
-- Conventions: tasks are matched by their row (the same dataset and external id); n and c as
-- in pass-at-k.sql, from grade_counts. p = c / n (pass@1). change: 'flipped to pass' when
-- p_a < 0.5 ≤ p_b, 'flipped to fail' when p_a ≥ 0.5 > p_b (with one sample per task: failed
-- in one run, passed in the other), else 'better' / 'worse' / 'same' by p; 'only in a' /
-- 'only in b' for tasks graded in one run only. Sorted: flips first, then by |delta|.
-- Run: rollout query compare --param a=RUN_A --param b=RUN_B --param grader=reward
WITH
params AS MATERIALIZED (
    SELECT coalesce(:grader, 'stop-reason') AS grader,
           coalesce(:failed, 'incorrect') = 'exclude' AS drop_failed, coalesce(:undecided, 'incorrect') = 'exclude' AS drop_undecided,
           (SELECT id FROM runs WHERE name = :a) AS a, (SELECT id FROM runs WHERE name = :b) AS b
),
versions AS MATERIALIZED (
    SELECT coalesce(:version_a, (SELECT max(grader_version) FROM grade_counts WHERE grader = p.grader AND run_id = p.a)) AS va,
           coalesce(:version_b, (SELECT max(grader_version) FROM grade_counts WHERE grader = p.grader AND run_id = p.b)) AS vb
    FROM params p
),
side AS (
    SELECT 'a' AS side, gc.task_id, gc.n, gc.c, gc.u, gc.f, gc.fc, gc.fu FROM grade_counts gc
    WHERE gc.grader = (SELECT grader FROM params) AND gc.grader_version = (SELECT va FROM versions) AND gc.run_id = (SELECT a FROM params)
    UNION ALL
    SELECT 'b', gc.task_id, gc.n, gc.c, gc.u, gc.f, gc.fc, gc.fu FROM grade_counts gc
    WHERE gc.grader = (SELECT grader FROM params) AND gc.grader_version = (SELECT vb FROM versions) AND gc.run_id = (SELECT b FROM params)
),
counted AS (
    SELECT side, task_id,
           n - CASE WHEN (SELECT drop_failed FROM params) THEN f ELSE 0 END
             - CASE WHEN (SELECT drop_undecided FROM params) THEN u - fu ELSE 0 END AS n,
           c - fc AS c
    FROM side
),
sa AS (SELECT task_id, n, c FROM counted WHERE side = 'a' AND n > 0),
sb AS (SELECT task_id, n, c FROM counted WHERE side = 'b' AND n > 0),
joined AS (
    SELECT sa.task_id, sa.n AS n_a, sa.c AS c_a, sb.n AS n_b, sb.c AS c_b FROM sa LEFT JOIN sb ON sb.task_id = sa.task_id
    UNION ALL
    SELECT sb.task_id, NULL, NULL, sb.n, sb.c FROM sb WHERE sb.task_id NOT IN (SELECT task_id FROM sa)
),
rated AS (
    SELECT j.*, j.c_a * 1.0 / j.n_a AS p_a, j.c_b * 1.0 / j.n_b AS p_b FROM joined j
)
SELECT ds.name AS dataset, t.external_id AS task, r.n_a, r.c_a, r.p_a, r.n_b, r.c_b, r.p_b,
       r.p_b - r.p_a AS delta,
       CASE WHEN r.n_b IS NULL THEN 'only in a'
            WHEN r.n_a IS NULL THEN 'only in b'
            WHEN r.p_a < 0.5 AND r.p_b >= 0.5 THEN 'flipped to pass'
            WHEN r.p_a >= 0.5 AND r.p_b < 0.5 THEN 'flipped to fail'
            WHEN r.p_b > r.p_a THEN 'better'
            WHEN r.p_b < r.p_a THEN 'worse'
            ELSE 'same' END AS change
FROM rated r JOIN tasks t ON t.id = r.task_id JOIN datasets ds ON ds.id = t.dataset_id
ORDER BY change NOT LIKE 'flipped%', abs(coalesce(r.p_b - r.p_a, 0)) DESC, dataset, task;
