//! The operation journal: what a `create` or `restore` is doing right now,
//! so that a run killed half-way (SIGKILL, OOM, power loss, a stop hook
//! killed by `TimeoutStopSec=`) is cleaned up or rolled back by the next one.
//!
//! `<state_dir>/journal/<deployment>.json` holds one [`Record`]: the
//! operation, the process (pid and start time, so a reused pid is not taken
//! for it), the backup being written or restored, the safety backup, the
//! services it stopped and the step reached. It is rewritten atomically
//! (temporary file, fsync, rename, fsync of the directory) *before* each step
//! that changes the system, and removed when the operation ends on its own,
//! successfully or through its error path. A journal left behind therefore
//! means the process died without cleaning up; the deployment lock
//! ([`crate::backup::lock`]) tells a live operation from a dead one, and
//! [`crate::backup::recovery`] acts on it.
//!
//! The same file is the "leger-backup itself is working on this
//! deployment" marker the stop hook reads without any lock
//! ([`crate::auto::ops`]): one record, never two copies of the same state.
//!
//! Writers hold the deployment lock, so there is one writer per file; the
//! handle is declared after the lock and dropped before it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use fs_err as fs;
use fs_err::os::unix::fs::OpenOptionsExt;
use serde::{Deserialize, Serialize};

use crate::deployment::validate_name;
use crate::error::{Error, Result};
use crate::process_identity::{process_start_time, ProcessIdentity};

/// Format of the journal file this version writes.
pub const JOURNAL_VERSION: u32 = 1;

/// What kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// `create` (by hand, from a leger hook or from a stop hook).
    Create,
    /// `restore` (and `recover`, which finishes one).
    Restore,
}

impl Operation {
    /// `create` / `restore`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Restore => "restore",
        }
    }
}

/// The step reached: written before the step begins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Step {
    /// Lock taken; nothing changed yet.
    Started,
    /// Copying the deployment's files into the backup being written.
    CopyingFiles,
    /// Stopping the services listed in [`Record::stopped`].
    StoppingServices,
    /// Streaming a volume into the backup being written.
    Exporting {
        /// The volume.
        volume: String,
    },
    /// Streaming a host path (a bind-mounted directory, a file a unit
    /// refers to) into the backup being written.
    ReadingHostPath {
        /// The absolute host path.
        path: String,
    },
    /// Starting the stopped services again.
    StartingServices,
    /// Making the backup visible: metadata, fsync, rename.
    Finalizing,
    /// restore: the safety backup of the current state.
    SafetyBackup,
    /// restore: the safety backup is complete; nothing replaced yet.
    SafetyTaken,
    /// restore: putting the deployment's files back.
    ReplacingFiles,
    /// restore: removing, recreating and importing a volume.
    ReplacingVolume {
        /// The volume.
        volume: String,
    },
    /// restore: starting the restored deployment's services.
    StartingRestored,
    /// restore: moving a volume's current data aside (to the path in
    /// [`Record::aside`]), the safety copy of volumes in Podman's storage.
    MovingAside {
        /// The volume.
        volume: String,
    },
    /// restore: the restored services run; dropping the data held aside
    /// and the safety backup that refers to it.
    DroppingAside,
}

/// The safety backup of a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Safety {
    /// Not decided yet.
    Pending,
    /// Nothing of the deployment existed: the state to return to is "nothing".
    NotNeeded,
    /// Being written (as `.tmp-<id>` in the backup directory).
    Taking {
        /// Its ID.
        id: String,
    },
    /// Complete: the state before the restore.
    Taken {
        /// Its ID.
        id: String,
    },
}

/// What the journal file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// [`JOURNAL_VERSION`].
    pub version: u32,
    /// Create or restore.
    pub operation: Operation,
    /// The deployment.
    pub deployment: String,
    /// The process doing it.
    pub pid: u32,
    /// Its start time (field 22 of `/proc/PID/stat`), to tell a reused pid.
    pub start_time: Option<u64>,
    /// When the operation began.
    pub started_at: DateTime<Utc>,
    /// When this record was written.
    pub updated_at: DateTime<Utc>,
    /// The stops of the deployment's services are this operation's own:
    /// stop hooks skip while it is alive (see [`crate::auto::ops`]).
    pub owns_stops: bool,
    /// create: its reason (`manual`, `on-stop`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The backup directory in use.
    pub backup_dir: PathBuf,
    /// create: the backup being written; restore: the backup being restored.
    #[serde(default)]
    pub backup_id: Option<String>,
    /// The backup being written right now into `.tmp-<ID>` (a create's own,
    /// or a restore's safety backup).
    #[serde(default)]
    pub writing: Option<String>,
    /// restore: its safety backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<Safety>,
    /// Services this operation stopped: create starts them again; for a
    /// restore they are the services that ran before it.
    #[serde(default)]
    pub stopped: Vec<String>,
    /// restore: the deployment's live files or volumes have begun to change.
    #[serde(default)]
    pub touched: bool,
    /// restore: rolling back to the safety backup, because of this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_back: Option<String>,
    /// restore: where each volume's data is moved aside (written before
    /// the move): what a rollback or `recover` moves back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aside: BTreeMap<String, PathBuf>,
    /// restore: the rollback failed too (the journal is kept for `recover`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_failed: Option<String>,
    /// The step reached.
    pub step: Step,
}

