-- rollout warehouse, schema version 1.
-- Append-only: a shipped migration is never edited; changes go in a new NNNN_name.sql file.
-- Every table is STRICT. Times are ISO-8601 UTC text ('2026-11-22T03:24:00.000Z').
-- JSON columns hold valid JSON text (checked with json_valid).

-- One row per ingest command run: what it read and what it wrote.
CREATE TABLE ingests (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('dir','queries','policy','tools','server','tau2','qa',
                                               'swebench','repo-structures','trajectories','example')),
    source      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    inserted    INTEGER NOT NULL DEFAULT 0,
    updated     INTEGER NOT NULL DEFAULT 0,
    unchanged   INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Records an ingest with --skip-invalid passed over.
CREATE TABLE ingest_errors (
    id        INTEGER PRIMARY KEY,
    ingest_id INTEGER NOT NULL REFERENCES ingests(id) ON DELETE CASCADE,
    file      TEXT NOT NULL,
    line      INTEGER,
    field     TEXT,
    reason    TEXT NOT NULL
) STRICT;
CREATE INDEX ingest_errors_by_ingest ON ingest_errors(ingest_id);

-- A named collection of tasks (one queries file, a QA set, SWE-bench Lite, ...).
CREATE TABLE datasets (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL CHECK (kind IN ('dialogue','qa','swebench')),
    source     TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

-- A domain or a cross-domain combination. `key` is the member names sorted and joined with '+'
-- ('Airline+Retail'); `size` is how many members. `policy` is the agent's system prompt.
CREATE TABLE domains (
    id            INTEGER PRIMARY KEY,
    key           TEXT NOT NULL UNIQUE,
    size          INTEGER NOT NULL CHECK (size >= 1),
    policy        TEXT,
    policy_source TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;

-- MCP tool servers: how to launch one over stdio. `command` is NULL for a server known only by
-- its ingested tool list. `env` values may hold ${VAR} references; they are expanded at launch,
-- never stored expanded.
CREATE TABLE servers (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    command    TEXT,
    args       TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(args) AND json_type(args) = 'array'),
    env        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(env) AND json_type(env) = 'object'),
    cwd        TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

-- Which servers provide a domain's tools.
CREATE TABLE domain_servers (
    domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    PRIMARY KEY (domain_id, server_id)
) STRICT;
CREATE INDEX domain_servers_by_server ON domain_servers(server_id);

-- One tool of a server. `name` is the original name; `api_name` matches ^[a-zA-Z0-9_-]{1,64}$
-- (equal to `name` when that already does). `schema` is the whole OpenAI tool object
-- {"type":"function","function":{name, description, parameters}} with the original name.
CREATE TABLE tools (
    id          INTEGER PRIMARY KEY,
    server_id   INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    ordinal     INTEGER NOT NULL,
    name        TEXT NOT NULL,
    api_name    TEXT NOT NULL,
    description TEXT,
    schema      TEXT NOT NULL CHECK (json_valid(schema)),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (server_id, name),
    UNIQUE (server_id, api_name)
) STRICT;

-- One task of a dataset. `external_id` is the dataset's own id (or a stable hash where it has
-- none). `opening` is the first user message / question / problem statement; `user_prompt` the
-- user simulator's scenario; `answer` the reference answer; `criteria` evaluation criteria as
-- JSON; `record` the source record exactly as read.
-- When: `created_ingest` first wrote the row, `changed_ingest` last changed its content,
-- `seen_ingest` last read it (ingests.started_at has the times; a million rows need no copies).
-- `opening` and `user_prompt` are computed: from `opening_text` / `user_prompt_text` when the
-- ingest stored one, else from the record (a Rollout-framework query keeps them at
-- $.messages[0].content and $.user_system_prompt, so a million queries are not stored twice).
CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY,
    dataset_id       INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    external_id      TEXT NOT NULL,
    domain_id        INTEGER REFERENCES domains(id),
    opening_text     TEXT,
    user_prompt_text TEXT,
    answer           TEXT,
    criteria         TEXT CHECK (criteria IS NULL OR json_valid(criteria)),
    splits           TEXT CHECK (splits IS NULL OR json_valid(splits)),
    record           TEXT NOT NULL,
    content_hash     INTEGER NOT NULL,
    source_file      TEXT,
    source_line      INTEGER,
    created_ingest   INTEGER NOT NULL REFERENCES ingests(id),
    changed_ingest   INTEGER NOT NULL REFERENCES ingests(id),
    seen_ingest      INTEGER NOT NULL REFERENCES ingests(id),
    opening          TEXT GENERATED ALWAYS AS (coalesce(opening_text,
                         CASE WHEN json_extract(record, '$.messages[0].role') = 'user'
                              THEN json_extract(record, '$.messages[0].content') END)) VIRTUAL,
    user_prompt      TEXT GENERATED ALWAYS AS (coalesce(user_prompt_text,
                         json_extract(record, '$.user_system_prompt'))) VIRTUAL,
    UNIQUE (dataset_id, external_id)
) STRICT;
CREATE INDEX tasks_by_domain ON tasks(domain_id);

