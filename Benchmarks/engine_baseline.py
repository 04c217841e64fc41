#!/usr/bin/env python3
"""Baseline for the rollout engine benchmark (issue #4): the pattern of the Python rollout
scripts rollout replaces. One shared AsyncOpenAI client, asyncio with a semaphore, one coroutine
per task running a multi-turn dialogue between a user simulator and a tool-calling agent, and
one JSONL line written per finished rollout.

The dialogue follows the Rollout framework's multi-turn loop:
  - the agent (model bench/agent) gets the domain policy as its system prompt and the domain's
    tool list; the user simulator (model bench/user) gets fixed guidelines plus
    <scenario>{user_system_prompt}</scenario> and sees the conversation with roles swapped and
    without tool traffic;
  - the task's opening message (from the query line) starts the dialogue;
  - a turn is one user message, then agent steps until a reply without tool calls (at most
    MAX_STEPS steps); tool calls are executed between steps;
  - the user simulator writes the next user message; ###STOP### (or ###TRANSFER###,
    ###OUT-OF-SCOPE###) ends the dialogue, with the token stripped; at most MAX_TURNS turns.

Tools run in-process: a trivial Python function returning a small JSON string. That favours this
baseline, since the engine calls a real MCP server process.

Prints one JSON summary line: rollouts, llm_calls (every answered call), calls_per_rollout
(mean over the rollouts that completed), wall_s, cpu_s (this process's user + system time),
peak_rss_mb, errors (failed rollouts, each still written as a line with "error").

Usage: engine_baseline.py BASE_URL QUERIES.jsonl OUT.jsonl CONCURRENCY [--tools F] [--policy F]
"""
import argparse
import asyncio
import json
import os
import resource
import time

try:  # openai >= 3 is built on httpx2; earlier versions on httpx.
    import httpx2 as httpx
except ImportError:
    import httpx
from openai import AsyncOpenAI, DefaultAsyncHttpxClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYOUT = os.path.join(ROOT, "examples/rollout-layout/single_domain")
AGENT_MODEL, USER_MODEL = "bench/agent", "bench/user"
AGENT_TEMPERATURE, USER_TEMPERATURE = 0.7, 1.0
MAX_TURNS, MAX_STEPS = 8, 6
STOP_TOKENS = {"###STOP###": "user_stop", "###TRANSFER###": "user_transfer", "###OUT-OF-SCOPE###": "user_out_of_scope"}

USER_GUIDELINES = """You play a customer contacting a help desk. Stay in character and follow the
scenario below: say what you need one step at a time, answer the agent's questions using only
the information the scenario gives you, and never invent account details.
When your goal has been met, end your message with ###STOP###. If the agent transfers you to a
human, end with ###TRANSFER###. If the scenario does not tell you something the agent needs and
you cannot go on, end with ###OUT-OF-SCOPE###."""


def run_tool(name, arguments):
    """The stand-in for the domain's tool server: a small JSON answer, no I/O."""
    try:
        args = json.loads(arguments or "{}")
    except ValueError:
        return json.dumps({"error": "arguments are not valid JSON"})
    return json.dumps({"ok": True, "tool": name, "arguments": args, "result": "done"})


def user_view(system_prompt, messages):
    """The conversation as the user simulator sees it: its own messages as `assistant`, the
    agent's text replies as `user`, no system prompt of the agent's and no tool traffic."""
    view = [{"role": "system", "content": system_prompt}]
    for m in messages:
        if m["role"] == "user":
            view.append({"role": "assistant", "content": m["content"]})
        elif m["role"] == "assistant" and not m.get("tool_calls") and m.get("content"):
            view.append({"role": "user", "content": m["content"]})
    return view


