-- Several `rollout run` processes on one run (issue 14).

-- The processes that work (or worked) on a run. A process registers here when it joins the run,
-- writes `heartbeat_at` every few seconds while it runs and `finished_at` when it leaves. One
-- that stopped without leaving (killed, crashed, machine gone) is recognised as gone by the
-- next process: on the same host by its pid no longer being alive, on any host by a heartbeat
-- older than the lease. Its running rollouts are then interrupted and re-attempted.
CREATE TABLE run_workers (
    id           INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    pid          INTEGER NOT NULL,
    host         TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    finished_at  TEXT
) STRICT;
CREATE INDEX run_workers_by_run ON run_workers(run_id);

-- The worker (run_workers.id) that claimed the rollout: it holds a `running` attempt and is the
-- only process that writes the attempt's messages and calls; kept after the attempt ends.
-- Pending attempts have none: any worker of the run may claim them. Not a foreign key, so that
-- removing worker records never has to look through the rollouts.
ALTER TABLE rollouts ADD COLUMN worker INTEGER;
