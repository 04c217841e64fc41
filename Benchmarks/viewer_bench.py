#!/usr/bin/env python3
"""Issue #8 benchmark client: times the pages of `rollout serve` (Python stdlib only).

  index URL DB OUT.json   waits until the background search index covers every message
                          (message_search_state.indexed_upto = max(messages.id), read with
                          sqlite3 beside the server) and times it from now; meanwhile asks for
                          a trajectory and the run page every 2 s, to show what indexing costs
                          the pages
  pages URL DB ROUNDS OUT.json
                          one request per case right after the server started (cold), then
                          ROUNDS rounds of every case in turn (warm), each request with new
                          parameters (random rollout ids, keyset pages near the end of the
                          run, ...); prints a markdown table of the server's render time
                          (Server-Timing: render;dur=MS) and the client's total (request sent
                          to last byte read, loopback, a new connection each time)
"""
import json
import random
import re
import sqlite3
import statistics
import sys
import time
import urllib.parse
import urllib.request


def fetch(url):
    """(status, server ms, client ms, bytes, body) of one GET."""
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            body = r.read()
            status, timing = r.status, r.headers.get("Server-Timing", "")
    except urllib.error.HTTPError as e:
        body = e.read()
        status, timing = e.code, e.headers.get("Server-Timing", "")
    client = (time.perf_counter() - start) * 1000
    m = re.search(r"dur=([0-9.]+)", timing)
    return status, float(m.group(1)) if m else float("nan"), client, len(body), body.decode("utf-8", "replace")


def facts(db_path):
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    q = lambda sql, *a: db.execute(sql, a).fetchone()
    run, small = q("SELECT id FROM runs WHERE name = 'bench'")[0], q("SELECT id FROM runs WHERE name = 'quickstart'")[0]
    r0, r1 = q("SELECT min(id), max(id) FROM rollouts WHERE run_id = ?", run)
    t0, t1 = q("SELECT min(task_id), max(task_id) FROM rollouts WHERE run_id = ?", run)
    m0, m1 = q("SELECT min(id), max(id) FROM messages")
    return dict(db=db, run=run, small=small, r0=r0, r1=r1, t0=t0, t1=t1, m0=m0, m1=m1)


