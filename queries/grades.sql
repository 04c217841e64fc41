-- The grades of each run by grader and version: how many latest rollouts each version graded
-- and its verdicts, with the grader's definition.
--
-- Parameters (unbound or NULL = every one): :run (a run's name), :grader.
-- Conventions: counts are over the latest attempt of each sample (grade_counts); failed =
-- graded rollouts whose status is failed (counted as not passed by pass-at-k's default).
-- Run: rollout query grades --param run=R
SELECT ru.name AS run, gc.grader, gc.grader_version AS version, gr.kind,
       count(*) AS tasks, sum(gc.n) AS graded, sum(gc.c) AS passed, sum(gc.n - gc.c - gc.u) AS not_passed,
       sum(gc.u) AS undecidable, sum(gc.f) AS failed, gr.created_at, gr.definition
FROM grade_counts gc
JOIN runs ru ON ru.id = gc.run_id
LEFT JOIN graders gr ON gr.name = gc.grader AND gr.version = gc.grader_version
WHERE (:run IS NULL OR ru.name = :run) AND (:grader IS NULL OR gc.grader = :grader)
GROUP BY gc.run_id, gc.grader, gc.grader_version
ORDER BY ru.name, gc.grader, gc.grader_version;
