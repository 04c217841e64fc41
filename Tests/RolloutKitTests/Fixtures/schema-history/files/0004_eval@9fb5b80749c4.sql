-- Evaluation (issue 5): grader definitions and per-task outcome counts.

-- One version of a grader: `name` is what grades.grader holds; `definition` is the canonical
-- JSON (sorted keys) of everything that decides a verdict: the kind, its options (pattern,
-- tolerance, judge model and prompt template, SQL expression, ...) and `rev`, the revision of
-- the built-in implementation. Grading with a definition not seen before under that name adds
-- version max + 1; the old version and its grades stay.
CREATE TABLE graders (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    kind       TEXT NOT NULL,
    definition TEXT NOT NULL CHECK (json_valid(definition)),
    created_at TEXT NOT NULL,
    PRIMARY KEY (name, version),
    UNIQUE (name, definition)
) STRICT;

-- Outcome counts per (run, task, grader, version), over the latest attempt of each sample:
-- `n` graded samples, `c` passed, `u` undecidable (passed NULL), and among them `f` whose
-- rollout failed, `fc` failed but passed, `fu` failed and undecidable. pass@k and friends
-- depend only on (n, c, k), so the queries read these rows instead of every grade. The
-- triggers below keep them exact whatever writes grades or rollouts (rollout grade, merge, a
-- hand-written INSERT): a new grade, a deleted or changed one, a retry that makes a newer
-- attempt the latest, a deleted rollout, a rollout whose status turns failed. A row whose n
-- drops to 0 is deleted. queries/grade-counts-check.sql recomputes them from `grades`.
CREATE TABLE grade_counts (
    run_id         INTEGER NOT NULL,
    task_id        INTEGER NOT NULL,
    grader         TEXT NOT NULL,
    grader_version INTEGER NOT NULL,
    n              INTEGER NOT NULL CHECK (n >= 0),
    c              INTEGER NOT NULL CHECK (c >= 0),
    u              INTEGER NOT NULL CHECK (u >= 0),
    f              INTEGER NOT NULL CHECK (f >= 0),
    fc             INTEGER NOT NULL CHECK (fc >= 0),
    fu             INTEGER NOT NULL CHECK (fu >= 0),
    PRIMARY KEY (grader, grader_version, run_id, task_id)
) STRICT;
CREATE INDEX grade_counts_by_run ON grade_counts(run_id, task_id);

-- A grade counts when its rollout is the latest attempt of its (run, task, sample).
CREATE TRIGGER grades_count_insert AFTER INSERT ON grades
BEGIN
    INSERT INTO grade_counts(run_id, task_id, grader, grader_version, n, c, u, f, fc, fu)
    SELECT r.run_id, r.task_id, NEW.grader, NEW.grader_version, 1, NEW.passed IS 1, NEW.passed IS NULL,
           r.status = 'failed', r.status = 'failed' AND NEW.passed IS 1, r.status = 'failed' AND NEW.passed IS NULL
    FROM rollouts r
    WHERE r.id = NEW.rollout_id
      AND NOT EXISTS (SELECT 1 FROM rollouts x WHERE x.run_id = r.run_id AND x.task_id = r.task_id
                                                AND x.sample = r.sample AND x.attempt > r.attempt)
    ON CONFLICT (grader, grader_version, run_id, task_id) DO UPDATE SET
        n = n + excluded.n, c = c + excluded.c, u = u + excluded.u,
        f = f + excluded.f, fc = fc + excluded.fc, fu = fu + excluded.fu;
END;

-- A deleted grade (when its rollout is deleted, the rollout's trigger has settled it: the
-- rollout row is gone by the time the cascade deletes its grades, so nothing matches here).
CREATE TRIGGER grades_count_delete AFTER DELETE ON grades
BEGIN
    UPDATE grade_counts SET
        n = n - 1, c = c - (OLD.passed IS 1), u = u - (OLD.passed IS NULL),
        f = f - (r.status = 'failed'), fc = fc - (r.status = 'failed' AND OLD.passed IS 1),
        fu = fu - (r.status = 'failed' AND OLD.passed IS NULL)
    FROM rollouts r
    WHERE r.id = OLD.rollout_id
      AND NOT EXISTS (SELECT 1 FROM rollouts x WHERE x.run_id = r.run_id AND x.task_id = r.task_id
                                                AND x.sample = r.sample AND x.attempt > r.attempt)
      AND grade_counts.grader = OLD.grader AND grade_counts.grader_version = OLD.grader_version
      AND grade_counts.run_id = r.run_id AND grade_counts.task_id = r.task_id;
    DELETE FROM grade_counts WHERE grader = OLD.grader AND grader_version = OLD.grader_version AND n = 0
      AND (run_id, task_id) IN (SELECT run_id, task_id FROM rollouts WHERE id = OLD.rollout_id);
