//! Operations that died half-way, found through the journals they left
//! ([`crate::backup::journal`]): what every command does about them before
//! its own work. Finishing an interrupted restore is not done here but by
//! the `recover` command ([`crate::backup::restore::recover`]).
//!
//! - Every command that touches backups calls [`startup`] first. A journal
//!   whose deployment lock is free belongs to a dead process; each one found
//!   is reported in one warning. An interrupted `create` is cleaned up at
//!   once: its `.tmp-<ID>` directory is removed and the services it stopped
//!   are started again. An interrupted `restore` is not guessed at: its
//!   unfinished safety backup is removed, and the warning says to run
//!   `leger-backup recover` (which [`crate::backup::restore::recover`]
//!   does); `status` shows it until then ([`pending`]).
//! - `create` and `restore` call [`before_create`] / [`before_restore`]
//!   once they hold the deployment's lock, for a journal of that very
//!   deployment: a `create` refuses to back up a half-restored deployment,
//!   a new `restore` supersedes the interrupted one.
//! - A stop hook ([`Mode::StopHook`]) never starts services: it runs while
//!   systemd stops a service, and starting units from there could undo
//!   that stop or wait on it. Journals with services to start are left for
//!   the next command.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::auto::{scope_flag, systemctl_words};
use crate::backup::journal::{self, OperationRecord, Record, RestoreRecord, RestoreStage, Safety};
use crate::backup::lock::DeploymentLock;
use crate::backup::store::{validate_id, BackupStore, TMP_PREFIX};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::ui;

/// Who is looking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A command run by a person or a leger hook: may start services.
    Command,
    /// `stop-hook`: never starts services.
    StopHook,
    /// `recover`: like a command, but interrupted restores are its job, so
    /// they are not warned about.
    Recover,
}

/// Deal with the journals dead processes left (see the module docs):
/// clean up interrupted creates, warn about interrupted restores. Problems
/// are warnings: the command itself goes on.
pub fn startup(ctx: &Context, mode: Mode) {
    let state_dir = &ctx.layout.state_dir;
    for (deployment, record) in journal::list(state_dir) {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                ui::warn(format!(
                    "{}; remove it if no leger-backup command is running",
                    e.message
                ));
                continue;
            }
        };
        if record.alive() {
            continue;
        }
        if mode == Mode::StopHook
            && matches!(record.op, OperationRecord::Create(_))
            && !record.stopped.is_empty()
        {
            continue;
        }
        // The lock is free when the operation's process is gone.
        let Ok(_lock) = DeploymentLock::acquire(state_dir, &deployment, Duration::ZERO) else {
            continue;
        };
        // Read again under the lock: it may have ended or been replaced.
        let Ok(Some(record)) = journal::read(state_dir, &deployment) else {
            continue;
        };
        if record.alive() {
            continue;
        }
        match &record.op {
            OperationRecord::Create(_) => {
                ui::warn(clean_create(ctx, &record, mode != Mode::StopHook))
            }
            OperationRecord::Restore(restore) => {
                let removed = remove_unfinished(&record);
                if mode != Mode::Recover {
                    let mut text = pending_text(ctx, &record, restore);
                    if let Err(e) = removed {
                        text.push_str(&format!(" ({})", e.message));
                    }
                    ui::warn(text);
                }
            }
        }
    }
}

/// For `create`, holding the lock of `deployment`: clean up after an
/// interrupted create of it; refuse while an interrupted restore of it
/// waits for `recover`.
pub fn before_create(ctx: &Context, deployment: &str, from_stop_hook: bool) -> Result<()> {
    let Some(record) = own_journal(ctx, deployment)? else {
        return Ok(());
    };
    match record.op {
        OperationRecord::Create(_) => {
            ui::warn(clean_create(ctx, &record, !from_stop_hook));
            Ok(())
        }
        OperationRecord::Restore(_) => Err(Error::user(format!(
            "not backing up {deployment}: {}",
            describe(&record)
        ))
        .with_hint(format!(
            "run `leger-backup{} recover` first; it puts back the state before the restore \
             (a backup now would hold a half-restored deployment)",
            scope_flag(ctx.layout.scope)
        ))),
    }
}

