-- pass@k (unbiased), pass^k, avg@n, any-correct and mixed share per group, from grade_counts
-- (folded by domain and dataset in grade_histogram for those groupings and by run).
--
-- Parameters (unbound or NULL = the default in brackets):
--   :run        a run's name                                     [every run]
--   :grader     whose verdicts count                             ['stop-reason']
--   :version    that grader's version                            [its highest version with grades in the selection]
--   :k          one k or a comma-separated list, e.g. '1,5,10'   [1]
--   :by         run | dataset | domain | agent_model | user_model | task     ['domain']
--   :failed     incorrect | exclude                              ['incorrect']
--   :undecided  incorrect | exclude                              ['incorrect']
--   :short      refuse | cap | skip                              ['refuse']
--
-- Conventions:
--   * The unit is a task of a run. n = its graded samples (the latest attempt of each sample;
--     ungraded, pending or running samples are not counted), c = those that passed.
--   * failed: a rollout whose status is 'failed' (an error after its retries) counts as
--     incorrect ('incorrect'), or is left out of n ('exclude'). A failed rollout never counts
--     as correct, whatever its grade.
--   * undecided: a grade with passed NULL (e.g. an unparseable judge reply) of a rollout that
--     did not fail counts as incorrect ('incorrect') or is left out of n ('exclude'). It never
--     counts as correct. (A failed rollout follows :failed, whatever its grade.)
--   * pass@k = 1 − C(n−c, k) / C(n, k)  (Chen et al. 2021)  and  pass^k = C(c, k) / C(n, k)
--     (τ-bench), both as running products ∏ (n−c−i)/(n−i) and ∏ (c−i)/(n−i) over i < k: no
--     factorials, no overflow, exact for every n. Each group's value is the mean over its tasks.
--   * k > n for some task: 'refuse' gives NULL estimates for the groups concerned and says so
--     in `note`; 'cap' lowers k to the smallest n of the selection for every group (k_used);
--     'skip' leaves those tasks out (tasks_short counts them).
--   * avg_at_n = mean over tasks of c/n (the "avg@k" of papers when every task has n = k
--     samples; pass@1 in expectation); any_correct = share of tasks with c > 0 over all their
--     samples (DeepResearch's "Pass@N"); mixed = share of tasks with 0 < c < n (unstable).
--   * domain: the task's domain key (a cross-domain combination is one key, 'A+B'); a task
--     without one is '(none)'. agent_model / user_model: the model of the job the task ran in
--     (runs.config), else the run's; '(unknown)' for imported runs that do not say.
--   * The last row, key 'all', is over every task of the selection.
-- Run: rollout query pass-at-k --param run=R --param k=1,5,10
--      sqlite3 rollout.db < queries/pass-at-k.sql   (defaults; sqlite3's .param set :k "'1,5,10'" sets one)
WITH RECURSIVE
-- Parameters once, as constants (uncorrelated scalar subqueries are evaluated once); the run
-- filter is a range over grade_counts' key, so it is an index search either way.
params AS MATERIALIZED (
    SELECT :run AS run, coalesce(:grader, 'stop-reason') AS grader, coalesce(:by, 'domain') AS by,
           coalesce(:failed, 'incorrect') = 'exclude' AS drop_failed, coalesce(:undecided, 'incorrect') = 'exclude' AS drop_undecided,
           coalesce(:short, 'refuse') AS short,
           CASE WHEN :run IS NULL THEN -9223372036854775808 ELSE coalesce((SELECT id FROM runs WHERE name = :run), 0) END AS lo,
           CASE WHEN :run IS NULL THEN 9223372036854775807 ELSE coalesce((SELECT id FROM runs WHERE name = :run), -1) END AS hi
),
chosen AS MATERIALIZED (
    SELECT coalesce(:version, (SELECT max(h.grader_version) FROM grade_histogram h, params p
                               WHERE h.grader = p.grader AND h.run_id BETWEEN p.lo AND p.hi)) AS v
),
ks AS (SELECT DISTINCT CAST(value AS INTEGER) AS k FROM json_each('[' || coalesce(:k, 1) || ']') WHERE CAST(value AS INTEGER) >= 1),
-- For the model groupings: the model (agent's or user's, as :by says) of each job of the runs
-- in the selection (runs.config), read once; and each run's number of jobs and its model when
-- that is one for the whole run (one job, or none: the run's own column).
job_models AS MATERIALIZED (
    SELECT ru.id AS run_id, j.key AS job,
           json_extract(j.value, CASE p.by WHEN 'agent_model' THEN '$.agent.model' ELSE '$.user.model' END) AS model
    FROM params p CROSS JOIN runs ru CROSS JOIN json_each(ru.config, '$.jobs') j
    WHERE p.by IN ('agent_model', 'user_model') AND ru.id BETWEEN p.lo AND p.hi AND json_type(ru.config, '$.jobs') = 'object'
),
run_models AS MATERIALIZED (
    SELECT ru.id AS run_id, count(jm.job) AS jobs,
           coalesce(CASE WHEN count(jm.job) = 1 THEN max(jm.model) END,
                    CASE p.by WHEN 'agent_model' THEN ru.agent_model ELSE ru.user_model END, '(unknown)') AS model
    FROM params p CROSS JOIN runs ru LEFT JOIN job_models jm ON jm.run_id = ru.id
    WHERE p.by IN ('agent_model', 'user_model') AND ru.id BETWEEN p.lo AND p.hi
    GROUP BY ru.id
),
-- Each task's (n, c) under the conventions and its group g, an integer id (a model name for
-- the model groupings) labelled after counting. The estimators depend only on (n, c, k), so tasks are
-- counted per (group, n, c) first.
counted AS (
    -- By domain, dataset, run, or model for runs of at most one job: from grade_histogram
    -- (tasks already counted per group and (n, c, u, f, fc, fu) by triggers), a few hundred
    -- rows whatever the number of tasks. The parameters are the outer loop (CROSS JOIN keeps
    -- them there), so a branch of other groupings reads nothing and this one is an index
    -- search on (grader, version, run).
    SELECT CASE p.by WHEN 'domain' THEN h.domain_id WHEN 'dataset' THEN h.dataset_id WHEN 'run' THEN h.run_id
                     ELSE (SELECT model FROM run_models WHERE run_id = h.run_id) END AS g,
           h.n - CASE WHEN p.drop_failed THEN h.f ELSE 0 END
               - CASE WHEN p.drop_undecided THEN h.u - h.fu ELSE 0 END AS tn,
           h.c - h.fc AS tc,
           sum(h.tasks) AS tasks
    FROM params p CROSS JOIN chosen ch CROSS JOIN grade_histogram h
    WHERE p.by IN ('domain', 'dataset', 'run', 'agent_model', 'user_model')
      AND h.grader = p.grader AND h.grader_version = ch.v AND h.run_id BETWEEN p.lo AND p.hi
      AND (p.by IN ('domain', 'dataset', 'run') OR h.run_id NOT IN (SELECT run_id FROM run_models WHERE jobs > 1))
    GROUP BY 1, 2, 3
    UNION ALL
    -- By model, for runs of several jobs: task by task, the model of the task's job.
    SELECT coalesce((SELECT jm.model FROM run_tasks rt JOIN job_models jm ON jm.run_id = rt.run_id AND jm.job = rt.job
                     WHERE rt.run_id = gc.run_id AND rt.task_id = gc.task_id), mr.model) AS g,
           gc.n - CASE WHEN p.drop_failed THEN gc.f ELSE 0 END
                - CASE WHEN p.drop_undecided THEN gc.u - gc.fu ELSE 0 END AS tn,
           gc.c - gc.fc AS tc,
           count(*) AS tasks
    FROM params p CROSS JOIN chosen ch CROSS JOIN run_models mr CROSS JOIN grade_counts gc
    WHERE mr.jobs > 1 AND gc.grader = p.grader AND gc.grader_version = ch.v AND gc.run_id = mr.run_id
    GROUP BY 1, 2, 3
    UNION ALL
    -- By task: task by task from grade_counts.
    SELECT gc.task_id AS g,
           gc.n - CASE WHEN p.drop_failed THEN gc.f ELSE 0 END
                - CASE WHEN p.drop_undecided THEN gc.u - gc.fu ELSE 0 END AS tn,
           gc.c - gc.fc AS tc,
           count(*) AS tasks
    FROM params p CROSS JOIN chosen ch CROSS JOIN grade_counts gc
    WHERE p.by NOT IN ('domain', 'dataset', 'run', 'agent_model', 'user_model')
      AND gc.grader = p.grader AND gc.grader_version = ch.v AND gc.run_id BETWEEN p.lo AND p.hi
    GROUP BY 1, 2, 3
),
cells AS MATERIALIZED (
    SELECT CASE p.by
             WHEN 'domain' THEN coalesce((SELECT key FROM domains WHERE id = x.g), '(none)')
             WHEN 'dataset' THEN (SELECT name FROM datasets WHERE id = x.g)
             WHEN 'run' THEN (SELECT name FROM runs WHERE id = x.g)
             WHEN 'task' THEN (SELECT ds.name || '/' || t.external_id FROM tasks t JOIN datasets ds ON ds.id = t.dataset_id WHERE t.id = x.g)
             WHEN 'agent_model' THEN x.g WHEN 'user_model' THEN x.g
             ELSE '(unknown :by ' || p.by || ')'
           END AS key, x.tn AS n, x.tc AS c, sum(x.tasks) AS tasks
    FROM counted x, params p
    WHERE x.tn > 0
    GROUP BY 1, 2, 3
),
kk AS (
    SELECT ks.k, CASE WHEN p.short = 'cap' THEN min(ks.k, coalesce((SELECT min(n) FROM cells), ks.k)) ELSE ks.k END AS k_used
    FROM ks, params p
),
distinct_nck AS (SELECT DISTINCT c.n, c.c, kk.k_used AS k FROM cells c, kk WHERE c.n >= kk.k_used),
prod(n, c, k, i, miss, hit) AS (
    SELECT n, c, k, 0, 1.0, 1.0 FROM distinct_nck
    UNION ALL
    SELECT n, c, k, i + 1, miss * max(n - c - i, 0) / (n - i), hit * max(c - i, 0) / (n - i) FROM prod WHERE i < k
),
est AS (SELECT n, c, k, 1.0 - miss AS pass_at_k, hit AS pass_hat_k FROM prod WHERE i = k),
rows_ AS (
    SELECT c.key, kk.k, kk.k_used, c.n, c.c, c.tasks, e.pass_at_k, e.pass_hat_k
    FROM cells c CROSS JOIN kk LEFT JOIN est e ON e.n = c.n AND e.c = c.c AND e.k = kk.k_used
    UNION ALL
    SELECT 'all', kk.k, kk.k_used, c.n, c.c, c.tasks, e.pass_at_k, e.pass_hat_k
    FROM cells c CROSS JOIN kk LEFT JOIN est e ON e.n = c.n AND e.c = c.c AND e.k = kk.k_used
),
agg AS (
    SELECT key, k, k_used,
           sum(tasks) AS all_tasks,
           coalesce(sum(tasks) FILTER (WHERE n < k_used), 0) AS tasks_short,
           min(n) AS min_n,
           sum(n * tasks) AS samples,
           sum(pass_at_k * tasks) FILTER (WHERE n >= k_used) / sum(tasks) FILTER (WHERE n >= k_used) AS pass_at_k,
           sum(pass_hat_k * tasks) FILTER (WHERE n >= k_used) / sum(tasks) FILTER (WHERE n >= k_used) AS pass_hat_k,
           sum(c * 1.0 / n * tasks) / sum(tasks) AS avg_at_n,
           coalesce(sum(tasks) FILTER (WHERE c > 0), 0) * 1.0 / sum(tasks) AS any_correct,
           coalesce(sum(tasks) FILTER (WHERE c > 0 AND c < n), 0) * 1.0 / sum(tasks) AS mixed
    FROM rows_ GROUP BY key, k, k_used
)
SELECT a.key, a.k, a.k_used,
       CASE WHEN p.short = 'skip' THEN a.all_tasks - a.tasks_short ELSE a.all_tasks END AS tasks,
       a.tasks_short, a.samples,
       CASE WHEN a.tasks_short > 0 AND p.short <> 'skip' THEN NULL ELSE a.pass_at_k END AS pass_at_k,
       CASE WHEN a.tasks_short > 0 AND p.short <> 'skip' THEN NULL ELSE a.pass_hat_k END AS pass_hat_k,
       a.avg_at_n, a.any_correct, a.mixed,
       CASE WHEN a.tasks_short > 0 AND p.short <> 'skip'
            THEN 'refused: k=' || a.k_used || ' > n for ' || a.tasks_short || ' task(s) (fewest samples: ' || a.min_n
                 || '); set :short to cap or skip'
            WHEN a.tasks_short > 0 THEN a.tasks_short || ' task(s) with n < ' || a.k_used || ' left out'
            WHEN a.k_used < a.k THEN 'k capped at ' || a.k_used || ' (the fewest samples of a task)'
       END AS note
FROM agg a, params p
ORDER BY a.key = 'all', a.key, a.k;
