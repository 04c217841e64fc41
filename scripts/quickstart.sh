#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run the main job on the
# built-in defaults (./rollout.db, the bundled example dataset).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build -c release --product rollout
.build/release/rollout quickstart "$@"
