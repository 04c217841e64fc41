#!/usr/bin/env python3
"""Writes the seed inputs of one fuzz target into a folder, taken from the test fixtures
(Tests/RolloutKitTests/Fixtures), the example layout, configs/ and the few hand-written seeds
in Benchmarks/Fuzz/seeds/<target>/ (shapes no fixture file has, e.g. Anthropic replies).

usage: seed.py TARGET OUT_DIR
"""
import hashlib
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = ROOT / "Tests/RolloutKitTests/Fixtures"
MAX = 64 * 1024  # larger seeds only slow the fuzzer down; -max_len cuts them anyway


def lines(path, limit=40):
    out = []
    for line in path.read_bytes().splitlines():
        if line.strip() and len(line) <= MAX:
            out.append(line)
        if len(out) >= limit:
            break
    return out


def whole(path):
    data = path.read_bytes()
    return [data] if len(data) <= MAX else []


def array_elements(path, limit=20):
    items = json.loads(path.read_text())
    return [json.dumps(x).encode() for x in items[:limit] if len(json.dumps(x)) <= MAX]


def batch_bodies(limit=20):
    out = []
    for line in lines(FIX / "openai-batch/batch-output-expansion.jsonl", limit):
        body = json.loads(line).get("response", {}).get("body")
        if body is not None:
            out.append(json.dumps(body).encode())
    return out


def seeds(target):
    jsonl = [p for p in FIX.rglob("*.jsonl")] + list((ROOT / "examples").rglob("*.jsonl"))
    if target == "FuzzJSON":
        out = []
        for p in sorted(jsonl):
            out += lines(p, 10)
        for p in sorted(FIX.rglob("*.json")):
            out += whole(p)
        return out
    if target == "FuzzOpenAI":
        return (whole(FIX / "llama-server/chat_plain.json") + whole(FIX / "llama-server/chat_tools_fewshot.json")
                + batch_bodies())
    if target == "FuzzAnthropic":
        return []
    if target == "FuzzSSE":
        return whole(FIX / "llama-server/chat_stream.sse") + whole(FIX / "llama-server/chat_tools_stream.sse")
    if target == "FuzzEditBlocks":
        return []
    if target == "FuzzYAML":
        return [p.read_bytes() for p in sorted((ROOT / "configs").glob("*.yml"))]
    if target == "FuzzTrajectories":
        out = []
        for p in sorted((FIX / "deepresearch").glob("*.jsonl")):
            out += lines(p, 10)
        out += array_elements(FIX / "tau-bench/gpt-4o-airline-10.json", 10)
        return out
    if target == "FuzzBatchLine":
        return lines(FIX / "openai-batch/batch-output-expansion.jsonl", 20)
    if target == "FuzzIngestFiles":
        out = whole(FIX / "swebench/swebench_lite_5.jsonl")
        for p in sorted((FIX / "deepresearch").glob("*.jsonl")):
            out += whole(p)
        for p in sorted((ROOT / "examples/rollout-layout").rglob("*.jsonl")):
            out += whole(p)
        return out
    raise SystemExit(f"unknown target {target}")


def main():
    target, out_dir = sys.argv[1], pathlib.Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    found = seeds(target)
    hand = ROOT / "Benchmarks/Fuzz/seeds" / target
    if hand.is_dir():
        found += [p.read_bytes() for p in sorted(hand.iterdir()) if p.is_file()]
    for data in found:
        (out_dir / hashlib.sha1(data).hexdigest()).write_bytes(data)
    print(f"{target}: {len(found)} seeds")


main()
