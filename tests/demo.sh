#!/usr/bin/env bash
# `make demo`: leger-backup's main job, for real, in the booted testbed
# (Podman 5 + Quadlet, a rootless deployment under a lingering user's
# systemd --user): install the bundled example the way
# leger does, back it up, break it (change data, remove the deployment),
# restore it, and show the page served from the restored volume.
set -euo pipefail
cd "$(dirname "$0")/.."

TESTBED=tests/testbed/testbed.sh
EXAMPLE=/src/tests/fixtures/deployments/smoke
SIM=/src/tests/support/leger-sim

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
# Run a command inside the testbed as the test user, echoing it first.
run() { printf '$ %s\n' "$*"; "$TESTBED" exec -- "$@"; }
inside() { "$TESTBED" exec -- sh -c "$1"; }
page() { inside 'busybox wget -q -O - http://127.0.0.1:18181/ 2>/dev/null || true'; }

# Leave the testbed as we found it: take it down only if we brought it up.
if ! "$TESTBED" status >/dev/null 2>&1; then
    trap '"$TESTBED" down' EXIT
fi
"$TESTBED" up

inside "$SIM remove smoke --no-backup >/dev/null 2>&1 || true"
say "install the example deployment with leger (leger-sim does on disk what leger does)"
run "$SIM" install smoke "$EXAMPLE"
inside 'd=$(mktemp -d) && echo "notes written at $(date -u +%FT%TZ)" > $d/index.html &&
        tar -C $d -cf - . | podman volume import systemd-smoke-www - && rm -r $d'
sleep 1
before=$(page)
echo "page: $before"

say "what a backup will capture"
run leger-backup plan smoke

say "back it up"
run leger-backup create smoke --reason demo
run leger-backup list --deployment smoke
id=$(inside "leger-backup list --deployment smoke --json" | sed -n 's/.*"id": "\([^"]*\)".*/\1/p' | head -n 1)
run leger-backup verify "$id"

say "break it: overwrite the data, then remove the deployment"
inside 'd=$(mktemp -d) && echo broken > $d/index.html && tar -C $d -cf - . | podman volume import systemd-smoke-www - && rm -r $d'
echo "page: $(page)"
run "$SIM" remove smoke --no-backup

say "restore it"
run leger-backup restore "$id" --yes
sleep 1
after=$(page)
echo "page: $after"

inside "$SIM remove smoke --no-backup >/dev/null 2>&1 || true"
if [ "$after" = "$before" ]; then
    say "restored exactly: the page is the one backed up"
else
    say "FAILED: the page differs after restore"
    exit 1
fi
