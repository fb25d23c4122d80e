//! The clap definitions: every flag documented once, here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::layout::Scope;

/// Backups and exact restores for Podman Quadlet deployments.
///
/// A backup holds a deployment's files (leger's active directory and the
/// installed quadlet files) and the data of every Podman volume they use.
/// Backups are taken by hand, when a deployment's services stop, and before
/// leger removes or updates a deployment.
#[derive(Debug, Parser)]
#[command(
    name = "leger-backup",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options valid for every command.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Print data as JSON on stdout (messages stay on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Work on the calling user's rootless deployments and `systemctl --user` (default).
    #[arg(long, global = true, conflicts_with = "system")]
    pub user: bool,
    /// Work on root's deployments (`/etc/containers/systemd`) and the system manager.
    #[arg(long, global = true)]
    pub system: bool,
}

impl GlobalArgs {
    /// The scope chosen.
    pub fn scope(&self) -> Scope {
        if self.system {
            Scope::System
        } else {
            Scope::User
        }
    }
}

/// The command tree.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up a deployment: its files and the data of all its volumes.
    Create(CreateArgs),
    /// List backups, newest first.
    List(ListArgs),
    /// Show everything recorded about one backup.
    Info(InfoArgs),
    /// Recompute checksums and read every archive to its end.
    Verify(VerifyArgs),
    /// Put a deployment back exactly as a backup recorded it.
    Restore(RestoreArgs),
    /// Delete one backup.
    Delete(DeleteArgs),
    /// Delete old backups, keeping the newest per deployment and class.
    Prune(PruneArgs),
    /// Show what a backup of a deployment would capture, touching nothing.
    Plan(PlanArgs),
    /// Turn on automatic backups (stop hooks) for deployments.
    Enable(SelectArgs),
    /// Turn off automatic backups for deployments.
    Disable(SelectArgs),
    /// Show automatic-backup state, last backups and pending recoveries.
    Status,
    /// Roll back a restore that was interrupted.
    Recover(RecoverArgs),
    /// Set up, check and list the restic repositories of `backup.repositories`.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Copy local backups a repository lacks into it (after it was unreachable).
    Sync(SyncArgs),
    /// Show leger-backup's settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
    /// Entry point of the ExecStopPost= drop-in (internal).
    #[command(hide = true)]
    StopHook(StopHookArgs),
    /// Entry point of the leger hooks (internal).
    #[command(hide = true)]
    LegerHook(LegerHookArgs),
    /// Entry point of `leger-backup-scheduled@NAME.service` (internal).
    #[command(hide = true)]
    Scheduled {
        /// The deployment whose timer elapsed.
        deployment: String,
    },
    /// Entry point of `leger-backup-cleanup.service`, which the generator
    /// writes: clean up after backups a shutdown cut off (internal).
    #[command(hide = true)]
    Cleanup,
    /// Entry point of the systemd generator (internal).
    #[command(hide = true)]
    Generator(GeneratorArgs),
    /// Write the tar of a volume's directory to stdout (internal: `create`
    /// runs it inside podman's user namespace).
    #[command(hide = true)]
    VolumeTar(VolumeTarArgs),
    /// Write a tar read from stdin into a directory or a file, exactly
    /// (internal: `restore` runs it inside podman's user namespace).
    #[command(hide = true)]
    TreeWrite(TreeWriteArgs),
    /// Bind a backup's sources into one directory and run restic there, in
    /// a mount namespace of its own (internal: `create --to REPO` runs it
    /// inside podman's user namespace).
    #[command(hide = true)]
    Stage(StageArgs),
}

/// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Deployment to back up (default: the only one).
    pub name: Option<String>,
    /// Why; `before-*`, `pre-*` and `on-*` reasons make the backup automatic.
    #[arg(long, default_value = "manual")]
    pub reason: String,
    /// Do not stop the services while exporting volumes (not crash-consistent).
    #[arg(long)]
    pub live: bool,
    /// Seconds to wait for another backup of the same deployment to finish.
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
    /// Where the backup goes: `local` (the backup directory) or a repository
    /// of `backup.repositories`; repeatable (default: `backup.targets`).
    #[arg(long, value_name = "REPO")]
    pub to: Vec<String>,
    /// Notify `backup.notify` (webhook, ntfy, Healthchecks) as automatic
    /// backups do.
    #[arg(long)]
    pub notify: bool,
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only backups of this deployment.
    #[arg(long)]
    pub deployment: Option<String>,
    /// List the snapshots of this repository instead of the local backups.
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,
}

/// `info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The backup ID (`<deployment>-YYYY-MM-DD-HHMMSS`).
    pub id: String,
    /// The backup is in this repository, not in the backup directory.
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,
}

/// A backup ID.
#[derive(Debug, Args)]
pub struct IdArg {
    /// The backup ID (`<deployment>-YYYY-MM-DD-HHMMSS`).
    pub id: String,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The backup to verify.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<String>,
    /// Verify every backup.
    #[arg(long)]
    pub all: bool,
    /// The backup is in this repository, not in the backup directory.
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,
}

