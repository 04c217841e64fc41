#!/usr/bin/env python3
"""Baseline for `rollout bench llm`: the official openai SDK (AsyncOpenAI) making the same calls
with asyncio and a semaphore, the pattern of the scripts rollout replaces.

Prints the same markdown rows: concurrency, calls, errors, wall s, calls/s, client CPU us/call
(this process's user+system time, time.process_time), KiB per in-flight request (peak RSS rise
over the run / concurrency).
Usage: llm_openai_sdk.py BASE_URL LEVELS [CALLS]   e.g. http://127.0.0.1:8400/v1 1,64,512
"""
import asyncio
import resource
import sys
import time

from openai import AsyncOpenAI

TOOLS = [{"type": "function", "function": {
    "name": "get_card", "description": "Get a card's balance.",
    "parameters": {"type": "object", "properties": {"card_id": {"type": "string"}}, "required": ["card_id"]}}}]
MESSAGES = [{"role": "system", "content": "You are a helpful agent."},
            {"role": "user", "content": "What is the balance of card C-7788? Please check."}]


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def level(base_url, concurrency, calls):
    client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
    await client.chat.completions.create(model="agent", messages=MESSAGES, tools=TOOLS, temperature=0.7, max_tokens=256)
    before = rss_kib()
    peak = before
    sem = asyncio.Semaphore(concurrency)
    errors = 0

    async def one():
        nonlocal errors, peak
        async with sem:
            try:
                await client.chat.completions.create(model="agent", messages=MESSAGES, tools=TOOLS,
                                                     temperature=0.7, max_tokens=256)
            except Exception:
                errors += 1
            peak = max(peak, rss_kib()) if concurrency > 1 else peak

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    await client.close()
    return (f"| {concurrency} | {calls} | {errors} | {wall:.2f} | {calls / wall:.0f} | "
            f"{cpu / calls * 1e6:.0f} | {max(0, peak - before) / concurrency:.1f} |")


def main():
    base_url, levels = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
    fixed = int(sys.argv[3]) if len(sys.argv) > 3 else None
    print("| concurrency | calls | errors | wall s | calls/s | client CPU µs/call | KiB per in-flight request |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in levels:
        print(asyncio.run(level(base_url, c, fixed or max(2000, 8 * c))), flush=True)


if __name__ == "__main__":
    main()
