-- Batch API jobs: one row per part with its requests, results and status.
-- Parameter :batch (optional) limits it to one batch name.
SELECT b.name, b.part, b.provider, b.stage, b.status, b.remote_id,
       b.requests,
       (SELECT count(*) FROM batch_requests q JOIN batch_results r ON r.request_id = q.id
         WHERE q.batch_id = b.id AND r.result_type = 'succeeded') AS succeeded,
       (SELECT count(*) FROM batch_requests q JOIN batch_results r ON r.request_id = q.id
         WHERE q.batch_id = b.id AND r.result_type <> 'succeeded') AS failed,
       b.input_file, b.created_at
FROM batches b
WHERE :batch IS NULL OR b.name = :batch
ORDER BY b.name, b.part;