END;

-- A changed grade counts as the old one deleted and the new one inserted.
CREATE TRIGGER grades_count_update AFTER UPDATE OF rollout_id, grader, grader_version, passed ON grades
BEGIN
    UPDATE grade_counts SET
        n = n - 1, c = c - (OLD.passed IS 1), u = u - (OLD.passed IS NULL),
        f = f - (r.status = 'failed'), fc = fc - (r.status = 'failed' AND OLD.passed IS 1),
        fu = fu - (r.status = 'failed' AND OLD.passed IS NULL)
    FROM rollouts r
    WHERE r.id = OLD.rollout_id
      AND NOT EXISTS (SELECT 1 FROM rollouts x WHERE x.run_id = r.run_id AND x.task_id = r.task_id
                                                AND x.sample = r.sample AND x.attempt > r.attempt)
      AND grade_counts.grader = OLD.grader AND grade_counts.grader_version = OLD.grader_version
      AND grade_counts.run_id = r.run_id AND grade_counts.task_id = r.task_id;
    DELETE FROM grade_counts WHERE grader = OLD.grader AND grader_version = OLD.grader_version AND n = 0
      AND (run_id, task_id) IN (SELECT run_id, task_id FROM rollouts WHERE id = OLD.rollout_id);
    INSERT INTO grade_counts(run_id, task_id, grader, grader_version, n, c, u, f, fc, fu)
    SELECT r.run_id, r.task_id, NEW.grader, NEW.grader_version, 1, NEW.passed IS 1, NEW.passed IS NULL,
           r.status = 'failed', r.status = 'failed' AND NEW.passed IS 1, r.status = 'failed' AND NEW.passed IS NULL
    FROM rollouts r
    WHERE r.id = NEW.rollout_id
      AND NOT EXISTS (SELECT 1 FROM rollouts x WHERE x.run_id = r.run_id AND x.task_id = r.task_id
                                                AND x.sample = r.sample AND x.attempt > r.attempt)
    ON CONFLICT (grader, grader_version, run_id, task_id) DO UPDATE SET
        n = n + excluded.n, c = c + excluded.c, u = u + excluded.u,
        f = f + excluded.f, fc = fc + excluded.fc, fu = fu + excluded.fu;
END;

-- A new attempt that is now the latest of its sample: the previous latest attempt's grades
-- stop counting (the new attempt counts once it is graded).
CREATE TRIGGER rollouts_count_new_attempt AFTER INSERT ON rollouts
WHEN NEW.attempt > 0
BEGIN
    UPDATE grade_counts SET
        n = n - 1, c = c - (g.passed IS 1), u = u - (g.passed IS NULL),
        f = f - (p.status = 'failed'), fc = fc - (p.status = 'failed' AND g.passed IS 1),
        fu = fu - (p.status = 'failed' AND g.passed IS NULL)
    FROM rollouts p JOIN grades g ON g.rollout_id = p.id
    WHERE p.run_id = NEW.run_id AND p.task_id = NEW.task_id AND p.sample = NEW.sample
      AND p.attempt = (SELECT max(x.attempt) FROM rollouts x WHERE x.run_id = NEW.run_id AND x.task_id = NEW.task_id
                                                              AND x.sample = NEW.sample AND x.attempt < NEW.attempt)
      AND NOT EXISTS (SELECT 1 FROM rollouts x WHERE x.run_id = NEW.run_id AND x.task_id = NEW.task_id
                                                AND x.sample = NEW.sample AND x.attempt > NEW.attempt)
      AND grade_counts.grader = g.grader AND grade_counts.grader_version = g.grader_version
      AND grade_counts.run_id = NEW.run_id AND grade_counts.task_id = NEW.task_id;
    DELETE FROM grade_counts WHERE run_id = NEW.run_id AND task_id = NEW.task_id AND n = 0;
END;

