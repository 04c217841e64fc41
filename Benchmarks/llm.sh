#!/usr/bin/env bash
# Issue #3 benchmark: client CPU per call, calls/s and memory per in-flight request against
# `rollout mock-server` (0 ms latency, loopback, its own process), for rollout's client and, in
# the same run, the official openai Python SDK (AsyncOpenAI + asyncio) making the same calls.
# Usage: Benchmarks/llm.sh [LEVELS=1,64,512]
set -euo pipefail
cd "$(dirname "$0")/.."
LEVELS=${1:-1,64,512}
PORT=${PORT:-18477}
bash scripts/install-deps.sh --bench >/dev/null
swift build -c release --product rollout >/dev/null
BIN=.build/release/rollout
"$BIN" mock-server --port "$PORT" --threads 1 2>/dev/null &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
echo "mock-server: 1 event-loop thread, 0 ms latency; $(nproc) cores"
echo
echo "rollout (Swift, async-http-client):"
"$BIN" bench llm --endpoint "http://127.0.0.1:$PORT/v1" --concurrency "$LEVELS"
echo
echo "openai $(python3 -c 'import openai; print(openai.__version__)') Python SDK (AsyncOpenAI, asyncio):"
python3 Benchmarks/llm_openai_sdk.py "http://127.0.0.1:$PORT/v1" "$LEVELS"
