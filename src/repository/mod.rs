//! Off-site stores: restic repositories (S3, REST server, SFTP, a path, ...)
//! as the second kind of place a backup goes, beside the local backup
//! directory.
//!
//! Why restic: deduplication, authenticated encryption, compression and
//! every backend users ask for come with it, and a leger-backup snapshot
//! stays a plain restic snapshot that `restic`, resticprofile or Backrest
//! can list and restore without leger-backup. There is no repository
//! format of our own: we drive the `restic` binary (>= 0.17) through
//! [`crate::process`], with `--json`.
//!
//! Cut by concern:
//! - `settings` (in [`crate::config`]): `backup.targets` and
//!   `backup.repositories` as the user wrote them;
//! - [`secrets`]: the password and the env file, checked (never readable
//!   by others) and handed to restic through its environment only;
//! - [`restic`]: the one runner of the `restic` binary ([`Restic`]), behind
//!   the [`Repository`] trait so the logic is unit-tested with a fake;
//! - [`snapshot`]: what one backup is in a repository: its tags, its
//!   layout, and how to find it again without leger-backup.
//!
//! A backup in a repository is one restic snapshot whose tree holds, at
//! its root, exactly what a local backup directory holds
//! (`.backup-metadata.json`, the deployment's files), except that each
//! volume is a directory tree `volumes/NAME/` and each host path
//! `host-paths/N` (read inside the rootless user namespace, so owners are
//! those the containers see) instead of an archive.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use crate::context::Context;
use crate::error::{Error, Result};

pub mod catalog;
pub mod restic;
pub mod secrets;
pub mod settings;
pub mod snapshot;
pub mod stage;
pub mod sync;

pub use restic::Restic;
pub use snapshot::{Snapshot, SnapshotTags};

/// How restic gets the repository's password: never the password itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `password_file:` (restic's `--password-file`), checked to be private.
    File(PathBuf),
    /// `password_command:` (restic's `RESTIC_PASSWORD_COMMAND`).
    Command(String),
}

/// One entry of `backup.repositories`, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryConfig {
    /// Its name (the key under `repositories:`); never `local`.
    pub name: String,
    /// restic's repository string (`s3:...`, `rest:...`, `sftp:...`, a
    /// path). May carry credentials (`rest:https://user:pass@host/`):
    /// shown only through [`RepositoryConfig::display_url`].
    pub url: String,
    /// Where the password comes from.
    pub password: PasswordSource,
    /// `KEY=VALUE` lines for restic's environment (S3 keys, ...).
    pub env_file: Option<PathBuf>,
    /// Manual backups kept per deployment in this repository (default:
    /// `backup.keep_manual`).
    pub keep_manual: Option<usize>,
    /// Automatic backups kept per deployment (default: `backup.keep_automatic`).
    pub keep_automatic: Option<usize>,
}

impl RepositoryConfig {
    /// The URL with any `user:password@` replaced by `***@`, for messages.
    pub fn display_url(&self) -> String {
        secrets::redact_url(&self.url)
    }
}

/// The name of the local backup directory among the targets.
pub const LOCAL: &str = "local";

/// One source bound into the stage of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageBind {
    /// The directory or file as the host (or the user namespace) sees it.
    pub source: PathBuf,
    /// Where it appears in the snapshot (relative: `volumes/db`).
    pub rel: PathBuf,
}

/// What `restic backup` is asked to store as one snapshot.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    /// The snapshot's tags ([`SnapshotTags::to_tags`]).
    pub tags: Vec<String>,
    /// The directory bound at the stage's root (the pending backup:
    /// metadata and files), and the volumes and host paths under it.
    pub root: PathBuf,
    /// Volumes and host paths.
    pub binds: Vec<StageBind>,
    /// The deployment's newest snapshot, so unchanged files are not read again.
    pub parent: Option<String>,
    /// The snapshot's time (`--time`): the backup's own when `sync` sends
    /// an older local backup; `None`: now.
    pub time: Option<chrono::DateTime<chrono::Utc>>,
    /// Run inside podman's user namespace (rootless): owners as the
    /// containers see them, every file readable.
    pub in_namespace: bool,
}