class Bench:
    def __init__(self, client, concurrency, tools, policy, out):
        self.client = client
        self.sem = asyncio.Semaphore(concurrency)
        self.tools = tools
        self.policy = policy
        self.out = out
        self.llm_calls = 0
        self.completed_calls = 0
        self.errors = 0

    async def dialogue(self, query):
        n_calls = 0

        async def chat(**kwargs):
            nonlocal n_calls
            response = await self.client.chat.completions.create(**kwargs)
            self.llm_calls += 1
            n_calls += 1
            return response.choices[0].message

        user_prompt = f"{USER_GUIDELINES}\n\n<scenario>{query['user_system_prompt']}</scenario>"
        messages = [{"role": "system", "content": self.policy}]
        user_message = next(m["content"] for m in query["messages"] if m["role"] == "user")
        turns, stop_reason = 0, "max_turns"
        while True:
            messages.append({"role": "user", "content": user_message})
            turns += 1
            for _ in range(MAX_STEPS):
                reply = await chat(model=AGENT_MODEL, messages=messages, tools=self.tools,
                                   temperature=AGENT_TEMPERATURE)
                calls = [{"id": c.id, "type": "function",
                          "function": {"name": c.function.name, "arguments": c.function.arguments}}
                         for c in reply.tool_calls or []]
                step = {"role": "assistant", "content": reply.content}
                if calls:
                    step["tool_calls"] = calls
                messages.append(step)
                if not calls:
                    break
                for c in calls:
                    messages.append({"role": "tool", "tool_call_id": c["id"], "name": c["function"]["name"],
                                     "content": run_tool(c["function"]["name"], c["function"]["arguments"])})
            if turns >= MAX_TURNS:
                break
            reply = await chat(model=USER_MODEL, messages=user_view(user_prompt, messages),
                               temperature=USER_TEMPERATURE)
            user_message = reply.content or ""
            token = next((t for t in STOP_TOKENS if t in user_message), None)
            if token:
                stop_reason = STOP_TOKENS[token]
                closing = user_message.replace(token, "").strip()
                if closing:
                    messages.append({"role": "user", "content": closing})
                break
        return messages, stop_reason, turns, n_calls

    async def rollout(self, query):
        async with self.sem:
            record = {"id": query["id"]}
            try:
                messages, stop_reason, turns, n_calls = await self.dialogue(query)
                self.completed_calls += n_calls
                record.update(messages=messages, success=True, stop_reason=stop_reason, total_turns=turns)
            except Exception as e:  # one failed rollout must not end the run
                self.errors += 1
                cause = f" (cause: {e.__cause__!r})" if e.__cause__ else ""
                record.update(messages=[], success=False, stop_reason="error", total_turns=0, error=f"{e!r}{cause}")
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")


async def main_async(args):
    with open(args.queries) as f:
        queries = [json.loads(line) for line in f if line.strip()]
    with open(args.tools) as f:
        tools = json.load(f)
    with open(args.policy) as f:
        policy = f.read()
    c = args.concurrency
    # The SDK's default pool allows 1,000 connections (100 kept alive); raise it to the
    # concurrency so the client is not throttled below the semaphore. Its default timeout is
    # 600 s with 5 s to connect; at 2,048 in flight the one event loop can take longer than 5 s
    # to come back to a connection it opened, and most rollouts then fail with timeouts
    # (13,795 of 20,000 in a trial run), so connecting gets the same 600 s as the rest.
    http_client = DefaultAsyncHttpxClient(limits=httpx.Limits(max_connections=c, max_keepalive_connections=c))
    client = AsyncOpenAI(base_url=args.base_url, api_key="bench", max_retries=args.max_retries,
                         timeout=httpx.Timeout(600.0), http_client=http_client)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.perf_counter()
    with open(args.out, "w") as out:
        bench = Bench(client, c, tools, policy, out)
        await asyncio.gather(*(bench.rollout(q) for q in queries))
    wall = time.perf_counter() - wall0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    await client.close()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(json.dumps({
        "rollouts": len(queries), "concurrency": c, "llm_calls": bench.llm_calls,
        "calls_per_rollout": round(bench.completed_calls / max(1, len(queries) - bench.errors), 3),
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(cpu1.ru_maxrss / 1024, 1),
        "errors": bench.errors,
        "tools": "in-process Python function (favours this baseline; the engine calls a real MCP server)",
    }), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base_url")
    p.add_argument("queries")
    p.add_argument("out")
    p.add_argument("concurrency", type=int)
    p.add_argument("--tools", default=os.path.join(LAYOUT, "tool_lists/Library.json"))
    p.add_argument("--policy", default=os.path.join(LAYOUT, "policies/Library.md"))
    p.add_argument("--max-retries", type=int, default=2, help="the SDK's default")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
