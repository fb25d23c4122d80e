//! leger's hooks: what `hooks/pre-remove.d/50-leger-backup` and
//! `hooks/pre-apply.d/50-leger-backup` run (`leger-backup leger-hook EVENT
//! DEPLOYMENT`). leger runs them before it changes anything; a non-zero exit
//! aborts its operation and leger shows our stderr. The protocol is in the
//! README, section "Hook protocol for leger".
//!
//! A leger hook is an explicit request: it is never rate-limited or
//! coalesced. The stop hooks that fire moments later, when leger stops the
//! services, coalesce into the backup taken here.

use std::time::Duration;

use chrono::Utc;

use crate::backup::create::CreateOptions;
use crate::config::Config;
use crate::context::Context;
use crate::deployment;
use crate::error::{Error, Result};
use crate::layout::{Layout, Scope};
use crate::ui;

use super::record::{self, Event, Outcome};

/// How long a leger hook waits for another backup or restore of the same
/// deployment (a stop hook's backup, say) before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(300);

/// A leger event and what it means for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Take a backup with this reason.
    Backup {
        /// `before-remove` / `before-apply`.
        reason: &'static str,
        /// The leger command to suggest when proceeding without a backup.
        leger_command: &'static str,
    },
    /// Nothing to do for this event.
    Nothing,
}

/// What an event asks for. Unknown events (a newer leger) do nothing, so a
/// new event never aborts leger's operation.
pub fn action_for(event: &str) -> Action {
    match event {
        "pre-remove" => Action::Backup {
            reason: "before-remove",
            leger_command: "leger deploy remove",
        },
        "pre-apply" => Action::Backup {
            reason: "before-apply",
            leger_command: "leger apply",
        },
        _ => Action::Nothing,
    }
}

/// The scope leger runs in: `--system` on our command line, or
/// `LEGER_SCOPE=system` in the hook environment.
pub fn scope_of(system_flag: bool, leger_scope: Option<&str>) -> Scope {
    if system_flag || leger_scope == Some("system") {
        Scope::System
    } else {
        Scope::User
    }
}

