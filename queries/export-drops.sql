-- Records an export left out, and why (validation, --dedupe, dpo pairing).
-- Parameters: :export (an export id; NULL = all), :reason (NULL = all).
SELECT d.export_id AS export, d.rollout_id AS rollout, t.external_id AS task, r.sample, d.reason, d.detail
FROM export_drops d
LEFT JOIN rollouts r ON r.id = d.rollout_id
LEFT JOIN tasks t ON t.id = r.task_id
WHERE (:export IS NULL OR d.export_id = :export) AND (:reason IS NULL OR d.reason = :reason)
ORDER BY d.export_id, d.id;
