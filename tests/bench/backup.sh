#!/usr/bin/env bash
# Benchmark of `leger-backup create` and `restore` against the obvious shell
# pipelines, on a generated, reproducible volume in the rootless testbed
# (issue 3, "Speed and memory — a benchmark"; the pipelines' figures are in
# shared/podman-quadlet-facts.md, "Speed of the obvious pipelines"), and the
# same data in a host directory (a bind mount) against the volume (issue 12:
# a host directory backs up in <= 1.1x the time of the same data in a volume).
#
# Usage (as root on the host, with the testbed up: tests/testbed/testbed.sh up,
# and the binary installed: cargo build --release && tests/testbed/testbed.sh install):
#   tests/bench/backup.sh                 700 MB volume, best of 3
#   BENCH_MB=3000 tests/bench/backup.sh   3 GB volume (the memory check)
#   tests/bench/backup.sh cleanup         remove what a run left (BENCH_KEEP=1):
#                                         both deployments, the volume, the host
#                                         directory and the tmpfs
# Environment:
#   BENCH_MB     volume size in MB (10^6 bytes), default 700: 20,000 small
#                files (~82 MB), the rest half log-like text (compresses ~3.6x
#                with zstd -3), half random bytes (incompressible)
#   BENCH_RUNS   timed runs of each measurement, default 3; the best is kept
#                (wall time), and the highest peak RSS of all runs
#   BENCH_RESTORE_RUNS  runs of the import measurements (zstd -d | import,
#                restore), default BENCH_RUNS; each pauses BENCH_COOLDOWN
#   BENCH_COOLDOWN  seconds to pause (after a sync) before each import
#                measurement; default 65 on ext4 without a journal (see
#                cooldown below), 0 elsewhere
#   BENCH_TMPFS  1 (default): podman's volumes on a tmpfs for the run (see
#                volumes_on_tmpfs: the testbed's disk makes import figures
#                depend on earlier deletions), and the host directory on a
#                tmpfs of its own, mounted alike (~/bench-host); 0: both on
#                the testbed's disk (the test user's home)
#   BENCH_KEEP=1 keep the volume bench-data, the host directory
#                ~/bench-host/data and the deployments `bench` and
#                `bench-host` afterwards (a later run with the same BENCH_MB
#                reuses the volume and the host directory instead of making
#                them again), and the tmpfs mounted; default: remove all
#                (`cleanup` does it later)
#
# Everything runs inside the testbed as its test user, in one run, caches
# warm: the deployment `bench` (a plain Quadlet directory
# ~/.config/containers/systemd/bench/ with one container mounting the
# volume bench-data), the deployment `bench-host`
# (~/.config/containers/systemd/bench-host/, the same container binding
# the host directory ~/bench-host/data, a copy of the volume's data), the
# volumes bench-restore-N, the work directory ~/bench-work and the backups
# of `bench` and `bench-host` are this script's and are removed at the end;
# nothing else in the (shared) testbed is touched by the script
# itself (but every leger-backup command starts with its crash recovery,
# which finishes any interrupted operation of the test user it finds:
# avoid running this alongside tests that interrupt leger-backup on purpose).
#
# What is measured (wall time: best of BENCH_RUNS; peak RSS: /usr/bin/time's
# maximum resident set size, which is the largest of the process and the
# children it waited for, so it includes podman's own):
#   floor    podman volume export bench-data > /dev/null
#   zstd     podman volume export bench-data | zstd -3 -T0 > f.zst
#   gzip     podman volume export bench-data | gzip -6 > f.gz     (one run)
#   create   leger-backup create bench --reason bench  (service running:
#            includes stopping and starting it, hashing, metadata, fsync)
#   live     leger-backup create bench --live  (the same without stopping
#            and starting the service: the backup's own streaming overhead),
#            the volume read directly (LEGER_BACKUP_VOLUME_READER=direct)
#   livepod  the same through podman volume export
#            (LEGER_BACKUP_VOLUME_READER=podman), side by side with live
#   unzstd   zstd -d < f.zst | podman volume import bench-data -
#            (the volume removed and created empty first, untimed)
#   fresh    leger-backup restore ID --yes --no-start onto nothing: the
#            deployment's files and its volume removed first (untimed), as
#            after `leger deploy remove` + `podman volume rm` or on a new
#            machine; no safety backup (nothing to save). This is the
#            restore the pipeline does: import into a new, empty volume
#   restore  leger-backup restore ID --yes --no-start  (service stopped
#            beforehand; by design it verifies the whole backup, moves the
#            current volume's data aside, then imports); its phases
#            are timed from its progress lines, the import phase alone is
#            compared with unzstd
#   hostdir  leger-backup create bench-host --reason bench  (service running,
#            as create): the same data in a host directory, read through
#            `podman unshare leger-backup volume-tar --host`; timed right
#            after create in every round, compared with it (best and median);
#            its backup must hold the host directory (checked once, from
#            `leger-backup --json info`), with as many tar bytes as the volume's
# The volume is generated by a seeded generator (Perl's drand48, the same on
# every platform), file times are fixed, so every run backs up the same bytes;
# the sha256 of the exported tar is printed as a fingerprint.
# Exit status: 0 when every target is met, 1 when one is missed, 2 on error.
# The sh -c '...' commands below expand their arguments themselves.
# shellcheck disable=SC2016
set -euo pipefail

BENCH_MB=${BENCH_MB:-700}
BENCH_RUNS=${BENCH_RUNS:-3}
RESTORE_RUNS=${BENCH_RESTORE_RUNS:-$BENCH_RUNS}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_TMPFS=${BENCH_TMPFS:-1}
# The test user's podman volumes, in the testbed.
VOLUMES_DIR=/home/tester/.local/share/containers/storage/volumes
# Where the host directory lives, in the testbed: with BENCH_TMPFS=1 a tmpfs
# of its own is mounted here, like the one on VOLUMES_DIR (a second tmpfs,
# not a directory inside the first: that one is podman's storage).
HOST_BASE=/home/tester/bench-host

