-- Rows per warehouse table.
-- Run: rollout query stats    or    sqlite3 rollout.db < queries/stats.sql
SELECT 'datasets' AS "table", count(*) AS "rows" FROM datasets
UNION ALL SELECT 'tasks', count(*) FROM tasks
UNION ALL SELECT 'domains', count(*) FROM domains
UNION ALL SELECT 'servers', count(*) FROM servers
UNION ALL SELECT 'tools', count(*) FROM tools
UNION ALL SELECT 'models', count(*) FROM models
UNION ALL SELECT 'runs', count(*) FROM runs
UNION ALL SELECT 'rollouts', count(*) FROM rollouts
UNION ALL SELECT 'messages', count(*) FROM messages
UNION ALL SELECT 'tool_calls', count(*) FROM tool_calls
UNION ALL SELECT 'llm_calls', count(*) FROM llm_calls
UNION ALL SELECT 'batches', count(*) FROM batches
UNION ALL SELECT 'batch_requests', count(*) FROM batch_requests
UNION ALL SELECT 'batch_results', count(*) FROM batch_results
UNION ALL SELECT 'grades', count(*) FROM grades
UNION ALL SELECT 'graders', count(*) FROM graders
UNION ALL SELECT 'grade_counts', count(*) FROM grade_counts
UNION ALL SELECT 'scores', count(*) FROM scores
UNION ALL SELECT 'exports', count(*) FROM exports
UNION ALL SELECT 'repo_structures', count(*) FROM repo_structures
UNION ALL SELECT 'ingests', count(*) FROM ingests
UNION ALL SELECT 'ingest_errors', count(*) FROM ingest_errors;
