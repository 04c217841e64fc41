-- Per-rollout isolation for tool servers that keep state by a tool argument rather than by
-- the `_meta.sessionId` every call carries (e.g. tau2-mock-mcp-eval's `state_key`).
-- `session_argument` names that argument: the engine hides it from the schemas offered to the
-- agent and sets it on every call to `session_template` rendered for the rollout
-- ({session} = the rollout id sent as _meta.sessionId, {task} = the task's external id,
-- {run}, {sample}, {attempt}, {domain}). NULL: the server isolates by _meta alone.
ALTER TABLE servers ADD COLUMN session_argument TEXT;
ALTER TABLE servers ADD COLUMN session_template TEXT
    CHECK (session_template IS NULL OR session_argument IS NOT NULL);
