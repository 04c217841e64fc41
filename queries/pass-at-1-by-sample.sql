-- pass@1 of each sample index (sample 0 of every task, sample 1, ...) and their best, average
-- and worst, per group: DeepResearch's "Best Pass@1" and "Avg. Pass@N" over its iterK files.
--
-- Parameters (unbound or NULL = the default in brackets):
--   :run        a run's name                       [every run]
--   :grader     whose verdicts count               ['stop-reason']
--   :version    that grader's version              [its highest version with grades in the selection]
--   :by         run | dataset | domain | agent_model | user_model     ['domain']
--   :failed     incorrect | exclude                ['incorrect']
--   :undecided  incorrect | exclude                ['incorrect']
--
-- Conventions: the latest attempt of each sample; failed and undecided rollouts as in
-- pass-at-k.sql (a failed rollout follows :failed whatever its grade and is never correct; an
-- undecidable grade of a rollout that did not fail follows :undecided and is never correct).
-- pass@1 of sample index s = the share of the group's tasks whose sample s passed, over the
-- tasks that have a counted sample s. best_sample is the index with the best pass@1 (the
-- lowest index on ties). avg_pass_at_1 is the mean over sample indices. The last row, key
-- 'all', is over every task of the selection.
-- Run: rollout query pass-at-1-by-sample --param run=R
WITH
params AS MATERIALIZED (
    SELECT :run AS run, coalesce(:grader, 'stop-reason') AS grader, coalesce(:by, 'domain') AS by,
           coalesce(:failed, 'incorrect') = 'exclude' AS drop_failed, coalesce(:undecided, 'incorrect') = 'exclude' AS drop_undecided,
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
keyed AS (
    SELECT CASE (SELECT by FROM params)
             WHEN 'domain' THEN coalesce((SELECT d.key FROM tasks t JOIN domains d ON d.id = t.domain_id WHERE t.id = k.task_id), '(none)')
             WHEN 'dataset' THEN (SELECT ds.name FROM tasks t JOIN datasets ds ON ds.id = t.dataset_id WHERE t.id = k.task_id)
             WHEN 'run' THEN (SELECT name FROM runs WHERE id = k.run_id)
             WHEN 'agent_model' THEN coalesce(
                 (SELECT json_extract(ru.config, '$.jobs."' || rt.job || '".agent.model') FROM run_tasks rt JOIN runs ru ON ru.id = rt.run_id
                  WHERE rt.run_id = k.run_id AND rt.task_id = k.task_id),
                 (SELECT agent_model FROM runs WHERE id = k.run_id), '(unknown)')
             WHEN 'user_model' THEN coalesce(
                 (SELECT json_extract(ru.config, '$.jobs."' || rt.job || '".user.model') FROM run_tasks rt JOIN runs ru ON ru.id = rt.run_id
                  WHERE rt.run_id = k.run_id AND rt.task_id = k.task_id),
                 (SELECT user_model FROM runs WHERE id = k.run_id), '(unknown)')
             ELSE '(unknown :by ' || (SELECT by FROM params) || ')'
           END AS key, k.sample, k.ok
    FROM kept k
),
per_sample AS (
    SELECT key, sample, avg(ok) AS p1, count(*) AS tasks FROM keyed GROUP BY key, sample
    UNION ALL
    SELECT 'all', sample, avg(ok), count(*) FROM keyed GROUP BY sample
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY key ORDER BY p1 DESC, sample) AS best_rank FROM per_sample
)
SELECT key, count(*) AS sample_indices, max(tasks) AS tasks,
       max(p1) AS best_pass_at_1, min(CASE WHEN best_rank = 1 THEN sample END) AS best_sample,
       avg(p1) AS avg_pass_at_1, min(p1) AS worst_pass_at_1
FROM ranked
GROUP BY key
ORDER BY key = 'all', key;
