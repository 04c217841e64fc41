#!/usr/bin/env bash
# Installs what rollout needs that a fresh Debian/Ubuntu machine with Swift may lack.
# Safe to re-run: it installs only what is missing.
set -euo pipefail

need=()
dpkg -s libsqlite3-dev >/dev/null 2>&1 || need+=(libsqlite3-dev)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
if [ "${1:-}" = "--test" ]; then
  # The Agentless tests check patches with `git apply --check` against the real files.
  command -v git >/dev/null 2>&1 || need+=(git)
  # The viewer's end-to-end test drives a real headless browser over WebDriver.
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
fi
if [ "${1:-}" = "--bench" ]; then
  command -v /usr/bin/time >/dev/null 2>&1 || need+=(time)
fi
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

if [ "${1:-}" = "--test" ]; then
  # fakellm: an independent OpenAI/Anthropic mock server the integration tests talk to.
  python3 -c "import fakellm" 2>/dev/null || \
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore fakellm
  # MCP servers the client tests talk to: the official Python SDK (2.x) and the τ² mock domain.
  python3 -c "import mcp.server.mcpserver, tau2_mock_mcp" 2>/dev/null || \
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore mcp==2.3.0 tau2-mock-mcp-eval==0.4.0
  # numpy: the reference implementation of pass@k (Chen et al. 2021) the estimator tests check against.
  python3 -c "import numpy" 2>/dev/null || \
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore numpy
fi

if [ "${1:-}" = "--bench" ]; then
  # The baselines the benchmarks compare against.
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore sqlite-utils openai numpy
fi
