-- Batch APIs and the Agentless pipelines (issue 6).

-- A batch part (0001's `batches`: one request file; a job larger than the provider's limits is
-- split into parts 0, 1, …) also records: `endpoint` the URL path every request goes to
-- ('/v1/chat/completions' for OpenAI, '/v1/messages' for Anthropic), `model` the model the
-- requests were written for (as given to --model), `requests` and `bytes` of its request file,
-- `api_base` where it was submitted, the provider's ids of the uploaded input file and of the
-- output and error files (`input_file_id`, `output_file_id`, `error_file_id`; `remote_id` is the
-- batch's own id), `errors` the provider's validation errors (JSON), `options` how the requests
-- were made ({"stage", "temperature", "max_tokens", "passk", "range", …}), and when it was
-- submitted and ended.
ALTER TABLE batches ADD COLUMN endpoint TEXT;
ALTER TABLE batches ADD COLUMN model TEXT;
ALTER TABLE batches ADD COLUMN requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN api_base TEXT;
ALTER TABLE batches ADD COLUMN input_file_id TEXT;
ALTER TABLE batches ADD COLUMN output_file_id TEXT;
ALTER TABLE batches ADD COLUMN error_file_id TEXT;
ALTER TABLE batches ADD COLUMN errors TEXT CHECK (errors IS NULL OR json_valid(errors));
ALTER TABLE batches ADD COLUMN options TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(options));
ALTER TABLE batches ADD COLUMN submitted_at TEXT;
ALTER TABLE batches ADD COLUMN ended_at TEXT;

-- A request's line number in its part's request file.
ALTER TABLE batch_requests ADD COLUMN line INTEGER;

-- One result per request: ingesting the same output again changes nothing, and a later result
-- (a resubmitted request) replaces an earlier failure. `llm_call_id` is the `llm_calls` row
-- (role 'batch') that carries the result's tokens; `content_hash` tells an unchanged result.
ALTER TABLE batch_results ADD COLUMN llm_call_id INTEGER REFERENCES llm_calls(id) ON DELETE SET NULL;
ALTER TABLE batch_results ADD COLUMN content_hash INTEGER;
CREATE UNIQUE INDEX batch_results_one_per_request ON batch_results(request_id);

-- What the Agentless pipelines made of one model answer: for a `localize` answer the files it
-- found (`found_files`, corrected against the repository structure); for a `repair` answer (the
-- bug fixer's edits, or the test writer's test) the files it edited and the patch. `status` is
-- 'ok' or 'failed'; `failures` lists every problem met ([{"stage", "reason", "file"?, "block"?}]),
-- including for answers that still produced a patch. `test_patch` is the test writer's
-- reproduce_bug.py new-file patch and `test_func_name` the test it runs. One row per request:
-- rerunning a stage replaces it.
CREATE TABLE agentless_outputs (
    id             INTEGER PRIMARY KEY,
    batch_id       INTEGER NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    request_id     INTEGER NOT NULL UNIQUE REFERENCES batch_requests(id) ON DELETE CASCADE,
    pipeline       TEXT NOT NULL CHECK (pipeline IN ('bugfix','testwrite')),
    stage          TEXT NOT NULL CHECK (stage IN ('localize','repair')),
    custom_id      TEXT NOT NULL,
    task_id        INTEGER REFERENCES tasks(id),
    instance_id    TEXT NOT NULL,
    sample         INTEGER NOT NULL CHECK (sample >= 0),
    status         TEXT NOT NULL CHECK (status IN ('ok','failed')),
    found_files    TEXT CHECK (found_files IS NULL OR json_valid(found_files)),
    edited_files   TEXT CHECK (edited_files IS NULL OR json_valid(edited_files)),
    model_patch    TEXT,
    test_patch     TEXT,
    test_func_name TEXT,
    failures       TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(failures) AND json_type(failures) = 'array'),
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
) STRICT;
CREATE INDEX agentless_outputs_by_batch ON agentless_outputs(batch_id, status);
CREATE INDEX agentless_outputs_by_instance ON agentless_outputs(instance_id);