/// For `restore`, holding the lock of `deployment`: clean up after an
/// interrupted create of it; an interrupted restore of it is superseded by
/// this one (its backups are kept).
pub fn before_restore(ctx: &Context, deployment: &str) -> Result<()> {
    let Some(record) = own_journal(ctx, deployment)? else {
        return Ok(());
    };
    match &record.op {
        OperationRecord::Create(_) => ui::warn(clean_create(ctx, &record, true)),
        OperationRecord::Restore(restore) => {
            let held: Vec<String> = restore
                .aside
                .values()
                .filter(|p| std::fs::symlink_metadata(p).is_ok())
                .map(|p| p.display().to_string())
                .collect();
            if !held.is_empty() {
                // Superseding it would lose the data it moved aside.
                return Err(Error::user(format!(
                    "{}; the data it moved aside is still held in {}",
                    describe(&record),
                    held.join(", ")
                ))
                .with_hint(format!(
                    "run `leger-backup{} recover` first: it puts that data back",
                    scope_flag(ctx.layout.scope)
                )));
            }
            remove_unfinished(&record)?;
            ui::warn(format!(
                "{}; this restore replaces it{}",
                describe(&record),
                match restore.safety_id() {
                    Some(id) => format!(" (its safety backup {id} is kept)"),
                    None => String::new(),
                }
            ));
        }
    }
    Ok(())
}

/// The journal of `deployment` when a dead process left one.
fn own_journal(ctx: &Context, deployment: &str) -> Result<Option<Record>> {
    let record = journal::read(&ctx.layout.state_dir, deployment).map_err(|e| {
        e.with_hint("remove the file if no leger-backup command is running, then try again")
    })?;
    // The caller holds the lock, so a record naming a live process is one
    // this very process wrote (never the case) or a reused pid.
    Ok(record.filter(|r| r.pid != std::process::id()))
}

/// Clean up after an interrupted create: remove its unfinished backup, start
/// the services it stopped again (`start`), forget the journal. Returns the
/// one warning that says what happened and what was done.
fn clean_create(ctx: &Context, record: &Record, start: bool) -> String {
    let name = &record.deployment;
    let words = systemctl_words(ctx.layout.scope);
    let mut done = Vec::new();
    match remove_unfinished(record) {
        Ok(Some(tmp)) => done.push(format!("removed its unfinished backup {tmp}")),
        Ok(None) => {}
        Err(e) => done.push(e.message),
    }
    let completed = record
        .writing
        .as_deref()
        .filter(|id| {
            BackupStore::open(&record.backup_dir)
                .and_then(|s| s.load(id))
                .is_ok()
        })
        .map(str::to_owned);
    if !record.stopped.is_empty() {
        let list = record.stopped.join(", ");
        let again = format!("`{words} start {}`", record.stopped.join(" "));
        if start {
            match ctx.systemctl.start(&record.stopped) {
                Ok(()) => done.push(format!("started {list} again")),
                Err(e) => done.push(format!(
                    "could not start {list} again ({}): start them with {again}",
                    e.message
                )),
            }
        } else {
            done.push(format!(
                "{list} had been stopped for it and are left stopped: start them with {again}"
            ));
        }
    }
    if let Err(e) = journal::remove(&ctx.layout.state_dir, name) {
        done.push(e.message);
    }
    let outcome = match &completed {
        Some(id) => format!("Backup {id} had been completed and is kept."),
        None => format!(
            "No backup was kept: run `leger-backup{} create {name}` again.",
            scope_flag(ctx.layout.scope)
        ),
    };
    format!(
        "{}; {}. {outcome}",
        describe(record),
        if done.is_empty() {
            "nothing was left to clean up".to_owned()
        } else {
            done.join(", ")
        }
    )
}

/// Remove the `.tmp-<ID>` directory of the backup the dead operation was
/// writing (its own, or a restore's safety backup); its name, if removed.
pub fn remove_unfinished(record: &Record) -> Result<Option<String>> {
    let Some(id) = record.writing.as_deref().filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    validate_id(id)?;
    let name = format!("{TMP_PREFIX}{id}");
    let path = record.backup_dir.join(&name);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => {
            std::fs::remove_dir_all(&path).map_err(|e| {
                Error::internal(format!(
                    "could not remove the unfinished backup {}: {e}; remove it by hand",
                    path.display()
                ))
            })?;
            let _ = crate::backup::store::sync_dir(&record.backup_dir);
            Ok(Some(name))
        }
        _ => Ok(None),
    }
}

