//! `scheduled NAME`: what `leger-backup-scheduled@NAME.service` runs when
//! the deployment's timer elapses. One automatic backup, reason
//! `scheduled`, in the deployment's mode, to every target; every outcome is
//! logged (the journal) and recorded for `status` with the trigger
//! `schedule`, and a failure exits non-zero, so the service shows failed.

use std::time::Duration;

use crate::backup::create::CreateOptions;
use crate::config::Config;
use crate::context::Context;
use crate::deployment;
use crate::error::Result;
use crate::layout::{Layout, Scope};

use super::modes::Plan;
use super::stop_hook::{self, HookOutcome};

/// The trigger recorded for scheduled backups.
pub const TRIGGER: &str = "schedule";

/// How long a scheduled backup waits for another backup or restore of the
/// deployment: a stop hook's or a leger hook's backup may be running.
pub const LOCK_WAIT: Duration = Duration::from_secs(900);

/// Run the scheduled backup of `name` in `scope`, record and log it.
pub fn run(scope: Scope, name: &str) -> Result<()> {
    deployment::validate_name(name)?;
    let layout = Layout::for_scope(scope)?;
    let outcome = decide(&layout, name);
    stop_hook::report(&layout.state_dir, name, TRIGGER, &outcome)
}

fn decide(layout: &Layout, name: &str) -> HookOutcome {
    let config = match Config::load(layout) {
        Ok(config) => config,
        Err(err) => return HookOutcome::Failed(err.message),
    };
    let deployment = match deployment::lookup(layout, name) {
        Ok(Some(d)) => d,
        Ok(None) => {
            return HookOutcome::Skipped(format!(
                "deployment {name} is not installed any more; its timer goes at the next \
                 `daemon-reload` (generator) or `leger-backup disable {name}`"
            ))
        }
        Err(err) => {
            return HookOutcome::Failed(format!("cannot list deployments: {}", err.message))
        }
    };
    if config.auto.schedule_for(name).is_none() {
        return HookOutcome::Skipped(
            "no schedule in the config for this deployment any more (or automatic backups are \
             off); its timer goes at the next reload"
                .to_owned(),
        );
    }
    let plan = Plan::of(&config.auto, name);
    let ctx = Context::new(layout.clone(), config);
    crate::backup::interrupted::startup(&ctx, crate::backup::interrupted::Mode::Command);
    let options = CreateOptions {
        reason: super::schedule::REASON.to_owned(),
        wait: LOCK_WAIT,
        progress: false,
        ..CreateOptions::manual()
    };
    let warn = |message: String| crate::ui::warn(format!("leger-backup {TRIGGER}: {message}"));
    let result =
        super::targets::automatic_backup_in_mode(&ctx, &deployment, &plan, options, TRIGGER, &warn);
    match result {
        Ok(metadata) => HookOutcome::BackedUp(metadata.id),
        Err(err) => HookOutcome::Failed(match err.hint {
            Some(hint) => format!("{} (hint: {hint})", err.message),
            None => err.message,
        }),
    }
}
