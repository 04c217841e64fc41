#!/usr/bin/env python3
"""N dialogue queries for the rollout-engine benchmark (issue #4), in the Rollout framework's
queries format: the 7 Library example queries repeated in order, each copy with a distinct id
(bench000001, bench000002, ...) and every other field unchanged. Deterministic.

Usage: gen_dialogue_queries.py N OUT.jsonl [SOURCE.jsonl]
       (SOURCE defaults to examples/rollout-layout/single_domain/queries/Library.jsonl)
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SOURCE = os.path.join(ROOT, "examples/rollout-layout/single_domain/queries/Library.jsonl")


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.strip())
    n, out = int(sys.argv[1]), sys.argv[2]
    source = sys.argv[3] if len(sys.argv) == 4 else DEFAULT_SOURCE
    with open(source) as f:
        templates = [json.loads(line) for line in f if line.strip()]
    if not templates:
        sys.exit(f"{source}: no queries")
    with open(out, "w") as f:
        for i in range(n):
            record = dict(templates[i % len(templates)])
            record["id"] = f"bench{i + 1:06d}"
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
