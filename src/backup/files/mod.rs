//! A deployment's files in a backup: copied in with their checksums and
//! modes, put back exactly where they were installed.
//!
//! "Exactly" means: every file of the backup is written with its recorded
//! content, mode (and symlink target), every directory the backup records
//! gets its mode back (empty ones too), and every file of the deployment that
//! is not in the backup is removed, so a restore never leaves a stale unit
//! behind for systemd's generator to pick up. Modes are permission bits only:
//! setuid, setgid and sticky are neither recorded nor restored.
//!
//! Inside the backup each file keeps its relative path, as in leger's own
//! backups; a copy installed under the Quadlet directory that equals the
//! active directory's copy is stored once. Paths that would collide with the
//! backup's own entries (`volumes/`, the metadata) go under `.active/` or
//! `.installed/`.
//!
//! The module is cut by concern: `copy_in` copies a deployment's files into
//! a backup, `dirs` records its directories' modes, `plan` works out what a
//! restore will write and remove, `apply` carries that out, `legacy` reads
//! the files of a backup written by leger's Go implementation, and `hash`
//! checksums files for all of them.

mod apply;
mod copy_in;
mod dirs;
mod hash;
mod legacy;
mod plan;

pub use apply::{apply, remove_empty_roots};
pub use copy_in::{copy_into_backup, quadlet_files};
pub use dirs::record_dirs;
pub(crate) use hash::hash_bytes;
pub use hash::hash_file;
pub use legacy::legacy_entries;
pub use plan::{current_files, plan_restore, FilesPlan, PlannedDir, Roots};

/// The mode bits a deployment's files and directories are recorded and
/// restored with. setuid, setgid and sticky never are: a unit file or a
/// config has no use for them, and a backup handed over by someone else must
/// not plant a setuid program in the user's home.
const PERMISSION_BITS: u32 = 0o777;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
