-- Records skipped by `--skip-invalid`, with where and why.
-- Parameters: :ingest (an ingest id; NULL = all).
SELECT e.ingest_id AS ingest, e.file, e.line, e.field, e.reason
FROM ingest_errors e
WHERE :ingest IS NULL OR e.ingest_id = :ingest
ORDER BY e.ingest_id, e.file, e.line;