VOLUME=bench-data
DEPLOYMENT=bench
SERVICE=bench.service
# The same data in a host directory, bound by the deployment bench-host
# (`Volume=%h/bench-host/data:/data`).
HOST_DIR=$HOST_BASE/data
HOST_DEPLOYMENT=bench-host
HOST_SERVICE=bench-host.service
SMALL_FILES=20000
# Seed of the generator; changing it (or the generator) changes the data:
# bump GEN_VERSION with it so that kept volumes are regenerated.
SEED=20261126
GEN_VERSION=1

die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 2
}
say() { printf 'bench: %s\n' "$*" >&2; }

if ! [[ $BENCH_MB =~ ^[0-9]+$ ]] || ((BENCH_MB < 200)); then die "BENCH_MB must be a number >= 200"; fi
if ! [[ $BENCH_RUNS =~ ^[0-9]+$ ]] || ((BENCH_RUNS < 1)); then die "BENCH_RUNS must be >= 1"; fi
if ! [[ $RESTORE_RUNS =~ ^[0-9]+$ ]] || ((RESTORE_RUNS < 1)); then die "BENCH_RESTORE_RUNS must be >= 1"; fi

# ===========================================================================
# Inside the testbed (as the test user): `backup.sh --inside`, `--cleanup`
# ===========================================================================

WORK=${HOME}/bench-work
QUADLET_DIR=${HOME}/.config/containers/systemd/$DEPLOYMENT
# A drop-in of the same name in ~/.config/systemd/user masks the one the
# leger-backup generator writes (its ExecStopPost= stop hook): stopping the
# bench service must not take an automatic 700 MB backup.
MASK_DIR=${HOME}/.config/systemd/user/$SERVICE.d
# The same for the deployment binding the host directory.
HOST_QUADLET_DIR=${HOME}/.config/containers/systemd/$HOST_DEPLOYMENT
HOST_MASK_DIR=${HOME}/.config/systemd/user/$HOST_SERVICE.d

# Floating-point helpers (bash has none).
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
le() { awk "BEGIN { exit !($1 <= $2) }"; }

# Ids of the backups of the deployment $1 (default: the bench deployment).
bench_backups() {
    leger-backup --json list --deployment "${1:-$DEPLOYMENT}" 2>/dev/null |
        jq -r '.[] | .id' 2>/dev/null || true
}

cleanup_inside() {
    set +e
    if [[ $BENCH_KEEP != 1 ]]; then
        systemctl --user stop "$SERVICE" "$HOST_SERVICE" 2>/dev/null
    fi
    local id
    for id in $(bench_backups "$DEPLOYMENT") $(bench_backups "$HOST_DEPLOYMENT"); do
        leger-backup delete "$id" --yes >/dev/null 2>&1
    done
    if [[ $BENCH_KEEP != 1 ]]; then
        rm -rf "$QUADLET_DIR" "$HOST_QUADLET_DIR"
        systemctl --user daemon-reload
        rm -rf "$MASK_DIR" "$HOST_MASK_DIR"
        podman rm -f -i "systemd-$DEPLOYMENT" "systemd-$HOST_DEPLOYMENT" >/dev/null 2>&1
        podman volume rm -f "$VOLUME" >/dev/null 2>&1
        # Copied as the user namespace's root: removed in it, as written.
        # A tmpfs on HOST_BASE (BENCH_TMPFS=1) makes rmdir fail: the host
        # side unmounts and removes it.
        podman unshare rm -rf "$HOST_DIR" "$HOST_DIR.new" 2>/dev/null
        rmdir "$HOST_BASE" 2>/dev/null
        rm -rf "$WORK"
    else
        rm -f "$WORK"/f.zst "$WORK"/f.gz
        touch "$WORK/.kept"
    fi
    systemctl --user reset-failed "$SERVICE" "$HOST_SERVICE" 2>/dev/null
    return 0
}

# The deterministic data generator: `gen.pl KIND DIR INDEX BYTES` writes
# one file (text or random) or, for KIND=small, the small files.
write_generator() {
    cat >"$WORK/gen.pl" <<'PERL'
use strict;
use warnings;
my ($kind, $dir, $index, $bytes, $seed) = @ARGV;
# One seed per file: the files can be written in parallel, same bytes.
srand($seed + $index);
my @words = qw(alpha beta gamma delta request response user session cache
  miss hit GET POST /api/v1/items /api/v1/users /static/app.js timeout retry
  connected closed worker queue job done failed ok warn info debug error trace
  db query rows ms bytes upstream backend tls handshake reload config);
my @levels = qw(INFO INFO INFO DEBUG WARN ERROR);
sub text_lines {    # log-like lines, about $_[0] bytes
    my ($want, $ts) = @_;
    my $buf = '';
    while (length($buf) < $want) {
        $ts += int(rand(3));
        my $n = 4 + int(rand(8));
        $buf .= sprintf("%d.%03d %s [w-%02d] %s id=%d t=%dms\n", $ts,
            int(rand(1000)), $levels[int(rand(@levels))], int(rand(16)),
            join(' ', map { $words[int(rand(@words))] } 1 .. $n),
            int(rand(100000)), int(rand(2000)));
    }
    return substr($buf, 0, $want);
}
sub random_bytes {    # drand48 output, incompressible
    my $n = int(($_[0] + 3) / 4);
    return substr(pack('L*', map { int(rand(4294967296)) } 1 .. $n), 0, $_[0]);
}
if ($kind eq 'small') {
    # $bytes small files in directories of 100: 5 in 6 text, 1 in 6 random,
    # 200 B to 8 KB.
    for my $i (0 .. $bytes - 1) {
        my $d = sprintf('%s/d%03d', $dir, int($i / 100));
        mkdir $d unless -d $d;
        my $size = 200 + int(rand(7992));
        my $random = int(rand(6)) == 0;
        my $name = sprintf('%s/f%05d.%s', $d, $i, $random ? 'bin' : 'txt');
        open(my $fh, '>', $name) or die "$name: $!";
        binmode $fh;
        print $fh ($random ? random_bytes($size) : text_lines($size, 1767225600 + $i));
        close $fh or die "$name: $!";
    }
    exit 0;
}
my $name = sprintf('%s/%s-%02d.%s', $dir, $kind, $index, $kind eq 'text' ? 'log' : 'bin');
open(my $fh, '>', $name) or die "$name: $!";
binmode $fh;
my ($left, $ts) = ($bytes, 1767225600 + 86400 * $index);
while ($left > 0) {
    my $chunk = $left < 1048576 ? $left : 1048576;
    print $fh ($kind eq 'text' ? text_lines($chunk, $ts) : random_bytes($chunk));
    $ts += 3600;
    $left -= $chunk;
}
close $fh or die "$name: $!";
PERL
}

