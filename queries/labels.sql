-- Labels per run: where the system prompts and tool lists came from, and undeclared tool calls.
-- Parameters: :run (a run name; NULL = all).
SELECT r.name AS run, l.prompt_source, l.tools_source, count(*) AS rollouts,
       count(DISTINCT l.prompt_id) AS prompts, count(DISTINCT l.toolset_id) AS toolsets,
       max(s.count) AS tools, sum(l.undeclared IS NOT NULL) AS with_undeclared_calls
FROM labels l JOIN runs r ON r.id = l.run_id JOIN label_toolsets s ON s.id = l.toolset_id
WHERE :run IS NULL OR r.name = :run
GROUP BY r.id, l.prompt_source, l.tools_source
ORDER BY r.id, l.prompt_source, l.tools_source;