-- A deleted rollout that was the latest of its sample: its grades stop counting and the
-- previous attempt, now the latest, counts again.
CREATE TRIGGER rollouts_count_delete BEFORE DELETE ON rollouts
BEGIN
    UPDATE grade_counts SET
        n = n - 1, c = c - (g.passed IS 1), u = u - (g.passed IS NULL),
        f = f - (OLD.status = 'failed'), fc = fc - (OLD.status = 'failed' AND g.passed IS 1),
        fu = fu - (OLD.status = 'failed' AND g.passed IS NULL)
    FROM grades g
    WHERE g.rollout_id = OLD.id
      AND NOT EXISTS (SELECT 1 FROM rollouts x WHERE x.run_id = OLD.run_id AND x.task_id = OLD.task_id
                                                AND x.sample = OLD.sample AND x.attempt > OLD.attempt)
      AND grade_counts.grader = g.grader AND grade_counts.grader_version = g.grader_version
      AND grade_counts.run_id = OLD.run_id AND grade_counts.task_id = OLD.task_id;
    INSERT INTO grade_counts(run_id, task_id, grader, grader_version, n, c, u, f, fc, fu)
    SELECT p.run_id, p.task_id, g.grader, g.grader_version, 1, g.passed IS 1, g.passed IS NULL,
           p.status = 'failed', p.status = 'failed' AND g.passed IS 1, p.status = 'failed' AND g.passed IS NULL
    FROM rollouts p JOIN grades g ON g.rollout_id = p.id
    WHERE p.run_id = OLD.run_id AND p.task_id = OLD.task_id AND p.sample = OLD.sample
      AND p.attempt = (SELECT max(x.attempt) FROM rollouts x WHERE x.run_id = OLD.run_id AND x.task_id = OLD.task_id
                                                              AND x.sample = OLD.sample AND x.attempt < OLD.attempt)
      AND NOT EXISTS (SELECT 1 FROM rollouts x WHERE x.run_id = OLD.run_id AND x.task_id = OLD.task_id
                                                AND x.sample = OLD.sample AND x.attempt > OLD.attempt)
      AND EXISTS (SELECT 1 FROM runs WHERE id = OLD.run_id)
    ON CONFLICT (grader, grader_version, run_id, task_id) DO UPDATE SET
        n = n + excluded.n, c = c + excluded.c, u = u + excluded.u,
        f = f + excluded.f, fc = fc + excluded.fc, fu = fu + excluded.fu;
    DELETE FROM grade_counts WHERE run_id = OLD.run_id AND task_id = OLD.task_id AND n = 0;
END;

-- A graded latest rollout whose status turns failed (or stops being failed).
CREATE TRIGGER rollouts_count_status AFTER UPDATE OF status ON rollouts
WHEN (OLD.status = 'failed') <> (NEW.status = 'failed')
 AND EXISTS (SELECT 1 FROM grades WHERE rollout_id = NEW.id)
BEGIN
    UPDATE grade_counts SET
        f = f + (CASE WHEN NEW.status = 'failed' THEN 1 ELSE -1 END),
        fc = fc + (CASE WHEN NEW.status = 'failed' THEN 1 ELSE -1 END) * (g.passed IS 1),
        fu = fu + (CASE WHEN NEW.status = 'failed' THEN 1 ELSE -1 END) * (g.passed IS NULL)
    FROM grades g
    WHERE g.rollout_id = NEW.id
      AND NOT EXISTS (SELECT 1 FROM rollouts x WHERE x.run_id = NEW.run_id AND x.task_id = NEW.task_id
                                                AND x.sample = NEW.sample AND x.attempt > NEW.attempt)
      AND grade_counts.grader = g.grader AND grade_counts.grader_version = g.grader_version
      AND grade_counts.run_id = NEW.run_id AND grade_counts.task_id = NEW.task_id;
END;

-- A deleted run takes its counts along (after its rollouts and grades are gone).
CREATE TRIGGER runs_count_delete AFTER DELETE ON runs
BEGIN
    DELETE FROM grade_counts WHERE run_id = OLD.id;
END;

-- Grades written before this migration: their graders get a version row (stop-reason version
-- 1 is the quickstart's definition; others are marked legacy) and their counts.
INSERT INTO graders(name, version, kind, definition, created_at)
SELECT DISTINCT grader, grader_version,
       CASE WHEN grader = 'stop-reason' AND grader_version = 1 THEN 'stop-reason' ELSE 'legacy' END,
       CASE WHEN grader = 'stop-reason' AND grader_version = 1
            THEN '{"kind":"stop-reason","passing":["answer","user_stop"],"rev":1}'
            ELSE '{"kind":"legacy","version":' || grader_version || '}' END,
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM grades;

INSERT INTO grade_counts(run_id, task_id, grader, grader_version, n, c, u, f, fc, fu)
SELECT r.run_id, r.task_id, g.grader, g.grader_version, count(*), sum(g.passed IS 1), sum(g.passed IS NULL),
       sum(r.status = 'failed'), sum(r.status = 'failed' AND g.passed IS 1), sum(r.status = 'failed' AND g.passed IS NULL)
FROM grades g JOIN latest_rollouts r ON r.id = g.rollout_id
GROUP BY r.run_id, r.task_id, g.grader, g.grader_version;