/// One sentence: which operation of which deployment was interrupted where.
pub fn describe(record: &Record) -> String {
    let who = format!("process {}", record.pid);
    match &record.op {
        OperationRecord::Create(create) => format!(
            "a{} backup (create) of {} was interrupted: {who} ended while {}",
            match create.reason.as_deref() {
                Some(r) if r.starts_with("on-stop") => "n automatic (stop hook)",
                Some(r) if r.starts_with("before-") => "n automatic (leger hook)",
                _ => "",
            },
            record.deployment,
            record.step_text()
        ),
        OperationRecord::Restore(restore) => match &restore.rollback_failed {
            Some(why) => format!(
                "a restore of {}{} failed and so did its rollback ({why})",
                record.deployment,
                from(record)
            ),
            None => format!(
                "a restore of {}{} was interrupted: {who} ended while {}",
                record.deployment,
                from(record),
                record.step_text()
            ),
        },
    }
}

fn from(record: &Record) -> String {
    record
        .backup_id
        .as_deref()
        .map(|b| format!(" from backup {b}"))
        .unwrap_or_default()
}

/// What `recover` will do for an interrupted restore, in words.
pub fn recover_action(record: &Record, restore: &RestoreRecord) -> String {
    match restore.stage(&record.step) {
        RestoreStage::Completed => {
            return "the restore itself had completed; `recover` drops the previous data it \
                    had moved aside"
                .to_owned()
        }
        RestoreStage::NothingReplaced if record.stopped.is_empty() => {
            return "it had not replaced anything yet; `recover` clears it".to_owned()
        }
        RestoreStage::NothingReplaced => {
            return format!(
                "it had not replaced anything yet; `recover` starts {} again",
                record.stopped.join(", ")
            )
        }
        RestoreStage::HalfDone => {}
    }
    match &restore.safety {
        Safety::Taken { id } => format!(
            "the deployment may be half-restored; `recover` rolls it back to the safety backup {id} \
             (its state before the restore)"
        ),
        Safety::NotNeeded => "the deployment may be half-installed; `recover` removes what \
             the restore put in place (nothing of it existed before)"
            .to_owned(),
        _ => "the deployment may be half-restored and there is no complete safety backup; \
             `recover` explains what to do"
            .to_owned(),
    }
}

fn pending_text(ctx: &Context, record: &Record, restore: &RestoreRecord) -> String {
    format!(
        "{}; {}. Run `leger-backup{} recover` (add --yes to skip the question).",
        describe(record),
        recover_action(record, restore),
        scope_flag(ctx.layout.scope)
    )
}

/// An interrupted restore waiting for `recover`, as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    /// The deployment.
    pub deployment: String,
    /// The backup it was restoring.
    pub backup: Option<String>,
    /// Its safety backup, when complete.
    pub safety_backup: Option<String>,
    /// The step it reached, in words.
    pub step: String,
    /// The process that died.
    pub pid: u32,
    /// When it began.
    pub started_at: DateTime<Utc>,
    /// What happened, in one sentence.
    pub what: String,
    /// What `recover` will do.
    pub action: String,
}

