#!/usr/bin/env python3
"""Issue #7 benchmark data: adds a run of N trajectories of 10 messages each to a warehouse
that `rollout quickstart` made (it has the example domains, tools and a run's run_domains).

Everything is generated inside SQLite with INSERT ... SELECT over a recursive counter, so a
million trajectories (ten million messages, two million tool calls) take a minute or two, not
the hours the engine would. Each trajectory is a Library dialogue: user, assistant calling a
tool, tool result, assistant, user, assistant calling a tool, tool result, assistant, user,
assistant — texts of realistic length that differ per rollout.

Usage: gen_export_db.py DB N   (run `rollout quickstart --db DB` first)
"""
import sqlite3
import sys

db_path, n = sys.argv[1], int(sys.argv[2])
tasks = max(1, n // 4)  # four samples per task
db = sqlite3.connect(db_path)
db.execute("PRAGMA journal_mode = OFF")
db.execute("PRAGMA synchronous = OFF")
db.execute("PRAGMA foreign_keys = OFF")
now = "2026-01-01T00:00:00.000Z"
with db:
    domain = db.execute("SELECT id FROM domains WHERE key = 'Library'").fetchone()[0]
    ingest = db.execute("SELECT max(id) FROM ingests").fetchone()[0]
    src_run = db.execute("SELECT id FROM runs WHERE name = 'quickstart'").fetchone()[0]
    db.execute("INSERT INTO datasets(name, kind, source, created_at, updated_at) VALUES ('bench', 'dialogue', 'gen_export_db.py', ?, ?)", (now, now))
    dataset = db.execute("SELECT id FROM datasets WHERE name = 'bench'").fetchone()[0]
    db.execute(f"""
        WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < {tasks})
        INSERT INTO tasks(dataset_id, external_id, domain_id, record, content_hash, created_ingest, changed_ingest, seen_ingest)
        SELECT {dataset}, printf('bench-%07d', i), {domain},
               json_object('id', printf('bench-%07d', i),
                           'messages', json_array(json_object('role', 'user', 'content', printf('I need to renew loan L-%d before I travel.', 500 + i % 97))),
                           'user_system_prompt', 'You are a user who needs help with: renewing a loan.'),
               i, {ingest}, {ingest}, {ingest}
        FROM k
        """)
    first_task = db.execute("SELECT min(id) FROM tasks WHERE dataset_id = ?", (dataset,)).fetchone()[0]
    db.execute("""
        INSERT INTO runs(name, mode, config, config_hash, agent_model, user_model, source, status, created_at, started_at, finished_at)
        VALUES ('bench', 'dialogue', '{"jobs":{"bench":{"mode":"dialogue"}}}', 'bench', 'mock/agent', 'mock/user', 'gen_export_db.py',
                'completed', ?, ?, ?)
        """, (now, now, now))
    run = db.execute("SELECT id FROM runs WHERE name = 'bench'").fetchone()[0]
    db.execute("INSERT INTO run_domains(run_id, domain_id, policy, tools, routes, hash, created_at) "
               "SELECT ?, domain_id, policy, tools, routes, hash, created_at FROM run_domains WHERE run_id = ? AND domain_id = ?",
               (run, src_run, domain))
    db.execute(f"INSERT INTO run_tasks(run_id, task_id, job, samples) SELECT {run}, id, 'bench', 4 FROM tasks WHERE dataset_id = {dataset}")
    db.execute(f"""
        WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < {n})
        INSERT INTO rollouts(run_id, task_id, sample, attempt, status, stop_reason, turns, metadata, started_at, finished_at)
        SELECT {run}, {first_task} + i / 4, i % 4, 0, 'completed', 'user_stop', 3, '{{}}', '{now}', '{now}' FROM k
        """)
    first_rollout = db.execute("SELECT min(id) FROM rollouts WHERE run_id = ?", (run,)).fetchone()[0]
    # Ten messages per rollout; m = 0..9 is the position.
    db.execute(f"""
        WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < {n * 10})
        INSERT INTO messages(rollout_id, idx, role, content, tool_call_id, turn)
        SELECT {first_rollout} + i / 10, i % 10,
               CASE i % 10 WHEN 0 THEN 'user' WHEN 4 THEN 'user' WHEN 8 THEN 'user'
                           WHEN 2 THEN 'tool' WHEN 6 THEN 'tool' ELSE 'assistant' END,
               CASE i % 10
                 WHEN 0 THEN printf('Hi, I am member M-%d. I need to renew loan L-%d before I travel next week, and I would like to know whether there are any fees on my card.', 1000 + i / 10 % 4, 500 + i / 10 % 97)
                 WHEN 1 THEN NULL
                 WHEN 2 THEN printf('{{"loan_id": "L-%d", "title": "The Dispossessed", "author": "Ursula K. Le Guin", "due": "2026-02-%02d", "renewals": %d, "status": "renewed"}}', 500 + i / 10 % 97, 1 + i / 10 % 28, i / 10 % 3)
                 WHEN 3 THEN printf('I renewed loan L-%d for you. The new due date is 2026-02-%02d and this was renewal number %d of 3, so you can renew it once more if needed. Is there anything else I can help with?', 500 + i / 10 % 97, 1 + i / 10 % 28, i / 10 % 3)
                 WHEN 4 THEN 'Yes, are there any outstanding fees on my account? I would like to pay them before I leave, if possible.'
                 WHEN 5 THEN NULL
                 WHEN 6 THEN printf('{{"member_id": "M-%d", "fees": [{{"reason": "late return", "amount": %d.50, "currency": "EUR"}}], "total": %d.50}}', 1000 + i / 10 % 4, i / 10 % 9, i / 10 % 9)
                 WHEN 7 THEN printf('You have one outstanding fee of %d.50 EUR for a late return. You can pay it at the front desk or online through your member page. Would you like me to do anything else?', i / 10 % 9)
                 WHEN 8 THEN 'No, that is all. Thank you very much for your help!'
                 ELSE 'You are welcome. Have a great trip, and enjoy the book!'
               END,
               CASE i % 10 WHEN 2 THEN printf('call_%d_a', i / 10) WHEN 6 THEN printf('call_%d_b', i / 10) END,
               1 + (i % 10) / 4
        FROM k
        """)
    db.execute(f"""
        INSERT INTO tool_calls(rollout_id, message_id, idx, call_id, name, arguments, result_message_id, result)
        SELECT a.rollout_id, a.id, 0, printf('call_%d_%s', a.rollout_id - {first_rollout}, CASE a.idx WHEN 1 THEN 'a' ELSE 'b' END),
               CASE a.idx WHEN 1 THEN 'renew_loan' ELSE 'get_member' END,
               CASE a.idx WHEN 1 THEN printf('{{"loan_id": "L-%d"}}', 500 + (a.rollout_id - {first_rollout}) % 97)
                          ELSE printf('{{"member_id": "M-%d"}}', 1000 + (a.rollout_id - {first_rollout}) % 4) END,
               a.id + 1, r.content
        FROM messages a JOIN messages r ON r.id = a.id + 1
        WHERE a.rollout_id >= {first_rollout} AND a.idx IN (1, 5)
        ORDER BY a.id
        """)
db.execute("PRAGMA journal_mode = WAL")
print(f"run bench: {n} rollouts, {tasks} tasks, {n * 10} messages, {n * 2} tool calls in {db_path}")
