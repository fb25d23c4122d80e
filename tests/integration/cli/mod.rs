//! The real binary in a private HOME: no podman or systemd needed.

mod basics;
mod plan;