/// The interrupted restores waiting for `recover`. Read-only: takes no
/// lock (a record naming a live process is an operation in progress).
pub fn pending(state_dir: &Path) -> Vec<Pending> {
    journal::list(state_dir)
        .into_iter()
        .filter_map(|(_, r)| r.ok())
        .filter(|r| !r.alive())
        .filter_map(|r| {
            let restore = r.restore()?;
            Some(Pending {
                deployment: r.deployment.clone(),
                backup: r.backup_id.clone(),
                safety_backup: restore.safety_id().map(str::to_owned),
                step: r.step_text(),
                pid: r.pid,
                started_at: r.started_at,
                what: describe(&r),
                action: recover_action(&r, restore),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::journal::{Journal, Operation, Step};
    use crate::config::Config;
    use crate::layout::{Layout, Scope};

    fn ctx(home: &Path) -> Context {
        let layout = Layout {
            scope: Scope::User,
            quadlet_dir: home.join(".config/containers/systemd"),
            quadlet_search_path: vec![],
            leger_data_dir: home.join(".local/share/bluebuild-quadlets"),
            leger_config_dir: home.join(".config/leger"),
            state_dir: home.join(".local/state/leger-backup"),
            systemd_unit_dir: home.join(".config/systemd/user"),
        };
        let config = Config::parse("", &home.join(".config/leger/config.yaml"), &layout).unwrap();
        Context::new(layout, config)
    }

    /// A journal as a process that died would have left it.
    fn dead(
        ctx: &Context,
        op: impl Into<OperationRecord>,
        change: impl FnOnce(&mut Record),
    ) -> Record {
        let j = Journal::begin(&ctx.layout.state_dir, "web", op, ctx.backup_dir(), true).unwrap();
        let mut r = j.record().clone();
        j.keep();
        r.pid = u32::MAX - 1;
        r.start_time = None;
        change(&mut r);
        std::fs::write(
            journal::path(&ctx.layout.state_dir, "web"),
            serde_json::to_vec(&r).unwrap(),
        )
        .unwrap();
        r
    }

    #[test]
    fn an_interrupted_create_is_cleaned_at_once() {
        let home = tempfile::tempdir().unwrap();
        let ctx = ctx(home.path());
        let store = BackupStore::open(ctx.backup_dir()).unwrap();
        let tmp = store.dir().join(".tmp-web-1");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("partial.tar.zst"), b"x").unwrap();
        let r = dead(&ctx, Operation::Create, |r| {
            r.writing = Some("web-1".into());
            r.backup_id = Some("web-1".into());
            r.step = Step::Exporting {
                volume: "data".into(),
            };
        });
        let text = clean_create(&ctx, &r, false);
        assert!(!tmp.exists());
        assert!(
            text.contains("a backup (create) of web was interrupted"),
            "{text}"
        );
        assert!(text.contains("exporting volume data"), "{text}");
        assert!(
            text.contains("removed its unfinished backup .tmp-web-1"),
            "{text}"
        );
        assert!(
            text.contains("run `leger-backup create web` again"),
            "{text}"
        );
        assert_eq!(journal::read(&ctx.layout.state_dir, "web").unwrap(), None);
    }

    #[test]
    fn a_stop_hook_leaves_services_to_start_to_a_command() {
        let home = tempfile::tempdir().unwrap();
        let ctx = ctx(home.path());
        dead(&ctx, Operation::Create, |r| {
            r.stopped = vec!["web.service".into()];
        });
        startup(&ctx, Mode::StopHook);
        assert!(journal::read(&ctx.layout.state_dir, "web")
            .unwrap()
            .is_some());
        let text = clean_create(
            &ctx,
            &journal::read(&ctx.layout.state_dir, "web")
                .unwrap()
                .unwrap(),
            false,
        );
        assert!(
            text.contains("are left stopped: start them with `systemctl --user start web.service`"),
            "{text}"
        );
    }

    #[test]
    fn an_interrupted_restore_waits_for_recover() {
        let home = tempfile::tempdir().unwrap();
        let ctx = ctx(home.path());
        let store = BackupStore::open(ctx.backup_dir()).unwrap();
        let tmp = store.dir().join(".tmp-web-safety");
        std::fs::create_dir(&tmp).unwrap();
        let restore = RestoreRecord {
            safety: Safety::Taken { id: "web-2".into() },
            touched: true,
            ..RestoreRecord::default()
        };
        dead(&ctx, OperationRecord::Restore(restore), |r| {
            r.backup_id = Some("web-1".into());
            r.step = Step::ReplacingFiles;
        });
        startup(&ctx, Mode::Command);
        // Not guessed at: still there for `recover`; `status` lists it.
        assert!(journal::read(&ctx.layout.state_dir, "web")
            .unwrap()
            .is_some());
        let pending = pending(&ctx.layout.state_dir);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].safety_backup.as_deref(), Some("web-2"));
        assert!(pending[0]
            .action
            .contains("rolls it back to the safety backup web-2"));
        // A create refuses; a restore supersedes it.
        let err = before_create(&ctx, "web", false).unwrap_err();
        assert!(
            err.message
                .contains("a restore of web from backup web-1 was interrupted"),
            "{}",
            err.message
        );
        assert!(err.hint.unwrap().contains("leger-backup recover"));
        before_restore(&ctx, "web").unwrap();
        assert!(tmp.exists(), "not the safety backup being written");
    }

    #[test]
    fn live_operations_are_left_alone() {
        let home = tempfile::tempdir().unwrap();
        let ctx = ctx(home.path());
        let _j = Journal::begin(
            &ctx.layout.state_dir,
            "web",
            Operation::Create,
            ctx.backup_dir(),
            true,
        )
        .unwrap();
        startup(&ctx, Mode::Command);
        assert!(journal::read(&ctx.layout.state_dir, "web")
            .unwrap()
            .is_some());
        assert!(pending(&ctx.layout.state_dir).is_empty());
    }

    #[test]
    fn untouched_restores_say_nothing_was_replaced() {
        let home = tempfile::tempdir().unwrap();
        let ctx = ctx(home.path());
        let r = dead(&ctx, Operation::Restore, |r| {
            r.stopped = vec!["web.service".into()];
            r.step = Step::SafetyBackup;
        });
        let action = recover_action(&r, r.restore().unwrap());
        assert!(action.contains("had not replaced anything yet"), "{action}");
        assert!(action.contains("starts web.service again"), "{action}");
    }
}
