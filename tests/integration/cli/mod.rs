//! The real binary in a private HOME: no podman or systemd needed.

mod auto;
mod backups;
mod basics;
mod escapes;
mod file_modes;
mod generator_hostile;
mod host_paths;
mod hostile_archives;
mod hostile_metadata;
mod notify;
mod packaging;
mod plan;
mod plan_host_paths;
mod recovery;
mod repositories;
mod retention;
mod reuse;
mod schedules;
mod stage;
mod tree_write;
mod volume_reader;
