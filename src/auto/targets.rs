//! Automatic backups go to every target of `backup.targets`. A target that
//! fails while another got the backup does not fail the trigger (the data
//! is safe; leger goes on, the stop is not held up): the failure is logged
//! and recorded, so `status` shows it, and `sync` sends the backup later.
//! Every automatic backup notifies `backup.notify` (no one watches it).

use std::cell::Cell;
use std::time::Instant;

use chrono::Utc;

use super::modes::{self, Plan, ShellRunner};
use super::record::{self, Event, Outcome};
use crate::backup::create::{self, CreateOptions};
use crate::backup::metadata::Metadata;
use crate::context::Context;
use crate::deployment::Deployment;
use crate::error::{Error, Result};
use crate::ui;

/// An automatic backup in `deployment`'s mode (`before:` and `after:`
/// commands around it, see [`modes::backup_in_mode`]). A `before:` command
/// that fails means no target got a backup: that is notified as a failure
/// of each, as a failed backup would be, so that a broken dump is heard of.
pub fn automatic_backup_in_mode(
    ctx: &Context,
    deployment: &Deployment,
    plan: &Plan,
    options: CreateOptions,
    trigger: &str,
    warn: &dyn Fn(String),
) -> Result<Metadata> {
    let start = Instant::now();
    let backed_up = Cell::new(false);
    let reason = options.reason.clone();
    let scope = ctx.layout.scope;
    let result = modes::backup_in_mode(
        plan,
        scope,
        &deployment.name,
        options,
        &ShellRunner,
        warn,
        |options| {
            backed_up.set(true);
            automatic_backup(ctx, deployment, options, trigger)
        },
    );
    if let Err(err) = &result {
        if !backed_up.get() {
            crate::notify::no_backup_taken(ctx, deployment, &reason, err, start.elapsed());
        }
    }
    result
}

/// Back `deployment` up to every configured target; the first backup made,
/// or the first failure (naming its target) when none was.
pub fn automatic_backup(
    ctx: &Context,
    deployment: &Deployment,
    options: &CreateOptions,
    trigger: &str,
) -> Result<Metadata> {
    let targets = create::targets(ctx, &[])?;
    let results = crate::notify::backup_to_targets(ctx, deployment, options, &targets, true);
    record_per_target(ctx, deployment, trigger, &results);
    let mut failures = results.failed.into_iter();
    let Some((_, first)) = results.done.first() else {
        let (name, err) = failures
            .next()
            .ok_or_else(|| Error::config("backup.targets names no target"))?;
        return Err(if targets.len() > 1 {
            err.context(format!("backup to {name}"))
        } else {
            err
        });
    };
    for (name, err) in failures {
        let message = format!(
            "backup to {name} failed: {}; backup {} is in {}: `leger-backup sync --to {name}` \
             sends it once {name} is reachable",
            err.message, first.id, results.done[0].0
        );
        ui::warn(format!(
            "leger-backup {trigger}: {}: {message}",
            deployment.name
        ));
        let event = Event {
            time: Utc::now(),
            trigger: format!("{trigger} (to {name})"),
            message,
            backup_id: None,
        };
        if let Err(e) = record::store(
            &ctx.layout.state_dir,
            &deployment.name,
            Outcome::Failed,
            event,
        ) {
            ui::warn(format!("cannot record the failure: {}", e.message));
        }
    }
    Ok(first.clone())
}

/// Remember how each target fared, for `status`: one target can fail
/// while another gets the backup, and a repository that keeps failing must
/// show even when the local backups are fine.
fn record_per_target(
    ctx: &Context,
    deployment: &Deployment,
    trigger: &str,
    results: &create::TargetResults,
) {
    let now = Utc::now();
    let event = |message: String, backup_id: Option<String>| Event {
        time: now,
        trigger: trigger.to_owned(),
        message,
        backup_id,
    };
    let done = results.done.iter().map(|(target, metadata)| {
        let id = metadata.id.clone();
        (target, Ok(event(format!("backed up as {id}"), Some(id))))
    });
    let failed = results
        .failed
        .iter()
        .map(|(target, err)| (target, Err(event(err.message.clone(), None))));
    for (target, outcome) in done.chain(failed) {
        let stored = record::store_target(&ctx.layout.state_dir, &deployment.name, target, outcome);
        if let Err(e) = stored {
            ui::warn(format!(
                "cannot record the result for {target}: {}",
                e.message
            ));
        }
    }
}