# Create and fill the volume, unless it is there with the same spec.
make_volume() {
    local spec="gen=$GEN_VERSION seed=$SEED mb=$BENCH_MB small=$SMALL_FILES"
    local mnt
    if podman volume exists "$VOLUME"; then
        mnt=$(podman volume inspect --format '{{.Mountpoint}}' "$VOLUME")
        if [[ $(podman unshare cat "$mnt/.bench-spec" 2>/dev/null) == "$spec" ]]; then
            say "reusing volume $VOLUME ($spec)"
            return
        fi
        podman volume rm -f "$VOLUME" >/dev/null
    fi
    say "generating volume $VOLUME: $BENCH_MB MB ($spec)"
    podman volume create "$VOLUME" >/dev/null
    mnt=$(podman volume inspect --format '{{.Mountpoint}}' "$VOLUME")
    write_generator
    # Sizes: the small files average ~4.1 KB; the rest is half text, half
    # random, in files of at most 64 MB.
    local total=$((BENCH_MB * 1000000)) small_bytes=$((SMALL_FILES * 4096))
    local half=$(((total - small_bytes) / 2)) max=$((64 << 20))
    local jobs=() kind left i size
    jobs+=("small $mnt/small 0 $SMALL_FILES")
    for kind in text random; do
        left=$half
        i=0
        while ((left > 0)); do
            size=$((left < max ? left : max))
            jobs+=("$kind $mnt/$kind $((i + 1)) $size")
            left=$((left - size))
            i=$((i + 1))
        done
    done
    local started=$EPOCHREALTIME
    # Written in the user namespace (as the volume's root), in parallel.
    printf '%s\n' "${jobs[@]}" |
        podman unshare sh -c '
            mkdir -p "$1/small" "$1/text" "$1/random"
            xargs -P "$(nproc)" -L 1 sh -c "perl \"\$0\" \"\$@\" $2 || exit 255" "$3"
            printf "%s" "$4" > "$1/.bench-spec"
            # Fixed times: the same tar every time.
            find "$1" -mindepth 1 -exec touch -h -d @1767225600 {} +
        ' sh "$mnt" "$SEED" "$WORK/gen.pl" "$spec"
    say "generated in $(calc "$EPOCHREALTIME - $started") s"
}

# The volume's data copied to the host directory HOST_DIR (owners, modes
# and times kept: `cp -a` as the user namespace's root, who owns the
# volume's files), unless it holds the same spec already (BENCH_KEEP=1).
# It is on the same kind of file system as the volumes (checked in
# inside_main): a tmpfs of its own with BENCH_TMPFS=1, else the test
# user's home on the testbed's disk.
make_host_dir() {
    local mnt spec
    mnt=$(podman volume inspect --format '{{.Mountpoint}}' "$VOLUME")
    spec=$(podman unshare cat "$mnt/.bench-spec")
    if [[ $(podman unshare cat "$HOST_DIR/.bench-spec" 2>/dev/null) == "$spec" ]]; then
        say "reusing host directory $HOST_DIR ($spec)"
        return
    fi
    say "copying volume $VOLUME to the host directory $HOST_DIR"
    local started=$EPOCHREALTIME
    mkdir -p "$HOST_BASE"
    # Through a new name: an interrupted copy is never taken for a whole one.
    podman unshare sh -c 'rm -rf "$2" "$2.new" && cp -a "$1" "$2.new" && mv "$2.new" "$2"' sh "$mnt" "$HOST_DIR" ||
        die "cannot copy volume $VOLUME to $HOST_DIR"
    say "copied in $(calc "$EPOCHREALTIME - $started") s"
}

# write_deployment NAME SOURCE: the Quadlet directory of the deployment
# NAME, one busybox container mounting SOURCE (a volume or a host path) on
# /data, and a drop-in in ~/.config/systemd/user that masks the one the
# leger-backup generator writes for NAME.service (see MASK_DIR).
write_deployment() {
    local name=$1 source=$2
    local dir=$HOME/.config/containers/systemd/$name mask=$HOME/.config/systemd/user/$name.service.d
    mkdir -p "$dir" "$mask"
    cat >"$dir/$name.container" <<UNIT
# leger-backup benchmark (tests/bench/backup.sh): removed after the run.
[Unit]
Description=leger-backup benchmark container

[Container]
Image=localhost/busybox:latest
Exec=sleep 2147483647
Volume=$source:/data
# sleep as PID 1 ignores SIGTERM: an init makes stopping immediate.
RunInit=true
UNIT
    cat >"$mask/50-leger-backup.conf" <<'UNIT'
# Masks the leger-backup generator's stop hook for the benchmark service
# (tests/bench/backup.sh): its stops must not take automatic backups.
UNIT
}

# Both deployments, started: `bench` mounts the volume, `bench-host` binds
# the host directory (as `%h/...`, the way a unit in a home writes it).
install_deployment() {
    write_deployment "$DEPLOYMENT" "$VOLUME"
    write_deployment "$HOST_DEPLOYMENT" "%h/${HOST_DIR#"$HOME"/}"
    systemctl --user daemon-reload
    local service
    for service in "$SERVICE" "$HOST_SERVICE"; do
        systemctl --user start "$service"
        [[ $(systemctl --user is-active "$service") == active ]] ||
            die "$service did not start"
        if systemctl --user cat "$service" 2>/dev/null | grep -q 'stop-hook'; then
            die "the generator's stop hook is still active for $service"
        fi
    done
}

# Results per measurement: WALL (best), RSS (KB, highest), ALL (every wall time).
declare -A WALL RSS ALL OWN