-- Agentless repository structures, one per SWE-bench instance.
CREATE TABLE repo_structures (
    id           INTEGER PRIMARY KEY,
    instance_id  TEXT NOT NULL UNIQUE,
    repo         TEXT,
    base_commit  TEXT,
    structure    TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    content_hash INTEGER NOT NULL,
    source_file  TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
) STRICT;

-- Registered models (from models.yml). Never holds an API key.
CREATE TABLE models (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    provider     TEXT NOT NULL CHECK (provider IN ('openai','anthropic','mock')),
    api_base     TEXT,
    mode         TEXT,
    price_input  REAL,
    price_output REAL,
    price_cached REAL,
    settings     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings)),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
) STRICT;

-- A run: one configuration applied to a set of tasks, or trajectories imported from elsewhere.
-- `config` is the resolved configuration without secrets; `config_hash` its sha256.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    mode        TEXT NOT NULL CHECK (mode IN ('dialogue','task','batch','imported')),
    config      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config)),
    config_hash TEXT,
    agent_model TEXT,
    user_model  TEXT,
    source      TEXT,
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending','running','completed','failed','interrupted')),
    created_at  TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT
) STRICT;

-- One rollout: sample `sample` of a task in a run; `attempt` counts retries of that sample
-- (every attempt is kept). `metadata` holds what the source recorded beyond our columns.
CREATE TABLE rollouts (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    task_id     INTEGER NOT NULL REFERENCES tasks(id),
    sample      INTEGER NOT NULL CHECK (sample >= 0),
    attempt     INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    status      TEXT NOT NULL CHECK (status IN ('pending','running','completed','failed','interrupted')),
    stop_reason TEXT,
    prediction  TEXT,
    reward      REAL,
    error       TEXT,
    turns       INTEGER,
    metadata    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    started_at  TEXT,
    finished_at TEXT,
    UNIQUE (run_id, task_id, sample, attempt)
) STRICT;
CREATE INDEX rollouts_by_task ON rollouts(task_id);
CREATE INDEX rollouts_by_run_status ON rollouts(run_id, status);

-- Messages of a rollout in order. `extra` keeps provider fields we do not model
-- (e.g. Anthropic thinking signatures).
CREATE TABLE messages (
    id                INTEGER PRIMARY KEY,
    rollout_id        INTEGER NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
    idx               INTEGER NOT NULL CHECK (idx >= 0),
    role              TEXT NOT NULL CHECK (role IN ('system','user','assistant','tool')),
    content           TEXT,
    reasoning_content TEXT,
    tool_call_id      TEXT,
    name              TEXT,
    turn              INTEGER,
    extra             TEXT CHECK (extra IS NULL OR json_valid(extra)),
    created_at        TEXT,
    UNIQUE (rollout_id, idx)
) STRICT;

-- Tool calls made by assistant messages, with their results.
CREATE TABLE tool_calls (
    id                INTEGER PRIMARY KEY,
    rollout_id        INTEGER NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
    message_id        INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    idx               INTEGER NOT NULL CHECK (idx >= 0),
    call_id           TEXT,
    name              TEXT NOT NULL,
    arguments         TEXT,
    result_message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
    result            TEXT,
    is_error          INTEGER NOT NULL DEFAULT 0 CHECK (is_error IN (0,1)),
    latency_ms        REAL,
    server_id         INTEGER REFERENCES servers(id),
    created_at        TEXT,
    UNIQUE (message_id, idx)
) STRICT;
CREATE INDEX tool_calls_by_rollout ON tool_calls(rollout_id);
CREATE INDEX tool_calls_by_name ON tool_calls(name);