impl Record {
    /// Whether the process that wrote the record still runs.
    pub fn alive(&self) -> bool {
        ProcessIdentity {
            pid: self.pid,
            start_time: self.start_time,
        }
        .is_alive()
    }

    /// The step, in words.
    pub fn step_text(&self) -> String {
        let in_safety = self.operation == Operation::Restore
            && matches!(
                self.step,
                Step::CopyingFiles
                    | Step::Exporting { .. }
                    | Step::ReadingHostPath { .. }
                    | Step::Finalizing
            );
        let text = match &self.step {
            Step::Started => "before any change".to_owned(),
            Step::CopyingFiles => "copying the deployment's files".to_owned(),
            Step::StoppingServices => format!("stopping {}", self.stopped.join(", ")),
            Step::Exporting { volume } => format!("exporting volume {volume}"),
            Step::ReadingHostPath { path } => format!("reading host path {path}"),
            Step::StartingServices => {
                format!("starting {} again", self.stopped.join(", "))
            }
            Step::Finalizing => "writing the metadata and renaming the backup".to_owned(),
            Step::SafetyBackup => "taking the safety backup".to_owned(),
            Step::SafetyTaken => {
                "holding its complete safety backup, before replacing anything".to_owned()
            }
            Step::ReplacingFiles => "putting the deployment's files back".to_owned(),
            Step::ReplacingVolume { volume } => format!("replacing volume {volume}"),
            Step::StartingRestored => "starting the restored services".to_owned(),
            Step::MovingAside { volume } => format!("moving volume {volume}'s data aside"),
            Step::DroppingAside => "done; dropping the previous data it had moved aside".to_owned(),
        };
        let text = if in_safety {
            format!("taking the safety backup ({text})")
        } else {
            text
        };
        match &self.rolling_back {
            Some(cause) => format!("rolling back after \"{cause}\": {text}"),
            None => text,
        }
    }

    /// The safety backup's ID when it is complete.
    pub fn safety_id(&self) -> Option<&str> {
        match &self.safety {
            Some(Safety::Taken { id }) => Some(id),
            _ => None,
        }
    }
}

/// The journal directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("journal")
}

/// The journal file of `deployment`.
pub fn path(state_dir: &Path, deployment: &str) -> PathBuf {
    dir(state_dir).join(format!("{deployment}.json"))
}

/// Read the journal of `deployment`: `None` when there is none, an error
/// when it cannot be read or parsed (naming the file).
pub fn read(state_dir: &Path, deployment: &str) -> Result<Option<Record>> {
    read_file(&path(state_dir, deployment))
}

fn read_file(path: &Path) -> Result<Option<Record>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::internal(format!("{}: {e}", path.display()))),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::internal(format!("{}: malformed journal: {e}", path.display())))
}

/// Backups an unfinished operation still needs, with why: the safety
/// backup of a restore (what `recover` puts back) and the backup it was
/// restoring. `prune` and `delete` leave them alone while the journal is
/// there, so nothing a recovery relies on can go.
pub fn backups_in_use(state_dir: &Path) -> BTreeMap<String, String> {
    let mut in_use = BTreeMap::new();
    for (deployment, record) in list(state_dir) {
        let Ok(record) = record else { continue };
        if record.operation != Operation::Restore {
            continue;
        }
        if let Some(id) = record.safety_id() {
            in_use.insert(
                id.to_owned(),
                format!("the safety backup of the unfinished restore of {deployment}"),
            );
        }
        if let Some(id) = &record.backup_id {
            in_use.insert(
                id.clone(),
                format!("the backup the unfinished restore of {deployment} puts back"),
            );
        }
    }
    in_use
}

