#!/usr/bin/env bash
# Benchmark of backups to restic repositories (issue 13), side by side with
# restic run by hand on the same volume, in one run, in the rootless
# testbed: a local path repository, and S3 on loopback (s3s-fs, when
# tests/prerequisites.sh has built it).
#
# Usage (as root on the host, the testbed up and the binary installed:
# cargo build --release && tests/testbed/testbed.sh up):
#   tests/bench/repository.sh              700 MB volume, BENCH_RUNS rounds
# Environment: BENCH_MB (default 700), BENCH_RUNS (default 2), BENCH_KEEP,
# BENCH_TMPFS (podman's volumes on a tmpfs; the repositories stay on the
# disk) as in tests/bench/backup.sh (whose volume generator and timing
# functions this script uses: the same seeded 700 MB mixed volume).
#
# Per repository kind and round, a fresh repository each for restic by hand
# and for leger-backup (same password, same restic):
#   hand      podman unshare restic backup MOUNTPOINT   (the volume alone)
#   first     leger-backup create bench --to R          (service running:
#             includes stopping and starting it, the deployment's files and
#             the metadata, the parent lookup)
#   again     the same, nothing changed
#   changed   the same after a one-line change in one file of the volume;
#             its snapshot's data_added is compared with first's
#   hrestore  podman unshare restic restore SNAP:MOUNTPOINT --target NEW
#             (into a new, empty volume)
#   restore   leger-backup restore ID --from R --yes --no-start (service
#             stopped first; fetches the metadata and files, checks them,
#             moves the current data aside, restores the tree)
# Wall time: best and median; peak RSS: /usr/bin/time's (restic's included)
# and leger-backup's own (VmHWM of the leger-backup process).
# Exit status: 0 when every target is met, 1 when one is missed, 2 on error.
# shellcheck disable=SC2016,SC2086
set -euo pipefail

BENCH_RUNS=${BENCH_RUNS:-2}
export BENCH_RUNS
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
S3S_FS=${LEGER_TEST_S3S_FS:-/var/cache/leger-backup-tests/s3s-fs-0.14.1/bin/s3s-fs}

inside_repository_main() {
    # shellcheck source=backup.sh
    BENCH_LIB_ONLY=1 source "$HOME/.bench-backup.sh"
    WORK=$HOME/bench-repo-work
    REPOS=$HOME/bench-repos
    CONFIG=$HOME/.config/leger/config.yaml
    mkdir -p "$WORK" "$REPOS" "$(dirname "$CONFIG")"
    [[ ! -e $CONFIG ]] || die "$CONFIG exists: the benchmark writes its own (move it away)"
    trap repository_cleanup EXIT
    trap 'exit 2' INT TERM
    command -v restic >/dev/null || die "restic is missing in the testbed"
    make_volume
    write_deployment "$DEPLOYMENT" "$VOLUME"
    systemctl --user daemon-reload
    systemctl --user start "$SERVICE"
    MNT=$(podman volume inspect --format '{{.Mountpoint}}' "$VOLUME")
    FINGERPRINT=$(podman volume export "$VOLUME" | sha256sum | awk '{ print $1 }')
    TAR_BYTES=$(podman volume export "$VOLUME" | wc -c)
    umask 077
    printf 'bench-password\n' >"$REPOS/password"
    export RESTIC_PASSWORD_FILE=$REPOS/password
    say "leger-backup $(leger-backup --version | awk '{ print $2 }'), $(restic version | awk '{ print $1, $2 }'), $(nproc) cores, $TAR_BYTES tar bytes"
    KINDS=(local)
    [[ -z ${BENCH_S3_URL:-} ]] || KINDS+=(s3)
    local kind run
    for ((run = 1; run <= BENCH_RUNS; run++)); do
        for kind in "${KINDS[@]}"; do
            say "round $run/$BENCH_RUNS, $kind repository"
            one_round "$kind" "$run"
        done
    done
    report
}

# The repository URL of KIND for WHO (hand|ours) in round RUN.
repo_url() {
    case $1 in
    local) echo "$REPOS/$2-$3" ;;
    s3) echo "$BENCH_S3_URL/$2-$3" ;;
    esac
}

# The config naming the repository `bench` (leger-backup's) at URL.
write_config() {
    {
        echo "backup:"
        echo "  repositories:"
        echo "    bench:"
        echo "      url: $1"
        echo "      password_file: $REPOS/password"
        [[ -z ${BENCH_S3_ENV:-} ]] || echo "      env_file: $REPOS/s3.env"
    } >"$CONFIG"
    if [[ -n ${BENCH_S3_ENV:-} ]]; then printf '%s\n' "$BENCH_S3_ENV" | tr ' ' '\n' >"$REPOS/s3.env"; fi
}

# The env of restic by hand for KIND (the S3 keys).
hand_restic() {
    if [[ $KIND == s3 ]]; then
        env $BENCH_S3_ENV restic "$@"
    else
        restic "$@"
    fi
}

