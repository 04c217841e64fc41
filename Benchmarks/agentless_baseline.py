#!/usr/bin/env python3
"""Baseline for the Agentless benchmark: the approach of the Python batch scripts rollout
replaces, written for this benchmark (helper-written, not their code).

  localize: per instance, json.loads the structure, filter it (non-Python files, tests), render
            it the way Agentless does, format the prompt, write one OpenAI batch line.
  finalize: per answer, strip thinking, take the fenced blocks, regex-parse SEARCH/REPLACE,
            json.loads the instance's structure (cached for 50 instances, as the scripts'
            lru_cache), apply each edit (whitespace-insensitive line match with re-indentation),
            difflib.unified_diff per file, write output_{pass}_processed.jsonl.

Reads the warehouse that `rollout bench agentless-setup` filled (stdlib sqlite3). Prints one
JSON line: items, seconds, per-second, peak RSS MiB.

  python3 Benchmarks/agentless_baseline.py localize bench.db out/ [N]
  python3 Benchmarks/agentless_baseline.py finalize bench.db bench-agentless/bench.repair.output.jsonl out/
"""
import difflib
import functools
import json
import os
import re
import resource
import sqlite3
import sys
import time

PROMPT = """
Please look through the following GitHub problem description and Repository structure and provide a list of files that one would need to edit to fix the problem.

### GitHub Problem Description ###
{problem_statement}

###

### Repository Structure ###
{structure}

###

Please only provide the full path and return at most 5 files.
The returned files should be separated by new lines ordered by most to least important and wrapped with ```
For example:
```
file1.py
file2.py
```
"""


def is_file(v):
    return isinstance(v, dict) and len(v) == 3 and ("functions" in v or "classes" in v or "text" in v)


def none_python(s):
    for k, v in list(s.items()):
        if is_file(v):
            if not k.endswith(".py"):
                del s[k]
        elif isinstance(v, dict):
            none_python(v)
            if v == {}:
                del s[k]


def no_tests(s):
    for k, v in list(s.items()):
        if k.startswith("test"):
            del s[k]
        elif isinstance(v, dict):
            no_tests(v)


def render(s, spacing=0):
    out = ""
    for k, v in s.items():
        if "." in k and ".py" not in k:
            continue
        out += " " * spacing + k + ("\n" if "." in k else "/\n")
        if isinstance(v, dict) and "classes" not in v:
            out += render(v, spacing + 4)
    return out


def files(s, prefix=""):
    for k, v in s.items():
        p = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict) and not is_file(v):
            yield from files(v, p)
        elif is_file(v):
            yield p, v["text"]


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def localize(db, out, n):
    con = sqlite3.connect(db)
    rows = con.execute("""SELECT t.external_id, t.opening, s.structure FROM tasks t JOIN datasets d ON d.id = t.dataset_id
                          JOIN repo_structures s ON s.instance_id = t.external_id WHERE d.name = 'bench' ORDER BY t.external_id""")
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    count = 0
    with open(os.path.join(out, "baseline.localize.jsonl"), "w") as f:
        for iid, problem, text in rows:
            if n and count >= n:
                break
            s = json.loads(text)
            none_python(s)
            no_tests(s)
            prompt = PROMPT.format(problem_statement=problem, structure=render(s).strip()).strip()
            body = {"model": "bench-model", "messages": [{"role": "user", "content": prompt}], "max_tokens": 1024}
            f.write(json.dumps({"custom_id": iid, "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n")
            count += 1
    s = time.perf_counter() - start
    print(json.dumps({"stage": "localize", "items": count, "seconds": s, "perSecond": count / s, "peakRSSMiB": peak_mib()}))


BLOCK = re.compile(r"(?:### )?([^\n]+)\n<{7,} SEARCH\n(.*?)\n={7,}\n(.*?)(?:\n)?>{7,} REPLACE", re.DOTALL)


def apply(content, search, replace):
    lines = content.splitlines(keepends=True)
    want = search.splitlines(keepends=True)
    n = len(want)
    for i in range(len(lines) - n + 1):
        if all(a.strip() == b.strip() for a, b in zip(lines[i:i + n], want)):
            k = next((j for j, l in enumerate(want) if l.strip()), 0)
            diff = (len(lines[i + k]) - len(lines[i + k].lstrip())) - (len(want[k]) - len(want[k].lstrip()))
            new = []
            for l in replace.splitlines(keepends=True):
                if l.strip():
                    ind = len(l) - len(l.lstrip()) + diff
                    l = " " * max(0, ind) + l.lstrip()
                new.append(l)
            return "".join(lines[:i]) + "".join(new) + "".join(lines[i + n:])
    return content


def finalize(db, output_file, out):
    con = sqlite3.connect(db)

    @functools.lru_cache(maxsize=50)
    def structure(iid):
        (text,) = con.execute("SELECT structure FROM repo_structures WHERE instance_id = ?", (iid,)).fetchone()
        s = json.loads(text)
        none_python(s)
        no_tests(s)
        return dict(files(s))

    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    per_pass = {}
    count = ok = 0
    for line in open(output_file):
        item = json.loads(line)
        count += 1
        cid = item["custom_id"]
        iid, _, p = cid.partition("__pass")
        if item.get("response") is None or item["response"].get("status_code") != 200:
            continue
        answer = item["response"]["body"]["choices"][0]["message"]["content"]
        if "</think>" in answer:
            answer = answer.split("</think>")[-1]
        blocks = "\n".join(re.findall(r"```.*?```", answer, re.DOTALL)) or answer
        contents = structure(iid)
        edits = {}
        for path, search, replace in BLOCK.findall(blocks):
            path = path.strip().strip("`")
            if replace and not replace.endswith("\n"):
                replace += "\n"
            edits.setdefault(path, []).append((search + "\n", replace))
        patch = ""
        edited, originals, news = [], [], []
        for path, list_ in edits.items():
            if path not in contents:
                continue
            original = "\n".join(contents[path])
            new = original
            for search, replace in list_:
                new = apply(new, search, replace)
            if new == original:
                continue
            d = difflib.unified_diff(original.splitlines(keepends=True), new.splitlines(keepends=True),
                                     fromfile=f"a/{path}", tofile=f"b/{path}")
            patch += f"diff --git a/{path} b/{path}\n" + "".join(x if x.endswith("\n") else x + "\n" for x in d)
            edited.append(path)
            originals.append(original)
            news.append(new)
        if patch:
            ok += 1
        per_pass.setdefault(int(p or 0), []).append(json.dumps({
            "model_name_or_path": "bench-model", "instance_id": iid, "model_patch": patch, "raw_model_patch": blocks,
            "original_file_content": originals, "edited_files": edited, "new_file_content": news}))
    for p, lines in per_pass.items():
        with open(os.path.join(out, f"output_{p}_processed.jsonl"), "w") as f:
            f.write("\n".join(lines) + "\n")
    s = time.perf_counter() - start
    print(json.dumps({"stage": "finalize", "items": count, "ok": ok, "seconds": s, "perSecond": ok / s, "peakRSSMiB": peak_mib()}))


if __name__ == "__main__":
    if sys.argv[1] == "localize":
        localize(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    else:
        finalize(sys.argv[2], sys.argv[3], sys.argv[4])
