#!/usr/bin/env python3
"""Issue #7 baseline: the export as a Python script would do it with the standard library —
sqlite3 to read the same warehouse, json to write the same training records, hashlib for the
checksum. It selects the same rollouts in the same order (latest completed attempt of each
sample of the run, by task and sample) and writes byte-for-byte the file
`rollout export --format training` writes, so the two outputs can be compared by sha256.

Usage: export_baseline.py DB RUN OUT   (prints "records bytes sha256")
"""
import hashlib
import json
import os
import sqlite3
import sys

db_path, run, out_path = sys.argv[1:4]
db = sqlite3.connect(db_path)
run_id = db.execute("SELECT id FROM runs WHERE name = ?", (run,)).fetchone()[0]
prompts = {i: t for i, t in db.execute("SELECT id, text FROM label_prompts")}
toolsets = {i: json.loads(t) for i, t in db.execute("SELECT id, tools FROM label_toolsets")}

rows = db.execute("""
    SELECT r.id, t.external_id, l.prompt_id, l.toolset_id
    FROM latest_rollouts r JOIN tasks t ON t.id = r.task_id LEFT JOIN labels l ON l.rollout_id = r.id
    WHERE r.run_id = ? AND r.status = 'completed'
    ORDER BY r.task_id, r.sample
    """, (run_id,))
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
sha = hashlib.sha256()
count = size = 0
with open(out_path + ".tmp", "wb") as out:
    for rollout_id, external_id, prompt_id, toolset_id in rows:
        calls = {}
        for message_id, call_id, name, arguments in db.execute(
                "SELECT message_id, call_id, name, arguments FROM tool_calls WHERE rollout_id = ? ORDER BY id", (rollout_id,)):
            calls.setdefault(message_id, []).append(
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
        messages = []
        for message_id, role, content, reasoning, tool_call_id in db.execute(
                "SELECT id, role, content, reasoning_content, tool_call_id FROM messages WHERE rollout_id = ? ORDER BY idx",
                (rollout_id,)):
            messages.append({"role": role, "content": content, "reasoning_content": reasoning,
                             "tool_calls": calls.get(message_id), "tool_call_id": tool_call_id})
        if prompt_id is not None and not (messages and messages[0]["role"] == "system"):
            messages.insert(0, {"role": "system", "content": prompts[prompt_id], "reasoning_content": None,
                                "tool_calls": None, "tool_call_id": None})
        record = {"messages": messages, "id": external_id, "data_source": "agent", "use_cot": False,
                  "tools": toolsets.get(toolset_id, [])}
        line = (dumps(record) + "\n").encode("utf-8")
        sha.update(line)
        out.write(line)
        count += 1
        size += len(line)
os.replace(out_path + ".tmp", out_path)
print(count, size, sha.hexdigest())