one_round() {
    KIND=$1
    local run=$2 hand ours id snap
    hand=$(repo_url "$KIND" hand "$run")
    ours=$(repo_url "$KIND" ours "$run")
    write_config "$ours"
    hand_restic -r "$hand" init -q >/dev/null
    hand_restic -r "$ours" init -q >/dev/null
    export HAND_REPO=$hand
    timed "${KIND}_hand" sh -c 'exec podman unshare "$@" >/dev/null' sh \
        env ${BENCH_S3_ENV:-} RESTIC_PASSWORD_FILE="$RESTIC_PASSWORD_FILE" restic -r "$hand" backup -q "$MNT"
    timed "${KIND}_first" sh -c 'exec leger-backup --json create "$1" --to bench --reason bench >"$2"' \
        sh "$DEPLOYMENT" "$WORK/first.json"
    id=$(jq -r .id "$WORK/first.json")
    timed "${KIND}_again" sh -c 'exec leger-backup create "$1" --to bench --reason bench >/dev/null' sh "$DEPLOYMENT"
    podman unshare sh -c 'echo "one more line" >> "$1"/text/text-01.log' sh "$MNT"
    timed "${KIND}_changed" sh -c 'exec leger-backup create "$1" --to bench --reason bench >/dev/null' sh "$DEPLOYMENT"
    podman unshare sh -c 'truncate -s -14 "$1"/text/text-01.log && touch -d @1767225600 "$1"/text/text-01.log' sh "$MNT"
    # data_added of each of our snapshots, oldest first.
    hand_restic -r "$ours" snapshots --json | jq -r 'sort_by(.time) | .[] | .summary.data_added' >"$WORK/added"
    ADDED_FIRST+=" $(sed -n 1p "$WORK/added")"
    ADDED_AGAIN+=" $(sed -n 2p "$WORK/added")"
    ADDED_CHANGED+=" $(sed -n 3p "$WORK/added")"
    # Restores: by hand into a new volume; ours over the stopped deployment.
    snap=$(hand_restic -r "$hand" snapshots --json | jq -r '.[0].id')
    podman volume create bench-hand >/dev/null
    local target
    target=$(podman volume inspect --format '{{.Mountpoint}}' bench-hand)
    timed "${KIND}_hrestore" sh -c 'exec podman unshare "$@" >/dev/null' sh \
        env ${BENCH_S3_ENV:-} RESTIC_PASSWORD_FILE="$RESTIC_PASSWORD_FILE" restic -r "$hand" restore "$snap:$MNT" --target "$target"
    podman volume rm -f bench-hand >/dev/null
    systemctl --user stop "$SERVICE"
    timed "${KIND}_restore" leger-backup restore "$id" --from bench --yes --no-start
    local after
    after=$(podman volume export "$VOLUME" | sha256sum | awk '{ print $1 }')
    [[ $after == "$FINGERPRINT" ]] || die "the restored volume exports differently (sha256 $after, before $FINGERPRINT)"
    systemctl --user start "$SERVICE"
}

report() {
    local mb=$((TAR_BYTES / 1000000)) kind name
    echo
    echo "## leger-backup repositories: $mb MB volume, $BENCH_RUNS rounds, $(nproc) cores"
    echo
    echo "| measurement | best s | median s | peak RSS MB (with restic) | leger-backup's own MB |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    for kind in "${KINDS[@]}"; do
        for name in hand first again changed hrestore restore; do
            name=${kind}_$name
            printf '| %-16s | %6.2f | %6.2f | %4d | %s |\n' "$name" "${WALL[$name]}" \
                "$(median "${ALL[$name]}")" $((RSS[$name] / 1024)) \
                "$(case $name in *hand | *hrestore) echo - ;; *) echo $((OWN[$name] / 1024)) ;; esac)"
        done
    done
    for kind in "${KINDS[@]}"; do
        echo
        echo "$kind: the last restore's progress lines (seconds since its start):"
        awk 'NR == 1 { t0 = $1; next } { $1 = sprintf("%6.2f", $1 - t0); print "    " $0 }' "$WORK/${kind}_restore.log"
        echo "$kind: the last create's (first) progress lines:"
        awk 'NR == 1 { t0 = $1; next } { $1 = sprintf("%6.2f", $1 - t0); print "    " $0 }' "$WORK/${kind}_first.log"
    done
    echo
    echo "data_added (bytes, per round): first:$ADDED_FIRST; again:$ADDED_AGAIN; one-line change:$ADDED_CHANGED"
    echo
    echo "| target | ratio | limit | |"
    echo "| --- | ---: | --- | --- |"
    for kind in "${KINDS[@]}"; do
        target "$kind: first backup / restic backup by hand" "${WALL[${kind}_first]}" "${WALL[${kind}_hand]}" '<=' 1.1
        reference "$kind: the same, medians" "$(median "${ALL[${kind}_first]}")" "$(median "${ALL[${kind}_hand]}")" "medians"
        target "$kind: again, nothing changed / first" "${WALL[${kind}_again]}" "${WALL[${kind}_first]}" '<=' 0.2
        target "$kind: restore / restic restore by hand" "${WALL[${kind}_restore]}" "${WALL[${kind}_hrestore]}" '<=' 1.3
        reference "$kind: the same, medians" "$(median "${ALL[${kind}_restore]}")" "$(median "${ALL[${kind}_hrestore]}")" "medians"
        target "$kind: leger-backup's own peak RSS (create) / 64 MB" "$((OWN[${kind}_first] / 1024))" 64 '<=' 1
        target "$kind: leger-backup's own peak RSS (restore) / 64 MB" "$((OWN[${kind}_restore] / 1024))" 64 '<=' 1
    done
    local first changed
    first=$(awk '{ print $1 }' <<<"$ADDED_FIRST")
    changed=$(awk '{ print $1 }' <<<"$ADDED_CHANGED")
    target "uploaded after a one-line change / first upload" "$changed" "$first" '<=' 0.01
    return "$MISSED"
}

