#!/bin/sh
# The main job: builds orch, then runs the shipped example plan
# (examples/hello.yaml) in a fresh scratch git repository, and shows the
# run's status. PLAN=path/to/plan.yaml picks another plan.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PLAN=${PLAN:-$ROOT/examples/hello.yaml}
BUILD_DIR=build ./scripts/build.sh
REPO=$(mktemp -d "${TMPDIR:-/tmp}/orch-example.XXXXXX")
git -C "$REPO" init -q
git -C "$REPO" -c user.name=orch -c user.email=orch@localhost commit -q --allow-empty -m "empty start"
echo "example: running $PLAN in $REPO"
set +e
"$ROOT/build/bin/orch" run --plan "$PLAN" --repo "$REPO" --yes --no-tui
code=$?
set -e
"$ROOT/build/bin/orch" status --repo "$REPO"
echo
echo "example: the work, merged into the scratch repository's branch:"
git -C "$REPO" log --oneline --graph | head -12
for f in "$REPO"/hello/*; do [ -f "$f" ] && echo "  ${f#"$REPO"/}: $(cat "$f")"; done
echo "example: orch exited $code; the repository is $REPO"
exit $code