/// Every journal in the state directory: the deployment (from the file
/// name) and its record or why it cannot be read. Sorted by deployment.
pub fn list(state_dir: &Path) -> Vec<(String, Result<Record>)> {
    let Ok(entries) = std::fs::read_dir(dir(state_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Result<Record>)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let deployment = name.strip_suffix(".json")?.to_owned();
            if deployment.starts_with('.') || validate_name(&deployment).is_err() {
                return None;
            }
            let record = read_file(&e.path()).and_then(|r| {
                r.ok_or_else(|| Error::internal(format!("{} vanished", e.path().display())))
            });
            Some((deployment, record))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The journal of an operation of this process; removed on drop (the
/// operation ended on its own) unless [`Journal::keep`] was called.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    record: Record,
    keep: bool,
}

impl Journal {
    /// Begin journaling `operation` on `deployment` (the caller holds the
    /// deployment lock); writes the first record (step [`Step::Started`]).
    pub fn begin(
        state_dir: &Path,
        deployment: &str,
        operation: Operation,
        backup_dir: &Path,
        owns_stops: bool,
    ) -> Result<Journal> {
        validate_name(deployment)?;
        let pid = std::process::id();
        let now = Utc::now();
        let record = Record {
            version: JOURNAL_VERSION,
            operation,
            deployment: deployment.to_owned(),
            pid,
            start_time: process_start_time(pid),
            started_at: now,
            updated_at: now,
            owns_stops,
            reason: None,
            backup_dir: backup_dir.to_owned(),
            backup_id: None,
            writing: None,
            safety: (operation == Operation::Restore).then_some(Safety::Pending),
            stopped: Vec::new(),
            touched: false,
            aside: BTreeMap::new(),
            rolling_back: None,
            rollback_failed: None,
            step: Step::Started,
        };
        Journal::write_new(state_dir, record)
    }

    /// Take over the journal of a dead operation (`recover`): the same
    /// record, now naming this process.
    pub fn adopt(state_dir: &Path, mut record: Record) -> Result<Journal> {
        validate_name(&record.deployment)?;
        record.pid = std::process::id();
        record.start_time = process_start_time(record.pid);
        record.owns_stops = true;
        Journal::write_new(state_dir, record)
    }

    fn write_new(state_dir: &Path, record: Record) -> Result<Journal> {
        let dir = dir(state_dir);
        fs::create_dir_all(&dir)?;
        let _ = fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let mut journal = Journal {
            path: path(state_dir, &record.deployment),
            record,
            keep: false,
        };
        journal.write()?;
        Ok(journal)
    }

    /// What the journal says now.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Record that `step` begins.
    pub fn step(&mut self, step: Step) -> Result<()> {
        self.update(|r| r.step = step)
    }

    /// Change the record and write it, before the change it describes.
    pub fn update(&mut self, change: impl FnOnce(&mut Record)) -> Result<()> {
        change(&mut self.record);
        self.write()
    }

    /// Leave the file in place when dropped: the operation needs `recover`.
    pub fn keep(mut self) {
        self.keep = true;
    }

    /// Write the record atomically: temporary file, fsync, rename, fsync
    /// of the directory.
    fn write(&mut self) -> Result<()> {
        self.record.updated_at = Utc::now();
        let mut json = serde_json::to_vec_pretty(&self.record)?;
        json.push(b'\n');
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self
            .path
            .with_file_name(format!(".{name}.{}.tmp", self.record.pid));
        let written = (|| -> Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
                .open(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, &self.path)?;
            sync_parent(&self.path)
        })();
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            e.context("cannot write the operation journal")
                .with_hint("check free space and permissions of leger-backup's state directory")
        })
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Only our own record: never one a later operation wrote.
        let ours = read_file(&self.path)
            .ok()
            .flatten()
            .is_some_and(|r| r.pid == self.record.pid);
        if ours && std::fs::remove_file(&self.path).is_ok() {
            let _ = sync_parent(&self.path);
        }
    }
}

