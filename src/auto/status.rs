//! `status`: whether automatic backups are on for each deployment and
//! through what, what the triggers last did, what is kept, and the
//! interrupted restores waiting for `leger-backup recover`. Read-only:
//! it writes nothing, not even the backup directory.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backup::interrupted::{self, Pending};
use crate::backup::metadata::BackupType;
use crate::context::Context;
use crate::deployment;
use crate::error::Result;
use crate::layout::Scope;
use crate::ui;

use super::history::{self, Summary};
use super::record::{self, Event};
use super::stop_hook_dropin::{self, FoundDropin};
use super::{generator_output_dir, installed_generator};

/// The whole status.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// `user` or `system`.
    pub scope: Scope,
    /// Where the generator is installed, if it is.
    pub generator: Option<PathBuf>,
    /// The service manager.
    pub manager: Manager,
    /// Where backups are stored.
    pub backup_dir: PathBuf,
    /// Problem reading the backup directory, if any.
    pub backup_dir_error: Option<String>,
    /// Restores that were interrupted and wait for `leger-backup recover`.
    pub pending_recovery: Vec<Pending>,
    /// Installed deployments, then those that only have backups left.
    pub deployments: Vec<DeploymentStatus>,
}

/// Whether the manager answers.
#[derive(Debug, Clone, Serialize)]
pub struct Manager {
    /// It answered `is-system-running`.
    pub reachable: bool,
    /// What it said (`running`, `degraded`, `stopping`...).
    pub state: Option<String>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// How automatic backups reach a deployment's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// The generator writes the drop-ins at every reload.
    Generator,
    /// Drop-ins written by `enable` in the user's unit directory.
    DropIns,
    /// Nothing calls the stop hook.
    None,
}

/// One deployment.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentStatus {
    /// Its name.
    pub name: String,
    /// Whether it is installed (or only has backups left).
    pub installed: bool,
    /// Whether stop hooks back it up.
    pub automatic: bool,
    /// Through what.
    pub via: Via,
    /// What needs attention, if anything.
    pub notes: Vec<String>,
    /// Its hooked services.
    pub services: Vec<String>,
    /// The newest backup.
    pub last_backup: Option<BackupRef>,
    /// The last failed automatic backup, when it is newer than the newest backup.
    pub last_failure: Option<Event>,
    /// The last skipped trigger.
    pub last_skip: Option<Event>,
    /// Backups kept, per type.
    pub kept: Kept,
    /// Bytes the kept backups use.
    pub disk_used: u64,
    /// Its scheduled backups, when it has a schedule.
    pub schedule: Option<super::schedule::ScheduleStatus>,
    /// How the automatic backups to each target (`local`, a repository)
    /// last went.
    pub targets: BTreeMap<String, record::TargetRecord>,
}

/// A backup, briefly.
#[derive(Debug, Clone, Serialize)]
pub struct BackupRef {
    /// ID.
    pub id: String,
    /// When it finished.
    pub time: DateTime<Utc>,
    /// Why.
    pub reason: String,
    /// Manual or automatic.
    #[serde(rename = "type")]
    pub backup_type: BackupType,
}

/// Backup counts per type.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Kept {
    /// Manual backups.
    pub manual: usize,
    /// Automatic backups.
    pub automatic: usize,
}

