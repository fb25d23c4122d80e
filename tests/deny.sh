#!/usr/bin/env bash
# cargo deny over the project's crates: licences, sources and bans always;
# security and maintenance advisories when the RustSec database can be had.
# The database is a git repository outside the package registries, which CI
# machines here cannot reach: then the run says so plainly (never a silent
# pass) and checks against a copy from an earlier run if there is one.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo deny --locked check licenses sources bans

db_dir=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs
if cargo deny --locked check advisories 2>/tmp/leger-deny-advisories.log; then
    exit 0
fi
if grep -qiE 'failed to fetch advisory database' /tmp/leger-deny-advisories.log; then
    if compgen -G "$db_dir/advisory-db-*/crates" >/dev/null; then
        echo "deny: the advisory database could not be fetched; checking against the copy in $db_dir" >&2
        exec cargo deny --locked --offline check advisories
    fi
    echo "deny: WARNING: advisories NOT checked: the RustSec advisory database cannot be fetched from this machine" >&2
    exit 0
fi
cat /tmp/leger-deny-advisories.log >&2
exit 1
