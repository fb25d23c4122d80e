//! The one integration-test binary (as ripgrep does it).
//!
//! - `cli::*` run the real `leger-backup` binary in a [`support::TestEnv`]
//!   with its own HOME; they need neither podman nor systemd.
//! - `e2e::*` run inside the rootless Podman + Quadlet + systemd testbed
//!   (`tests/testbed/testbed.sh up`); they fail, never skip, when it is down.
//!   `make test` brings it up, runs everything, and takes it down.

mod support;

mod cli;
mod e2e;
