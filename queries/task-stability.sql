-- Per task: its samples' outcomes in sample order, the success rate, the variance and how
-- often the outcome flips from one sample to the next: which tasks are unstable.
--
-- Parameters (unbound or NULL = the default in brackets):
--   :run        a run's name                       [every run]
--   :grader     whose verdicts count               ['stop-reason']
--   :version    that grader's version              [its highest version with grades in the selection]
--   :failed     incorrect | exclude                ['incorrect']
--   :undecided  incorrect | exclude                ['incorrect']
--   :min_flips  only tasks with at least this many flips   [0: every task]
--
-- Conventions: the latest attempt of each sample; failed and undecided rollouts as in
-- pass-at-k.sql. outcomes: one character per counted sample in sample order, 1 passed,
-- 0 not passed. p = c / n. variance = c(n−c) / (n(n−1)), the unbiased sample variance of the
-- 0/1 outcomes (NULL for n = 1). flips = adjacent samples (in sample order) whose outcomes
-- differ; flip_rate = flips / (n − 1) (NULL for n = 1). Sorted by flip rate, then variance.
-- Run: rollout query task-stability --param run=R --param min_flips=1
WITH
params AS MATERIALIZED (
    SELECT coalesce(:grader, 'stop-reason') AS grader,
           coalesce(:failed, 'incorrect') = 'exclude' AS drop_failed, coalesce(:undecided, 'incorrect') = 'exclude' AS drop_undecided,
           coalesce(:min_flips, 0) AS min_flips,
           CASE WHEN :run IS NULL THEN -9223372036854775808 ELSE coalesce((SELECT id FROM runs WHERE name = :run), 0) END AS lo,
           CASE WHEN :run IS NULL THEN 9223372036854775807 ELSE coalesce((SELECT id FROM runs WHERE name = :run), -1) END AS hi
),
chosen AS MATERIALIZED (
    SELECT coalesce(:version, (SELECT max(gc.grader_version) FROM grade_counts gc, params p
                               WHERE gc.grader = p.grader AND gc.run_id BETWEEN p.lo AND p.hi)) AS v
),
kept AS (
    SELECT r.run_id, r.task_id, r.sample,
           CASE WHEN r.status = 'failed' THEN 0 ELSE coalesce(g.passed, 0) END AS ok
    FROM grades g JOIN latest_rollouts r ON r.id = g.rollout_id
    WHERE g.grader = (SELECT grader FROM params) AND g.grader_version = (SELECT v FROM chosen)
      AND r.run_id BETWEEN (SELECT lo FROM params) AND (SELECT hi FROM params)
      AND NOT (r.status = 'failed' AND (SELECT drop_failed FROM params))
      AND NOT (r.status <> 'failed' AND g.passed IS NULL AND (SELECT drop_undecided FROM params))
),
ordered AS (
    SELECT run_id, task_id, sample, ok,
           CASE WHEN lag(ok) OVER w IS NOT NULL AND lag(ok) OVER w <> ok THEN 1 ELSE 0 END AS flip
    FROM kept WINDOW w AS (PARTITION BY run_id, task_id ORDER BY sample)
),
per_task AS (
    SELECT run_id, task_id, count(*) AS n, sum(ok) AS c, sum(flip) AS flips,
           group_concat(ok, '') AS outcomes
    FROM (SELECT * FROM ordered ORDER BY run_id, task_id, sample)
    GROUP BY run_id, task_id
)
SELECT ru.name AS run, ds.name AS dataset, t.external_id AS task, pt.n, pt.c, pt.outcomes,
       pt.c * 1.0 / pt.n AS p,
       CASE WHEN pt.n > 1 THEN pt.c * (pt.n - pt.c) * 1.0 / (pt.n * (pt.n - 1)) END AS variance,
       pt.flips,
       CASE WHEN pt.n > 1 THEN pt.flips * 1.0 / (pt.n - 1) END AS flip_rate
FROM per_task pt JOIN runs ru ON ru.id = pt.run_id JOIN tasks t ON t.id = pt.task_id JOIN datasets ds ON ds.id = t.dataset_id
WHERE pt.flips >= (SELECT min_flips FROM params)
ORDER BY flip_rate DESC NULLS LAST, variance DESC NULLS LAST, run, dataset, task;
