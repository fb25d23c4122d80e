//! `recover`: finish the restores that died half-way (see
//! [`crate::backup::interrupted`] and [`crate::backup::restore::recover`]).

use std::time::Duration;

use super::args::RecoverArgs;
use super::GlobalArgs;
use crate::backup::interrupted;
use crate::backup::journal::{self, Operation};
use crate::backup::lock::DeploymentLock;
use crate::backup::progress::Terminal;
use crate::backup::restore::{self, RecoverOutcome, RecoverReport};
use crate::backup::store::BackupStore;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::ui;

/// Run `recover`: each interrupted restore is rolled back to its safety
/// backup (after confirmation unless `--yes`); interrupted creates are
/// cleaned up as by any command.
pub fn run(global: &GlobalArgs, args: RecoverArgs) -> Result<()> {
    let ctx = Context::load(global.scope())?;
    interrupted::startup(&ctx, interrupted::Mode::Recover);
    let state_dir = &ctx.layout.state_dir;
    let interrupted: Vec<String> = journal::list(state_dir)
        .into_iter()
        .filter_map(|(name, r)| r.ok().map(|r| (name, r)))
        .filter(|(_, r)| r.operation() == Operation::Restore && !r.alive())
        .map(|(name, _)| name)
        .collect();
    if interrupted.is_empty() {
        if global.json {
            return ui::print_json(&Vec::<RecoverReport>::new());
        }
        ui::note("nothing to recover: no restore was interrupted");
        return Ok(());
    }
    let store = BackupStore::open(ctx.backup_dir())?;
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for name in interrupted {
        match recover_one(&ctx, &store, &name, args.yes) {
            Ok(Some(outcome)) => {
                ui::note(summary(&ctx, &outcome));
                done.push(outcome);
            }
            Ok(None) => {}
            Err(e) => {
                ui::print_error(&e);
                failures.push(name);
            }
        }
    }
    if global.json {
        ui::print_json(&done)?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(
            Error::user(format!("could not recover {}", failures.join(", "))).with_hint(
                "see the errors above; `leger-backup status` shows what is still pending",
            ),
        )
    }
}

/// Recover one deployment under its lock; `None` when another process got
/// to it first.
fn recover_one(
    ctx: &Context,
    store: &BackupStore,
    name: &str,
    yes: bool,
) -> Result<Option<RecoverReport>> {
    let _lock = DeploymentLock::acquire(&ctx.layout.state_dir, name, Duration::ZERO)?;
    let Some(record) = journal::read(&ctx.layout.state_dir, name)? else {
        return Ok(None);
    };
    if record.operation() != Operation::Restore || record.alive() {
        return Ok(None);
    }
    restore::recover(ctx, store, record, yes, &Terminal::new(true)).map(Some)
}

fn summary(ctx: &Context, r: &RecoverReport) -> String {
    let started = if r.started.is_empty() {
        String::new()
    } else {
        format!("; started {}", r.started.join(", "))
    };
    let retry = match &r.backup {
        Some(b) => format!(
            ". To restore {b} after all: `leger-backup{} restore {b}`",
            ctx.layout.scope.cli_flag()
        ),
        None => String::new(),
    };
    match r.outcome {
        RecoverOutcome::NothingReplaced => format!(
            "recovered {}: the interrupted restore had replaced nothing{started}{retry}",
            r.deployment
        ),
        RecoverOutcome::RolledBack => format!(
            "recovered {}: rolled back to {}, its state before the interrupted restore{started}{retry}",
            r.deployment,
            r.safety_backup.as_deref().unwrap_or("the safety backup")
        ),
        RecoverOutcome::Completed => format!(
            "recovered {}: the interrupted restore had completed; the previous data it had moved \
             aside is dropped",
            r.deployment
        ),
        RecoverOutcome::Removed => format!(
            "recovered {}: removed what the interrupted restore had put in place \
             (nothing of it existed before){retry}",
            r.deployment
        ),
    }
}
