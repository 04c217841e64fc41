-- Labeling and export of training data (issue 7).

-- The distinct system prompts labels point at (a million rollouts share a handful, so the text
-- is stored once). `sha256` is of the text.
CREATE TABLE label_prompts (
    id     INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    text   TEXT NOT NULL
) STRICT;

-- The distinct tool lists labels point at: an OpenAI tool array whose function names are the
-- names the trajectories call them by; `names` the function names in order; `sha256` of `tools`.
CREATE TABLE label_toolsets (
    id     INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    tools  TEXT NOT NULL CHECK (json_valid(tools) AND json_type(tools) = 'array'),
    names  TEXT NOT NULL CHECK (json_valid(names) AND json_type(names) = 'array'),
    count  INTEGER NOT NULL
) STRICT;

-- What one rollout ran with (`rollout label --run R`): its system prompt (NULL: none) and its
-- tool list, and where each came from:
--   run        what the engine sent (run_domains, or the task-mode prompt of the run's config)
--   trajectory the imported trajectory's own system message / the tool list its record carried
--   domain     the domain's policy or its servers' tools (imported runs)
--   members    a combination without a policy of its own: its domains' policies in turn
--   none       nothing known
-- `renamed` maps a listed tool name to the name the trajectory called it by, where the two
-- differ (e.g. {"get_x": "sap.get_x"}); `undeclared` lists the names the trajectory called that
-- its tool list lacks (export drops such records).
CREATE TABLE labels (
    rollout_id    INTEGER PRIMARY KEY REFERENCES rollouts(id) ON DELETE CASCADE,
    run_id        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    domain_id     INTEGER REFERENCES domains(id),
    prompt_id     INTEGER REFERENCES label_prompts(id),
    prompt_source TEXT NOT NULL CHECK (prompt_source IN ('run','trajectory','domain','members','none')),
    toolset_id    INTEGER NOT NULL REFERENCES label_toolsets(id),
    tools_source  TEXT NOT NULL CHECK (tools_source IN ('run','trajectory','domain','none')),
    renamed       TEXT CHECK (renamed IS NULL OR (json_valid(renamed) AND json_type(renamed) = 'object')),
    undeclared    TEXT CHECK (undeclared IS NULL OR (json_valid(undeclared) AND json_type(undeclared) = 'array')),
    created_at    TEXT NOT NULL
) STRICT;
CREATE INDEX labels_by_run ON labels(run_id);
CREATE INDEX labels_by_prompt ON labels(prompt_id);
CREATE INDEX labels_by_toolset ON labels(toolset_id);

-- An export writes one `exports` row per file. `split` names the share of a --split the file
-- holds (NULL: no split); `dropped` counts the records that would have gone into the file but
-- failed validation, were duplicates, or found no partner (dpo); `report` is
-- {"selected": n, "dropped": {"reason": n, …}, "trimmed": n, …} for the file.
ALTER TABLE exports ADD COLUMN split TEXT;
ALTER TABLE exports ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE exports ADD COLUMN report TEXT CHECK (report IS NULL OR json_valid(report));

-- A record an export left out, and why (`reason` is one of the validation or filter reasons
-- in the README; `detail` says where: message index, call id, tool name, the duplicate's id).
CREATE TABLE export_drops (
    id         INTEGER PRIMARY KEY,
    export_id  INTEGER NOT NULL REFERENCES exports(id) ON DELETE CASCADE,
    rollout_id INTEGER REFERENCES rollouts(id) ON DELETE SET NULL,
    reason     TEXT NOT NULL,
    detail     TEXT
) STRICT;
CREATE INDEX export_drops_by_export ON export_drops(export_id);
CREATE INDEX export_drops_by_rollout ON export_drops(rollout_id);
