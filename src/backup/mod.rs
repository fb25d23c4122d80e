//! Backups: the archive format, the backup directory ("repository"),
//! creating, verifying, pruning and restoring. Cut as restic does it:
//! [`archive`] streams bytes, [`store`] owns the directory, [`create`] and
//! [`restore`] orchestrate podman and systemd around them, [`verify`] checks.

pub mod archive;
pub mod create;
pub mod files;
pub mod interrupted;
pub mod journal;
pub mod lock;
pub mod metadata;
pub mod progress;
pub mod prune;
pub mod restore;
pub(crate) mod reuse;
pub mod services;
pub mod store;
pub mod tar_guard;
pub mod tree_writer;
pub(crate) mod trust;
pub mod verify;
pub mod volume_reader;
