#!/bin/sh
# Installs the coding-agent CLIs that orch's end-to-end tests drive, at pinned
# versions, from npm into a prefix of their own (never globally):
#   ORCH_AGENTS_PREFIX (default: $XDG_CACHE_HOME/orch/agents, i.e.
#   ~/.cache/orch/agents). Prints the bin directory to put on PATH.
# Already-installed pinned versions are kept (a cache between CI runs).
# Crush is in no registry reachable here; its tests run when a crush is on PATH.
set -eu
CLAUDE_VERSION=2.1.332
CODEX_VERSION=0.171.0
PREFIX=${ORCH_AGENTS_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/orch/agents}
mkdir -p "$PREFIX"
have() { # package version
    f="$PREFIX/lib/node_modules/$1/package.json"
    [ -f "$f" ] && grep -q "\"version\": *\"$2\"" "$f"
}
want=""
have @anthropic-ai/claude-code "$CLAUDE_VERSION" || want="$want @anthropic-ai/claude-code@$CLAUDE_VERSION"
have @openai/codex "$CODEX_VERSION" || want="$want @openai/codex@$CODEX_VERSION"
if [ -n "$want" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "install-agents: installing nodejs and npm with apt-get" >&2
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >&2
    fi
    echo "install-agents: installing$want into $PREFIX" >&2
    # shellcheck disable=SC2086
    npm install --global --prefix "$PREFIX" --no-fund --no-audit --loglevel=error $want >&2
fi
"$PREFIX/bin/claude" --version >/dev/null 2>&1 || { echo "install-agents: claude does not run" >&2; exit 1; }
"$PREFIX/bin/codex" --version >/dev/null 2>&1 || { echo "install-agents: codex does not run" >&2; exit 1; }
echo "$PREFIX/bin"
