//! `restore`: put a deployment back exactly as a backup recorded it — or, if
//! anything goes wrong on the way, leave it as it was before.
//!
//! The steps (numbered as in the design):
//! 1. load and fully verify the backup: a damaged one is refused before
//!    anything live is touched;
//! 2. show the plan and confirm;
//! 3. refuse when a container outside the deployment uses one of its volumes;
//! 4. take a safety backup of the current state (through the same code path
//!    as `create`), with the services already stopped;
//! 5. put the files back exactly, `daemon-reload`;
//! 6. each volume: remove, recreate, import, restore the root's mode/owner;
//! 7. start the services that ran at backup time and wait until active.
//!
//! Steps 5-7 are [`put_back`]; a failure there runs [`put_back`] again with
//! the safety backup (the rollback uses the very same code), so the state
//! before the restore comes back, or the user is told exactly what to do.
//!
//! Each step is recorded in the operation journal before it begins
//! ([`crate::backup::journal`]). A restore killed half-way is not guessed
//! at: `leger-backup recover` ([`recover`]) puts the safety backup back
//! through the same `put_back`. SIGINT/SIGTERM stop a restore at the next
//! safe point: before anything was replaced it just ends (services started
//! again), after that it rolls back like any other failure.

mod aside;
mod checks;
mod from_repository;
mod host_paths;
mod import;
mod plan;
mod put_back;
mod recover;
mod roll_back;
mod safety;
mod target;

use checks::*;
use from_repository::*;
pub use from_repository::{fetch, find_snapshot, Fetched};
use host_paths::*;
use import::*;
use plan::*;
pub(crate) use put_back::unpack_archive;
use put_back::*;
pub use recover::{recover, RecoverOutcome, RecoverReport};
use roll_back::*;
use safety::*;
use target::*;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backup::archive;
use crate::backup::create::{self, CreateOptions, Progress, Subject, VolumeSpec};
use crate::backup::files::{self, Roots};
use crate::backup::journal::{Journal, Operation, Record, Safety, Step};
use crate::backup::lock::DeploymentLock;
use crate::backup::metadata::{FileEntry, Installation, Metadata, VolumeEntry};
use crate::backup::services::{self, ServiceGuard};
use crate::backup::store::{validate_id, BackupStore, StoredBackup};
use crate::backup::tar_guard::{self, Specials, TarGuard};
use crate::backup::trust;
use crate::backup::verify;
use crate::context::Context;
use crate::deployment::{self, Deployment, DeploymentFile};
use crate::error::{Error, ErrorKind, Result};
use crate::fault;
use crate::interrupt;
use crate::layout::Scope;
use crate::podman::VolumeInfo;
use crate::quadlet::Resolution;
use crate::ui;

/// How `restore` runs.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Leave the services stopped afterwards.
    pub no_start: bool,
    /// Replace volumes other deployments' quadlet files use too, and files
    /// in the restore's way that belong to no deployment (`--force`; those
    /// files go into the safety backup).
    pub force: bool,
}

/// What a successful restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    /// The backup restored.
    pub id: String,
    /// Its deployment.
    pub deployment: String,
    /// The safety backup of the state before: the undo.
    pub safety_backup: Option<String>,
    /// Services started and active afterwards.
    pub started: Vec<String>,
    /// Secrets the units require that do not exist.
    pub missing_secrets: Vec<String>,
    /// Whether the backup was written by leger's Go implementation (nothing
    /// could be verified).
    pub legacy: bool,
    /// Seconds the deployment's services were down (from stopping the ones
    /// that ran to the restored ones being active); `None` when none ran.
    pub downtime_seconds: Option<f64>,
}

/// Whether a backup is of a leger deployment (active directory + installed
/// quadlets) rather than a plain Quadlet directory. leger's own backups are.
fn is_leger(metadata: &Metadata) -> bool {
    match &metadata.installation {
        Some(i) => i.active_dir.is_some() || i.installed_from_active,
        None => true,
    }
}

/// Where the files of `metadata`'s deployment go on this machine: derived
/// from the current layout (not from the recorded absolute paths, which may
/// belong to another HOME), in the recorded form.
fn roots_for(ctx: &Context, metadata: &Metadata) -> Roots {
    let name = &metadata.deployment_name;
    if is_leger(metadata) {
        Roots {
            active: Some(ctx.layout.active_dir_of(name)),
            installed: ctx.layout.quadlet_dir.clone(),
        }
    } else {
        Roots {
            active: None,
            installed: ctx.layout.quadlet_dir.join(name),
        }
    }
}

