//! `recover`: finish a restore a dead process left half-done.

use super::*;
use crate::backup::journal::RestoreStage;

/// How `recover` ended for one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecoverOutcome {
    /// The restore had replaced nothing: its services were started again.
    NothingReplaced,
    /// Rolled back to the safety backup.
    RolledBack,
    /// Nothing of the deployment existed before: what the restore put in
    /// place was removed.
    Removed,
    /// The restore had completed; the previous data it had moved aside
    /// was dropped.
    Completed,
}

/// What `recover` did for one deployment.
#[derive(Debug, Clone, Serialize)]
pub struct RecoverReport {
    /// The deployment.
    pub deployment: String,
    /// The backup the interrupted restore was putting back.
    pub backup: Option<String>,
    /// Its safety backup (the state put back).
    pub safety_backup: Option<String>,
    /// What was done.
    pub outcome: RecoverOutcome,
    /// Services started afterwards.
    pub started: Vec<String>,
}

/// Finish a restore that a dead process left half-done, as its journal
/// `record` says (the caller holds the deployment lock): put the safety
/// backup back through `put_back`, as the rollback of a failed restore
/// does; or, when the restore had replaced nothing yet, only start the
/// services it stopped. When the safety backup cannot be used, nothing is
/// changed and the error says what to do.
pub fn recover(
    ctx: &Context,
    store: &BackupStore,
    record: Record,
    assume_yes: bool,
    progress: &Progress,
) -> Result<RecoverReport> {
    let name = record.deployment.clone();
    let Some(restore) = record.restore() else {
        return Err(Error::internal(format!(
            "the journal of {name} is not a restore's: nothing to recover"
        )));
    };
    let what = crate::backup::interrupted::describe(&record);
    let mut outcome = RecoverReport {
        deployment: name.clone(),
        backup: record.backup_id.clone(),
        safety_backup: record.safety_id().map(str::to_owned),
        outcome: RecoverOutcome::NothingReplaced,
        started: Vec::new(),
    };
    if let Some(removed) = crate::backup::interrupted::remove_unfinished(&record)? {
        progress.step(format!("removed the unfinished safety backup {removed}"));
    }
    let stage = restore.stage(&record.step);
    if stage == RestoreStage::Completed {
        // The restore had succeeded: only its leftovers go.
        progress.step(format!("{what}. The restore itself had completed."));
        let mut journal = Journal::adopt(&ctx.layout.state_dir, record.clone())?;
        if let Some(id) = record.safety_id() {
            drop_held(ctx, store, id, progress, &mut journal);
        }
        outcome.outcome = RecoverOutcome::Completed;
        outcome.safety_backup = None;
        return Ok(outcome);
    }
    if stage == RestoreStage::NothingReplaced {
        progress.step(format!(
            "{what}. It had not replaced anything yet: the files and volumes of {name} are as they were."
        ));
        outcome.started = start_again(ctx, &record, progress)?;
        drop_unused_safety(store, &record, progress);
        return Ok(outcome);
    }
    let (target, start, question, kind) = previous_state(
        ctx.layout.scope,
        store,
        &record,
        &restore.safety,
        &what,
        progress,
    )?;
    outcome.outcome = kind;
    progress.step(format!("{what}."));
    let current = current_deployment(ctx, &name)?;
    show_plan(ctx, &target, current.as_ref(), false, progress)?;
    if !assume_yes && !ui::confirm(&question, "--yes")? {
        return Err(
            Error::user("recover cancelled; nothing was changed").with_hint(format!(
                "`{}` keeps showing the interrupted restore until it is recovered",
                ctx.layout.scope.command("status")
            )),
        );
    }
    outcome.started = put_previous_back(ctx, store, &record, &target, start, progress)?;
    Ok(outcome)
}

/// A restore that had replaced nothing: start the services it stopped
/// again. Returns them. On failure the journal stays, for another try.
fn start_again(ctx: &Context, record: &Record, progress: &Progress) -> Result<Vec<String>> {
    let mut journal = Journal::adopt(&ctx.layout.state_dir, record.clone())?;
    interrupt::install()?;
    if record.stopped.is_empty() {
        return Ok(Vec::new());
    }
    progress.step(format!("starting {} again", record.stopped.join(", ")));
    journal.step(Step::StartingServices)?;
    let started = ctx.systemctl.start(&record.stopped).and_then(|()| {
        ctx.systemctl.wait_active(
            &record.stopped,
            ctx.config.backup.start_timeout.value.duration(),
        )
    });
    if let Err(e) = started {
        // Still pending: `recover` can try again once fixed.
        journal.keep();
        return Err(e.context(format!(
            "starting the services of {} again",
            record.deployment
        )));
    }
    Ok(record.stopped.clone())
}

