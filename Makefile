# leger-backup: the two commands the README starts with are `make demo` (the
# main job) and `make test` (everything CI runs). Both need root for the
# testbed (a rootless Podman 5 + systemd user manager in systemd-nspawn).

CARGO ?= cargo
TESTBED := tests/testbed/testbed.sh

.PHONY: all build test unit lint demo testbed-up testbed-down rpm clean

all: build

build:
	$(CARGO) build --release --locked

## Everything: lint, build, unit + CLI tests, testbed up, end-to-end tests, testbed down.
test:
	tests/run-all.sh

## Unit and CLI tests only (no podman, no systemd, no root; not the test
## servers' own tests, which need the testbed's root filesystem and s3s-fs).
unit:
	$(CARGO) nextest run --locked -E 'not test(/^e2e::/) and not test(/^cli::packaging::/) and not test(/^support::servers::/)'

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	shellcheck -S warning hooks/*/* tests/*.sh tests/testbed/*.sh tests/bench/*.sh \
		packaging/rpm/build.sh tests/support/leger-sim .ci/run
	tests/deny.sh

## The main job, for real, in the testbed: install the bundled example, back it up, break it, restore it.
demo: build
	tests/demo.sh

testbed-up: build
	$(TESTBED) up

testbed-down:
	$(TESTBED) down

## The RPM for Fedora Atomic / BlueBuild images, into target/rpm/ (packaging/README.md).
rpm:
	packaging/rpm/build.sh

clean:
	$(CARGO) clean
