//! The real binary in a private HOME: no podman or systemd needed.

mod auto;
mod backups;
mod basics;
mod generator_hostile;
mod packaging;
mod plan;
mod recovery;