/// The state before the interrupted restore `record` describes (`what`):
/// its safety backup `safety` (verified first), or "nothing" when nothing of the
/// deployment existed; with the services to start, the question to ask and
/// what recovering it is called. Changes nothing.
fn previous_state(
    scope: Scope,
    store: &BackupStore,
    record: &Record,
    safety: &Safety,
    what: &str,
    progress: &Progress,
) -> Result<(Target, Start, String, RecoverOutcome)> {
    let name = &record.deployment;
    let undo_hint = |e: Error| {
        let retry = match &record.backup_id {
            Some(b) => format!(
                "`{}` (the backup it was restoring)",
                scope.command(&format!("restore {b}"))
            ),
            None => format!("`{}`", scope.command("restore <ID>")),
        };
        e.with_hint(format!(
            "nothing was changed. {name} may be half-restored: put a known state back with {retry} \
             or another backup from `{}`",
            scope.command("list")
        ))
    };
    match safety {
        Safety::Taken { id } => {
            let backup = store.load(id).map_err(|e| {
                undo_hint(Error::user(format!(
                    "{what}, and its safety backup {id} cannot be used: {}",
                    e.message
                )))
            })?;
            progress.step(format!("verifying the safety backup {id}"));
            verify_backup(&backup, progress).map_err(|e| {
                undo_hint(Error::user(format!(
                    "{what}, and its safety backup {id} is damaged: {}",
                    e.message
                )))
            })?;
            Ok((
                Target::of_safety(backup, record)?,
                Start::WasRunning,
                format!("Roll {name} back to {id}, its state before the interrupted restore?"),
                RecoverOutcome::RolledBack,
            ))
        }
        Safety::NotNeeded => {
            let failed = record
                .backup_id
                .as_deref()
                .ok_or_else(|| Error::user("the journal names no backup"))
                .and_then(|b| store.load(b))
                .map_err(|e| {
                    undo_hint(Error::user(format!(
                        "{what}; nothing of {name} existed before it, but what it put in place \
                         cannot be told: {}",
                        e.message
                    )))
                })?;
            Ok((
                Target::nothing(store, &failed.metadata),
                Start::Nothing,
                format!(
                    "Remove what the interrupted restore put in place (nothing of {name} existed before it)?"
                ),
                RecoverOutcome::Removed,
            ))
        }
        _ => Err(undo_hint(Error::user(format!(
            "{what}, and it has no complete safety backup"
        )))),
    }
}

/// Put `target` (the state before the interrupted restore `record`) back
/// through the rollback's code; then drop what it held aside. A failure
/// keeps the journal for another `recover`.
fn put_previous_back(
    ctx: &Context,
    store: &BackupStore,
    record: &Record,
    target: &Target,
    start: Start,
    progress: &Progress,
) -> Result<Vec<String>> {
    let mut journal = Journal::adopt(&ctx.layout.state_dir, record.clone())?;
    journal.update_restore(|_, restore| {
        restore.rolling_back = Some("the restore was interrupted".to_owned());
        restore.rollback_failed = None;
    })?;
    // Signals are handled (and ignored: a rollback is not interrupted).
    interrupt::install()?;
    match put_back(ctx, target, start, progress, &mut journal, false) {
        Ok(started) => {
            if let (true, Some(id)) = (target.holds_aside(), record.safety_id()) {
                drop_held(ctx, store, id, progress, &mut journal);
            }
            Ok(started)
        }
        Err(e) => {
            let _ = journal.update_restore(|_, r| r.rollback_failed = Some(e.message.clone()));
            journal.keep();
            let scope = ctx.layout.scope;
            let again = format!(
                "every backup is kept; fix the cause and run `{}` again",
                scope.command("recover")
            );
            let hint = match record.safety_id() {
                Some(id) if !target.holds_aside() => {
                    format!("{again}, or `{}`", scope.command(&format!("restore {id}")))
                }
                _ => again,
            };
            Err(e
                .context(format!("rolling {} back failed", record.deployment))
                .with_hint(hint))
        }
    }
}

/// A safety backup whose volumes were to be moved aside is of no use once
/// nothing was moved: removed (best effort) when `recover` ends a restore
/// that had replaced nothing.
fn drop_unused_safety(store: &BackupStore, record: &Record, progress: &Progress) {
    let Some(id) = record.safety_id() else { return };
    let holds_aside = store
        .load(id)
        .is_ok_and(|b| b.metadata.volumes.iter().any(|v| v.held_aside));
    if holds_aside {
        if let Err(e) = store.delete(id) {
            progress.warn(format!("the safety backup {id} could not be removed ({e})"));
        }
    }
}