/// What `restic backup` reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupSummary {
    /// The new snapshot's full ID.
    pub snapshot_id: String,
    /// Files new, changed and unmodified since the parent.
    pub files_new: u64,
    /// Files changed since the parent.
    pub files_changed: u64,
    /// Files unchanged since the parent (not read again).
    pub files_unmodified: u64,
    /// Bytes added to the repository (after deduplication and compression).
    pub data_added: u64,
    /// Bytes of all files in the snapshot.
    pub total_bytes_processed: u64,
}

/// The boundary to one restic repository: every operation leger-backup
/// needs, each one restic run. [`Restic`] runs the real binary; unit tests
/// use a fake.
pub trait Repository: Debug + Send + Sync {
    /// The repository's configured name.
    fn name(&self) -> &str;
    /// `restic init`.
    fn init(&self) -> Result<()>;
    /// `restic check [--read-data]`; its report on success.
    fn check(&self, read_data: bool) -> Result<String>;
    /// Our snapshots carrying every tag of `tags` (`leger-backup` always).
    fn snapshots(&self, tags: &[String]) -> Result<Vec<Snapshot>>;
    /// Store one snapshot.
    fn backup(&self, request: &BackupRequest) -> Result<BackupSummary>;
    /// The file at `path` (absolute inside the snapshot), at most `limit` bytes.
    fn dump(&self, snapshot: &str, path: &str, limit: u64) -> Result<Vec<u8>>;
    /// Restore the subtree `subpath` of `snapshot` ("/" for all) into the
    /// existing directory `target`, skipping `excludes` (absolute inside
    /// the snapshot); inside podman's user namespace when `in_namespace`.
    fn restore(
        &self,
        snapshot: &str,
        subpath: &str,
        target: &Path,
        excludes: &[String],
        in_namespace: bool,
    ) -> Result<()>;
    /// `restic forget` of these snapshots.
    fn forget(&self, snapshots: &[String]) -> Result<()>;
    /// `restic prune`.
    fn prune(&self) -> Result<()>;
    /// `restic unlock`: remove stale locks.
    fn unlock(&self) -> Result<()>;
}

/// The newest snapshot of `deployment` in `repo`, as the parent of the
/// next one (restic then reads only files changed since). Asked before any
/// service stops: an unreachable repository or a wrong password fails the
/// backup with no downtime.
pub fn parent_snapshot(repo: &dyn Repository, deployment: &str) -> Result<Option<String>> {
    let snapshots = repo.snapshots(&SnapshotTags::of_deployment(deployment))?;
    Ok(snapshots.into_iter().max_by_key(|s| s.time).map(|s| s.id))
}

/// How the code gets a [`Repository`] for a configured entry: the real
/// one runs restic, unit tests put a fake in [`Context::repositories`].
pub trait RepositoryOpener: Debug + Send + Sync {
    /// The repository of `config`, its secrets checked.
    fn open(&self, config: &RepositoryConfig) -> Result<Box<dyn Repository>>;
}

/// Opens [`Restic`] repositories.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResticOpener;

impl RepositoryOpener for ResticOpener {
    fn open(&self, config: &RepositoryConfig) -> Result<Box<dyn Repository>> {
        Ok(Box::new(Restic::new(config.clone())?))
    }
}

/// The configured repository `name` (not `local`), its secrets checked.
pub fn open(ctx: &Context, name: &str) -> Result<Box<dyn Repository>> {
    ctx.repositories.open(config_of(ctx, name)?)
}

/// The entry of `backup.repositories` named `name`, or an error listing
/// the configured ones.
pub fn config_of<'a>(ctx: &'a Context, name: &str) -> Result<&'a RepositoryConfig> {
    let repositories = &ctx.config.backup.repositories;
    repositories.get(name).ok_or_else(|| {
        let what = if name == LOCAL {
            "`local` is the backup directory, not a repository".to_owned()
        } else {
            format!("no repository `{name}` is configured")
        };
        Error::user(format!("{what} (in {})", ctx.config.file.display()))
            .with_hint(settings::known_names(repositories))
    })
}
