//! leger-backup: backups and exact restores for Podman Quadlet deployments,
//! automatic around the lifecycle events of leger and systemd.
//!
//! The library holds all logic; `main.rs` only calls [`cli::main`].
//! Modules mirror the domain: [`quadlet`] (pure model of unit files),
//! [`deployment`] (where deployments live), [`podman`], [`systemd`] and
//! [`process`] (the only code that runs other programs), [`config`],
//! [`cli`] and [`ui`]; [`interrupt`] turns SIGINT/SIGTERM into a clean stop
//! and [`fault`] is the fault-injection test hook.

#![warn(missing_docs)]

pub mod auto;
pub mod backup;
pub mod cli;
pub mod config;
pub mod context;
pub mod deployment;
pub mod error;
pub mod fault;
pub mod file_lock;
pub mod host_paths;
pub mod interrupt;
pub mod layout;
pub mod names;
pub mod notify;
pub mod podman;
pub mod process;
pub mod process_identity;
pub mod quadlet;
pub mod regular_file;
pub mod repository;
pub mod systemd;
#[cfg(test)]
pub(crate) mod testing;
pub mod ui;

pub use error::{Error, ErrorKind, Result};
