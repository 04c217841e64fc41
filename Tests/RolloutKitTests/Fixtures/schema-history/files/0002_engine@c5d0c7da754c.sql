-- The rollout engine (issue 4).

-- What a run gave the agent for one domain (or cross-domain combination): `policy` the system
-- prompt exactly as sent (NULL: none), `tools` the OpenAI tool array as sent (API-safe names),
-- `routes` each API name's server and original tool name:
-- {"<api_name>": {"server": "<name>", "name": "<tool>"}}. `hash` is sha256 of policy and tools.
CREATE TABLE run_domains (
    run_id     INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    domain_id  INTEGER NOT NULL REFERENCES domains(id),
    policy     TEXT,
    tools      TEXT NOT NULL CHECK (json_valid(tools) AND json_type(tools) = 'array'),
    routes     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(routes) AND json_type(routes) = 'object'),
    hash       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run_id, domain_id)
) STRICT;

-- Which tasks a run covers and how many samples of each it wants: the plan that resume
-- compares the rollouts against. `job` names the config dataset (or the CLI selection) the
-- task came in through; its settings are in runs.config under that name.
CREATE TABLE run_tasks (
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    job     TEXT NOT NULL,
    samples INTEGER NOT NULL CHECK (samples >= 1),
    PRIMARY KEY (run_id, task_id)
) STRICT, WITHOUT ROWID;

-- The latest attempt of every sample: what resume, eval and export read.
CREATE VIEW latest_rollouts AS
SELECT r.* FROM rollouts r
WHERE r.attempt = (SELECT max(attempt) FROM rollouts x
                   WHERE x.run_id = r.run_id AND x.task_id = r.task_id AND x.sample = r.sample);
