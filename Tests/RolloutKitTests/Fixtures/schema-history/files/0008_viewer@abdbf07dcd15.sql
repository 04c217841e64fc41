-- The web viewer (issue 8): reviews, message search, and the counters its pages read so that
-- a page over a run of a million rollouts reads a few rows, not the run.

-- A reviewer's verdict on a trajectory, given in `rollout serve` (or written by hand). Every
-- review is kept; the newest one of a rollout is its verdict (latest_reviews). `reviewer` is
-- whoever the form said (free text; the viewer has no accounts).
CREATE TABLE reviews (
    id         INTEGER PRIMARY KEY,
    rollout_id INTEGER NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
    verdict    TEXT NOT NULL CHECK (verdict IN ('accepted','rejected')),
    note       TEXT,
    reviewer   TEXT,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX reviews_by_rollout ON reviews(rollout_id, id);

-- The verdict that counts: each reviewed rollout's newest review.
CREATE VIEW latest_reviews AS
SELECT v.* FROM reviews v
WHERE v.id = (SELECT max(x.id) FROM reviews x WHERE x.rollout_id = v.rollout_id);

-- Rollouts per (run, status, stop reason) over the latest attempt of each sample; '' stands
-- for no stop reason. Kept exact by the triggers below whatever writes rollouts (the engine,
-- imports, merge, a hand-written statement), like grade_counts; a row whose n drops to 0 is
-- deleted. The keys of a rollout (run, task, sample, attempt) are never updated in place.
CREATE TABLE run_outcomes (
    run_id      INTEGER NOT NULL,
    status      TEXT NOT NULL,
    stop_reason TEXT NOT NULL,
    n           INTEGER NOT NULL CHECK (n >= 0),
    PRIMARY KEY (run_id, status, stop_reason)
) STRICT;

-- A new rollout that is the latest attempt of its sample counts, and the attempt it supersedes
-- (if any) stops counting.
CREATE TRIGGER rollouts_outcome_insert AFTER INSERT ON rollouts
WHEN NOT EXISTS (SELECT 1 FROM rollouts x WHERE x.run_id = NEW.run_id AND x.task_id = NEW.task_id
                                          AND x.sample = NEW.sample AND x.attempt > NEW.attempt)
BEGIN
    UPDATE run_outcomes SET n = n - 1
    FROM (SELECT p.status, coalesce(p.stop_reason, '') AS stop_reason FROM rollouts p
          WHERE p.run_id = NEW.run_id AND p.task_id = NEW.task_id AND p.sample = NEW.sample
            AND p.attempt < NEW.attempt
          ORDER BY p.attempt DESC LIMIT 1) AS prev
    WHERE run_outcomes.run_id = NEW.run_id AND run_outcomes.status = prev.status
      AND run_outcomes.stop_reason = prev.stop_reason;
    DELETE FROM run_outcomes WHERE run_id = NEW.run_id AND n = 0;
    INSERT INTO run_outcomes(run_id, status, stop_reason, n) VALUES (NEW.run_id, NEW.status, coalesce(NEW.stop_reason, ''), 1)
    ON CONFLICT (run_id, status, stop_reason) DO UPDATE SET n = n + 1;
END;

-- A latest attempt whose status or stop reason changes moves from one count to another.
CREATE TRIGGER rollouts_outcome_update AFTER UPDATE OF status, stop_reason ON rollouts
WHEN (OLD.status IS NOT NEW.status OR OLD.stop_reason IS NOT NEW.stop_reason)
 AND NOT EXISTS (SELECT 1 FROM rollouts x WHERE x.run_id = NEW.run_id AND x.task_id = NEW.task_id
                                          AND x.sample = NEW.sample AND x.attempt > NEW.attempt)
BEGIN
    UPDATE run_outcomes SET n = n - 1
    WHERE run_id = OLD.run_id AND status = OLD.status AND stop_reason = coalesce(OLD.stop_reason, '');
    DELETE FROM run_outcomes WHERE run_id = OLD.run_id AND n = 0;
    INSERT INTO run_outcomes(run_id, status, stop_reason, n) VALUES (NEW.run_id, NEW.status, coalesce(NEW.stop_reason, ''), 1)
    ON CONFLICT (run_id, status, stop_reason) DO UPDATE SET n = n + 1;
END;

-- A deleted latest attempt stops counting; the attempt before it (if any) is the latest again.
CREATE TRIGGER rollouts_outcome_delete AFTER DELETE ON rollouts
WHEN NOT EXISTS (SELECT 1 FROM rollouts x WHERE x.run_id = OLD.run_id AND x.task_id = OLD.task_id
                                          AND x.sample = OLD.sample AND x.attempt > OLD.attempt)
BEGIN
    UPDATE run_outcomes SET n = n - 1
    WHERE run_id = OLD.run_id AND status = OLD.status AND stop_reason = coalesce(OLD.stop_reason, '');
    INSERT INTO run_outcomes(run_id, status, stop_reason, n)
    SELECT p.run_id, p.status, coalesce(p.stop_reason, ''), 1 FROM rollouts p
    WHERE p.run_id = OLD.run_id AND p.task_id = OLD.task_id AND p.sample = OLD.sample AND p.attempt < OLD.attempt
      AND EXISTS (SELECT 1 FROM runs WHERE id = OLD.run_id)
    ORDER BY p.attempt DESC LIMIT 1
    ON CONFLICT (run_id, status, stop_reason) DO UPDATE SET n = n + 1;
    DELETE FROM run_outcomes WHERE run_id = OLD.run_id AND n = 0;
END;

CREATE TRIGGER runs_outcome_delete AFTER DELETE ON runs
BEGIN
    DELETE FROM run_outcomes WHERE run_id = OLD.id;
END;

INSERT INTO run_outcomes(run_id, status, stop_reason, n)
SELECT run_id, status, coalesce(stop_reason, ''), count(*) FROM latest_rollouts GROUP BY 1, 2, 3;

-- grade_counts folded by the task's domain and dataset: how many tasks of a run have each
-- (n, c, u, f, fc, fu) under a grader version, per domain (0: none) and dataset. pass@k by
-- domain, dataset or run depends only on these, so queries/pass-at-k.sql reads a few hundred
-- rows here instead of one per task (a run of 250,000 tasks took ~0.4 s). Kept by triggers on
-- grade_counts and on a task moving to another domain or dataset; a row at 0 tasks is deleted.
CREATE TABLE grade_histogram (
    grader         TEXT NOT NULL,
    grader_version INTEGER NOT NULL,
    run_id         INTEGER NOT NULL,
    domain_id      INTEGER NOT NULL,
    dataset_id     INTEGER NOT NULL,
    n              INTEGER NOT NULL,
    c              INTEGER NOT NULL,
    u              INTEGER NOT NULL,
    f              INTEGER NOT NULL,
    fc             INTEGER NOT NULL,
    fu             INTEGER NOT NULL,
    tasks          INTEGER NOT NULL CHECK (tasks >= 0),
    PRIMARY KEY (grader, grader_version, run_id, domain_id, dataset_id, n, c, u, f, fc, fu)
) STRICT, WITHOUT ROWID;
CREATE INDEX grade_counts_by_task ON grade_counts(task_id);

CREATE TRIGGER grade_counts_histogram_insert AFTER INSERT ON grade_counts
BEGIN
    INSERT INTO grade_histogram
    SELECT NEW.grader, NEW.grader_version, NEW.run_id, coalesce(t.domain_id, 0), t.dataset_id,
           NEW.n, NEW.c, NEW.u, NEW.f, NEW.fc, NEW.fu, 1
    FROM tasks t WHERE t.id = NEW.task_id
    ON CONFLICT (grader, grader_version, run_id, domain_id, dataset_id, n, c, u, f, fc, fu) DO UPDATE SET tasks = tasks + 1;
END;

CREATE TRIGGER grade_counts_histogram_delete AFTER DELETE ON grade_counts
BEGIN
    UPDATE grade_histogram SET tasks = tasks - 1
    FROM tasks t
    WHERE t.id = OLD.task_id AND grade_histogram.grader = OLD.grader AND grade_histogram.grader_version = OLD.grader_version
      AND grade_histogram.run_id = OLD.run_id AND grade_histogram.domain_id = coalesce(t.domain_id, 0)
      AND grade_histogram.dataset_id = t.dataset_id AND grade_histogram.n = OLD.n AND grade_histogram.c = OLD.c
      AND grade_histogram.u = OLD.u AND grade_histogram.f = OLD.f AND grade_histogram.fc = OLD.fc AND grade_histogram.fu = OLD.fu;
    DELETE FROM grade_histogram WHERE grader = OLD.grader AND grader_version = OLD.grader_version AND run_id = OLD.run_id AND tasks = 0;
END;

CREATE TRIGGER grade_counts_histogram_update AFTER UPDATE ON grade_counts
BEGIN
    UPDATE grade_histogram SET tasks = tasks - 1
    FROM tasks t
    WHERE t.id = OLD.task_id AND grade_histogram.grader = OLD.grader AND grade_histogram.grader_version = OLD.grader_version
      AND grade_histogram.run_id = OLD.run_id AND grade_histogram.domain_id = coalesce(t.domain_id, 0)
      AND grade_histogram.dataset_id = t.dataset_id AND grade_histogram.n = OLD.n AND grade_histogram.c = OLD.c
      AND grade_histogram.u = OLD.u AND grade_histogram.f = OLD.f AND grade_histogram.fc = OLD.fc AND grade_histogram.fu = OLD.fu;
    DELETE FROM grade_histogram WHERE grader = OLD.grader AND grader_version = OLD.grader_version AND run_id = OLD.run_id AND tasks = 0;
    INSERT INTO grade_histogram
    SELECT NEW.grader, NEW.grader_version, NEW.run_id, coalesce(t.domain_id, 0), t.dataset_id,
           NEW.n, NEW.c, NEW.u, NEW.f, NEW.fc, NEW.fu, 1
    FROM tasks t WHERE t.id = NEW.task_id
    ON CONFLICT (grader, grader_version, run_id, domain_id, dataset_id, n, c, u, f, fc, fu) DO UPDATE SET tasks = tasks + 1;
END;

-- A task that moves to another domain or dataset moves its counts along.
CREATE TRIGGER tasks_histogram_move AFTER UPDATE OF domain_id, dataset_id ON tasks
WHEN OLD.domain_id IS NOT NEW.domain_id OR OLD.dataset_id IS NOT NEW.dataset_id
BEGIN
    UPDATE grade_histogram SET tasks = tasks - x.k
    FROM (SELECT grader, grader_version, run_id, n, c, u, f, fc, fu, count(*) AS k FROM grade_counts
          WHERE task_id = NEW.id GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9) AS x
    WHERE grade_histogram.grader = x.grader AND grade_histogram.grader_version = x.grader_version
      AND grade_histogram.run_id = x.run_id AND grade_histogram.domain_id = coalesce(OLD.domain_id, 0)
      AND grade_histogram.dataset_id = OLD.dataset_id AND grade_histogram.n = x.n AND grade_histogram.c = x.c
      AND grade_histogram.u = x.u AND grade_histogram.f = x.f AND grade_histogram.fc = x.fc AND grade_histogram.fu = x.fu;
    DELETE FROM grade_histogram WHERE tasks = 0
      AND (grader, grader_version, run_id) IN (SELECT grader, grader_version, run_id FROM grade_counts WHERE task_id = NEW.id);
    INSERT INTO grade_histogram
    SELECT grader, grader_version, run_id, coalesce(NEW.domain_id, 0), NEW.dataset_id, n, c, u, f, fc, fu, count(*)
    FROM grade_counts WHERE task_id = NEW.id GROUP BY grader, grader_version, run_id, n, c, u, f, fc, fu
    ON CONFLICT (grader, grader_version, run_id, domain_id, dataset_id, n, c, u, f, fc, fu) DO UPDATE SET tasks = tasks + excluded.tasks;
END;

INSERT INTO grade_histogram
SELECT gc.grader, gc.grader_version, gc.run_id, coalesce(t.domain_id, 0), t.dataset_id, gc.n, gc.c, gc.u, gc.f, gc.fc, gc.fu, count(*)
FROM grade_counts gc JOIN tasks t ON t.id = gc.task_id
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11;

-- LLM usage per (run, role, model) from llm_calls: `calls` attempts, `failed` those with an
-- error or a non-2xx status (in-process mock calls have no status), token sums, `cost_usd` over the calls with a known price (`priced` of them),
-- `latency_ms` summed (mean = latency_ms / calls). Kept by triggers; calls without a run
-- (`rollout chat`, unassigned batch lines) are not counted.
CREATE TABLE run_usage (
    run_id            INTEGER NOT NULL,
    role              TEXT NOT NULL,
    model             TEXT NOT NULL,
    calls             INTEGER NOT NULL,
    failed            INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    reasoning_tokens  INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    priced            INTEGER NOT NULL,
    cost_usd          REAL NOT NULL,
    latency_ms        REAL NOT NULL,
    PRIMARY KEY (run_id, role, model)
) STRICT;

CREATE TRIGGER llm_calls_usage_insert AFTER INSERT ON llm_calls WHEN NEW.run_id IS NOT NULL
BEGIN
    INSERT INTO run_usage VALUES (
        NEW.run_id, NEW.role, NEW.model, 1,
        (NEW.error IS NOT NULL OR coalesce(NEW.http_status, 200) NOT BETWEEN 200 AND 299),
        coalesce(NEW.prompt_tokens, 0), coalesce(NEW.completion_tokens, 0), coalesce(NEW.reasoning_tokens, 0),
        coalesce(NEW.cached_tokens, 0), NEW.cost_usd IS NOT NULL, coalesce(NEW.cost_usd, 0), coalesce(NEW.latency_ms, 0))
    ON CONFLICT (run_id, role, model) DO UPDATE SET
        calls = calls + 1, failed = failed + excluded.failed,
        prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens,
        reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens, cached_tokens = cached_tokens + excluded.cached_tokens,
        priced = priced + excluded.priced, cost_usd = cost_usd + excluded.cost_usd, latency_ms = latency_ms + excluded.latency_ms;
END;

CREATE TRIGGER llm_calls_usage_delete AFTER DELETE ON llm_calls WHEN OLD.run_id IS NOT NULL
BEGIN
    UPDATE run_usage SET
        calls = calls - 1, failed = failed - (OLD.error IS NOT NULL OR coalesce(OLD.http_status, 200) NOT BETWEEN 200 AND 299),
        prompt_tokens = prompt_tokens - coalesce(OLD.prompt_tokens, 0), completion_tokens = completion_tokens - coalesce(OLD.completion_tokens, 0),
        reasoning_tokens = reasoning_tokens - coalesce(OLD.reasoning_tokens, 0), cached_tokens = cached_tokens - coalesce(OLD.cached_tokens, 0),
        priced = priced - (OLD.cost_usd IS NOT NULL), cost_usd = cost_usd - coalesce(OLD.cost_usd, 0),
        latency_ms = latency_ms - coalesce(OLD.latency_ms, 0)
    WHERE run_id = OLD.run_id AND role = OLD.role AND model = OLD.model;
    DELETE FROM run_usage WHERE run_id = OLD.run_id AND role = OLD.role AND model = OLD.model AND calls = 0;
END;

-- An updated call (batch ingest fills one in): the old values out, the new ones in.
CREATE TRIGGER llm_calls_usage_update AFTER UPDATE ON llm_calls
BEGIN
    UPDATE run_usage SET
        calls = calls - 1, failed = failed - (OLD.error IS NOT NULL OR coalesce(OLD.http_status, 200) NOT BETWEEN 200 AND 299),
        prompt_tokens = prompt_tokens - coalesce(OLD.prompt_tokens, 0), completion_tokens = completion_tokens - coalesce(OLD.completion_tokens, 0),
        reasoning_tokens = reasoning_tokens - coalesce(OLD.reasoning_tokens, 0), cached_tokens = cached_tokens - coalesce(OLD.cached_tokens, 0),
        priced = priced - (OLD.cost_usd IS NOT NULL), cost_usd = cost_usd - coalesce(OLD.cost_usd, 0),
        latency_ms = latency_ms - coalesce(OLD.latency_ms, 0)
    WHERE OLD.run_id IS NOT NULL AND run_id = OLD.run_id AND role = OLD.role AND model = OLD.model;
    DELETE FROM run_usage WHERE OLD.run_id IS NOT NULL AND run_id = OLD.run_id AND role = OLD.role AND model = OLD.model AND calls = 0;
    INSERT INTO run_usage
    SELECT NEW.run_id, NEW.role, NEW.model, 1,
           (NEW.error IS NOT NULL OR coalesce(NEW.http_status, 200) NOT BETWEEN 200 AND 299),
           coalesce(NEW.prompt_tokens, 0), coalesce(NEW.completion_tokens, 0), coalesce(NEW.reasoning_tokens, 0),
           coalesce(NEW.cached_tokens, 0), NEW.cost_usd IS NOT NULL, coalesce(NEW.cost_usd, 0), coalesce(NEW.latency_ms, 0)
    WHERE NEW.run_id IS NOT NULL
    ON CONFLICT (run_id, role, model) DO UPDATE SET
        calls = calls + 1, failed = failed + excluded.failed,
        prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens,
        reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens, cached_tokens = cached_tokens + excluded.cached_tokens,
        priced = priced + excluded.priced, cost_usd = cost_usd + excluded.cost_usd, latency_ms = latency_ms + excluded.latency_ms;
END;

CREATE TRIGGER runs_usage_delete AFTER DELETE ON runs
BEGIN
    DELETE FROM run_usage WHERE run_id = OLD.id;
END;

INSERT INTO run_usage
SELECT run_id, role, model, count(*),
       sum(error IS NOT NULL OR coalesce(http_status, 200) NOT BETWEEN 200 AND 299),
       sum(coalesce(prompt_tokens, 0)), sum(coalesce(completion_tokens, 0)), sum(coalesce(reasoning_tokens, 0)),
       sum(coalesce(cached_tokens, 0)), sum(cost_usd IS NOT NULL), sum(coalesce(cost_usd, 0)), sum(coalesce(latency_ms, 0))
FROM llm_calls WHERE run_id IS NOT NULL GROUP BY run_id, role, model;

-- Pages list a run's rollouts in id order, filtered by stop reason or by verdict, a page at a
-- time from where the last one ended; these indexes make each page a range read.
CREATE INDEX rollouts_by_run ON rollouts(run_id);
CREATE INDEX rollouts_by_run_stop ON rollouts(run_id, stop_reason);
CREATE INDEX grades_by_verdict ON grades(grader, grader_version, passed, rollout_id);

-- Full-text search over message text and reasoning (SQLite FTS5, reading the text from
-- `messages`, so nothing is stored twice). The index is derived data: `rollout serve` adds the
-- messages with ids above message_search_state.indexed_upto when it starts (in the
-- background, in chunks), so the engine and ingest never pay for it; a deleted or edited
-- message that is already indexed is taken out (and put back) by the triggers below. A
-- deletion also lowers indexed_upto to the highest id left, so an id SQLite hands out again
-- after the newest messages were deleted is never taken for an indexed one.
CREATE VIRTUAL TABLE message_search USING fts5(
    content, reasoning_content, content = 'messages', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TABLE message_search_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_upto INTEGER NOT NULL
) STRICT;
INSERT INTO message_search_state VALUES (1, 0);

-- The words of the indexed messages, as the search's tokenizer makes them (lower case, no
-- accents), each with the number of indexed messages it was found in: what a prefix search
-- (`renew*`) expands to, the most frequent words first. Added by the indexer with each chunk
-- of messages; a deleted or edited message does not lower a count (`docs` is an upper bound,
-- and a word no message has any more matches nothing); an edited message's new words are
-- added on the indexer's next round (message_search_pending).
CREATE TABLE search_terms (
    term TEXT PRIMARY KEY,
    docs INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE message_search_pending (
    id INTEGER PRIMARY KEY
) STRICT;

CREATE TRIGGER messages_search_delete AFTER DELETE ON messages
WHEN OLD.id <= (SELECT indexed_upto FROM message_search_state)
BEGIN
    INSERT INTO message_search(message_search, rowid, content, reasoning_content)
    VALUES ('delete', OLD.id, OLD.content, OLD.reasoning_content);
    UPDATE message_search_state SET indexed_upto = (SELECT coalesce(max(id), 0) FROM messages)
    WHERE indexed_upto > (SELECT coalesce(max(id), 0) FROM messages);
END;

CREATE TRIGGER messages_search_update AFTER UPDATE OF content, reasoning_content ON messages
WHEN OLD.id <= (SELECT indexed_upto FROM message_search_state)
BEGIN
    INSERT INTO message_search(message_search, rowid, content, reasoning_content)
    VALUES ('delete', OLD.id, OLD.content, OLD.reasoning_content);
    INSERT INTO message_search(rowid, content, reasoning_content) VALUES (NEW.id, NEW.content, NEW.reasoning_content);
    INSERT OR IGNORE INTO message_search_pending(id) VALUES (NEW.id);
END;