def cases(f):
    """(name, expected: a text the page contains, "N+" at least N rows shown or "0" none, url(rng) -> path)."""
    run, r0, r1, t0, t1, m1 = f["run"], f["r0"], f["r1"], f["t0"], f["t1"], f["m1"]
    near_end_task = lambda g: g.randint(t1 - 2_000, t1 - 60)
    anywhere_task = lambda g: g.randint(t0, t1 - 5_000)
    near_end = lambda g: g.randint(r1 - 8_000, r1 - 250)
    anywhere = lambda g: g.randint(r0, r1 - 20_000)
    R = f"/runs/{run}"
    q = urllib.parse.quote
    return [
        ("runs list `/`", "Runs", lambda g: "/"),
        ("run overview (pass@k over 250,000 tasks, usage, stop reasons)", "pass@k", lambda g: R),
        ("run overview `?by=dataset`", "pass@k", lambda g: R + "?by=dataset"),
        ("run overview `?by=run`", "pass@k", lambda g: R + "?by=run"),
        ("run overview `?by=agent_model` (each task's job looked up)", "pass@k", lambda g: R + "?by=agent_model"),
        ("run overview `?by=user_model`", "pass@k", lambda g: R + "?by=user_model"),
        ("tasks, page 1", "50+", lambda g: R + "/tasks"),
        ("tasks, deep page (after= near the end)", "50+", lambda g: f"{R}/tasks?after={near_end_task(g)}"),
        ("tasks `?outcome=flip`, page 1", "50+", lambda g: R + "/tasks?outcome=flip"),
        ("tasks `?outcome=flip`, deep page", "50+", lambda g: f"{R}/tasks?outcome=flip&after={near_end_task(g)}"),
        ("tasks `?outcome=fail`, any page", "50+", lambda g: f"{R}/tasks?outcome=fail&after={anywhere_task(g)}"),
        ("tasks `?domain=CityTransit` (1 task in 10), any page", "50+", lambda g: f"{R}/tasks?domain=CityTransit&after={anywhere_task(g)}"),
        ("rollouts, page 1", "50+", lambda g: R + "/rollouts"),
        ("rollouts, deep page (after= near the end)", "50+", lambda g: f"{R}/rollouts?after={near_end(g)}"),
        ("rollouts `?stop=max_turns` (8%), any page", "50+", lambda g: f"{R}/rollouts?stop=max_turns&after={anywhere(g)}"),
        ("rollouts `?stop=interrupted` (1%), any page", "50+", lambda g: f"{R}/rollouts?stop=interrupted&after={anywhere(g)}"),
        ("rollouts `?status=failed` (2%), any page", "50+", lambda g: f"{R}/rollouts?status=failed&after={anywhere(g)}"),
        ("rollouts `?verdict=pass`, any page", "50+", lambda g: f"{R}/rollouts?verdict=pass&after={anywhere(g)}"),
        ("rollouts `?verdict=fail`, any page", "50+", lambda g: f"{R}/rollouts?verdict=fail&after={anywhere(g)}"),
        ("rollouts `?verdict=undecided` (0.2%), any page", "50+", lambda g: f"{R}/rollouts?verdict=undecided&after={anywhere(g)}"),
        ("rollouts `?domain=CityTransit` (10%), any page", "50+", lambda g: f"{R}/rollouts?domain=CityTransit&after={anywhere(g)}"),
        ("rollouts `?review=accepted` (0.13%), any page", "50+", lambda g: f"{R}/rollouts?review=accepted&attempts=all&after={anywhere(g)}"),
        ("rollouts `?review=rejected` (0.07%), page 1", "1+", lambda g: f"{R}/rollouts?review=rejected&attempts=all"),
        ("rollouts `?review=unreviewed`, any page", "50+", lambda g: f"{R}/rollouts?review=unreviewed&after={anywhere(g)}"),
        ("rollouts `?stop=transfer&verdict=fail&status=completed`", "50+", lambda g: f"{R}/rollouts?stop=transfer&verdict=fail&status=completed&after={anywhere(g)}"),
        ("rollouts of one task `?task=`", "1+", lambda g: f"{R}/rollouts?task={g.randint(t0, t1)}"),
        ("rollouts `?attempts=all`, deep page", "50+", lambda g: f"{R}/rollouts?attempts=all&after={near_end(g)}"),
        ("trajectory `/rollouts/ID` (random id)", "Conversation", lambda g: f"/rollouts/{g.randint(r0, r1)}"),
        ("search: common word (`renew`, every rollout)", "50+", lambda g: "/search?q=renew"),
        ("search: common word, deep page (`before=`)", "50+", lambda g: f"/search?q=renew&before={g.randint(m1 // 10, m1)}"),
        ("search: rare word (`zeppelin`, 40 messages)", "1+", lambda g: "/search?q=zeppelin"),
        ("search: no match (`xylophone`)", "0", lambda g: "/search?q=xylophone"),
        ("search: phrase (`\"outstanding fee\"`)", "50+", lambda g: "/search?q=" + q('"outstanding fee"')),
        ("search: prefix (`renew*`)", "50+", lambda g: "/search?q=renew*"),
        ("search: two words (`fees travel`)", "50+", lambda g: "/search?q=" + q("fees travel")),
        ("search: common word, `run=` the big run", "50+", lambda g: f"/search?q=renew&run={run}"),
        ("search: rare word, `run=` the big run", "1+", lambda g: f"/search?q=zeppelin&run={run}"),
        ("search: common word, `run=` the small old run (23 matches)", "1+", lambda g: f"/search?q=renew&run={f['small']}"),
        ("search: common word, `role=assistant`", "50+", lambda g: "/search?q=renew&role=assistant"),
        ("search: phrase, `role=tool` (no such message)", "0", lambda g: "/search?q=" + q('"outstanding fee"') + "&role=tool"),
        ("search: two common words never in one message (`thank outstanding`)", "0", lambda g: "/search?q=" + q("thank outstanding")),
        ("search: prefix and word (`renew* fees`)", "50+", lambda g: "/search?q=" + q("renew* fees")),
        ("search: a phrase of common words never in that order (`\"fee outstanding\"`)", "0", lambda g: "/search?q=" + q('"fee outstanding"')),
    ]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))]


