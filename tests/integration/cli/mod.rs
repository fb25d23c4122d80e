//! The real binary in a private HOME: no podman or systemd needed.
