-- Ingest commands run on this warehouse, newest first, with what each wrote.
-- Parameters: :limit (default 50).
SELECT id, kind, source, started_at, finished_at, inserted, updated, unchanged, skipped
FROM ingests ORDER BY id DESC LIMIT coalesce(:limit, 50);
