-- Exported files: format, run, filters, how many records were written and dropped, checksum.
-- Parameters: :run (a run name; NULL = all).
SELECT e.id AS export, r.name AS run, e.format, e.split, e.count, e.dropped, e.bytes,
       substr(e.sha256, 1, 16) AS sha256, e.path, e.filters, e.created_at
FROM exports e LEFT JOIN runs r ON r.id = e.run_id
WHERE :run IS NULL OR r.name = :run
ORDER BY e.id;
