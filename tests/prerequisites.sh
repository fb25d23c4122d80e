#!/usr/bin/env bash
# Installs what `make test` needs on the host, once, before any test runs
# (tests never install anything: parallel apt-get runs race for the dpkg
# lock). Idempotent and quick when everything is there already. The
# testbed's own needs (debootstrap, systemd-nspawn, the Debian 13 root
# filesystem) are installed by `tests/testbed/testbed.sh up`.
#
#   rpm, rpm2cpio, cpio  `make rpm` and the RPM tests
#   the shellcheck tool  the lint step
#   cargo-nextest        the test runner
#   cargo-deny           licenses, sources and advisories of the crates
#   s3s-fs               the S3 server the repository tests start on loopback
#                        (built once into $S3S_FS_ROOT; see
#                        tests/integration/support/servers.rs)
set -euo pipefail

log() { printf 'prerequisites: %s\n' "$*" >&2; }

APT_PACKAGES=(rpm rpm2cpio cpio shellcheck)

apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) -eq 0 ]] || {
        log "missing ${missing[*]}: run as root, or: sudo apt-get install ${missing[*]}"
        exit 1
    }
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "${missing[@]}" >&2; then
        # Missing or stale package lists on a fresh machine.
        apt-get update -q >&2 || log "apt-get update reported errors; trying the install anyway"
        apt-get install -y -q "${missing[@]}" >&2
    fi
}

cargo_install() { # SUBCOMMAND CRATE
    cargo "$1" --version >/dev/null 2>&1 && return 0
    log "cargo install --locked $2 (once per machine; a few minutes)"
    cargo install --locked "$2" >&2
}

# s3s-fs: a small S3 server over a directory that checks signatures. Its
# build takes minutes, so it goes into a cache directory outside the
# checkout that every later run on this machine finds. The tests read the
# same path (S3S_FS_ROOT in tests/integration/support/servers.rs).
S3S_FS_VERSION=0.14.1
S3S_FS_ROOT=${LEGER_TEST_CACHE:-/var/cache/leger-backup-tests}/s3s-fs-$S3S_FS_VERSION
s3s_fs_install() {
    if [[ -x $S3S_FS_ROOT/bin/s3s-fs ]]; then
        log "s3s-fs $S3S_FS_VERSION: $S3S_FS_ROOT/bin/s3s-fs (cached)"
        return 0
    fi
    log "cargo install --locked s3s-fs@$S3S_FS_VERSION into $S3S_FS_ROOT (once per machine; about 6 minutes)"
    cargo install --locked "s3s-fs@$S3S_FS_VERSION" --features binary --root "$S3S_FS_ROOT" >&2
}

apt_install "${APT_PACKAGES[@]}"
cargo_install nextest cargo-nextest
cargo_install deny cargo-deny
s3s_fs_install
log "all there"
