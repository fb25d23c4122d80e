#!/usr/bin/env bash
# Benchmark of a machine's shutdown with deployments running (issue 14,
# "Lifecycle"): seconds from `systemctl poweroff` inside the booted testbed
# to systemd-nspawn's exit, with leger-backup installed (binary, user and
# system generators: every service gets its stop hook, and with
# auto.on_shutdown false, the default, the hook must only say "skipped")
# and without it (no binary, no generator), and installed with
# auto.on_shutdown: true for root and tester (every deployment is backed up
# while the machine goes down). Each run boots the testbed anew
# with one root deployment (a plain Quadlet directory of
# /etc/containers/systemd) and one of tester's (~/.config/containers/systemd),
# each two containers sharing a volume, all running.
#
# Usage (as root on the host, the testbed down, the binary built:
# cargo build --release):
#   LEGER_TESTBED_DIR=... tests/bench/shutdown.sh [RUNS]
#   RUNS  runs of each variant (default 3), alternating; every figure is printed
#   variants: with (on_shutdown false), on-shutdown (true), without
# Environment: LEGER_TESTBED_DIR and LEGER_BACKUP_BIN as for testbed.sh.
# The testbed is left down.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TESTBED=$SCRIPT_DIR/../testbed/testbed.sh
RUNS=${1:-3}
BIN=${LEGER_BACKUP_BIN:-$SCRIPT_DIR/../../target/release/leger-backup}

die() {
    printf 'shutdown bench: %s\n' "$*" >&2
    exit 1
}

# deploy DIR NAME: two containers (exit on SIGTERM through RunInit's init)
# sharing a volume, written into DIR/NAME/.
# shellcheck disable=SC2016 # expanded by the shell in the testbed
DEPLOY='deploy() {
  mkdir -p "$1/$2"
  for c in app side; do
    printf "%s\n" "[Container]" "Image=localhost/busybox:latest" "Pull=never" "RunInit=true" \
      "Exec=sleep 1000000" "Volume=$2-data.volume:/data" > "$1/$2/$2-$c.container"
  done
  printf "%s\n" "[Volume]" > "$1/$2/$2-data.volume"
}'

# start_deployments: the root one under the system manager, tester's under
# user@1000.service; both must be running.
start_deployments() {
    "$TESTBED" exec --root -- sh -ec "$DEPLOY
      deploy /etc/containers/systemd benchroot
      systemctl daemon-reload
      systemctl start benchroot-app.service benchroot-side.service
      systemctl is-active benchroot-app.service benchroot-side.service >/dev/null" ||
        die "root deployment did not start"
    "$TESTBED" exec -- sh -ec "$DEPLOY
      deploy \$HOME/.config/containers/systemd benchuser
      systemctl --user daemon-reload
      systemctl --user start benchuser-app.service benchuser-side.service
      systemctl --user is-active benchuser-app.service benchuser-side.service >/dev/null" ||
        die "tester's deployment did not start"
}

# set_on_shutdown true|false: auto.on_shutdown in root's and tester's config
# (written before the deployments start, so the generator reads it).
# shellcheck disable=SC2016 # $1 is expanded by the shell in the testbed
set_on_shutdown() {
    local yaml="auto:
  on_shutdown: $1
"
    "$TESTBED" exec --root -- sh -ec 'mkdir -p /etc/leger && printf "%s" "$1" > /etc/leger/config.yaml' sh "$yaml" ||
        die "cannot write root's config"
    "$TESTBED" exec -- sh -ec 'mkdir -p ~/.config/leger && printf "%s" "$1" > ~/.config/leger/config.yaml' sh "$yaml" ||
        die "cannot write tester's config"
}

# One run: boot, start, poweroff; print the seconds to nspawn's exit.
one_run() {
    local variant=$1 npid t0 t1
    if [[ $variant != without ]]; then
        LEGER_BACKUP_BIN=$BIN "$TESTBED" up >/dev/null 2>&1 || die "testbed up failed"
        "$TESTBED" exec --root -- test -L /usr/local/lib/systemd/system-generators/leger-backup-system-generator ||
            die "system generator not installed"
    else
        LEGER_BACKUP_BIN=/nonexistent "$TESTBED" up >/dev/null 2>&1 || die "testbed up failed"
        "$TESTBED" exec --root -- test ! -e /usr/local/bin/leger-backup || die "leger-backup installed"
    fi
    set_on_shutdown "$([[ $variant == on-shutdown ]] && echo true || echo false)"
    start_deployments
    if [[ $variant != without ]]; then
        "$TESTBED" exec --root -- sh -c 'systemctl cat benchroot-app.service | grep -q "stop-hook"' ||
            die "no stop hook in root's service"
    fi
    npid=$("$TESTBED" status | sed -n 's/.*nspawn pid \([0-9]*\).*/\1/p')
    [[ -n $npid ]] || die "no nspawn pid"
    t0=$(date +%s.%N)
    "$TESTBED" exec --root -- systemctl poweroff || true
    while [[ -e /proc/$npid ]]; do sleep 0.05; done
    t1=$(date +%s.%N)
    "$TESTBED" down >/dev/null 2>&1 || die "testbed down failed"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }'
}

main() {
    [[ -x $BIN ]] || die "$BIN missing (cargo build --release)"
    if "$TESTBED" status >/dev/null 2>&1; then die "the testbed is up; run: $TESTBED down"; fi
    local run variant s
    for ((run = 1; run <= RUNS; run++)); do
        for variant in with on-shutdown without; do
            s=$(one_run "$variant")
            printf 'run %d, %-11s: poweroff to nspawn exit %s s\n' "$run" "$variant" "$s"
        done
    done
}

main "$@"
