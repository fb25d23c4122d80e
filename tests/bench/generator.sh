#!/usr/bin/env bash
# Benchmark of the systemd generator: how long one daemon-reload's run takes
# with 50 deployments installed. systemd runs every generator on every reload
# before any unit starts, so this is time added to each reload; the target
# (issue "Automatic backups around lifecycle events") is under 100 ms.
#
# Usage: tests/bench/generator.sh [DEPLOYMENTS] [RUNS]
#   DEPLOYMENTS  deployments to create (default 50): half leger deployments
#                (active directory + installed copies), half plain Quadlet
#                subdirectories, each with two containers, a volume, a network
#   RUNS         timed runs (default 20); the best and the median are printed
# Environment:
#   LEGER_BACKUP_BIN  binary to run (default target/release/leger-backup;
#                     build it first: cargo build --release)
#
# The binary runs as systemd runs it: through a symlink named
# leger-backup-user-generator, with three output directories, HOME set to a
# temporary directory, output directories on a tmpfs like systemd's. The
# machine's load shows in the figures: on a busy machine take the best of
# several runs. Every run is checked: exit 0, nothing on stderr, one
# drop-in per container. Prints one line:
#   generator: 50 deployments, 100 services: best B ms, median M ms (20 runs)
set -euo pipefail
cd "$(dirname "$0")/../.."

count=${1:-50}
runs=${2:-20}
bin=${LEGER_BACKUP_BIN:-target/release/leger-backup}
[[ -x $bin ]] || {
    echo "bench: $bin not found; run: cargo build --release" >&2
    exit 2
}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

work=$(mktemp -d)
# systemd's output directories are on a tmpfs (/run/user/UID/systemd/...):
# so are ours when /dev/shm is there.
outroot=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
trap 'rm -rf "$work" "$outroot"' EXIT
home=$work/home
quadlets=$home/.config/containers/systemd
active=$home/.local/share/bluebuild-quadlets/active
mkdir -p "$quadlets" "$active" "$home/.config/leger" "$work/bin"
ln -s "$bin" "$work/bin/leger-backup-user-generator"

# One deployment's files into directory $1, names prefixed with $2.
write_deployment() {
    local dir=$1 p=$2 port=$3
    mkdir -p "$dir"
    cat >"$dir/$p-web.container" <<UNIT
[Unit]
Description=$p web
Requires=$p-db.service
After=$p-db.service

[Container]
Image=localhost/busybox:latest
Exec=httpd -f -p 80 -h /www
Volume=$p-data.volume:/www
Network=$p-net.network
PublishPort=127.0.0.1:$port:80
Secret=$p-token,type=env,target=TOKEN

[Install]
WantedBy=default.target
UNIT
    cat >"$dir/$p-db.container" <<UNIT
[Container]
Image=localhost/busybox:latest
Exec=sleep infinity
Volume=$p-data.volume:/data
Volume=%h/$p-bind:/bind
Network=$p-net.network
UNIT
    printf '[Volume]\nLabel=app=%s\n' "$p" >"$dir/$p-data.volume"
    printf '[Network]\nSubnet=10.%d.%d.0/24\n' $((count / 250 + 90)) $((port % 250)) >"$dir/$p-net.network"
    printf 'TOKEN=x\n' >"$dir/$p.env"
}

for ((i = 0; i < count; i++)); do
    name=$(printf 'app%02d' "$i")
    if ((i % 2 == 0)); then
        # leger: everything in the active directory, quadlets installed.
        write_deployment "$active/$name" "$name" $((20000 + i))
        mkdir -p "$quadlets/$name"
        cp "$active/$name"/*.container "$active/$name"/*.volume "$active/$name"/*.network "$quadlets/$name/"
    else
        write_deployment "$quadlets/$name" "$name" $((20000 + i))
    fi
done
cat >"$home/.config/leger/config.yaml" <<'YAML'
# leger's own settings would be here.
auto:
  stop_timeout: 10m
YAML

expected=$((count * 2))
times=()
for ((r = 0; r < runs; r++)); do
    out=$outroot/out$r
    mkdir -p "$out/normal" "$out/early" "$out/late"
    start=$(date +%s%N)
    env -i HOME="$home" PATH=/usr/bin:/bin "$work/bin/leger-backup-user-generator" \
        "$out/normal" "$out/early" "$out/late" 2>"$work/stderr"
    end=$(date +%s%N)
    if [[ -s $work/stderr ]]; then
        echo "bench: the generator logged:" >&2
        cat "$work/stderr" >&2
        exit 1
    fi
    got=$(find "$out/normal" -name 50-leger-backup.conf | wc -l)
    if ((got != expected)); then
        echo "bench: expected $expected drop-ins, the generator wrote $got" >&2
        exit 1
    fi
    times+=($((end - start)))
    rm -rf "$out"
done

sorted=$(printf '%s\n' "${times[@]}" | sort -n)
best=$(head -n 1 <<<"$sorted")
median=$(sed -n "$(((runs + 1) / 2))p" <<<"$sorted")
ms() { awk -v ns="$1" 'BEGIN { printf "%.1f", ns / 1000000 }'; }
echo "generator: $count deployments, $expected services: best $(ms "$best") ms, median $(ms "$median") ms ($runs runs)"
