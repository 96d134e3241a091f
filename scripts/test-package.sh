#!/bin/sh
# Builds the Debian package, installs it with apt-get (dependencies from
# Debian's archive), and runs the installed orch from outside the source
# tree, in a clean environment: orch --version, orch plan check and a run of
# a shipped example in a scratch repository, orch demo --no-tui, the man
# pages and the bash completion. Then removes the package again (unless it
# was installed before, or ORCH_KEEP_PACKAGE=1).
# Needs root or sudo: without either it says so and exits 0 (skipped).
# BUILD_DIR: the build directory to package (default build/).
set -eu
cd "$(dirname "$0")/.."
SRC=$PWD
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "test-package: SKIPPED: installing the package needs root or sudo (run as root, as CI does)"
        exit 0
    fi
fi
say() { echo "test-package: $*"; }
fail() { echo "test-package: FAILED: $*" >&2; exit 1; }

deb=$(BUILD_DIR=${BUILD_DIR:-build} ./scripts/package.sh)
say "built $deb"
version=$(dpkg-deb -f "$deb" Version)
had_orch=0
if dpkg-query -W -f='${Status}' orch 2>/dev/null | grep -q "install ok installed"; then had_orch=1; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -qq --reinstall "$deb" >/dev/null || fail "apt-get install $deb"
say "installed orch $version"

scratch=$(mktemp -d /tmp/orch-pkgtest.XXXXXX)
cleanup() {
    rm -rf "$scratch"
    if [ "$had_orch" = 0 ] && [ "${ORCH_KEEP_PACKAGE:-0}" != 1 ]; then
        $SUDO apt-get remove -y -qq orch >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT INT TERM
mkdir -p "$scratch/home" "$scratch/tmp"
# the installed copy alone: no source tree, no build tree, a fresh HOME
run() {
    (cd "$scratch" && env -i PATH=/usr/bin:/bin HOME="$scratch/home" TMPDIR="$scratch/tmp" \
        LANG=C.UTF-8 ORCH_DEMO_CLI=0 \
        GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t.invalid \
        GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t.invalid "$@")
}
[ "$(command -v orch)" = /usr/bin/orch ] || [ -x /usr/bin/orch ] || fail "no /usr/bin/orch"

out=$(run orch --version) || fail "orch --version"
[ "$out" = "orch $version" ] || fail "orch --version printed '$out', not 'orch $version'"
say "orch --version: $out"

run orch plan check /usr/share/orch/examples/hello.yaml >/dev/null || fail "orch plan check"
run orch plan check --json /usr/share/orch/examples/diamond.json | grep -q '"valid":true' \
    || fail "orch plan check --json"
say "orch plan check: ok"

run git init -q repo
run sh -c 'cd repo && git commit -q --allow-empty -m start'
run orch run --plan /usr/share/orch/examples/hello.yaml --repo "$scratch/repo" --yes --no-tui \
    2>"$scratch/run.err" || { cat "$scratch/run.err" >&2; fail "orch run --plan hello.yaml"; }
[ "$(cat "$scratch/repo/hello/shout.txt")" = "HELLO, ORCH" ] || fail "the example's output"
run orch status --repo "$scratch/repo" --json | grep -q '"status":"done"' || fail "orch status --json"
say "a shipped example ran in a scratch repository"

run orch demo --no-tui --dir "$scratch/demo" >"$scratch/demo.out" 2>&1 \
    || { tail -20 "$scratch/demo.out" >&2; fail "orch demo --no-tui"; }
say "orch demo --no-tui: ok"

if grep -qs 'path-exclude.*/usr/share/man' /etc/dpkg/dpkg.cfg.d/*; then
    # a minimised image: dpkg drops every package's man pages here
    dpkg-deb -c "$deb" | grep -q '/usr/share/man/man1/orch-run.1' || fail "no orch-run.1 in $deb"
    say "this system's dpkg excludes /usr/share/man: checked the package's listing instead"
else
    run man -w orch-run | grep -q '^/usr/share/man/man1/orch-run' || fail "man orch-run"
    run man -w 5 orch-plan | grep -q '^/usr/share/man/man5/orch-plan' || fail "man 5 orch-plan"
    run man orch-run | grep -q -- '--concurrency' || fail "man orch-run shows no --concurrency"
fi
got=$(run bash -c '. /usr/share/bash-completion/completions/orch
    COMP_LINE="orch st"; COMP_POINT=7; _orch; echo "${COMPREPLY[*]}"')
[ "$got" = status ] || fail "bash completion: 'orch st' gave '$got'"
say "man pages and bash completion: ok"
say "all passed"