-- Every LLM request attempt, failed ones included.
CREATE TABLE llm_calls (
    id                INTEGER PRIMARY KEY,
    run_id            INTEGER REFERENCES runs(id) ON DELETE CASCADE,
    rollout_id        INTEGER REFERENCES rollouts(id) ON DELETE CASCADE,
    role              TEXT NOT NULL CHECK (role IN ('agent','user','judge','batch','chat')),
    model             TEXT NOT NULL,
    provider          TEXT,
    attempt           INTEGER NOT NULL DEFAULT 0,
    http_status       INTEGER,
    latency_ms        REAL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    reasoning_tokens  INTEGER,
    cached_tokens     INTEGER,
    cost_usd          REAL,
    finish_reason     TEXT,
    error             TEXT,
    request_hash      TEXT,
    created_at        TEXT NOT NULL
) STRICT;
CREATE INDEX llm_calls_by_run ON llm_calls(run_id);
CREATE INDEX llm_calls_by_rollout ON llm_calls(rollout_id);

-- A Batch API job (one request file; a large job is split into several batches).
CREATE TABLE batches (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL,
    part           INTEGER NOT NULL DEFAULT 0,
    provider       TEXT NOT NULL CHECK (provider IN ('openai','anthropic','local')),
    stage          TEXT,
    status         TEXT NOT NULL DEFAULT 'created'
                   CHECK (status IN ('created','validating','in_progress','finalizing','completed',
                                     'failed','expired','cancelling','cancelled','ended')),
    remote_id      TEXT,
    input_file     TEXT,
    output_file    TEXT,
    error_file     TEXT,
    request_counts TEXT CHECK (request_counts IS NULL OR json_valid(request_counts)),
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    UNIQUE (name, part)
) STRICT;

CREATE TABLE batch_requests (
    id        INTEGER PRIMARY KEY,
    batch_id  INTEGER NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    custom_id TEXT NOT NULL,
    task_id   INTEGER REFERENCES tasks(id),
    sample    INTEGER,
    body      TEXT NOT NULL CHECK (json_valid(body)),
    UNIQUE (batch_id, custom_id)
) STRICT;
CREATE INDEX batch_requests_by_custom_id ON batch_requests(custom_id);

CREATE TABLE batch_results (
    id            INTEGER PRIMARY KEY,
    request_id    INTEGER NOT NULL REFERENCES batch_requests(id) ON DELETE CASCADE,
    result_type   TEXT NOT NULL CHECK (result_type IN ('succeeded','errored','canceled','expired')),
    status_code   INTEGER,
    body          TEXT CHECK (body IS NULL OR json_valid(body)),
    error_code    TEXT,
    error_message TEXT,
    source_file   TEXT,
    source_line   INTEGER,
    created_at    TEXT NOT NULL
) STRICT;
CREATE INDEX batch_results_by_request ON batch_results(request_id);

-- A grader's verdict on a rollout. Re-grading adds a new grader_version; old rows stay.
-- `passed` is NULL when the verdict could not be decided (e.g. an unparseable judge reply).
CREATE TABLE grades (
    id             INTEGER PRIMARY KEY,
    rollout_id     INTEGER NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
    grader         TEXT NOT NULL,
    grader_version INTEGER NOT NULL DEFAULT 1,
    value          REAL,
    passed         INTEGER CHECK (passed IS NULL OR passed IN (0,1)),
    explanation    TEXT,
    created_at     TEXT NOT NULL,
    UNIQUE (rollout_id, grader, grader_version)
) STRICT;
CREATE INDEX grades_by_grader ON grades(grader, grader_version);

-- A stored evaluation table: the query, its parameters and its result rows.
CREATE TABLE scores (
    id         INTEGER PRIMARY KEY,
    run_id     INTEGER REFERENCES runs(id) ON DELETE CASCADE,
    query      TEXT NOT NULL,
    params     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params)),
    result     TEXT NOT NULL CHECK (json_valid(result)),
    created_at TEXT NOT NULL
) STRICT;

-- One export file: what was written, with which filters, and its checksum.
CREATE TABLE exports (
    id         INTEGER PRIMARY KEY,
    run_id     INTEGER REFERENCES runs(id) ON DELETE SET NULL,
    format     TEXT NOT NULL,
    path       TEXT NOT NULL,
    filters    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(filters)),
    sql        TEXT,
    count      INTEGER NOT NULL,
    bytes      INTEGER,
    sha256     TEXT,
    created_at TEXT NOT NULL
) STRICT;
