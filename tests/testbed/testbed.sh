#!/usr/bin/env bash
# testbed.sh - a Podman/Quadlet test machine for leger-backup.
#
# The host (Debian 12) has no Quadlet (podman 4.3) and no systemd as PID 1.
# This script builds a Debian 13 (trixie) root filesystem with debootstrap
# (podman 5.4 with Quadlet, systemd 257) and *boots* it with systemd-nspawn:
# systemd as PID 1 with a system manager, journald and logind, and the
# unprivileged user `tester` (uid 1000) lingering, so that logind starts
# tester's user manager (user@1000.service) at boot, the way leger users run
# their deployments. Root's deployments run under the system manager. The
# recipe follows shared/podman-quadlet-facts.md ("A booted testbed").
#
# Usage (as root):
#   testbed.sh up                 build/reuse the rootfs, boot the container,
#                                 wait for the system and user managers,
#                                 install the binary
#                                 (already up: only re-installs the binary)
#   testbed.sh install            copy target/release/leger-backup in, link
#                                 the user and system generators to it,
#                                 daemon-reload both managers
#   testbed.sh exec [--root] -- CMD [ARG...]
#                                 run CMD in the container as tester beside
#                                 its user manager's units (or as root beside
#                                 the system manager's), cwd /src; stdio and
#                                 exit status pass through
#   testbed.sh status             exit 0 if up, 3 if not
#   testbed.sh down               `systemctl poweroff` inside (every service
#                                 stops as on a machine), then end the container
#   testbed.sh rootfs             print the root filesystem's path
#
# Environment:
#   LEGER_TESTBED_DIR   state directory (default /var/tmp/leger-testbed):
#                       rootfs/, rootfs.stamp, nspawn.pid, cgroups, lock,
#                       testbed.log (apt/debootstrap), console.log (the boot)
#   LEGER_BACKUP_BIN    binary to install (default <checkout>/target/release/leger-backup)
#   LEGER_TESTBED_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   LEGER_TESTBED_KEEP_STATE=1  keep tester's home, /etc/leger, ... at a cold
#                       `up` (by default each cold start begins clean); a
#                       reboot is `systemctl reboot` inside (nspawn exits)
#                       and then `up` with this set
#
# Inside the container: the checkout is bound read-write at /src, the binary
# is /usr/local/bin/leger-backup, the generators are
# /usr/local/lib/systemd/{user,system}-generators/leger-backup-{user,system}-generator
# (symlinks to the binary), the image localhost/busybox:latest exists for
# tester and for root. Published ports share the host's network (no private
# network). /tmp is the container's own tmpfs (not the host's /tmp): feed
# files in through /src, through stdin (`exec -- sh -c 'cat > f' < f`), or
# by copying into "$(testbed.sh rootfs)"/var/tmp, /var/tmp inside.
#
# What makes systemd boot in a container on these hosts (whose cgroup
# controllers are on v1): a unified cgroup hierarchy for the container,
# `pids_limit = 0` (its v2 tree has no pids controller, runc would fail on
# pids.max), --capability=all and the bpf system-call filter (rootful runc
# loads a device program). Root's containers use the host network (netns =
# host: netavark's bridge would write the read-only /proc/sys).
# Tip: busybox httpd as PID 1 ignores SIGTERM, so stopping it takes the 10 s
# stop timeout; `RunInit=true` in [Container] (or StopTimeout=1) avoids that.
set -euo pipefail

# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CHECKOUT=$(git -C "$SCRIPT_DIR" rev-parse --show-toplevel 2>/dev/null ||
    (cd "$SCRIPT_DIR/../.." && pwd))
