//! End-to-end tests in the rootless testbed (real Podman 5, Quadlet, systemd --user).

mod quadlet_differential;
mod smoke;
