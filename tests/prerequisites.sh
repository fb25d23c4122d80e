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

apt_install "${APT_PACKAGES[@]}"
cargo_install nextest cargo-nextest
cargo_install deny cargo-deny
log "all there"