TESTBED_DIR=${LEGER_TESTBED_DIR:-/var/tmp/leger-testbed}
ROOTFS=$TESTBED_DIR/rootfs
STAMP=$TESTBED_DIR/rootfs.stamp          # written only after a complete build
PIDFILE=$TESTBED_DIR/nspawn.pid          # "PID STARTTIME" of systemd-nspawn
CGROUPS_FILE=$TESTBED_DIR/cgroups        # host cgroups nspawn made (removed by down)
SRC_FILE=$TESTBED_DIR/src                # the checkout bound at /src
LOG=$TESTBED_DIR/testbed.log             # verbose output of apt/debootstrap/...
CONSOLE_LOG=$TESTBED_DIR/console.log     # the container's console (the boot)
MIRROR=${LEGER_TESTBED_MIRROR:-http://deb.debian.org/debian}
SUITE=trixie
BINARY_SRC=${LEGER_BACKUP_BIN:-$CHECKOUT/target/release/leger-backup}

TEST_USER=tester
TEST_UID=1000
TEST_HOME=/home/$TEST_USER
TEST_RUNTIME_DIR=/run/user/$TEST_UID
CONTAINER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Paths inside the container (relative to ROOTFS on the host side).
BUSYBOX_TAR=/var/lib/leger-testbed/busybox.tar
BIN_PATH=/usr/local/bin/leger-backup
GENERATOR_PATH=/usr/local/lib/systemd/user-generators/leger-backup-user-generator
SYSTEM_GENERATOR_PATH=/usr/local/lib/systemd/system-generators/leger-backup-system-generator

# Packages of the Debian 13 root filesystem. debootstrap installs no
# Recommends, so everything rootless Podman needs is named here.
PACKAGES=(
    podman runc conmon netavark aardvark-dns catatonit uidmap passt
    nftables iptables
    systemd dbus dbus-user-session
    busybox-static git ca-certificates zstd time procps util-linux
    login passwd iproute2 curl jq gzip xz-utils
    restic restic-rest-server attr
)
# Bump when the build recipe changes so that cached root filesystems are redone.
RECIPE_VERSION=2

# Seconds to wait for the system and user managers to come up.
UP_TIMEOUT=90
# Seconds `down` waits for the container's poweroff (every service's
# stop, each bounded by its own timeout) before it kills it.
POWEROFF_TIMEOUT=180

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------
log() { printf 'testbed: %s\n' "$*" >&2; }
warn() { printf 'testbed: warning: %s\n' "$*" >&2; }
die() {
    printf 'testbed: error: %s\n' "$*" >&2
    exit 1
}

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must be run as root (try: sudo $0 ${1:-})"
}

# Run a command with its output appended to the log file; on failure show
# the log's tail so the reason is visible without opening the file.
run_logged() {
    printf '\n### %s: %s\n' "$(date '+%F %T')" "$*" >>"$LOG"
    if ! "$@" >>"$LOG" 2>&1; then
        tail -n 30 "$LOG" >&2
        die "command failed: $* (full log: $LOG)"
    fi
}

# Serialise up/install/down of one testbed dir (exec and status need no lock).
# The lock is fd 9: whatever may outlive this script (nspawn, anything
# started in the container) is run with 9>&- or it would hold the lock.
LOCKED=0
take_lock() {
    ((LOCKED == 0)) || return 0
    LOCKED=1
    mkdir -p "$TESTBED_DIR"
    exec 9>"$TESTBED_DIR/lock"
    flock -w 900 9 || die "another testbed.sh holds $TESTBED_DIR/lock"
}

# Seconds since the Unix epoch (for timeouts and progress lines).
now() { date +%s; }

# ---------------------------------------------------------------------------
# Process bookkeeping: the container is known by systemd-nspawn's PID.
# ---------------------------------------------------------------------------

# Field 22 of /proc/PID/stat: the start time, to tell a reused PID apart.
proc_starttime() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) } # drop "pid (comm) ", comm may contain spaces
    # shellcheck disable=SC2086
    set -- $stat
    echo "${20}"
}

