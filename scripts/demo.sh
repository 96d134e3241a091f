#!/bin/sh
# The main job: builds orch, then runs `orch demo`: the orchestrator agent
# plans a goal, coders work in parallel in their own worktrees, a question
# is answered, a review sends one change back, testers and the test gate
# pass, and the result is merged: all on orch's scripted model server, with
# no API key and no network. Claude Code and Codex take part when they are
# on PATH (./scripts/install-agents.sh installs them; AGENTS=1 puts them on
# PATH here). Extra arguments go to orch demo (e.g. --gates, --no-tui).
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD_DIR=build ./scripts/build.sh
if [ "${AGENTS:-0}" = 1 ]; then
    PATH="$(./scripts/install-agents.sh):$PATH"
    export PATH
fi
exec "$ROOT/build/bin/orch" demo "$@"
