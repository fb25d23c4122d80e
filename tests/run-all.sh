#!/usr/bin/env bash
# Runs every test the project has, the way CI does (`make test`, `.ci/run`):
# lint, release build, testbed up, the whole nextest suite (unit, CLI and
# end-to-end tests in one run), testbed down. The output ends with nextest's
# summary line; the exit status is non-zero when anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "prerequisites (installed once, before any test runs)"
tests/prerequisites.sh

step "lint: cargo fmt --check, cargo clippy -D warnings, shellcheck, cargo deny"
make --no-print-directory lint

step "build (release, installed into the testbed)"
cargo build --release --locked
cargo nextest run --locked --no-run

step "testbed up"
# Take it down afterwards only if this run brought it up (CI always does).
was_up=false
tests/testbed/testbed.sh status >/dev/null 2>&1 && was_up=true
$was_up || trap 'tests/testbed/testbed.sh down' EXIT
tests/testbed/testbed.sh up

step "tests: unit, CLI, end-to-end"
status=0
cargo nextest run --locked --no-fail-fast 2>&1 | tee target/nextest.log || status=$?

if ! $was_up; then
    step "testbed down"
    trap - EXIT
    tests/testbed/testbed.sh down
fi

# The runner's own summary closes the output.
step "summary"
grep -E '^ *Summary ' target/nextest.log | tail -n 1 || echo "nextest printed no summary"
exit "$status"
