//! End-to-end tests in the rootless testbed (real Podman 5, Quadlet, systemd --user).

mod auto;
mod backup_restore;
mod direct_read;
mod faults;
mod file_modes;
mod host_paths;
mod hostile_restore;
mod lifecycle;
mod notify;
mod quadlet_differential;
mod repo_commands;
mod repositories;
mod reuse;
mod rpm;
mod schedules;
mod smoke;
mod system_scope;