# True if PID exists and is not a zombie.
proc_alive() {
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

# Print nspawn's PID if the pid file names a live systemd-nspawn.
nspawn_pid() {
    local pid start
    [[ -f $PIDFILE ]] || return 1
    read -r pid start <"$PIDFILE" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    proc_alive "$pid" || return 1
    [[ $(proc_starttime "$pid") == "$start" ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == systemd-nspawn ]] || return 1
    echo "$pid"
}

# Print the host PID of the container's PID 1 (a child of nspawn whose PID
# in its own namespace is 1). nsenter uses its namespaces.
container_pid() {
    local npid child nspid
    npid=$(nspawn_pid) || return 1
    # shellcheck disable=SC2013 # the file is a space-separated list of PIDs
    for child in $(cat /proc/"$npid"/task/*/children 2>/dev/null); do
        nspid=$(sed -n 's/^NSpid:[[:space:]]*//p' "/proc/$child/status" 2>/dev/null) || continue
        if [[ ${nspid##*[[:space:]]} == 1 && $nspid == *[[:space:]]* ]]; then
            echo "$child"
            return 0
        fi
    done
    return 1
}

# Host PIDs of every process in the given PID namespace (e.g. "pid:[4026532]").
pids_in_pidns() {
    local ns=$1 p
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/ns/pid" 2>/dev/null) == "$ns" ]] && echo "${p#/proc/}"
    done
    return 0
}

# Mount points on the host at or below the root filesystem.
mounts_under_rootfs() {
    findmnt -rn -o TARGET | awk -v r="$ROOTFS" '$0 == r || index($0, r "/") == 1'
}

is_up() { container_pid >/dev/null 2>&1; }

# ---------------------------------------------------------------------------
# Running commands inside the container
# ---------------------------------------------------------------------------

# container_cmd AS_ROOT CMD ARG... sets CMDV to a command line that runs CMD
# in the container: nsenter into its namespaces, a clean environment built
# with `env -i`, cwd /src, and (unless AS_ROOT=1) setpriv to become tester.
# The arguments reach CMD as they are: no shell, no re-quoting on the way.
CMDV=()
CMD_CGROUP=""
container_cmd() {
    local as_root=$1 cpid
    shift
    cpid=$(container_pid) || die "the testbed is not up (run: $0 up)"
    # Tests of another checkout would run its scripts against this one's
    # /src and race this checkout's tests for the same deployments.
    local src
    src=$(cat "$SRC_FILE" 2>/dev/null || true)
    [[ $src == "$CHECKOUT" ]] || die "the testbed in $TESTBED_DIR serves the checkout" \
        "${src:-?}, not $CHECKOUT: give this one a LEGER_TESTBED_DIR of its own"
    local -a envv prefix=()
    if [[ $as_root == 1 ]]; then
        envv=(HOME=/root USER=root LOGNAME=root PATH="$CONTAINER_PATH" LANG=C.UTF-8)
    else
        envv=(HOME="$TEST_HOME" USER="$TEST_USER" LOGNAME="$TEST_USER"
            PATH="$CONTAINER_PATH" LANG=C.UTF-8 XDG_RUNTIME_DIR="$TEST_RUNTIME_DIR")
        # The session bus exists once the user manager started dbus.socket.
        if [[ -S /proc/$cpid/root$TEST_RUNTIME_DIR/bus ]]; then
            envv+=(DBUS_SESSION_BUS_ADDRESS="unix:path=$TEST_RUNTIME_DIR/bus")
        fi
        prefix=(setpriv --reuid="$TEST_UID" --regid="$TEST_UID" --init-groups --)
    fi
    if [[ -n ${TERM:-} ]]; then envv+=(TERM="$TERM"); fi
    CMD_CGROUP=$(exec_cgroup "$cpid" "$as_root")
    CMDV=(nsenter -t "$cpid" -m -u -i -p -C -r -w --
        /usr/bin/env -i -C /src "${envv[@]}" "${prefix[@]}" "$@")
}

# The cgroup a command of `exec` joins: for tester one of its own in
# user@UID.service's delegated tree (owned by tester, so that the user
# manager may move a podman it runs into a scope of its own), for root one
# beside the system manager's units.
exec_cgroup() {
    local cpid=$1 as_root=$2 root cg
    root=$(container_cgroup "$cpid")
    if [[ $as_root == 1 ]]; then
        cg=$root/leger-testbed-exec
        mkdir -p "$cg" 2>/dev/null || true
    else
        cg=$root/user.slice/user-$TEST_UID.slice/user@$TEST_UID.service/leger-testbed-exec
        if [[ ! -d $cg && -d $(dirname "$cg") ]]; then
            if mkdir -p "$cg" 2>/dev/null; then
                chown "$TEST_UID:$TEST_UID" "$cg" "$cg/cgroup.procs" 2>/dev/null || true
            fi
        fi
    fi
    echo "$cg"
}

# The host path of the cgroup (v2) that is the container's cgroup root.
container_cgroup() {
    local mnt rel
    mnt=$(findmnt -rn -t cgroup2 -o TARGET | head -n 1)
    rel=$(sed -n 's/^0:://p' "/proc/$1/cgroup")
    rel=${rel%/}
    # A booted container's systemd sits in its own init.scope.
    echo "$mnt${rel%/init.scope}"
}

# Move the calling (sub)shell into CMD_CGROUP and exec CMDV. Without this,
# commands would sit in a host cgroup outside the container's cgroup
# namespace, where the user manager cannot adopt them: each podman call
# would leave a failed podman-N.scope behind.
exec_cmdv() {
    if ((LOCKED)); then exec 9>&-; fi # the lock of up/install/down: not for CMD
    if ! echo "$BASHPID" >"$CMD_CGROUP/cgroup.procs" 2>/dev/null; then
        warn "could not join cgroup $CMD_CGROUP"
    fi
    exec "${CMDV[@]}"
}

# in_container AS_ROOT CMD ARG...: run CMD in the container, return its status.
in_container() {
    container_cmd "$@"
    (exec_cmdv)
}

# ---------------------------------------------------------------------------
# Host preparation
# ---------------------------------------------------------------------------

# debootstrap and systemd-nspawn from Debian 12; `apt-get update` only when
# the plain install fails (missing or stale package lists).
ensure_host_packages() {
    if command -v debootstrap >/dev/null && command -v systemd-nspawn >/dev/null; then
        return 0
    fi
    log "installing debootstrap and systemd-container on the host"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y debootstrap systemd-container >>"$LOG" 2>&1; then
        log "apt-get update"
        # Unreachable third-party sources make update exit non-zero while the
        # Debian lists still arrive; the install below is the real check.
        apt-get update >>"$LOG" 2>&1 || warn "apt-get update reported errors (see $LOG)"
        run_logged apt-get install -y debootstrap systemd-container
    fi
}

# pasta (rootless networking) opens /dev/net/tun as the user.
ensure_tun() {
    if [[ ! -c /dev/net/tun ]]; then
        mkdir -p /dev/net
        mknod -m 0666 /dev/net/tun c 10 200
    fi
    chmod 0666 /dev/net/tun
}

# ---------------------------------------------------------------------------
# The root filesystem (cached; rebuilt when the stamp is missing or stale)
# ---------------------------------------------------------------------------
stamp_text() { echo "recipe=$RECIPE_VERSION suite=$SUITE packages=${PACKAGES[*]}"; }

rootfs_is_complete() {
    [[ -f $STAMP && -d $ROOTFS && $(cat "$STAMP") == "$(stamp_text)" ]]
}

ensure_rootfs() {
    if rootfs_is_complete; then
        log "reusing root filesystem $ROOTFS"
        return 0
    fi
    [[ -z $(mounts_under_rootfs) ]] || die "something is mounted under $ROOTFS; run: $0 down"
    local t0 partial=$ROOTFS.partial
    t0=$(now)
    log "debootstrap $SUITE into $ROOTFS (takes about a minute; log: $LOG)"
    rm -f "$STAMP"
    rm -rf --one-file-system "$partial" "$ROOTFS"
    local include
    include=$(
        IFS=,
        echo "${PACKAGES[*]}"
    )
    run_logged debootstrap --variant=minbase --include="$include" "$SUITE" "$partial" "$MIRROR"
    # Package caches are not needed afterwards (about 100 MB).
    rm -rf "$partial"/var/cache/apt/archives/*.deb
    mv "$partial" "$ROOTFS"
    stamp_text >"$STAMP"
    log "root filesystem ready in $(($(now) - t0)) s ($(du -sh "$ROOTFS" | cut -f1))"
}

# The user, Podman's configuration, boot settings and the busybox image tarball.
# Idempotent; runs at every cold start so that edits here take effect
# without rebuilding the root filesystem.
configure_rootfs() {
    reset_state
    configure_user
    write_containers_conf
    build_busybox_tar
    mkdir -p "$ROOTFS$(dirname "$GENERATOR_PATH")"
    configure_boot
}

# What a booted machine has that the debootstrapped one lacks: tester's
# linger (what `loginctl enable-linger tester` writes: logind starts
# user@1000.service at boot), network-online.target pulled in as a network
# manager does (Quadlet's rootless units wait for it), and no
# systemd-modules-load (a container loads no modules; it would leave the
# system "degraded").
configure_boot() {
    mkdir -p "$ROOTFS/var/lib/systemd/linger" "$ROOTFS/etc/systemd/system/multi-user.target.wants"
    touch "$ROOTFS/var/lib/systemd/linger/$TEST_USER"
    ln -sfn /usr/lib/systemd/system/network-online.target \
        "$ROOTFS/etc/systemd/system/multi-user.target.wants/network-online.target"
    ln -sfn /dev/null "$ROOTFS/etc/systemd/system/systemd-modules-load.service"
    local conf=$ROOTFS$TEST_HOME/.config/containers/containers.conf
    mkdir -p "$(dirname "$conf")"
    printf '%s\n' '# Written by tests/testbed/testbed.sh: see /etc/containers/containers.conf.' \
        '[containers]' 'netns = "pasta"' >"$conf"
    chown -R "$TEST_UID:$TEST_UID" "$ROOTFS$TEST_HOME/.config"
    mkdir -p "$ROOTFS$(dirname "$SYSTEM_GENERATOR_PATH")"
}

# Each cold start begins with what a fresh machine has: no deployments, no
# volumes, no hooks, no units left by an earlier run (a deployment with
# WantedBy=default.target would otherwise start again). The state stays on
# disk after `down`, for inspection, until the next `up`.
# LEGER_TESTBED_KEEP_STATE=1 keeps it.
reset_state() {
    [[ ${LEGER_TESTBED_KEEP_STATE:-0} == 1 ]] && return 0
    local p
    for p in "$TEST_HOME" /root/.config /root/.local /root/.cache \
        /etc/leger /usr/lib/leger /var/lib/bluebuild-quadlets /var/lib/containers \
        /etc/containers/systemd /var/tmp /var/lib/leger-backup; do
        # --one-file-system: never follow a mount (there are none when down).
        if [[ -e $ROOTFS$p ]]; then rm -rf --one-file-system "${ROOTFS:?}$p"; fi
    done
    # Drop-ins `enable --system` wrote for root's services.
    rm -f "$ROOTFS"/etc/systemd/system/*.service.d/*leger-backup*
    # As the packages left them.
    mkdir -p "$ROOTFS/etc/containers/systemd/users" "$ROOTFS/var/tmp"
    chmod 1777 "$ROOTFS/var/tmp"
    if grep -q "^$TEST_USER:" "$ROOTFS/etc/passwd"; then
        make_test_home
    fi
}

make_test_home() {
    mkdir -p "$ROOTFS$TEST_HOME"
    cp -a "$ROOTFS/etc/skel/." "$ROOTFS$TEST_HOME/"
    chown -R "$TEST_UID:$TEST_UID" "$ROOTFS$TEST_HOME"
    chmod 0700 "$ROOTFS$TEST_HOME"
}

configure_user() {
    if ! grep -q "^$TEST_USER:" "$ROOTFS/etc/passwd"; then
        run_logged chroot "$ROOTFS" useradd --create-home --uid "$TEST_UID" \
            --user-group --shell /bin/bash "$TEST_USER"
    fi
    local f
    for f in subuid subgid; do
        touch "$ROOTFS/etc/$f"
        grep -q "^$TEST_USER:" "$ROOTFS/etc/$f" ||
            echo "$TEST_USER:100000:65536" >>"$ROOTFS/etc/$f"
    done
}

# keyring=false: nspawn's seccomp filter refuses keyctl. The ulimits: the
# host's hard limit for open files is lower than what podman asks for.
# pids_limit=0: the container's cgroup v2 tree has no pids
# controller (the host's are on v1) and runc fails on pids.max; netns=host
# for root's containers, whose bridge network (netavark) would write the
# read-only /proc/sys, and on the host's network namespace, which the
# container shares. tester's own containers.conf puts rootless containers
# back on pasta, their default (podman 5.4 reads no rootful-only file).
write_containers_conf() {
    mkdir -p "$ROOTFS/etc/containers"
    cat >"$ROOTFS/etc/containers/containers.conf" <<EOF
# Written by tests/testbed/testbed.sh (see shared/podman-quadlet-facts.md).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
keyring = false
pids_limit = 0
netns = "host"

[engine]
runtime = "runc"
EOF
}

# A one-layer image from busybox-static: bin/busybox plus a symlink per applet.
build_busybox_tar() {
    [[ -s $ROOTFS$BUSYBOX_TAR ]] && return 0
    local bb=$ROOTFS/usr/bin/busybox dir applet
    [[ -x $bb ]] || bb=$ROOTFS/bin/busybox
    [[ -x $bb ]] || die "busybox not found in $ROOTFS"
    dir=$(mktemp -d)
    mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/www" "$dir/root"
    chmod 1777 "$dir/tmp"
    cp "$bb" "$dir/bin/busybox"
    # The static busybox runs on the host too: ask it for its applets.
    for applet in $("$dir/bin/busybox" --list); do
        [[ $applet == busybox ]] || ln -sf busybox "$dir/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$dir/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\n' >"$dir/etc/group"
    mkdir -p "$(dirname "$ROOTFS$BUSYBOX_TAR")"
    tar --numeric-owner --owner=0 --group=0 -C "$dir" -cf "$ROOTFS$BUSYBOX_TAR.tmp" .
    mv "$ROOTFS$BUSYBOX_TAR.tmp" "$ROOTFS$BUSYBOX_TAR"
    rm -rf "$dir"
}

# ---------------------------------------------------------------------------
# Starting the container
# ---------------------------------------------------------------------------
start_container() {
    log "booting the container (systemd-nspawn -b)"
    : >"$CONSOLE_LOG"
    # systemd as PID 1; --capability=all and the bpf filter let rootful
    # runc load its device program.
    # nspawn (--keep-unit) makes its cgroups below the caller's: a cgroup of
    # this testbed's own, so that two testbeds (two LEGER_TESTBED_DIRs) on
    # one host never share them (nor `down` remove the other's).
    local cg
    cg=$(testbed_cgroup)
    mkdir -p "$cg"
    # setsid: the container must outlive this shell and its process group.
    # NOTIFY_SOCKET is unset so nspawn does not talk to a caller's manager.
    (
        echo "$BASHPID" >"$cg/cgroup.procs" || die "could not join cgroup $cg"
        exec env -u NOTIFY_SOCKET SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 \
            setsid systemd-nspawn --register=no --keep-unit -q \
            --machine="$(machine_name)" -D "$ROOTFS" \
            --console=pipe \
            --bind=/dev/net/tun --bind="$CHECKOUT:/src" \
            -b --capability=all --system-call-filter=bpf
    ) </dev/null >>"$CONSOLE_LOG" 2>&1 9>&- &
    local pid=$!
    # setsid execs in place (a background job is no group leader), so $!
    # is nspawn itself; wait until it shows up under its own name.
    local i
    for ((i = 0; i < 50; i++)); do
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == systemd-nspawn ]] && break
        sleep 0.1
    done
    echo "$pid $(proc_starttime "$pid")" >"$PIDFILE"
    echo "$CHECKOUT" >"$SRC_FILE"
}

# nspawn's machine name, one per testbed directory: nspawn keeps state
# under /run/systemd/nspawn/*/NAME, which two testbeds must not share.
machine_name() {
    basename "$TESTBED_DIR" | tr -c 'A-Za-z0-9\n-' '-'
}

# The host cgroup (v2) nspawn is started in: one per testbed directory.
testbed_cgroup() {
    local mnt name
    mnt=$(findmnt -rn -t cgroup2 -o TARGET | head -n 1)
    [[ -n $mnt ]] || die "no cgroup2 hierarchy mounted on the host"
    name=$(basename "$TESTBED_DIR" | tr -c 'A-Za-z0-9_.\n-' '_')
    echo "$mnt/$name.testbed"
}

# nspawn (--keep-unit) makes two cgroups below its own, "supervisor" for
# itself and "payload" for the container, and leaves them behind on this
# host. Remember them, and their parent (testbed_cgroup), so that `down`
# can remove them.
record_cgroups() {
    local npid cpid
    npid=$(nspawn_pid) && cpid=$(container_pid) || return 0
    {
        container_cgroup "$npid"
        container_cgroup "$cpid"
        testbed_cgroup
    } >"$CGROUPS_FILE"
}

# Remove the recorded cgroups, innermost first (rmdir only takes empty ones).
remove_cgroups() {
    [[ -f $CGROUPS_FILE ]] || return 0
    local mnt cg
    mnt=$(findmnt -rn -t cgroup2 -o TARGET | head -n 1)
    while read -r cg; do
        # Never the hierarchy's root, never anything outside it.
        [[ -n $mnt && $cg == "$mnt"/?* && -d $cg ]] || continue
        find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
        [[ ! -d $cg ]] || warn "cgroup $cg is left (not empty)"
    done <"$CGROUPS_FILE"
    rm -f "$CGROUPS_FILE"
}

# Wait until the system manager has finished booting.
wait_for_system_manager() {
    local deadline state=""
    deadline=$(($(now) + UP_TIMEOUT))
    while (($(now) < deadline)); do
        nspawn_pid >/dev/null || die "the container exited during boot (console log: $CONSOLE_LOG)"
        if container_pid >/dev/null; then
            [[ -s $CGROUPS_FILE ]] || record_cgroups
            state=$(in_container 1 systemctl is-system-running 2>/dev/null) || true
            case $state in
            running | degraded)
                log "system manager is $state"
                if [[ $state == degraded ]]; then
                    in_container 1 systemctl --failed --no-pager >&2 || true
                fi
                return 0
                ;;
            esac
        fi
        sleep 0.5
    done
    tail -n 40 "$CONSOLE_LOG" >&2
    die "system manager not up after ${UP_TIMEOUT}s (state: ${state:-none}; log: $CONSOLE_LOG)"
}

# Wait until tester's user manager reports "running" (or "degraded").
wait_for_user_manager() {
    local deadline state=""
    deadline=$(($(now) + UP_TIMEOUT))
    while (($(now) < deadline)); do
        if ! nspawn_pid >/dev/null; then
            cat "$CONSOLE_LOG" >&2
            die "the container exited during start-up (console log above: $CONSOLE_LOG)"
        fi
        if container_pid >/dev/null; then
            [[ -s $CGROUPS_FILE ]] || record_cgroups
            state=$(in_container 0 systemctl --user is-system-running 2>/dev/null) || true
            case $state in
            running | degraded)
                log "user manager of $TEST_USER is $state"
                if [[ $state == degraded ]]; then
                    in_container 0 systemctl --user --failed --no-pager >&2 || true
                fi
                return 0
                ;;
            esac
        fi
        sleep 0.5
    done
    tail -n 40 "$CONSOLE_LOG" >&2
    die "user manager not up after ${UP_TIMEOUT}s (state: ${state:-none}; log: $CONSOLE_LOG)"
}

# Import localhost/busybox:latest into tester's (rootless) image store and
# root's (root's deployments run there).
ensure_busybox_image() {
    local as_root
    for as_root in 0 1; do
        if in_container "$as_root" podman image exists localhost/busybox:latest; then
            continue
        fi
        log "importing localhost/busybox:latest ($( ((as_root)) && echo root || echo "$TEST_USER"))"
        in_container "$as_root" podman import "$BUSYBOX_TAR" localhost/busybox:latest >>"$LOG" 2>&1 ||
            die "podman import failed (see $LOG)"
    done
}

# ---------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------
cmd_install() {
    require_root install
    take_lock
    local dst=$ROOTFS$BIN_PATH gen=$ROOTFS$GENERATOR_PATH sysgen=$ROOTFS$SYSTEM_GENERATOR_PATH
    [[ -d $ROOTFS/usr ]] || die "no root filesystem at $ROOTFS (run: $0 up)"
    if [[ -f $BINARY_SRC ]]; then
        mkdir -p "$(dirname "$dst")" "$(dirname "$gen")" "$(dirname "$sysgen")"
        # Copy then rename: a running leger-backup keeps its old inode.
        install -m 0755 "$BINARY_SRC" "$dst.new"
        mv -f "$dst.new" "$dst"
        ln -sfn "$BIN_PATH" "$gen"
        ln -sfn "$BIN_PATH" "$sysgen"
        log "installed $BINARY_SRC as $BIN_PATH (+ user and system generator symlinks)"
    else
        warn "$BINARY_SRC does not exist (cargo build --release); leger-backup not installed"
        # Do not leave a binary of an older build behind to be tested.
        rm -f "$dst" "$gen" "$sysgen"
    fi
    if is_up; then
        in_container 1 systemctl daemon-reload || die "systemctl daemon-reload failed"
        in_container 0 systemctl --user daemon-reload || die "systemctl --user daemon-reload failed"
    fi
}

cmd_up() {
    require_root up
    take_lock
    if is_up; then
        local src
        src=$(cat "$SRC_FILE" 2>/dev/null || true)
        [[ $src == "$CHECKOUT" ]] ||
            die "the testbed is up with /src = ${src:-?}, not $CHECKOUT; run: $0 down"
        log "already up"
        cmd_install
        return 0
    fi
    local t0
    t0=$(now)
    # A crashed earlier run, or a container that powered off or rebooted
    # by itself (`systemctl reboot` inside: nspawn exits), may have left a
    # pid file and its host cgroups behind.
    verify_nothing_left ""
    remove_cgroups
    rm -f "$PIDFILE"
    ensure_host_packages
    ensure_tun
    ensure_rootfs
    configure_rootfs
    start_container
    wait_for_system_manager
    wait_for_user_manager
    ensure_busybox_image
    cmd_install
    log "up in $(($(now) - t0)) s (rootfs: $ROOTFS)"
}

cmd_exec() {
    require_root exec
    local as_root=0
    while (($# > 0)); do
        case $1 in
        --root) as_root=1 ;;
        --) shift; break ;;
        *) die "usage: $0 exec [--root] -- CMD [ARG...]" ;;
        esac
        shift
    done
    (($# > 0)) || die "usage: $0 exec [--root] -- CMD [ARG...]"
    container_cmd "$as_root" "$@"
    # exec: signals, stdio and the exit status go straight to/from CMD.
    exec_cmdv
}

cmd_status() {
    local cpid
    if cpid=$(container_pid 2>/dev/null); then
        echo "up (nspawn pid $(nspawn_pid), container pid $cpid, rootfs $ROOTFS, /src = $(cat "$SRC_FILE" 2>/dev/null))"
        return 0
    fi
    echo "down (rootfs $ROOTFS$(rootfs_is_complete && echo ', cached' || echo ', not built'))"
    return 3
}

# End nspawn (SIGTERM makes it SIGKILL the container's PID 1, which ends
# the whole PID namespace); SIGKILL everything if it does not go.
stop_container() {
    local npid=$1 pidns=$2 deadline p
    kill -TERM "$npid" 2>/dev/null || true
    deadline=$(($(now) + 20))
    while proc_alive "$npid" && (($(now) < deadline)); do sleep 0.2; done
    if proc_alive "$npid"; then
        warn "systemd-nspawn ($npid) did not exit; sending SIGKILL"
        kill -KILL "$npid" 2>/dev/null || true
    fi
    for p in $(pids_in_pidns "$pidns"); do kill -KILL "$p" 2>/dev/null || true; done
    deadline=$(($(now) + 10))
    while (($(now) < deadline)); do
        ! proc_alive "$npid" && [[ -z $(pids_in_pidns "$pidns") ]] && return 0
        sleep 0.2
    done
}

# Fail loudly if anything of the container is left.
verify_nothing_left() {
    local pidns=$1 left
    if [[ -n $pidns ]]; then
        left=$(pids_in_pidns "$pidns")
        [[ -z $left ]] || die "processes left in the container's PID namespace: $left"
    fi
    left=$(mounts_under_rootfs)
    [[ -z $left ]] || die "still mounted under $ROOTFS: $left"
}

# `systemctl poweroff` inside, as on a machine; wait (bounded)
# for nspawn to exit when the container's systemd is done. What is still
# there afterwards is stop_container's.
poweroff_container() {
    local npid=$1 t0 deadline
    t0=$(now)
    log "systemctl poweroff (waiting up to ${POWEROFF_TIMEOUT}s)"
    in_container 1 systemctl poweroff >>"$LOG" 2>&1 || warn "systemctl poweroff failed"
    deadline=$((t0 + POWEROFF_TIMEOUT))
    while proc_alive "$npid" && (($(now) < deadline)); do sleep 0.2; done
    if proc_alive "$npid"; then
        warn "the container did not power off within ${POWEROFF_TIMEOUT}s; killing it"
    else
        log "powered off in $(($(now) - t0)) s"
    fi
}

cmd_down() {
    require_root down
    take_lock
    local npid cpid pidns=""
    if npid=$(nspawn_pid); then
        if cpid=$(container_pid); then
            pidns=$(readlink "/proc/$cpid/ns/pid")
            poweroff_container "$npid"
        fi
        if proc_alive "$npid"; then
            log "stopping the container (nspawn pid $npid)"
            stop_container "$npid" "$pidns"
        fi
    else
        log "not up"
    fi
    verify_nothing_left "$pidns"
    remove_cgroups
    rm -f "$PIDFILE" "$SRC_FILE"
    log "down (root filesystem kept in $ROOTFS)"
}

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2
    exit 2
}

main() {
    (($# > 0)) || usage
    local cmd=$1
    shift
    case $cmd in
    up) cmd_up "$@" ;;
    install) cmd_install "$@" ;;
    exec) cmd_exec "$@" ;;
    status) cmd_status "$@" ;;
    down) cmd_down "$@" ;;
    rootfs) echo "$ROOTFS" ;;
    -h | --help | help) usage ;;
    *) usage ;;
    esac
}

# On one line: bash reads a script as it runs, and must not read on after
# main if the file was replaced meanwhile.
main "$@"; exit