/// Gather the status. Problems (manager down, backup directory unreadable,
/// a broken deployment) are shown in it rather than failing it.
pub fn gather(ctx: &Context) -> Result<Status> {
    let layout = &ctx.layout;
    let scope = layout.scope;
    let generator = installed_generator(scope);
    let manager = match ctx.systemctl.system_state() {
        // systemctl's word for "no manager answered".
        Ok(state) if state == "offline" => Manager {
            reachable: false,
            state: Some(state),
            error: Some(format!(
                "no manager answered `{} is-system-running`",
                scope.systemctl_words()
            )),
        },
        Ok(state) => Manager {
            reachable: true,
            state: Some(state),
            error: None,
        },
        Err(err) => Manager {
            reachable: false,
            state: None,
            error: Some(err.message),
        },
    };
    let (backups, backup_dir_error) = match history::read_dir(ctx.backup_dir()) {
        Ok(b) => (b, None),
        Err(err) => (Vec::new(), Some(err.message)),
    };
    let user_dropins = stop_hook_dropin::find_dropins(&layout.systemd_unit_dir).unwrap_or_default();
    let generated = generator_output_dir(scope)
        .map(|dir| stop_hook_dropin::find_dropins(&dir).unwrap_or_default())
        .unwrap_or_default();

    let mut deployments = Vec::new();
    for d in deployment::discover(layout)? {
        let (services, mut notes) = match stop_hook_dropin::deployment_services(&d, layout) {
            // Units left without a hook, named with their file.
            Ok(s) => (s.names, s.refused),
            Err(err) => (
                Vec::new(),
                vec![format!("cannot read its files: {}", err.message)],
            ),
        };
        let enabled = ctx.config.auto.enabled_for(&d.name);
        let facts = Facts {
            name: &d.name,
            enabled,
            generator: generator.is_some(),
            services: &services,
            user_dropins: &user_dropins,
            generated: manager.reachable.then_some(generated.as_slice()),
        };
        let (automatic, via, more) = mechanism(&facts, scope);
        notes.extend(more);
        deployments.push(entry(
            ctx, &d.name, true, automatic, via, notes, services, &backups,
        ));
    }
    // Backups of deployments that are gone (leger removed them).
    let gone: BTreeMap<&str, ()> = backups
        .iter()
        .filter(|b| !deployments.iter().any(|d| d.name == b.deployment))
        .map(|b| (b.deployment.as_str(), ()))
        .collect();
    for name in gone.keys() {
        deployments.push(entry(
            ctx,
            name,
            false,
            false,
            Via::None,
            Vec::new(),
            Vec::new(),
            &backups,
        ));
    }
    Ok(Status {
        scope,
        generator,
        manager,
        backup_dir: ctx.backup_dir().to_owned(),
        backup_dir_error,
        pending_recovery: interrupted::pending(&layout.state_dir),
        deployments,
    })
}

#[allow(clippy::too_many_arguments)]
fn entry(
    ctx: &Context,
    name: &str,
    installed: bool,
    automatic: bool,
    via: Via,
    notes: Vec<String>,
    services: Vec<String>,
    backups: &[Summary],
) -> DeploymentStatus {
    let record = record::load(&ctx.layout.state_dir, name);
    let newest = history::newest(backups, name);
    let last_backup = newest.map(|b| BackupRef {
        id: b.id.clone(),
        time: b.finished_at,
        reason: b.reason.clone(),
        backup_type: b.backup_type,
    });
    let last_failure = record
        .last_failure
        .filter(|f| newest.is_none_or(|b| f.time > b.finished_at));
    let mut kept = Kept::default();
    let mut disk_used = 0;
    for b in backups.iter().filter(|b| b.deployment == name) {
        match b.backup_type {
            BackupType::Manual => kept.manual += 1,
            BackupType::Automatic => kept.automatic += 1,
        }
        disk_used += b.size;
    }
    DeploymentStatus {
        name: name.to_owned(),
        installed,
        automatic,
        via,
        notes,
        services,
        last_backup,
        last_failure,
        last_skip: record.last_skip,
        targets: record.targets,
        kept,
        disk_used,
        schedule: installed
            .then(|| super::schedule::status_of(ctx, name))
            .flatten(),
    }
}

/// What decides whether and how a deployment is hooked.
pub struct Facts<'a> {
    /// Deployment name.
    pub name: &'a str,
    /// The config turns it on.
    pub enabled: bool,
    /// The generator is installed.
    pub generator: bool,
    /// Its hooked services.
    pub services: &'a [String],
    /// Our drop-ins in the user's unit directory.
    pub user_dropins: &'a [FoundDropin],
    /// Our drop-ins in the generator's output, when the manager is
    /// reachable (the output is only meaningful then).
    pub generated: Option<&'a [FoundDropin]>,
}