/// The deployment called `name` as installed now, if it is.
fn current_deployment(ctx: &Context, name: &str) -> Result<Option<Deployment>> {
    deployment::lookup(&ctx.layout, name)
}

/// A restore checked and ready (step 1), for the caller to show and
/// confirm (step 2) before [`execute`] changes anything.
pub struct RestorePlan {
    target: Target,
    in_the_way: Vec<DeploymentFile>,
    /// `--force` let it replace data other deployments use: their current
    /// data is kept in a full safety backup that stays (no move aside).
    forced_shared: bool,
    started: Instant,
    /// What the restore will do, line by line.
    pub lines: Vec<String>,
    /// The question to ask before [`execute`].
    pub question: String,
    /// A backup fetched from a repository: its pending directory, removed
    /// when the plan is done with.
    fetched: Option<crate::backup::store::PendingBackup>,
}

/// Restore backup `id` without asking: [`prepare`], then [`execute`].
pub fn restore(
    ctx: &Context,
    store: &BackupStore,
    id: &str,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreOutcome> {
    let plan = prepare(ctx, store, id, opts, progress)?;
    execute(ctx, store, plan, opts, progress)
}

/// Step 1: load backup `id` and check everything that can be checked
/// before any command runs: scope, every name it acts on against its own
/// quadlet files (or the deployment installed now), every checksum and
/// archive, what it would replace that is not its deployment's. Then
/// podman and systemd are asked (read-only) what exists and runs, for the
/// plan's lines. Changes nothing.
pub fn prepare(
    ctx: &Context,
    store: &BackupStore,
    id: &str,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestorePlan> {
    validate_id(id)?;
    let started = Instant::now();
    let backup = store.load(id)?;
    prepare_backup(ctx, backup, None, opts, progress, started)
}

/// [`prepare`] for backup `id` in a repository: its metadata and files are
/// fetched into the backup directory ([`fetch`]) and checked the same way;
/// the volumes' data is read from the snapshot by [`execute`].
pub fn prepare_from(
    ctx: &Context,
    store: &BackupStore,
    repo: std::sync::Arc<dyn crate::repository::Repository>,
    id: &str,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestorePlan> {
    let started = Instant::now();
    let fetched = fetch(store, repo, id, progress)?;
    let mut plan = prepare_backup(
        ctx,
        fetched.backup,
        Some(fetched.trees),
        opts,
        progress,
        started,
    )?;
    plan.fetched = Some(fetched.pending);
    Ok(plan)
}

/// The checks of [`prepare`] on a loaded `backup`; `trees` when its data
/// is a repository's snapshot.
fn prepare_backup(
    ctx: &Context,
    backup: StoredBackup,
    trees: Option<Trees>,
    opts: &RestoreOptions,
    progress: &Progress,
    started: Instant,
) -> Result<RestorePlan> {
    let id = backup.metadata.id.clone();
    check_restorable(ctx, &backup.metadata)?;
    check_trees(&backup.metadata, trees.is_some())?;
    let excluded = check_host_paths(ctx, &backup.metadata)?;
    let name = backup.metadata.deployment_name.clone();
    let mut target = Target::of(backup.clone())?;
    target.trees = trees;
    for path in &excluded {
        progress.warn(format!(
            "host path {path} is excluded by the configuration now: left as it is"
        ));
    }
    target
        .backup
        .metadata
        .host_paths
        .retain(|h| !excluded.contains(&h.path));
    let current = current_deployment(ctx, &name)?;
    let outside_storage = check_trusted(ctx, &target, current.as_ref())?;
    progress.step(format!("verifying {id}"));
    verify_backup(&backup, progress)?;
    check_volumes_outside_storage(&name, &outside_storage, opts.force, progress)?;
    let (in_the_way, forced_shared) = check_in_the_way(ctx, &target, opts.force, progress)?;
    let lines = plan_lines(ctx, &target, current.as_ref(), true)?;
    Ok(RestorePlan {
        target,
        in_the_way,
        forced_shared,
        started,
        lines,
        question: format!("Replace the current state of {name} with backup {id}?"),
        fetched: None,
    })
}

/// A backup whose volumes or host paths are a repository's trees is
/// restored only from that repository (a local backup claiming trees is
/// refused before anything runs).
fn check_trees(metadata: &Metadata, from_repository: bool) -> Result<()> {
    let trees = metadata.volumes.iter().any(|v| v.tree.is_some())
        || metadata.host_paths.iter().any(|h| h.tree.is_some());
    if trees && !from_repository {
        return Err(Error::user(format!(
            "backup {} records its data as a repository's trees, but it is not in one",
            metadata.id
        ))
        .with_hint("the backup is damaged or hostile; restore another one"));
    }
    Ok(())
}

/// A backup of this scope, and not the safety backup of an unfinished
/// restore (whose volumes' data is not in it).
fn check_restorable(ctx: &Context, metadata: &Metadata) -> Result<()> {
    let id = &metadata.id;
    if let Some(scope) = metadata.scope {
        if scope != ctx.layout.scope {
            return Err(Error::user(format!(
                "backup {id} was taken in {} scope, this is {} scope",
                scope.as_str(),
                ctx.layout.scope.as_str()
            ))
            .with_hint(format!(
                "run `leger-backup --{} restore {id}`",
                scope.as_str()
            )));
        }
    }
    let held: Vec<&str> = metadata
        .volumes
        .iter()
        .filter(|v| v.held_aside)
        .map(|v| v.name.as_str())
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    Err(Error::user(format!(
        "backup {id} is the safety backup of an unfinished restore: the data of {} was moved \
         aside, not into it",
        held.join(", ")
    ))
    .with_hint(recover_hint(ctx.layout.scope, "puts that state back")))
}

/// Steps 3-8 of a confirmed `plan`: stop the services, keep the current
/// state (volumes moved aside, the rest in a safety backup), put the backup
/// back, and roll back if that fails. No questions.
pub fn execute(
    ctx: &Context,
    store: &BackupStore,
    plan: RestorePlan,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreOutcome> {
    let metadata = plan.target.metadata();
    let (id, name) = (metadata.id.as_str(), metadata.deployment_name.as_str());
    let _lock = DeploymentLock::acquire(&ctx.layout.state_dir, name, Duration::ZERO)?;
    // A journal a dead run left for this deployment is dealt with first.
    crate::backup::interrupted::before_restore(ctx, name)?;
    // Declared after the lock, so it is removed before the lock is released.
    // While it lives it also keeps the stop hooks of the services stopped
    // below from backing up a half-restored deployment (see `auto::own_operation`).
    let mut journal = Journal::begin(
        &ctx.layout.state_dir,
        name,
        Operation::Restore,
        store.dir(),
        true,
    )?;
    journal.update(|r| r.backup_id = Some(id.to_owned()))?;
    interrupt::install()?;
    // The deployment may have changed while the question was open.
    let current = current_deployment(ctx, name)?;
    let subject = safety_subject(ctx, metadata, current.as_ref(), &plan.in_the_way, progress)?;
    let own = own_services(ctx, metadata, &subject)?;

    let down_since = Instant::now();
    let (running, guard) = stop_services(ctx, id, own, progress, &mut journal)?;

    let kept = keep_current_state(
        ctx,
        store,
        &plan,
        current.is_some(),
        &subject,
        &running,
        progress,
        &mut journal,
    )?;
    // From here on put_back (or the rollback) decides what runs.
    guard.hand_over();
    journal.update_restore(|_, restore| restore.touched = true)?;
    let start = Start::after_restore(opts, current.is_some());
    let started_units = match replace(
        ctx,
        store,
        &plan.target,
        &kept,
        start,
        progress,
        &mut journal,
    ) {
        Ok(units) => units,
        Err(err) => {
            if journal
                .record()
                .restore()
                .is_some_and(|r| r.rollback_failed.is_some())
            {
                // `recover` retries the rollback; `status` shows it.
                journal.keep();
            }
            return Err(err);
        }
    };
    let downtime = (!running.is_empty()).then(|| down_since.elapsed().as_secs_f64());
    let safety = drop_or_keep_safety(ctx, store, kept, progress, &mut journal);
    outcome(ctx, &plan, safety, started_units, downtime, progress)
}

/// The safety backup the user keeps after a successful restore: none when
/// it only held the rest of volumes moved aside (both are dropped now, the
/// services being up); else it stays, as the printed undo.
fn drop_or_keep_safety(
    ctx: &Context,
    store: &BackupStore,
    kept: Kept,
    progress: &Progress,
    journal: &mut Journal,
) -> Option<String> {
    match kept.safety {
        Some(safety) if !kept.held.is_empty() => {
            drop_held(ctx, store, &safety, progress, journal);
            None
        }
        safety => safety,
    }
}

/// The end of a successful restore of `plan`: what it did, in the one line
/// of progress and in the outcome the CLI prints, with the secrets the
/// restored units lack (backups never hold their values).
fn outcome(
    ctx: &Context,
    plan: &RestorePlan,
    safety_backup: Option<String>,
    started: Vec<String>,
    downtime: Option<f64>,
    progress: &Progress,
) -> Result<RestoreOutcome> {
    let metadata = plan.target.metadata();
    let missing_secrets = missing_secrets(ctx, metadata, progress)?;
    progress.step(format!(
        "restored {} in {:.1} s{}",
        metadata.id,
        plan.started.elapsed().as_secs_f64(),
        match downtime {
            Some(d) => format!(", services down {d:.1} s"),
            None => String::new(),
        }
    ));
    Ok(RestoreOutcome {
        id: metadata.id.clone(),
        deployment: metadata.deployment_name.clone(),
        safety_backup,
        started,
        missing_secrets,
        legacy: metadata.is_legacy(),
        downtime_seconds: downtime,
    })
}

/// Stop the deployment's services that run (`own`); they stay down while
/// the current state is kept (consistent, and one downtime instead of
/// two). The guard starts them again unless handed over.
fn stop_services<'a>(
    ctx: &'a Context,
    id: &str,
    own: BTreeSet<String>,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<(BTreeSet<String>, ServiceGuard<'a>)> {
    let units: Vec<String> = own.into_iter().collect();
    let running = services::running_services(&*ctx.systemctl, &units)?;
    interrupt::check().map_err(|e| nothing_changed(id, e))?;
    journal.update(|r| {
        r.stopped = running.iter().cloned().collect();
        r.step = Step::StoppingServices;
    })?;
    let mut guard = ServiceGuard::new(&*ctx.systemctl, running.iter().cloned().collect());
    guard.stop(progress)?;
    Ok((running, guard))
}

/// Step 3: the services of the deployment (now, in the backup, and those
/// mounting its volumes); refused when a container of another deployment
/// uses a volume the restore replaces.
fn own_services(ctx: &Context, metadata: &Metadata, subject: &Subject) -> Result<BTreeSet<String>> {
    let mut own: BTreeSet<String> = subject.services.iter().cloned().collect();
    own.extend(metadata.services.iter().map(|s| s.name.clone()));
    for volume in &subject.volumes {
        own.extend(volume.used_by.iter().cloned());
    }
    for host in &subject.host_paths {
        own.extend(host.used_by.iter().cloned());
    }
    let touched: Vec<String> = metadata.volumes.iter().map(|v| v.name.clone()).collect();
    check_not_in_use(ctx, &metadata.deployment_name, &touched, &own)?;
    Ok(own)
}

/// Steps 5-8: move the volumes' data aside, put `target` back; on failure
/// roll back to what `kept` holds. Returns the services started.
fn replace(
    ctx: &Context,
    store: &BackupStore,
    target: &Target,
    kept: &Kept,
    start: Start,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<Vec<String>> {
    let result = move_aside(ctx, &kept.inspected, &kept.held, progress, journal)
        .and_then(|()| put_back(ctx, target, start, progress, journal, true));
    result.map_err(|cause| {
        roll_back(
            ctx,
            store,
            target,
            kept.safety.as_deref(),
            cause,
            progress,
            journal,
        )
    })
}

/// Secrets the restored units require that do not exist (backups never
/// hold secret values). leger's backups do not record them: the restored
/// units are asked.
fn missing_secrets(ctx: &Context, metadata: &Metadata, progress: &Progress) -> Result<Vec<String>> {
    let secrets = if metadata.is_legacy() {
        current_deployment(ctx, &metadata.deployment_name)?
            .and_then(|d| d.resolve(&ctx.layout).ok())
            .map(|r| r.secrets)
            .unwrap_or_default()
    } else {
        metadata.secrets.clone()
    };
    let mut missing = Vec::new();
    for secret in &secrets {
        match ctx.podman.secret_exists(secret) {
            Ok(true) => {}
            Ok(false) => missing.push(secret.clone()),
            Err(e) => progress.warn(format!("cannot check secret {secret}: {e}")),
        }
    }
    if !missing.is_empty() {
        progress.warn(format!(
            "secrets the units require do not exist: {} (backups never hold secret values; \
             create them with `podman secret create NAME FILE`)",
            missing.join(", ")
        ));
    }
    Ok(missing)
}

/// "`leger-backup recover` WHAT (see `leger-backup status`)", in `scope`:
/// the way back from an unfinished restore, which only the scope's own
/// state directory knows of.
fn recover_hint(scope: Scope, what: &str) -> String {
    format!(
        "`{}` {what} (see `{}`)",
        scope.command("recover"),
        scope.command("status")
    )
}

/// The error of a restore stopped by a signal before it replaced anything.
fn nothing_changed(id: &str, err: Error) -> Error {
    let what = match interrupt::requested() {
        Some(signal) => interrupt::error(signal).message,
        None => interrupt::explain(err).message,
    };
    Error::interrupted(format!(
        "restore of {id} {what}, before anything was replaced: nothing was changed"
    ))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod rollback_tests;