def pages(url, db_path, rounds, out):
    f = facts(db_path)
    cs = cases(f)
    g = random.Random(8)
    results = {name: {"cold": None, "warm": [], "bytes": [], "rows": [], "bad": []} for name, _, _ in cs}

    def one(name, want, path, cold):
        status, server, client, size, body = fetch(url + path)
        r = results[name]
        m = re.search(r"<span>(\d+) shown</span>", body)
        rows = int(m.group(1)) if m else None
        if want == "0":
            ok = rows == 0
        elif want.endswith("+"):
            ok = rows is not None and rows >= int(want[:-1])
        else:
            ok = want in body
        if status != 200 or not ok:
            r["bad"].append(f"{path}: HTTP {status}, {rows} rows shown, expected {want!r}")
        r["rows"].append(rows)
        if cold:
            r["cold"] = (server, client)
        else:
            r["warm"].append((server, client))
        r["bytes"].append(size)

    for name, want, gen in cs:
        one(name, want, gen(g), True)
    for _ in range(rounds):
        for name, want, gen in cs:
            one(name, want, gen(g), False)
    json.dump(results, open(out, "w"), indent=1)

    print("| page | cold: server ms | cold: client ms | warm server ms p50 / p95 / max | warm client ms p50 / p95 / max | KB | rows | < 200 ms? |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: |")
    for name, _, _ in cs:
        r = results[name]
        s = [x[0] for x in r["warm"]]
        c = [x[1] for x in r["warm"]]
        worst = max(c + [r["cold"][1]])
        shown = [x for x in r["rows"] if x is not None]
        rows = f"{min(shown)}–{max(shown)}" if shown and min(shown) != max(shown) else (str(shown[0]) if shown else "—")
        ok = "yes" if worst < 200 else ("**no** (cold)" if max(c) < 200 else "**no**")
        print(f"| {name} | {r['cold'][0]:.1f} | {r['cold'][1]:.1f} | {pct(s, 50):.1f} / {pct(s, 95):.1f} / {max(s):.1f} | "
              f"{pct(c, 50):.1f} / {pct(c, 95):.1f} / {max(c):.1f} | {statistics.median(r['bytes']) / 1024:.0f} | {rows} | {ok} |")
    bad = {k: v["bad"] for k, v in results.items() if v["bad"]}
    if bad:
        print()
        for k, v in bad.items():
            print(f"unexpected answers for {k}: {v[:3]}")


def index(url, db_path, out):
    f = facts(db_path)
    db = f["db"]
    g = random.Random(1)
    start = time.perf_counter()
    samples = {"trajectory": [], "run overview": []}
    last = 0.0
    while True:
        upto = db.execute("SELECT indexed_upto FROM message_search_state").fetchone()[0]
        if upto >= f["m1"]:
            break
        now = time.perf_counter()
        if now - last >= 2:
            last = now
            samples["trajectory"].append(fetch(f"{url}/rollouts/{g.randint(f['r0'], f['r1'])}")[1:3])
            samples["run overview"].append(fetch(f"{url}/runs/{f['run']}")[1:3])
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    _, _, _, _, body = fetch(url + "/search?q=renew")
    result = {"seconds": seconds, "messages": f["m1"], "notice_gone": "index is being built" not in body, "during": samples}
    json.dump(result, open(out, "w"), indent=1)
    print(f"search index: {f['m1']:,} messages in {seconds:.1f} s; notice gone: {result['notice_gone']}")
    for k, v in samples.items():
        if v:
            print(f"  {k} while indexing: server p50 {pct([x[0] for x in v], 50):.1f} ms, max {max(x[0] for x in v):.1f} ms; "
                  f"client p50 {pct([x[1] for x in v], 50):.1f} ms, max {max(x[1] for x in v):.1f} ms ({len(v)} requests)")


if __name__ == "__main__":
    if sys.argv[1] == "index":
        index(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        pages(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