repository_cleanup() {
    set +e
    systemctl --user stop "$SERVICE" 2>/dev/null
    local id
    for id in $(leger-backup --json list --deployment "$DEPLOYMENT" 2>/dev/null | jq -r '.[] | .id'); do
        leger-backup delete "$id" --yes >/dev/null 2>&1
    done
    rm -f "$CONFIG"
    rm -rf "$REPOS" "$WORK"
    podman volume rm -f bench-hand >/dev/null 2>&1
    if [[ $BENCH_KEEP != 1 ]]; then
        rm -rf "$QUADLET_DIR" "$MASK_DIR"
        systemctl --user daemon-reload
        podman volume rm -f "$VOLUME" >/dev/null 2>&1
    fi
    return 0
}

# On the host: start s3s-fs on loopback when it was built, copy both
# scripts in, run, stop the server.
host_repository_main() {
    [[ $(id -u) -eq 0 ]] || { echo "bench: run as root" >&2; exit 2; }
    local testbed=$HERE/../testbed/testbed.sh s3_pid="" s3_dir="" env=() status=0
    "$testbed" status >/dev/null 2>&1 || { echo "bench: the testbed is not up: $testbed up" >&2; exit 2; }
    # Podman's volumes on a tmpfs, as tests/bench/backup.sh does (its
    # volumes_on_tmpfs says why: ext4 without a journal here makes file
    # creation after deletions 3-5x slower, for minutes).
    # shellcheck source=backup.sh
    BENCH_LIB_ONLY=1 source "$HERE/backup.sh"
    if [[ $BENCH_TMPFS == 1 ]]; then volumes_on_tmpfs "$testbed"; fi
    if [[ -x $S3S_FS ]]; then
        s3_dir=$(mktemp -d /var/tmp/bench-s3.XXXXXX)
        mkdir "$s3_dir/bench"
        local port=39123
        "$S3S_FS" --host 127.0.0.1 --port "$port" --access-key benchkey --secret-key benchsecret "$s3_dir" \
            >"$s3_dir.log" 2>&1 &
        s3_pid=$!
        env+=(BENCH_S3_URL="s3:http://127.0.0.1:$port/bench"
            BENCH_S3_ENV="AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret AWS_DEFAULT_REGION=us-east-1")
        echo "bench: s3s-fs on 127.0.0.1:$port (pid $s3_pid, data $s3_dir)" >&2
    else
        echo "bench: $S3S_FS not built (tests/prerequisites.sh builds it): local repository only" >&2
    fi
    "$testbed" exec -- sh -c 'cat > ~/.bench-backup.sh' <"$HERE/backup.sh"
    "$testbed" exec -- sh -c 'cat > ~/.bench-repository.sh' <"${BASH_SOURCE[0]}"
    "$testbed" exec -- env BENCH_MB="${BENCH_MB:-700}" BENCH_RUNS="$BENCH_RUNS" BENCH_KEEP="${BENCH_KEEP:-0}" \
        "${env[@]}" bash /home/tester/.bench-repository.sh --inside || status=$?
    "$testbed" exec -- rm -f /home/tester/.bench-backup.sh /home/tester/.bench-repository.sh || true
    if [[ $BENCH_TMPFS == 1 ]]; then
        "$testbed" exec --root -- sh -c "! mountpoint -q $VOLUMES_DIR || umount $VOLUMES_DIR" ||
            echo "bench: warning: cannot unmount the tmpfs on $VOLUMES_DIR in the testbed" >&2
    fi
    if [[ -n $s3_pid ]]; then
        kill "$s3_pid" 2>/dev/null
        wait "$s3_pid" 2>/dev/null || true
        rm -rf "$s3_dir" "$s3_dir.log"
    fi
    return "$status"
}

case ${1:-} in
--inside) inside_repository_main ;;
-h | --help) sed -n '2,/^# Exit status/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
*) host_repository_main ;;
esac