/// Whether `LEGER_NO_BACKUP` asks for no backup (`1`, `true`, `yes`).
pub fn no_backup_requested(value: Option<&str>) -> bool {
    value.is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

/// Run the hook for `event` on `deployment`. `no_backup` is
/// `LEGER_NO_BACKUP`. Every outcome is said on stderr; failures return an
/// error that says how to proceed without a backup.
pub fn run(scope: Scope, event: &str, deployment_name: &str, no_backup: bool) -> Result<()> {
    let Action::Backup {
        reason,
        leger_command,
    } = action_for(event)
    else {
        ui::note(format!(
            "leger-backup: nothing to do on {event} for {deployment_name}"
        ));
        return Ok(());
    };
    deployment::validate_name(deployment_name)?;
    let trigger = format!("leger {event}");
    let what = reason.trim_start_matches("before-");
    let proceed_hint = proceed_hint(scope, leger_command, what, deployment_name);
    let layout = Layout::for_scope(scope)
        .map_err(|e| e.context("leger-backup").with_hint(proceed_hint.clone()))?;
    let record = |outcome: Outcome, message: String, backup_id: Option<String>| {
        let event = Event {
            time: Utc::now(),
            trigger: trigger.clone(),
            message,
            backup_id,
        };
        if let Err(err) = record::store(&layout.state_dir, deployment_name, outcome, event) {
            ui::warn(format!(
                "cannot record this hook's outcome: {}",
                err.message
            ));
        }
    };

    if no_backup {
        let message = "LEGER_NO_BACKUP=1 (--no-backup): no backup taken".to_owned();
        ui::note(format!(
            "leger-backup: {deployment_name}: {message} before {what}"
        ));
        record(Outcome::Declined, message, None);
        return Ok(());
    }
    let config = match Config::load(&layout) {
        Ok(config) => config,
        Err(err) => {
            record(Outcome::Failed, err.message.clone(), None);
            return Err(failure(deployment_name, what, err, &proceed_hint));
        }
    };
    let found = match deployment::lookup(&layout, deployment_name) {
        Ok(found) => found,
        Err(err) => {
            record(Outcome::Failed, err.message.clone(), None);
            return Err(failure(deployment_name, what, err, &proceed_hint));
        }
    };
    let Some(deployment) = found else {
        // A first `apply` installs a deployment that does not exist yet.
        ui::note(format!(
            "leger-backup: {deployment_name} is not installed: nothing to back up before {what}"
        ));
        return Ok(());
    };
    if !config.auto.enabled_for(deployment_name) {
        let message =
            "automatic backups are off for this deployment (config auto.enabled / auto.deployments)"
                .to_owned();
        ui::note(format!("leger-backup: {deployment_name}: {message}"));
        record(Outcome::Skipped, message, None);
        return Ok(());
    }
    let live = config.auto.live_hooks.value;
    let plan = super::modes::Plan::of(&config.auto, deployment_name);
    let ctx = Context::new(layout.clone(), config);
    crate::backup::interrupted::startup(&ctx, crate::backup::interrupted::Mode::Command);
    let options = CreateOptions {
        reason: reason.to_owned(),
        live,
        wait: LOCK_WAIT,
        services_already_stopped: false,
        progress: true,
        stop_result: None,
        hold_aside: Default::default(),
        destination: Default::default(),
    };
    let result = super::targets::automatic_backup_in_mode(
        &ctx,
        &deployment,
        &plan,
        options,
        &trigger,
        &|message| ui::warn(format!("leger-backup: {message}")),
    );
    match result {
        Ok(metadata) => {
            ui::note(format!(
                "leger-backup: backed up {deployment_name} as {} before {what}",
                metadata.id
            ));
            record(
                Outcome::BackedUp,
                format!("backup {} taken", metadata.id),
                Some(metadata.id),
            );
            Ok(())
        }
        Err(err) => {
            let message = match &err.hint {
                Some(hint) => format!("{} (hint: {hint})", err.message),
                None => err.message.clone(),
            };
            record(Outcome::Failed, message, None);
            Err(failure(deployment_name, what, err, &proceed_hint))
        }
    }
}

/// How to go on without a backup: leger's own command, in leger's scope
/// (`--system` for root's deployments, as leger takes it).
fn proceed_hint(scope: Scope, leger_command: &str, what: &str, deployment: &str) -> String {
    format!(
        "to {what} it without a backup: `{leger_command} {deployment}{} --no-backup` (or set LEGER_NO_BACKUP=1)",
        scope.cli_flag()
    )
}

/// The error leger shows when the backup fails: the cause, our own hint,
/// and how to go on without a backup.
fn failure(deployment: &str, what: &str, err: Error, proceed_hint: &str) -> Error {
    let hint = match &err.hint {
        Some(own) => format!("{own}; {proceed_hint}"),
        None => proceed_hint.to_owned(),
    };
    Error {
        kind: err.kind,
        message: format!(
            "backup of {deployment} before {what} failed, so leger stops here: {}",
            err.message
        ),
        hint: Some(hint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events() {
        assert!(matches!(
            action_for("pre-remove"),
            Action::Backup {
                reason: "before-remove",
                ..
            }
        ));
        assert!(matches!(
            action_for("pre-apply"),
            Action::Backup {
                reason: "before-apply",
                ..
            }
        ));
        assert_eq!(action_for("post-apply"), Action::Nothing);
        assert_eq!(action_for("pre-something-new"), Action::Nothing);
    }

    #[test]
    fn environment() {
        assert_eq!(scope_of(false, None), Scope::User);
        assert_eq!(scope_of(false, Some("user")), Scope::User);
        assert_eq!(scope_of(false, Some("system")), Scope::System);
        assert_eq!(scope_of(true, None), Scope::System);
        assert!(no_backup_requested(Some("1")));
        assert!(no_backup_requested(Some("true")));
        assert!(!no_backup_requested(Some("0")));
        assert!(!no_backup_requested(Some("")));
        assert!(!no_backup_requested(None));
    }

    #[test]
    fn the_way_on_without_a_backup_follows_the_scope() {
        assert_eq!(
            proceed_hint(Scope::User, "leger deploy remove", "remove", "web"),
            "to remove it without a backup: `leger deploy remove web --no-backup` (or set LEGER_NO_BACKUP=1)"
        );
        assert_eq!(
            proceed_hint(Scope::System, "leger apply", "apply", "db"),
            "to apply it without a backup: `leger apply db --system --no-backup` (or set LEGER_NO_BACKUP=1)"
        );
    }

    #[test]
    fn failure_says_how_to_proceed() {
        let err = failure(
            "web",
            "remove",
            Error::internal("disk full").with_hint("free space"),
            "to remove it without a backup: `leger deploy remove web --no-backup`",
        );
        assert!(err.message.contains("before remove failed"));
        assert!(err.message.ends_with("disk full"));
        let hint = err.hint.unwrap();
        assert!(hint.starts_with("free space; "), "{hint}");
        assert!(hint.contains("--no-backup"), "{hint}");
    }
}
