#!/usr/bin/env python3
"""Writes N realistic Rollout-framework query records (~1 KB each) as JSON Lines.

Deterministic for a given N and seed. Usage: gen_queries.py N OUT.jsonl [SEED]
"""
import hashlib
import json
import random
import sys

WORDS = ("account booking cancel change refund flight hotel order payment card transfer balance "
         "address delivery return exchange subscription upgrade invoice ticket reservation passenger "
         "baggage seat schedule policy member loan renewal hold catalog route station").split()
NAMES = ["Mia", "Noah", "Zoë", "Łukasz", "Aiko", "José", "Ana", "Omar", "Chen", "Priya"]
TOOLS = ["get_user_details", "get_reservation_details", "search_direct_flight", "update_reservation_flights",
         "cancel_reservation", "book_reservation", "list_orders", "get_order", "refund_order", "send_certificate"]


def sentence(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def record(i, rng):
    name = rng.choice(NAMES)
    opening = f"Hi, I'm {name}. " + sentence(rng, 10) + " " + sentence(rng, 6)
    goal = sentence(rng, 14)
    known = f"Your user id is {name.lower()}_{rng.randrange(1000, 9999)}. " + sentence(rng, 10)
    reason = sentence(rng, 9)
    trajectory = rng.sample(TOOLS, 3)
    prompt = (f"You are a user who needs help with: {reason}\n\nYour goal: {goal}\n\n"
              f"Information you know: {known}\n\nBehave naturally; reveal details only when asked.")
    return {
        "id": hashlib.md5(f"q{i}".encode()).hexdigest()[:8] + f"{i:x}",
        "messages": [{"role": "user", "content": opening}],
        "user_system_prompt": prompt,
        "task_info": {
            "trajectory": trajectory,
            "instruction": goal,
            "reason_for_call": reason,
            "known_info": known,
            "trajectory_hash": hashlib.sha1(str(trajectory).encode()).hexdigest()[:16],
            "combo_id": f"combo_{i % 97}",
        },
    }


def main():
    n = int(sys.argv[1])
    out = sys.argv[2]
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 42)
    with open(out, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(record(i, rng), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