/// Remove the journal of `deployment` left by a dead process (the caller
/// holds the deployment lock).
pub fn remove(state_dir: &Path, deployment: &str) -> Result<()> {
    let path = path(state_dir, deployment);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_parent(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::internal(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

fn sync_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_before_each_step_and_removed_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let mut j =
            Journal::begin(tmp.path(), "web", Operation::Create, Path::new("/b"), true).unwrap();
        let r = read(tmp.path(), "web").unwrap().unwrap();
        assert_eq!(r.step, Step::Started);
        assert_eq!(r.pid, std::process::id());
        assert!(r.alive());
        assert_eq!(r.safety, None);
        j.update(|r| {
            r.stopped = vec!["web.service".into()];
            r.step = Step::StoppingServices;
        })
        .unwrap();
        j.step(Step::Exporting {
            volume: "data".into(),
        })
        .unwrap();
        let r = read(tmp.path(), "web").unwrap().unwrap();
        assert_eq!(r.stopped, ["web.service"]);
        assert_eq!(r.step_text(), "exporting volume data");
        let text = std::fs::read_to_string(path(tmp.path(), "web")).unwrap();
        assert!(text.contains(r#""name": "exporting""#), "{text}");
        // Nothing else in the directory: the temporary file was renamed.
        assert_eq!(std::fs::read_dir(dir(tmp.path())).unwrap().count(), 1);
        drop(j);
        assert_eq!(read(tmp.path(), "web").unwrap(), None);
        assert!(list(tmp.path()).is_empty());
    }

    #[test]
    fn an_unfinished_restore_holds_its_backups_a_create_none() {
        let tmp = tempfile::tempdir().unwrap();
        let mut restore =
            Journal::begin(tmp.path(), "web", Operation::Restore, Path::new("/b"), true).unwrap();
        restore
            .update(|r| {
                r.backup_id = Some("web-old".into());
                r.safety = Some(Safety::Taking { id: String::new() });
            })
            .unwrap();
        let _create =
            Journal::begin(tmp.path(), "db", Operation::Create, Path::new("/b"), true).unwrap();
        let held: Vec<String> = backups_in_use(tmp.path()).into_keys().collect();
        assert_eq!(
            held,
            ["web-old"],
            "a safety backup being written is not one yet"
        );
        restore
            .update(|r| {
                r.safety = Some(Safety::Taken {
                    id: "web-safety".into(),
                })
            })
            .unwrap();
        let held = backups_in_use(tmp.path());
        assert_eq!(held.keys().collect::<Vec<_>>(), ["web-old", "web-safety"]);
        assert!(held["web-safety"].contains("safety backup"), "{held:?}");
        drop(restore);
        assert!(backups_in_use(tmp.path()).is_empty());
    }

    #[test]
    fn kept_and_adopted() {
        let tmp = tempfile::tempdir().unwrap();
        let mut j =
            Journal::begin(tmp.path(), "web", Operation::Restore, Path::new("/b"), true).unwrap();
        j.update(|r| {
            r.safety = Some(Safety::Taken { id: "web-1".into() });
            r.touched = true;
            r.step = Step::ReplacingVolume {
                volume: "data".into(),
            };
        })
        .unwrap();
        j.keep();
        let mut r = read(tmp.path(), "web").unwrap().unwrap();
        assert_eq!(r.safety_id(), Some("web-1"));
        // Pretend it was another, dead process.
        r.pid = u32::MAX - 1;
        std::fs::write(path(tmp.path(), "web"), serde_json::to_vec(&r).unwrap()).unwrap();
        let listed = list(tmp.path());
        assert_eq!(listed.len(), 1);
        assert!(!listed[0].1.as_ref().unwrap().alive());
        let adopted = Journal::adopt(tmp.path(), r).unwrap();
        assert_eq!(adopted.record().pid, std::process::id());
        assert!(read(tmp.path(), "web").unwrap().unwrap().alive());
        drop(adopted);
        assert_eq!(read(tmp.path(), "web").unwrap(), None);
    }

    #[test]
    fn a_later_record_is_not_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let j =
            Journal::begin(tmp.path(), "web", Operation::Create, Path::new("/b"), true).unwrap();
        let mut other = j.record().clone();
        other.pid = u32::MAX - 1;
        std::fs::write(path(tmp.path(), "web"), serde_json::to_vec(&other).unwrap()).unwrap();
        drop(j);
        assert!(read(tmp.path(), "web").unwrap().is_some());
    }

    #[test]
    fn step_texts() {
        let tmp = tempfile::tempdir().unwrap();
        let j =
            Journal::begin(tmp.path(), "web", Operation::Restore, Path::new("/b"), true).unwrap();
        let mut r = j.record().clone();
        r.step = Step::Exporting {
            volume: "data".into(),
        };
        assert_eq!(
            r.step_text(),
            "taking the safety backup (exporting volume data)"
        );
        r.step = Step::ReplacingFiles;
        r.rolling_back = Some("boom".into());
        assert_eq!(
            r.step_text(),
            "rolling back after \"boom\": putting the deployment's files back"
        );
    }

    #[test]
    fn unreadable_journals_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir(tmp.path())).unwrap();
        std::fs::write(path(tmp.path(), "web"), b"{").unwrap();
        std::fs::write(dir(tmp.path()).join(".web.json.1.tmp"), b"{").unwrap();
        let listed = list(tmp.path());
        assert_eq!(listed.len(), 1);
        let err = listed[0].1.as_ref().unwrap_err();
        assert!(err.message.contains("malformed journal"), "{}", err.message);
        assert!(read(tmp.path(), "web").is_err());
    }
}
