#!/usr/bin/env python3
"""Issue #8 benchmark data: turns the run `bench` that gen_export_db.py made (N trajectories of
10 messages, 4 samples per task) into one a reviewer would browse, all in SQL like
gen_export_db.py does.

  downgrade DB  takes schema 0008 (the viewer's) out of a warehouse the current binary made,
                so the migration 0007 -> 0008 can be timed on a database of full size
                (the objects dropped are read from schema/0008_viewer.sql)
  extras DB     at schema 0007: stop reasons and statuses in a realistic mix (some failed
                with an error, some interrupted), a tenth of the tasks in a second domain,
                a grader `bench-judge` with one grade per rollout (tasks that always pass,
                never pass, and flip), two agent LLM calls per rollout (tokens, latency,
                cost; 1 in 200 a failed attempt before them), and a rare word in 40 messages
  reviews DB    at schema 0008: a review for 1 rollout in 500 (accepted / rejected), and a
                second, reversing review for 1 in 5,000
  check DB      the counters of schema 0008 (run_outcomes, run_usage) against a
                recomputation from the rows; exits 1 if they differ
  shape DB      one line of JSON: row counts and file size
"""
import json
import os
import re
import sqlite3
import sys

NOW = "2026-01-01T00:00:00.000Z"


def connect(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA foreign_keys = OFF")
    return db


def downgrade(path):
    schema = open(os.path.join(os.path.dirname(__file__), "..", "schema", "0008_viewer.sql")).read()
    objects = re.findall(r"^CREATE (?:VIRTUAL )?(TABLE|VIEW|TRIGGER|INDEX) (\w+)", schema, re.M)
    db = connect(path)
    db.execute("BEGIN")
    for kind, name in reversed(objects):
        db.execute(f"DROP {kind} IF EXISTS {name}")
    db.execute("DELETE FROM grdb_migrations WHERE identifier = '0008_viewer'")
    n = db.execute("SELECT count(*) FROM grdb_migrations").fetchone()[0]
    db.execute(f"PRAGMA user_version = {n}")
    db.execute("COMMIT")
    db.execute("VACUUM")
    print(f"{path}: schema 0008 taken out ({len(objects)} objects), {n} migrations left")


def extras(path):
    db = connect(path)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    assert db.execute("SELECT 1 FROM grdb_migrations WHERE identifier = '0008_viewer'").fetchone() is None, \
        "extras go in before the migration to 0008 (so that the migration is timed at full size)"
    db.execute("BEGIN")
    run = db.execute("SELECT id FROM runs WHERE name = 'bench'").fetchone()[0]
    r0, r1 = db.execute("SELECT min(id), max(id) FROM rollouts WHERE run_id = ?", (run,)).fetchone()
    t0 = db.execute("SELECT min(task_id) FROM rollouts WHERE run_id = ?", (run,)).fetchone()[0]
    # A tenth of the tasks in the CityTransit domain, which the run then also has.
    transit = db.execute("SELECT id FROM domains WHERE key = 'CityTransit'").fetchone()[0]
    db.execute(f"UPDATE tasks SET domain_id = {transit} WHERE id IN (SELECT task_id FROM run_tasks WHERE run_id = {run}) AND (id - {t0}) % 10 = 9")
    db.execute("INSERT OR IGNORE INTO run_domains(run_id, domain_id, policy, tools, routes, hash, created_at) "
               "SELECT ?, domain_id, policy, tools, routes, hash, created_at FROM run_domains WHERE domain_id = ? LIMIT 1", (run, transit))
    # Stop reasons by a hash of the rollout: 70% user_stop, 15% transfer, 8% max_turns,
    # 4% out_of_scope, 2% failed (error), 1% interrupted.
    h = f"((id - {r0}) * 2654435761 % 1000)"
    db.execute(f"""
        UPDATE rollouts SET
          stop_reason = CASE WHEN {h} < 700 THEN 'user_stop' WHEN {h} < 850 THEN 'transfer' WHEN {h} < 930 THEN 'max_turns'
                             WHEN {h} < 970 THEN 'out_of_scope' WHEN {h} < 990 THEN 'error' ELSE 'interrupted' END,
          status = CASE WHEN {h} < 970 THEN 'completed' WHEN {h} < 990 THEN 'failed' ELSE 'interrupted' END,
          error = CASE WHEN {h} >= 970 AND {h} < 990 THEN 'agent model mock/agent: HTTP 503 after 3 attempts (upstream overloaded)' END
        WHERE run_id = {run}
        """)
    # The grader and its verdicts: task difficulty d = task % 8 — 0, 1: every sample passes;
    # 2: none does; else a sample passes when a hash of it is below d (flips); 1 in 500 undecided.
    db.execute("INSERT INTO graders(name, version, kind, definition, created_at) VALUES ('bench-judge', 1, 'judge', ?, ?)",
               (json.dumps({"kind": "judge", "model": "mock/judge", "rev": 1}, sort_keys=True), NOW))
    d = f"((r.task_id - {t0}) % 8)"
    hs = f"((r.id - {r0}) * 40503 % 8)"
    passed = f"CASE WHEN (r.id - {r0}) % 500 = 7 THEN NULL WHEN {d} < 2 THEN 1 WHEN {d} = 2 THEN 0 WHEN {hs} < {d} THEN 1 ELSE 0 END"
    db.execute(f"""
        INSERT INTO grades(rollout_id, grader, grader_version, value, passed, explanation, created_at)
        SELECT id, 'bench-judge', 1, p, p,
               CASE p WHEN 1 THEN 'The agent renewed the loan and reported the fee correctly.'
                      WHEN 0 THEN 'The agent did not confirm the new due date.'
                      ELSE 'judge reply could not be parsed' END, '{NOW}'
        FROM (SELECT r.id, {passed} AS p FROM rollouts r WHERE r.run_id = {run} ORDER BY r.id)
        """)
    # LLM calls: 1 in 200 rollouts first has a failed attempt (503), then two answered calls.
    db.execute(f"""
        INSERT INTO llm_calls(run_id, rollout_id, role, model, provider, attempt, http_status, latency_ms, prompt_tokens,
                              completion_tokens, cost_usd, finish_reason, error, created_at)
        SELECT {run}, id, 'agent', 'mock/agent', 'mock', 0, 503, 40 + (id % 7) * 3, NULL, NULL, NULL, NULL,
               'HTTP 503: upstream overloaded', '{NOW}'
        FROM rollouts WHERE run_id = {run} AND (id - {r0}) % 200 = 3 ORDER BY id
        """)
    db.execute(f"""
        WITH two(j) AS (VALUES (0), (1))
        INSERT INTO llm_calls(run_id, rollout_id, role, model, provider, attempt, http_status, latency_ms, prompt_tokens,
                              completion_tokens, cost_usd, finish_reason, error, created_at)
        SELECT {run}, r.id, 'agent', 'mock/agent', 'mock', CASE WHEN j = 0 AND (r.id - {r0}) % 200 = 3 THEN 1 ELSE 0 END, 200,
               300 + (r.id * 37 + j * 101) % 1700, 800 + j * 350 + r.id % 400, 40 + (r.id * 13 + j) % 160,
               ((800 + j * 350 + r.id % 400) * 0.15 + (40 + (r.id * 13 + j) % 160) * 0.60) / 1e6,
               CASE j WHEN 0 THEN 'tool_calls' ELSE 'stop' END, NULL, '{NOW}'
        FROM rollouts r CROSS JOIN two WHERE r.run_id = {run} ORDER BY r.id, j
        """)
    # A rare word: in 40 assistant messages spread over the run.
    db.execute(f"""
        UPDATE messages SET content = content || ' By the way, the zeppelin exhibition opens on Friday.'
        WHERE rollout_id IN (SELECT id FROM rollouts WHERE run_id = {run} AND (id - {r0}) % 25000 = 11) AND idx = 3
        """)
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode = WAL")
    print(f"{path}: run bench ({r1 - r0 + 1} rollouts) graded by bench-judge, with LLM calls, stop reasons and a second domain")


def reviews(path):
    db = connect(path)
    db.execute("BEGIN")
    run = db.execute("SELECT id FROM runs WHERE name = 'bench'").fetchone()[0]
    r0 = db.execute("SELECT min(id) FROM rollouts WHERE run_id = ?", (run,)).fetchone()[0]
    db.execute("DELETE FROM reviews")
    db.execute(f"""
        INSERT INTO reviews(rollout_id, verdict, note, reviewer, created_at)
        SELECT id, CASE WHEN (id - {r0}) / 500 % 3 = 0 THEN 'rejected' ELSE 'accepted' END,
               'looked at the tool calls', 'bench', '{NOW}'
        FROM rollouts WHERE run_id = {run} AND (id - {r0}) % 500 = 250 ORDER BY id
        """)
    db.execute(f"""
        INSERT INTO reviews(rollout_id, verdict, note, reviewer, created_at)
        SELECT id, CASE WHEN (id - {r0}) / 500 % 3 = 0 THEN 'accepted' ELSE 'rejected' END,
               'changed my mind', 'bench', '{NOW}'
        FROM rollouts WHERE run_id = {run} AND (id - {r0}) % 5000 = 250 ORDER BY id
        """)
    db.execute("COMMIT")
    print(f"{path}: {db.execute('SELECT count(*) FROM reviews').fetchone()[0]} reviews")


def check(path):
    db = connect(path)
    bad = 0
    want = db.execute("""
        SELECT run_id, status, coalesce(stop_reason, ''), count(*) FROM latest_rollouts GROUP BY 1, 2, 3
        EXCEPT SELECT run_id, status, stop_reason, n FROM run_outcomes""").fetchall()
    extra = db.execute("""
        SELECT run_id, status, stop_reason, n FROM run_outcomes EXCEPT
        SELECT run_id, status, coalesce(stop_reason, ''), count(*) FROM latest_rollouts GROUP BY 1, 2, 3""").fetchall()
    usage = db.execute("""
        SELECT run_id, role, model, count(*), sum(coalesce(prompt_tokens, 0)), sum(coalesce(completion_tokens, 0)),
               round(sum(coalesce(cost_usd, 0)), 9)
        FROM llm_calls WHERE run_id IS NOT NULL GROUP BY 1, 2, 3
        EXCEPT SELECT run_id, role, model, calls, prompt_tokens, completion_tokens, round(cost_usd, 9) FROM run_usage""").fetchall()
    for what, rows in [("run_outcomes missing/wrong", want), ("run_outcomes extra", extra), ("run_usage wrong", usage)]:
        if rows:
            bad += 1
            print(f"{what}: {rows[:5]}")
    if bad:
        sys.exit(1)
    print("run_outcomes and run_usage match a recomputation from rollouts and llm_calls")


def shape(path):
    db = connect(path)
    q = lambda sql: db.execute(sql).fetchone()[0]
    out = {
        "rollouts": q("SELECT count(*) FROM rollouts"),
        "messages": q("SELECT count(*) FROM messages"),
        "tool_calls": q("SELECT count(*) FROM tool_calls"),
        "grades": q("SELECT count(*) FROM grades"),
        "llm_calls": q("SELECT count(*) FROM llm_calls"),
        "tasks": q("SELECT count(*) FROM tasks"),
        "reviews": q("SELECT count(*) FROM reviews"),
        "bytes": q("PRAGMA page_count") * q("PRAGMA page_size"),
    }
    try:
        # Pages of the FTS5 table's shadow tables (dbstat is compiled into most sqlite3 builds).
        out["search_index_bytes"] = q("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'message_search%'")
    except sqlite3.OperationalError:
        pass
    print(json.dumps(out))


if __name__ == "__main__":
    {"downgrade": downgrade, "extras": extras, "reviews": reviews, "check": check, "shape": shape}[sys.argv[1]](sys.argv[2])