# record NAME WALL RSS_KB: keep the best wall time and the highest RSS.
record() {
    local name=$1 wall=$2 rss=$3
    ALL[$name]+="$wall "
    if [[ -z ${WALL[$name]:-} ]] || le "$wall" "${WALL[$name]}"; then
        WALL[$name]=$wall
    fi
    if [[ -z ${RSS[$name]:-} ]] || ((rss > RSS[$name])); then
        RSS[$name]=$rss
    fi
    printf 'bench:   %-8s %7.2f s  %6d MB peak RSS\n' "$name" "$wall" $((rss / 1024)) >&2
}

# timed NAME CMD...: run CMD under /usr/bin/time, after a sync so that
# earlier writes do not drain during the run; record the figures. CMD's
# stderr goes, line by line with a timestamp, to $WORK/NAME.log.
timed() {
    local name=$1
    shift
    sync
    local tf=$WORK/time.out log=$WORK/$name.log fifo=$WORK/stderr.fifo start end stamper
    rm -f "$fifo"
    mkfifo "$fifo"
    start=$EPOCHREALTIME
    printf '%s START\n' "$start" >"$log"
    while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done <"$fifo" >>"$log" &
    stamper=$!
    /usr/bin/time -f '%e %M' -o "$tf" "$@" 2>"$fifo" &
    local tpid=$! sampler
    hwm_sampler "$tpid" >"$WORK/hwm" &
    sampler=$!
    if ! wait "$tpid"; then
        wait "$stamper" || true
        cat "$log" >&2
        die "$name failed: $*"
    fi
    end=$EPOCHREALTIME
    wait "$stamper" "$sampler" || true
    rm -f "$fifo"
    local rss own
    rss=$(awk 'END { print $2 }' "$tf")
    own=$(cat "$WORK/hwm")
    if [[ -z ${OWN[$name]:-} ]] || ((own > OWN[$name])); then
        OWN[$name]=$own
    fi
    record "$name" "$(calc "$end - $start")" "$rss"
}

# hwm_sampler PID: print the peak RSS (VmHWM, KB) of the child of PID (the
# command /usr/bin/time runs: leger-backup itself, through `exec`), read
# every 50 ms until PID is gone. Builtins only, not to disturb the timing.
hwm_sampler() {
    local tpid=$1 cpid="" key value rest hwm=0 tick
    exec {tick}<> <(:) # nobody writes to it: `read -t` on it is a sleep
    while [[ -e /proc/$tpid ]]; do
        if [[ -z $cpid ]]; then
            # (no newline at the end of that file: read "fails", yet reads)
            read -r cpid rest 2>/dev/null </proc/"$tpid"/task/"$tpid"/children || true
        fi
        if [[ -n $cpid ]]; then
            while read -r key value rest; do
                if [[ $key == VmHWM: ]]; then hwm=$value; fi
            done 2>/dev/null </proc/"$cpid"/status
        fi
        read -r -t 0.05 -u "$tick" rest || true
    done
    echo "$hwm"
}

