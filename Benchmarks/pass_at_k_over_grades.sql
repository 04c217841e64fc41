-- The first plain-SQL pass@k (the bundled query before issue 5, kept for the evaluation
-- benchmark): per-rollout grades joined to latest_rollouts, one k per run, no outcome counts.
-- pass@k (the unbiased estimator of Chen et al. 2021) and pass^k per domain, for one run and
-- grader. Conventions (parameters, NULL = default):
--   :run     the run's name (required)
--   :grader  the grader whose verdicts count (default 'stop-reason'); its latest version
--   :k       samples drawn (default 1)
-- n = graded samples of a task (the latest attempt of each sample; a rollout that failed with
-- an error and was graded counts as incorrect), c = those passed. pass@k = 1 − C(n−c,k)/C(n,k)
-- and pass^k = C(c,k)/C(n,k), both as products (no factorials, no overflow). Tasks with
-- n < k cannot be estimated and are left out; `tasks_short` counts them.
WITH RECURSIVE
params AS (SELECT :run AS run, coalesce(:grader, 'stop-reason') AS grader, coalesce(:k, 1) AS k),
seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq, params WHERE i + 1 < params.k),
graded AS (
    SELECT r.task_id, g.passed
    FROM params p
    JOIN runs ru ON ru.name = p.run
    JOIN latest_rollouts r ON r.run_id = ru.id
    JOIN grades g ON g.rollout_id = r.id AND g.grader = p.grader
    WHERE g.grader_version = (SELECT max(x.grader_version) FROM grades x WHERE x.rollout_id = r.id AND x.grader = p.grader)
),
per_task AS (
    SELECT g.task_id, count(*) AS n, sum(g.passed) AS c,
           coalesce(d.key, ds.name) AS grp
    FROM graded g JOIN tasks t ON t.id = g.task_id
    JOIN datasets ds ON ds.id = t.dataset_id
    LEFT JOIN domains d ON d.id = t.domain_id
    GROUP BY g.task_id
),
estimates AS (
    SELECT pt.task_id, pt.grp, pt.n, pt.c,
           CASE WHEN pt.n - pt.c < p.k THEN 1.0
                ELSE 1.0 - (SELECT exp(sum(ln((pt.n - pt.c - s.i) * 1.0 / (pt.n - s.i)))) FROM seq s) END AS pass_at_k,
           CASE WHEN pt.c < p.k THEN 0.0
                ELSE (SELECT exp(sum(ln((pt.c - s.i) * 1.0 / (pt.n - s.i)))) FROM seq s) END AS pass_hat_k
    FROM per_task pt, params p
    WHERE pt.n >= p.k
)
SELECT * FROM (
SELECT grp AS domain,
       (SELECT k FROM params) AS k,
       count(*) AS tasks,
       (SELECT count(*) FROM per_task pt2, params p WHERE pt2.grp = e.grp AND pt2.n < p.k) AS tasks_short,
       sum(n) AS samples,
       round(avg(pass_at_k), 4) AS pass_at_k,
       round(avg(pass_hat_k), 4) AS pass_hat_k,
       round(sum(c) * 1.0 / sum(n), 4) AS mean
FROM estimates e
GROUP BY grp
UNION ALL
SELECT 'all', (SELECT k FROM params), count(*),
       (SELECT count(*) FROM per_task pt2, params p WHERE pt2.n < p.k),
       sum(n), round(avg(pass_at_k), 4), round(avg(pass_hat_k), 4), round(sum(c) * 1.0 / sum(n), 4)
FROM estimates
)
ORDER BY domain = 'all', domain;
