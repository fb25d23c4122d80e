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
//! [`crate::backup::interrupted`] acts on it.
//!
//! The same file is the "leger-backup itself is working on this
//! deployment" marker the stop hook reads without any lock
//! ([`crate::auto::own_operation`]): one record, never two copies of the same state.
//!
//! Writers hold the deployment lock, so there is one writer per file; the
//! handle is declared after the lock and dropped before it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;
use fs_err as fs;
use fs_err::os::unix::fs::OpenOptionsExt;

use crate::deployment::validate_name;
use crate::error::{Error, Result};
use crate::process_identity::process_start_time;

mod record;
pub use record::{
    CreateRecord, Operation, OperationRecord, Record, RestoreRecord, RestoreStage, Safety, Step,
    JOURNAL_VERSION,
};

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
        if record.operation() != Operation::Restore {
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
        operation: impl Into<OperationRecord>,
        backup_dir: &Path,
        owns_stops: bool,
    ) -> Result<Journal> {
        validate_name(deployment)?;
        let pid = std::process::id();
        let now = Utc::now();
        let record = Record {
            version: JOURNAL_VERSION,
            op: operation.into(),
            deployment: deployment.to_owned(),
            pid,
            start_time: process_start_time(pid),
            started_at: now,
            updated_at: now,
            owns_stops,
            backup_dir: backup_dir.to_owned(),
            backup_id: None,
            writing: None,
            stopped: Vec::new(),
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

    /// Change a restore's record and write it, before the change it
    /// describes: `change` gets the common part and the restore's own (the
    /// record it is handed holds a blank restore part meanwhile). An
    /// internal error, writing nothing, when this journal is a create's.
    pub fn update_restore(
        &mut self,
        change: impl FnOnce(&mut Record, &mut RestoreRecord),
    ) -> Result<()> {
        let OperationRecord::Restore(own) = &mut self.record.op else {
            return Err(Error::internal(format!(
                "the journal of {} is not a restore's",
                self.record.deployment
            )));
        };
        let mut own = std::mem::take(own);
        change(&mut self.record, &mut own);
        self.record.op = OperationRecord::Restore(own);
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
mod tests;