# The median of the space-separated numbers in $1.
median() {
    tr -s ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Seconds between the first log line matching $2 and the first later line
# matching $3, in log $1 (lines: "EPOCH text"); empty when not found.
phase() {
    awk -v a="$2" -v b="$3" '
        t0 == "" && index($0, a) { t0 = $1; next }
        t0 != "" && index($0, b) { printf "%.3f", $1 - t0; exit }
    ' "$1"
}

# PHASE[name]: best of the runs, like WALL.
declare -A PHASE
record_phase() {
    [[ -n $2 ]] || return 0
    if [[ -z ${PHASE[$1]:-} ]] || le "$2" "${PHASE[$1]}"; then
        PHASE[$1]=$2
    fi
}

run_create() {
    timed create sh -c 'exec leger-backup --json create "$1" --reason bench >"$2"' \
        sh "$DEPLOYMENT" "$WORK/create.json"
    local log=$WORK/create.log
    record_phase create_start "$(phase "$log" START 'backing up')"
    record_phase create_stop "$(phase "$log" 'stopping' 'exporting volume')"
    record_phase create_export "$(phase "$log" 'exporting volume' "volume $VOLUME: ")"
    record_phase create_restart "$(phase "$log" 'starting' 'complete')"
    CREATE_SIZE=$(jq -r '[.metadata.volumes[] | .size] | add' "$WORK/create.json")
    LAST_BACKUP=$(jq -r '.id' "$WORK/create.json")
    [[ $(systemctl --user is-active "$SERVICE") == active ]] ||
        die "$SERVICE is not running after create"
}

# create of the deployment binding the host directory, right after the
# volume's create in every round: the same data, the same service stop and
# start, read as a host path. Its backup is deleted at once, so the next
# run finds none to share an archive with: every run reads it all (with
# the tree signature taken before the read, as in real use).
run_create_host() {
    timed hostdir sh -c 'exec leger-backup --json create "$1" --reason bench >"$2"' \
        sh "$HOST_DEPLOYMENT" "$WORK/hostdir.json"
    record_phase hostdir_read "$(phase "$WORK/hostdir.log" "reading host path $HOST_DIR" "host path $HOST_DIR: ")"
    HOST_SIZE=$(jq -r '[.metadata.host_paths[] | .size] | add // 0' "$WORK/hostdir.json")
    local id
    id=$(jq -r .id "$WORK/hostdir.json")
    [[ -n ${HOST_TAR_BYTES:-} ]] || check_host_backup "$id"
    leger-backup delete "$id" --yes >/dev/null 2>&1
    [[ $(systemctl --user is-active "$HOST_SERVICE") == active ]] ||
        die "$HOST_SERVICE is not running after create"
}

# The backup $1 of bench-host holds the host directory, as `info --json`
# shows it, with as many tar bytes as the volume's archive in the last
# create (the same data), and was taken as that one was (its service
# stopped and started: a downtime recorded in both, or in neither):
# otherwise the ratio compares nothing. Sets HOST_TAR_BYTES and
# VOLUME_TAR_BYTES.
check_host_backup() {
    local id=$1 info=$WORK/hostdir-info.json
    leger-backup --json info "$id" >"$info" || die "leger-backup info $id failed"
    local found
    found=$(jq --arg p "$HOST_DIR" \
        '[.host_paths[]? | select(.path == $p and .existed and .archive_path != null)] | length' "$info")
    [[ $found == 1 ]] ||
        die "the backup $id of $HOST_DEPLOYMENT does not hold the host directory $HOST_DIR (host_paths: $(jq -c '.host_paths' "$info"))"
    HOST_TAR_BYTES=$(jq --arg p "$HOST_DIR" '.host_paths[] | select(.path == $p) | .uncompressed_size' "$info")
    VOLUME_TAR_BYTES=$(jq '[.metadata.volumes[] | .uncompressed_size] | add' "$WORK/create.json")
    [[ $VOLUME_TAR_BYTES =~ ^[1-9][0-9]*$ ]] ||
        die "the volume's create recorded no tar size ($VOLUME_TAR_BYTES): nothing to compare with"
    le "$VOLUME_TAR_BYTES * 0.99" "$HOST_TAR_BYTES" ||
        die "the backup $id holds $HOST_TAR_BYTES tar bytes of $HOST_DIR, the volume's $VOLUME_TAR_BYTES: not the same data"
    [[ $(jq '.downtime_seconds != null' "$info") == $(jq '.metadata.downtime_seconds != null' "$WORK/create.json") ]] ||
        die "the backup $id of $HOST_DEPLOYMENT and the volume's were not taken alike (downtime: $(jq .downtime_seconds "$info"), the volume's: $(jq .metadata.downtime_seconds "$WORK/create.json"))"
    say "backup $id of $HOST_DEPLOYMENT holds $HOST_DIR: $HOST_TAR_BYTES tar bytes (the volume's: $VOLUME_TAR_BYTES)"
}

# create again with nothing changed since the newest backup: the volume's
# archive is shared (a hard link), not exported again (issue 11, part 4).
run_create_unchanged() {
    timed unchanged sh -c 'exec leger-backup --json create "$1" --reason bench >"$2"' \
        sh "$DEPLOYMENT" "$WORK/unchanged.json"
    local id archive
    id=$(jq -r .id "$WORK/unchanged.json")
    archive=$(jq -r '.metadata.volumes[0].archive_path' "$WORK/unchanged.json")
    UNCHANGED_LINKS=$(stat -c %h "$HOME/.local/share/bluebuild-quadlets/backups/$id/$archive")
    leger-backup delete "$id" --yes >/dev/null 2>&1
}

# create --live: the same backup without stopping and starting the service,
# to tell the streaming's own overhead from the downtime steps'.
run_create_live() {
    # Nothing changed since create, so the archive would be shared: change
    # one file's ctime (not its content or mtime: the tar stays the same) to
    # time the export itself.
    podman unshare sh -c 'f=$(find "$1" -type f | head -n 1); touch -m -r "$f" "$f"' sh \
        "$(podman volume inspect --format '{{.Mountpoint}}' "$VOLUME")"
    timed live sh -c 'LEGER_BACKUP_VOLUME_READER=direct exec leger-backup --json create "$1" --live --reason bench >"$2"' \
        sh "$DEPLOYMENT" "$WORK/live.json"
    record_phase live_export "$(phase "$WORK/live.log" 'exporting volume' "volume $VOLUME: ")"
    leger-backup delete "$(jq -r .id "$WORK/live.json")" --yes >/dev/null 2>&1
    # The same through podman's export (the live backup is gone: exported again).
    timed livepod sh -c 'LEGER_BACKUP_VOLUME_READER=podman exec leger-backup --json create "$1" --live --reason bench >"$2"' \
        sh "$DEPLOYMENT" "$WORK/livepod.json"
    leger-backup delete "$(jq -r .id "$WORK/livepod.json")" --yes >/dev/null 2>&1
}

run_restore() {
    local id=$1
    timed restore sh -c 'exec leger-backup restore "$1" --yes --no-start >/dev/null' sh "$id"
    local log=$WORK/restore.log
    record_phase restore_verify "$(phase "$log" "verifying $id" 'backing up')"
    record_phase restore_safety "$(phase "$log" 'backing up' 'safety backup')"
    record_phase restore_aside "$(phase "$log" 'safety backup' 'moved the data of')"
    record_phase restore_import "$(phase "$log" "importing volume $VOLUME" "volume $VOLUME: ")"
    # From the import's end (the plan's lines name the volume too: start
    # from the import) to the data moved aside being dropped.
    local import_and_drop import
    import_and_drop=$(phase "$log" "importing volume $VOLUME" 'dropped the previous state')
    import=$(phase "$log" "importing volume $VOLUME" "volume $VOLUME: ")
    [[ -z $import_and_drop || -z $import ]] ||
        record_phase restore_drop "$(calc "$import_and_drop - $import")"
    # The volume's previous data was moved aside and is dropped; a safety
    # backup kept (a volume that could not be moved) goes here too.
    local b
    for b in $(bench_backups); do
        [[ $b == "$id" ]] || leger-backup delete "$b" --yes >/dev/null 2>&1
    done
}

# Remove the deployment's files and its volume (untimed): the state after
# `leger deploy remove` and `podman volume rm`, or of a new machine.
remove_deployment() {
    rm -rf "$QUADLET_DIR"
    systemctl --user daemon-reload
    podman volume rm "$VOLUME" >/dev/null
}

# The shell pipeline the restores are compared with, into the (new, empty)
# volume: `podman volume import` needs it to exist.
run_unzstd() {
    podman volume create "$VOLUME" >/dev/null
    timed unzstd sh -c 'zstd -q -d <"$1" | podman volume import "$2" -' sh "$WORK/f.zst" "$VOLUME"
}

# A restore onto nothing: nothing exists to be saved, so there is no safety
# backup: verify, files, daemon-reload, create the volume, import.
run_restore_fresh() {
    local id=$1
    timed fresh sh -c 'exec leger-backup restore "$1" --yes --no-start >/dev/null' sh "$id"
    local log=$WORK/fresh.log
    record_phase fresh_verify "$(phase "$log" "verifying $id" 'no safety backup')"
    record_phase fresh_import "$(phase "$log" "importing volume $VOLUME" "volume $VOLUME: ")"
    [[ -e $QUADLET_DIR/bench.container ]] || die "restore onto nothing did not put the deployment back"
}

# ext4 without a journal (the testbed's disk here) skips, when it allocates
# an inode, those freed in the last 60 s (360 s while their inode table
# block is dirty), reading each: right after a volume of 20,000 files was
# deleted, creating 20,000 files is slower (an import went from 2.3 s to
# 7-9 s, nearly all of it system time, even 70 s after a sync). So each
# timed import (the pipeline, the restore onto nothing, the restore over
# the deployment) comes right after the same volume was deleted and the
# same pause: sync, then wait out the window. The pipeline and the restore
# onto nothing then start from the same state; the restore over the
# deployment deletes the live volume itself, timed: that cost, and the
# slower import after it, are its own. BENCH_COOLDOWN overrides the pause.
cooldown() {
    ((COOLDOWN > 0)) || return 0
    sync
    say "  waiting $COOLDOWN s for ext4 to forget earlier deletions (BENCH_COOLDOWN)"
    sleep "$COOLDOWN"
}

# The pause [cooldown] needs: 65 s on ext4 without a journal, else none.
default_cooldown() {
    local dir=$HOME/.local/share/containers/storage/volumes fstype source
    read -r fstype source < <(findmnt -n -o FSTYPE,SOURCE -T "$dir") || true
    source=${source%%[*}
    if [[ $fstype == ext4 ]] && ! compgen -G "/proc/fs/jbd2/${source##*/}-*" >/dev/null; then
        echo 65
    else
        echo 0
    fi
}

# The file system PATH ($1) is on: "TYPE at MOUNTPOINT".
fs_of() {
    local fstype target
    read -r fstype target < <(findmnt -n -o FSTYPE,TARGET -T "$1") || true
    echo "${fstype:-?} at ${target:-?}"
}

# ratio NAME A B LIMIT DIRECTION: print "A/B = r (target <= / >= LIMIT) PASS|MISS".
MISSED=0
target() {
    local what=$1 a=$2 b=$3 op=$4 limit=$5 r ok
    r=$(calc "$a / $b")
    ok=MISS
    if [[ $op == '<=' ]]; then
        if le "$r" "$limit"; then ok=PASS; fi
    elif le "$limit" "$r"; then
        ok=PASS
    fi
    [[ $ok == PASS ]] || MISSED=1
    printf '| %-44s | %7s | %s %-5s | %s |\n' "$what" "$r" "$op" "$limit" "$ok"
}

# reference WHAT A B WHY: a ratio printed for reference, not a target.
reference() {
    printf '| %-44s | %7s | %s |\n' "$1" "$(calc "$2 / $3")" "(reference: $4)"
}

inside_main() {
    command -v zstd >/dev/null || die "zstd is missing in the testbed"
    leger-backup --version >/dev/null || die "leger-backup is not installed in the testbed"
    # A run with BENCH_KEEP=1 leaves the deployments (and .kept); anything
    # else of those names is someone else's.
    if [[ ! -e $WORK/.kept ]] && { systemctl --user is-active --quiet "$SERVICE" "$HOST_SERVICE" ||
        [[ -e $QUADLET_DIR || -e $HOST_QUADLET_DIR || -e $HOST_DIR ]] ||
        [[ -n $(bench_backups "$DEPLOYMENT") || -n $(bench_backups "$HOST_DEPLOYMENT") ]]; }; then
        die "a deployment, backups or host directory of $DEPLOYMENT or $HOST_DEPLOYMENT exist (another benchmark running?); remove them with: tests/bench/backup.sh cleanup"
    fi
    # The unit binds it as %h/...: it must be in this user's home.
    [[ $HOST_DIR == "$HOME"/* ]] || die "the host directory $HOST_DIR is not in the home $HOME"
    trap cleanup_inside EXIT
    trap 'exit 2' INT TERM
    mkdir -p "$WORK"
    rm -f "$WORK/.kept"
    COOLDOWN=${BENCH_COOLDOWN:-$(default_cooldown)}
    make_volume
    make_host_dir
    # The comparison is fair only on the same kind of file system: with
    # BENCH_TMPFS=1 each is on a tmpfs of its own, else both on the disk.
    local volume_fs host_fs
    volume_fs=$(fs_of "$(podman volume inspect --format '{{.Mountpoint}}' "$VOLUME")")
    host_fs=$(fs_of "$HOST_DIR")
    [[ ${volume_fs%% *} == "${host_fs%% *}" ]] ||
        die "the host directory is on $host_fs, the volume on $volume_fs: not comparable"
    if [[ $volume_fs == "$host_fs" ]]; then
        host_fs+=" (the volumes' file system)"
    else
        host_fs+=" (of its own, of the volumes' kind)"
    fi
    say "volume $VOLUME on $volume_fs, host directory $HOST_DIR on $host_fs"
    install_deployment
    local cores
    cores=$(nproc)
    say "leger-backup $(leger-backup --version | awk '{ print $2 }'), podman $(podman --version | awk '{ print $3 }'), zstd $(zstd -V | grep -o 'v[0-9.]*' | head -1), $cores cores"

    # Warm the caches; the sha256 of the tar is the data's fingerprint.
    local tar_bytes fingerprint
    tar_bytes=$(podman volume export "$VOLUME" | wc -c)
    fingerprint=$(podman volume export "$VOLUME" | sha256sum | awk '{ print $1 }')
    say "tar stream: $tar_bytes bytes, sha256 $fingerprint"
    # The host directory too (a tar into a pipe: GNU tar skips reading the
    # files when it writes to /dev/null).
    podman unshare tar -C "$HOST_DIR" -cf - . | cat >/dev/null

    # Round robin, so that the machine's drift hits all alike.
    local run
    for ((run = 1; run <= BENCH_RUNS; run++)); do
        say "round $run/$BENCH_RUNS: export floor, export | zstd, create, create of the host directory, create --live"
        timed floor sh -c 'podman volume export "$1" >/dev/null' sh "$VOLUME"
        rm -f "$WORK/f.zst"
        timed zstd sh -c 'podman volume export "$1" | zstd -q -3 -T0 >"$2"' sh "$VOLUME" "$WORK/f.zst"
        ZSTD_SIZE=$(stat -c %s "$WORK/f.zst")
        [[ -z ${LAST_BACKUP:-} ]] || leger-backup delete "$LAST_BACKUP" --yes >/dev/null 2>&1
        run_create
        run_create_host
        run_create_unchanged
        run_create_live
    done
    say "export | gzip -6 (one run)"
    timed gzip sh -c 'podman volume export "$1" | gzip -6 >"$2"' sh "$VOLUME" "$WORK/f.gz"
    local gzip_size
    gzip_size=$(stat -c %s "$WORK/f.gz")
    rm -f "$WORK/f.gz"

    # Restores: the service is stopped first (untimed), as --no-start
    # leaves it, so that every run does the same work.
    systemctl --user stop "$SERVICE"
    for ((run = 1; run <= RESTORE_RUNS; run++)); do
        say "round $run/$RESTORE_RUNS: zstd -d | import, restore onto nothing, restore over the deployment"
        # Each timed import follows the removal of the same 20,000-file
        # volume and the same pause: the file system is in the same state
        # for all three (see cooldown).
        remove_deployment
        cooldown
        run_unzstd
        podman volume rm "$VOLUME" >/dev/null
        cooldown
        run_restore_fresh "$LAST_BACKUP"
        cooldown
        run_restore "$LAST_BACKUP"
    done
    # The restored volume is the backed-up one.
    local after
    after=$(podman volume export "$VOLUME" | sha256sum | awk '{ print $1 }')
    [[ $after == "$fingerprint" ]] || say "warning: the restored volume exports differently (sha256 $after)"

    local mb=$((tar_bytes / 1000000))
    echo
    echo "## leger-backup benchmark: $mb MB volume (tar stream), best of $BENCH_RUNS (imports: $RESTORE_RUNS), $cores cores"
    echo
    echo "| measurement | best s | median s | runs | MB/s (best) | peak RSS MB | output MB |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    local name out
    for name in floor zstd gzip create unchanged live livepod unzstd fresh restore hostdir; do
        case $name in
        zstd) out=$(calc "$ZSTD_SIZE / 1e6") ;;
        gzip) out=$(calc "$gzip_size / 1e6") ;;
        create) out=$(calc "$CREATE_SIZE / 1e6") ;;
        hostdir) out=$(calc "$HOST_SIZE / 1e6") ;;
        live | livepod) out=$(calc "$(jq -r '[.metadata.volumes[] | .size] | add' "$WORK/$name.json") / 1e6") ;;
        *) out=- ;;
        esac
        printf '| %-7s | %6.2f | %6.2f | %d | %5.0f | %4d | %s |\n' "$name" "${WALL[$name]}" \
            "$(median "${ALL[$name]}")" "$(wc -w <<<"${ALL[$name]}")" \
            "$(calc "$tar_bytes / 1e6 / ${WALL[$name]}")" $((RSS[$name] / 1024)) "$out"
    done
    echo
    echo "create phases (best): to first line ${PHASE[create_start]:-?} s, stop ${PHASE[create_stop]:-?} s," \
        "export+compress+hash ${PHASE[create_export]:-?} s, restart+fsync+finalize ${PHASE[create_restart]:-?} s"
    echo "create --live: export+compress+hash ${PHASE[live_export]:-?} s"
    echo "restore onto nothing (fresh), phases (best): verify ${PHASE[fresh_verify]:-?} s, import ${PHASE[fresh_import]:-?} s"
    echo "restore over the deployment, phases (best): verify ${PHASE[restore_verify]:-?} s," \
        "safety backup (files) ${PHASE[restore_safety]:-?} s, move aside ${PHASE[restore_aside]:-?} s," \
        "import ${PHASE[restore_import]:-?} s, drop ${PHASE[restore_drop]:-?} s"
    echo "create, host directory (hostdir): $HOST_DIR on $host_fs, the volume on $volume_fs;" \
        "read+compress+hash ${PHASE[hostdir_read]:-?} s (best; the volume's export+compress+hash" \
        "${PHASE[create_export]:-?} s), $HOST_TAR_BYTES tar bytes (the volume's $VOLUME_TAR_BYTES)"
    echo
    echo "| target | ratio | limit | |"
    echo "| --- | ---: | --- | --- |"
    target "create / (export | zstd -3 -T0)" "${WALL[create]}" "${WALL[zstd]}" '<=' 1.05
    target "create / export floor" "${WALL[create]}" "${WALL[floor]}" '<=' 1.25
    target "create --live, read directly / export floor" "${WALL[live]}" "${WALL[floor]}" '<=' 1.0
    reference "create --live, podman export / export floor" "${WALL[livepod]}" "${WALL[floor]}" \
        "LEGER_BACKUP_VOLUME_READER=podman"
    target "(export | gzip -6) / create" "${WALL[gzip]}" "${WALL[create]}" '>=' 6
    target "create, nothing changed / create (archive links: ${UNCHANGED_LINKS:-?})" \
        "${WALL[unchanged]}" "${WALL[create]}" '<=' 0.2
    target "archive size / (export | zstd -3) size" "$CREATE_SIZE" "$ZSTD_SIZE" '<=' 1.05
    target "restore onto nothing / (zstd -d | import)" "${WALL[fresh]}" "${WALL[unzstd]}" '<=' 1.15
    if [[ -n ${PHASE[restore_import]:-} ]]; then
        target "restore's import phase / (zstd -d | import)" "${PHASE[restore_import]}" "${WALL[unzstd]}" '<=' 1.3
    fi
    target "restore over the deployment / (zstd -d | import)" "${WALL[restore]}" "${WALL[unzstd]}" '<=' 1.3
    target "create peak RSS / 64 MB" "$((RSS[create] / 1024))" 64 '<=' 1
    target "restore peak RSS / 64 MB" "$((RSS[restore] / 1024))" 64 '<=' 1
    target "restore onto nothing peak RSS / 64 MB" "$((RSS[fresh] / 1024))" 64 '<=' 1
    target "create, host directory / create, same data in a volume" "${WALL[hostdir]}" "${WALL[create]}" '<=' 1.1
    reference "the same, medians" "$(median "${ALL[hostdir]}")" "$(median "${ALL[create]}")" \
        "medians of $BENCH_RUNS runs, interleaved"
    target "create, host directory peak RSS / 64 MB" "$((RSS[hostdir] / 1024))" 64 '<=' 1
    echo
    echo "(peak RSS is /usr/bin/time's: the largest of the process and its children," \
        "podman included; podman volume export alone: $((RSS[floor] / 1024)) MB)"
    echo "(leger-backup's own peak RSS, VmHWM sampled every 50 ms: create $((OWN[create] / 1024)) MB," \
        "create --live $((OWN[live] / 1024)) MB, restore $((OWN[restore] / 1024)) MB," \
        "restore onto nothing $((OWN[fresh] / 1024)) MB)"
    echo "(create, host directory: peak RSS $((RSS[hostdir] / 1024)) MB with its children" \
        "(podman unshare and the reader in it), leger-backup's own $((OWN[hostdir] / 1024)) MB)"
    return "$MISSED"
}

# ===========================================================================
# On the host (as root): copy this script into the testbed and run it there.
# ===========================================================================

host_main() {
    [[ $(id -u) -eq 0 ]] || die "run as root (the testbed needs it)"
    local here testbed
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    testbed=$here/../testbed/testbed.sh
    "$testbed" status >/dev/null 2>&1 || die "the testbed is not up: $testbed up"
    if ! "$testbed" exec -- sh -c 'command -v zstd' >/dev/null; then
        say "installing zstd in the testbed"
        "$testbed" exec --root -- sh -c 'apt-get install -y zstd >/dev/null' ||
            die "cannot install zstd in the testbed"
    fi
    if [[ $BENCH_TMPFS == 1 && ${1:-} != --cleanup ]]; then
        volumes_on_tmpfs "$testbed"
        host_dir_on_tmpfs "$testbed"
    fi
    # The testbed's /tmp is its own; the script goes to the test user's home.
    local inner=/home/tester/.bench-backup.sh
    "$testbed" exec -- sh -c "cat > $inner && chmod 700 $inner" <"${BASH_SOURCE[0]}"
    local status=0
    "$testbed" exec -- env BENCH_MB="$BENCH_MB" BENCH_RUNS="$BENCH_RUNS" BENCH_RESTORE_RUNS="$RESTORE_RUNS" \
        BENCH_KEEP="$BENCH_KEEP" BENCH_COOLDOWN="${BENCH_COOLDOWN:-}" bash "$inner" "${1:---inside}" || status=$?
    "$testbed" exec -- rm -f "$inner" || true
    if [[ $BENCH_TMPFS == 1 && ($BENCH_KEEP != 1 || ${1:-} == --cleanup) ]]; then
        "$testbed" exec --root -- sh -c "! mountpoint -q $VOLUMES_DIR || umount $VOLUMES_DIR" ||
            say "warning: cannot unmount the tmpfs on $VOLUMES_DIR in the testbed"
        # Its mount point too (made by host_dir_on_tmpfs, empty once unmounted).
        "$testbed" exec --root -- sh -c "! mountpoint -q $HOST_BASE || umount $HOST_BASE; [ ! -d $HOST_BASE ] || rmdir $HOST_BASE" ||
            say "warning: cannot unmount or remove the tmpfs on $HOST_BASE in the testbed"
    fi
    return "$status"
}

# Podman's volumes of the test user on a tmpfs of their own (BENCH_TMPFS=1,
# the default), mounted inside the testbed (podman's rootless namespace
# sees it) over the directory for the run, hiding the volumes there until
# it is unmounted. Why: the testbed's disk here is ext4 without a journal,
# on which creating 20,000 files right after 20,000 were deleted takes
# 3-5x longer (2.5 s -> 7-13 s for one import, nearly all system time),
# for minutes, whatever the pause: every import figure then says what was
# deleted when, not how fast an import is. Backups stay on the disk.
volumes_on_tmpfs() {
    local testbed=$1 size=$((BENCH_MB * 2 + 512))
    tmpfs_in_testbed "$testbed" "$VOLUMES_DIR" "$size"
    say "volumes on a tmpfs ($size MB) in the testbed: $VOLUMES_DIR"
}

# The host directory on a tmpfs of its own (BENCH_TMPFS=1), mounted like the
# volumes' on HOST_BASE (made first: it is not there otherwise), so that the
# host directory's create and the volume's read the same kind of file
# system and the ratio compares the two ways of reading, not two media. Not
# a directory on the volumes' tmpfs: that one is podman's storage. Room for
# one copy of the data.
host_dir_on_tmpfs() {
    local testbed=$1 size=$((BENCH_MB + 256))
    "$testbed" exec --root -- sh -c "mountpoint -q $HOST_BASE || mkdir -p $HOST_BASE" ||
        die "cannot make $HOST_BASE in the testbed"
    tmpfs_in_testbed "$testbed" "$HOST_BASE" "$size"
    say "host directory on a tmpfs of its own ($size MB) in the testbed: $HOST_BASE"
}

# tmpfs_in_testbed TESTBED DIR MB: a tmpfs of MB MiB owned by the test user
# (mode 0700) on DIR in the testbed, unless one is mounted there already.
tmpfs_in_testbed() {
    local testbed=$1 dir=$2 size=$3
    "$testbed" exec --root -- sh -c "mountpoint -q $dir ||
        mount -t tmpfs -o mode=0700,uid=\$(id -u tester),gid=\$(id -g tester),size=${size}m tmpfs $dir" ||
        die "cannot mount a tmpfs on $dir in the testbed (BENCH_TMPFS=0 runs without)"
}

# tests/bench/repository.sh sources this file for its functions only.
[[ ${BENCH_LIB_ONLY:-0} == 1 ]] && return 0

case ${1:-} in
--inside) inside_main ;;
--cleanup) cleanup_inside ;;
*)
    if [[ -n ${1:-} ]]; then
        case $1 in
        -h | --help)
            sed -n '2,/^# Exit status/p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        cleanup) host_main --cleanup ;;
        *) die "unknown argument $1 (try --help)" ;;
        esac
    else
        host_main
    fi
    ;;
esac