/// On or off, through what, and what needs attention. Pure.
pub fn mechanism(f: &Facts<'_>, scope: Scope) -> (bool, Via, Vec<String>) {
    let flag = scope.cli_flag();
    let mut notes = Vec::new();
    let has = |list: &[FoundDropin], service: &str| {
        list.iter()
            .any(|d| d.service == service && d.deployment == f.name)
    };
    let with_user: Vec<&String> = f
        .services
        .iter()
        .filter(|s| has(f.user_dropins, s))
        .collect();
    if !f.enabled {
        notes.push(format!(
            "turned off in the config; `leger-backup{flag} enable {}` turns it on",
            f.name
        ));
        return (false, Via::None, notes);
    }
    if f.services.is_empty() {
        notes.push("no .container, .pod or .kube unit: nothing to hook".to_owned());
        return (false, Via::None, notes);
    }
    if f.generator {
        let via = if with_user.len() == f.services.len() {
            Via::DropIns
        } else {
            Via::Generator
        };
        if let Some(generated) = f.generated {
            let missing: Vec<&str> = f
                .services
                .iter()
                .filter(|s| !has(generated, s) && !has(f.user_dropins, s))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                notes.push(format!(
                    "no drop-in yet for {}: run `{} daemon-reload`",
                    missing.join(", "),
                    scope.systemctl_words()
                ));
            }
        }
        return (true, via, notes);
    }
    if with_user.is_empty() {
        notes.push(format!(
            "no generator installed and no drop-ins: `leger-backup{flag} enable {}` writes them",
            f.name
        ));
        return (false, Via::None, notes);
    }
    if with_user.len() < f.services.len() {
        let missing: Vec<&str> = f
            .services
            .iter()
            .filter(|s| !has(f.user_dropins, s))
            .map(String::as_str)
            .collect();
        notes.push(format!(
            "drop-ins missing for {} (new services?): run `leger-backup{flag} enable {}` again",
            missing.join(", "),
            f.name
        ));
    }
    (true, Via::DropIns, notes)
}

/// Print the status as text.
pub fn print(status: &Status) -> Result<()> {
    let mut out = String::new();
    let scope = status.scope;
    match &status.generator {
        Some(path) => out.push_str(&format!("generator:        installed ({})\n", path.display())),
        None => out.push_str(&format!(
            "generator:        not installed (automatic backups through `leger-backup{} enable` drop-ins)\n",
            scope.cli_flag()
        )),
    }
    let manager = match (&status.manager.state, &status.manager.error) {
        (_, Some(err)) => format!("NOT reachable: {err}"),
        (Some(state), None) => format!("reachable ({state})"),
        (None, None) => "NOT reachable".to_owned(),
    };
    let which = match scope {
        Scope::User => "user manager:     ",
        Scope::System => "system manager:   ",
    };
    out.push_str(&format!("{which}{manager}\n"));
    out.push_str(&format!(
        "backup directory: {}\n",
        status.backup_dir.display()
    ));
    if let Some(err) = &status.backup_dir_error {
        out.push_str(&format!("                  NOT readable: {err}\n"));
    }
    if !status.pending_recovery.is_empty() {
        out.push_str(&format!(
            "\nPENDING RECOVERY: run `leger-backup{} recover`\n",
            scope.cli_flag()
        ));
        for p in &status.pending_recovery {
            out.push_str(&format!("  {}: {}\n", p.deployment, p.what));
            out.push_str(&format!(
                "  {:w$}  {}\n",
                "",
                p.action,
                w = p.deployment.len()
            ));
        }
    }
    if status.deployments.is_empty() {
        out.push_str("\nno deployments and no backups\n");
    }
    for d in &status.deployments {
        out.push('\n');
        out.push_str(&d.name);
        if !d.installed {
            out.push_str(" (not installed; backups kept)");
        }
        out.push('\n');
        if d.installed {
            let via = match d.via {
                Via::Generator => " (generator)",
                Via::DropIns => " (drop-ins)",
                Via::None => "",
            };
            let on = if d.automatic { "on" } else { "off" };
            out.push_str(&format!("  automatic backups: {on}{via}\n"));
            if !d.services.is_empty() {
                out.push_str(&format!("  services:          {}\n", d.services.join(", ")));
            }
        }
        for note in &d.notes {
            out.push_str(&format!("  note:              {note}\n"));
        }
        match &d.last_backup {
            Some(b) => out.push_str(&format!(
                "  last backup:       {} {} ({}, {}) ok\n",
                time(b.time),
                b.id,
                b.reason,
                type_word(b.backup_type)
            )),
            None => out.push_str("  last backup:       none\n"),
        }
        if let Some(f) = &d.last_failure {
            out.push_str(&format!(
                "  last FAILED:       {} ({}): {}\n",
                time(f.time),
                f.trigger,
                f.message
            ));
        }
        if let Some(s) = &d.last_skip {
            out.push_str(&format!(
                "  last skipped:      {} ({}): {}\n",
                time(s.time),
                s.trigger,
                s.message
            ));
        }
        if let Some(s) = &d.schedule {
            out.push_str(&super::schedule::status_lines(s));
        }
        out.push_str(&target_lines(&d.targets));
        out.push_str(&format!(
            "  kept:              {} manual, {} automatic, {}\n",
            d.kept.manual,
            d.kept.automatic,
            ui::human_size(d.disk_used)
        ));
    }
    ui::print_text(&out)
}

