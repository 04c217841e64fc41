-- Runs with their rollout counts by status.
-- Parameters: :run (a run name; NULL = all).
SELECT r.name AS run, r.mode, r.status, r.agent_model, r.user_model,
       count(o.id) AS rollouts,
       sum(o.status = 'completed') AS completed,
       sum(o.status = 'failed') AS failed,
       sum(o.status = 'interrupted') AS interrupted,
       r.created_at
FROM runs r LEFT JOIN rollouts o ON o.run_id = r.id
WHERE :run IS NULL OR r.name = :run
GROUP BY r.id ORDER BY r.id;