/// `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup to restore.
    pub id: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Replace what belongs to no deployment or to another one: volumes
    /// another deployment's quadlet files use too, and files in the way that
    /// no deployment owns (kept in the safety backup); and import into
    /// volumes whose .volume file mounts a host path or device (Device=) or
    /// uses another driver. Does not skip the question (that is --yes), nor
    /// the checks of the backup itself.
    #[arg(long)]
    pub force: bool,
    /// Leave the services stopped afterwards.
    #[arg(long)]
    pub no_start: bool,
    /// Restore from this repository of `backup.repositories` (works on a
    /// machine with nothing but the config entry and its secrets).
    #[arg(long, value_name = "REPO")]
    pub from: Option<String>,
}

/// `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The backup to delete.
    pub id: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// The backup is in this repository, not in the backup directory.
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,
}

/// `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only this deployment.
    #[arg(long)]
    pub deployment: Option<String>,
    /// Manual backups to keep per deployment (default from config: 5).
    #[arg(long)]
    pub keep_manual: Option<usize>,
    /// Automatic backups to keep per deployment, other than before-change
    /// ones (default from config: 10).
    #[arg(long)]
    pub keep_automatic: Option<usize>,
    /// Backups taken before a change (before-remove, before-apply,
    /// pre-restore) to keep per deployment (default from config: 5).
    #[arg(long)]
    pub keep_before_change: Option<usize>,
    /// Show what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Prune this repository (by its `keep_*` settings, `restic forget`
    /// and `restic prune`) instead of the backup directory.
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,
}

/// `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Deployment to plan (default: the only one; with --quadlet-dir: the directory's name).
    pub name: Option<String>,
    /// Plan for a directory of quadlet files that is not installed.
    #[arg(long, value_name = "DIR")]
    pub quadlet_dir: Option<PathBuf>,
}

/// `enable` / `disable`.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// The deployment.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Every deployment.
    #[arg(long)]
    pub all: bool,
}

/// `recover`.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `repo`.
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create the repository NAME of `backup.repositories` (`restic init`).
    Init {
        /// The repository's name in the config.
        name: String,
    },
    /// Check the repository's structure (`restic check`).
    Check {
        /// The repository's name in the config.
        name: String,
        /// Read all data too, not only the structure (slow: downloads everything).
        #[arg(long)]
        read_data: bool,
    },
    /// The configured repositories: reachable or not, how many snapshots.
    List,
}

/// `sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Only this repository (default: every repository of `backup.targets`).
    #[arg(long, value_name = "REPO")]
    pub to: Vec<String>,
}

/// `config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print effective settings and where each came from.
    Show,
}

/// `stop-hook` (from the ExecStopPost= drop-in).
#[derive(Debug, Args)]
pub struct StopHookArgs {
    /// The deployment whose service stopped.
    #[arg(long)]
    pub deployment: String,
    /// The unit that stopped (`%n`).
    #[arg(long)]
    pub unit: String,
}

/// `leger-hook` (from leger's hook directories).
#[derive(Debug, Args)]
pub struct LegerHookArgs {
    /// `pre-remove`, `pre-apply` or `post-apply`.
    pub event: String,
    /// The deployment.
    pub deployment: String,
}

/// `generator` (systemd generator protocol).
#[derive(Debug, Args)]
pub struct GeneratorArgs {
    /// Normal output directory.
    pub normal_dir: Option<PathBuf>,
    /// Early output directory.
    pub early_dir: Option<PathBuf>,
    /// Late output directory.
    pub late_dir: Option<PathBuf>,
}

/// `volume-tar` (run by `create`).
#[derive(Debug, Args)]
pub struct VolumeTarArgs {
    /// The volume's directory (its mountpoint), or with `--host` a host
    /// path (a directory or a regular file).
    pub dir: PathBuf,
    /// Read a host path: POSIX ACLs recorded too, a single file allowed.
    #[arg(long)]
    pub host: bool,
}

/// `tree-write` (run by `restore`).
#[derive(Debug, Args)]
pub struct TreeWriteArgs {
    /// The empty directory to write into (made by the caller), or with
    /// `--file` the path of the file to make (it must not exist).
    pub dest: PathBuf,
    /// The tar holds one regular file, written to DEST.
    #[arg(long)]
    pub file: bool,
}

/// `stage` (run by `create --to REPO`).
#[derive(Debug, Args)]
pub struct StageArgs {
    /// The empty directory the sources are bound into (a tmpfs is mounted
    /// on it first, in the private mount namespace).
    #[arg(long)]
    pub stage: PathBuf,
    /// `SOURCE=REL`: bind SOURCE (a directory or a file) at REL inside the stage.
    #[arg(long = "bind", value_name = "SOURCE=REL")]
    pub binds: Vec<String>,
    /// `PID START`: stop the command when that process (the leger-backup
    /// that asked for the snapshot) is gone, so that a killed backup leaves
    /// no snapshot taken of a directory being cleaned up.
    #[arg(long, value_name = "PID START")]
    pub watch: Option<String>,
    /// The program to run in the stage, and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<std::ffi::OsString>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
