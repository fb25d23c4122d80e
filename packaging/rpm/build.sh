#!/usr/bin/env bash
# packaging/rpm/build.sh - build the leger-backup RPM into target/rpm/ (`make rpm`).
#
# Uses rpmbuild (Debian's `rpm` package on Debian; installed with apt-get when
# missing and running as root) with --nodeps, since cargo comes from rustup
# here rather than from an RPM. The source tarball is made from the checkout
# as it is on disk (tracked and untracked files, not ignored ones), so
# uncommitted work is packaged too. cargo builds into the checkout's target/
# (or $CARGO_TARGET_DIR): an existing release build is reused.
#
# Prints the path of the built RPM as the last line on stdout; everything
# else goes to stderr.
#
# Environment:
#   CARGO_TARGET_DIR     cargo's target directory (default <checkout>/target)
#   LEGER_RPM_OUT        output directory (default <checkout>/target/rpm)
#   LEGER_RPM_KEEP_TOPDIR=1  keep the temporary rpmbuild _topdir (for debugging)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SPEC=$REPO/packaging/rpm/leger-backup.spec
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
OUT=${LEGER_RPM_OUT:-$REPO/target/rpm}

log() { printf 'rpm: %s\n' "$*" >&2; }
die() {
    printf 'rpm: error: %s\n' "$*" >&2
    exit 1
}

# rpmbuild, rpmspec and rpm2cpio come with Debian's `rpm`; cpio is separate
# (the end-to-end test unpacks the package with rpm2cpio | cpio).
ensure_tools() {
    local missing=()
    command -v rpmbuild >/dev/null || missing+=(rpm)
    command -v rpm2cpio >/dev/null || missing+=(rpm2cpio)
    command -v cpio >/dev/null || missing+=(cpio)
    ((${#missing[@]} == 0)) && return 0
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        die "missing ${missing[*]}: install rpmbuild (Debian: apt-get install rpm cpio; Fedora: dnf install rpm-build cpio)"
    fi
    log "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y "${missing[@]}" >&2; then
        # Missing or stale package lists on a fresh machine.
        apt-get update >&2 || log "apt-get update reported errors; trying the install anyway"
        apt-get install -y "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
    fi
}

# cargo from rustup lives in ~/.cargo/bin, which a non-login shell may lack.
ensure_cargo() {
    command -v cargo >/dev/null && return 0
    [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]] && export PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
    command -v cargo >/dev/null || die "cargo not found (install Rust: https://rustup.rs)"
}

# The version in the spec must be the crate's.
check_version() {
    local crate spec
    crate=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n 1)
    spec=$(sed -n 's/^Version:[[:space:]]*//p' "$SPEC" | head -n 1)
    [[ -n $crate && $crate == "$spec" ]] ||
        die "Version: in $SPEC is '$spec' but Cargo.toml says '$crate'"
    VERSION=$crate
}

# NAME-VERSION.tar.gz of the checkout, with top directory NAME-VERSION/.
make_tarball() {
    local dest=$1 prefix=leger-backup-$VERSION
    # S: never rewrite symlink targets (the generator links are relative).
    local -a tar_opts=(--transform "s,^\./,,S" --transform "s,^,$prefix/,S"
        --owner=0 --group=0 --numeric-owner)
    if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # Files git knows plus untracked ones it does not ignore (target/ is
        # ignored); tracked files deleted on disk are left out.
        (cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' f; do
                [[ -e $f || -L $f ]] && printf '%s\0' "$f"
            done | tar -czf "$dest" "${tar_opts[@]}" --no-recursion --null -T -)
    else
        tar -czf "$dest" "${tar_opts[@]}" -C "$REPO" --exclude=./target --exclude=./.git .
    fi
}

main() {
    local t0=$SECONDS
    ensure_tools
    ensure_cargo
    check_version
    mkdir -p "$OUT" "$TARGET_DIR"
    # One build at a time per output directory (tests may run two at once).
    exec 9>"$OUT/.build.lock"
    flock 9

    local topdir
    topdir=$(mktemp -d "${TMPDIR:-/tmp}/leger-rpm.XXXXXX")
    if [[ ${LEGER_RPM_KEEP_TOPDIR:-} == 1 ]]; then
        log "keeping $topdir"
    else
        # shellcheck disable=SC2064
        trap "rm -rf '$topdir'" EXIT
    fi
    mkdir -p "$topdir"/{SOURCES,BUILD,RPMS,SRPMS,SPECS}
    make_tarball "$topdir/SOURCES/leger-backup-$VERSION.tar.gz"

    log "rpmbuild -bb $SPEC (cargo target dir $TARGET_DIR)"
    rpmbuild -bb --nodeps \
        --define "_topdir $topdir" \
        --define "_rpmdir $topdir/RPMS" \
        --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
        --define "leger_cargo_target_dir $TARGET_DIR" \
        "$SPEC" >&2

    local built name
    built=$(find "$topdir/RPMS" -name 'leger-backup-*.rpm' | head -n 1)
    [[ -n $built ]] || die "rpmbuild made no package"
    name=$(basename "$built")
    # Replace atomically; drop packages of other versions.
    cp "$built" "$OUT/.$name.tmp"
    mv -f "$OUT/.$name.tmp" "$OUT/$name"
    find "$OUT" -maxdepth 1 -name 'leger-backup-*.rpm' ! -name "$name" -delete
    log "built $OUT/$name in $((SECONDS - t0)) s"
    echo "$OUT/$name"
}

main "$@"