/// One line per target, when a backup ever went anywhere but `local`:
/// its last success and, when newer, its last failure.
fn target_lines(targets: &BTreeMap<String, record::TargetRecord>) -> String {
    if targets.keys().all(|t| t == crate::repository::LOCAL) {
        return String::new();
    }
    let mut out = String::new();
    for (target, r) in targets {
        let ok = match &r.last_success {
            Some(e) => format!(
                "ok {} {}",
                time(e.time),
                e.backup_id.as_deref().unwrap_or("")
            ),
            None => "never ok".to_owned(),
        };
        out.push_str(&format!("  {:<19}{ok}\n", format!("to {target}:")));
        let newer = |f: &&Event| r.last_success.as_ref().is_none_or(|s| f.time > s.time);
        if let Some(f) = r.last_failure.as_ref().filter(newer) {
            let failed = format!("last FAILED {}: {}", time(f.time), f.message);
            out.push_str(&format!("  {:<19}{failed}\n", ""));
        }
    }
    out
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn type_word(t: BackupType) -> &'static str {
    match t {
        BackupType::Manual => "manual",
        BackupType::Automatic => "automatic",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(service: &str, deployment: &str) -> FoundDropin {
        FoundDropin {
            service: service.into(),
            deployment: deployment.into(),
            path: PathBuf::new(),
        }
    }

    #[test]
    fn mechanisms() {
        let services = ["db.service".to_owned(), "web.service".to_owned()];
        let base = Facts {
            name: "web",
            enabled: true,
            generator: false,
            services: &services,
            user_dropins: &[],
            generated: None,
        };
        let (on, via, notes) = mechanism(&base, Scope::User);
        assert!(!on && via == Via::None);
        assert!(notes[0].contains("enable web"), "{notes:?}");

        let both = [found("db.service", "web"), found("web.service", "web")];
        let one = [found("web.service", "web")];
        let (on, via, notes) = mechanism(
            &Facts {
                user_dropins: &both,
                ..base
            },
            Scope::User,
        );
        assert!(on && via == Via::DropIns && notes.is_empty());
        let (on, via, notes) = mechanism(
            &Facts {
                user_dropins: &one,
                ..base
            },
            Scope::User,
        );
        assert!(on && via == Via::DropIns);
        assert!(notes[0].contains("missing for db.service"), "{notes:?}");

        let (on, via, notes) = mechanism(
            &Facts {
                generator: true,
                generated: Some(&one),
                ..base
            },
            Scope::User,
        );
        assert!(on && via == Via::Generator);
        assert!(notes[0].contains("daemon-reload"), "{notes:?}");

        let (on, _, notes) = mechanism(
            &Facts {
                enabled: false,
                generator: true,
                ..base
            },
            Scope::System,
        );
        assert!(!on);
        assert!(
            notes[0].contains("leger-backup --system enable web"),
            "{notes:?}"
        );
    }
}
