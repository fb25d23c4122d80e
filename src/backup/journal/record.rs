//! What a journal file holds: the [`Record`] of one operation, its step
//! and, apart, what only a create or only a restore records. Kept apart
//! from the file handling in the parent module because this is the on-disk
//! format: what a later version must still read after a crash.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::process_identity::ProcessIdentity;

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
    /// restore: removing a host path and writing it back from the archive.
    ReplacingHostPath {
        /// The absolute host path.
        path: String,
    },
    /// restore: starting the restored deployment's services.
    StartingRestored,
    /// restore: moving a volume's current data aside (to the path in
    /// [`RestoreRecord::aside`]), the safety copy of volumes in Podman's storage.
    MovingAside {
        /// The volume.
        volume: String,
    },
    /// restore: the restored services run; dropping the data held aside
    /// and the safety backup that refers to it.
    DroppingAside,
}

/// The safety backup of a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Safety {
    /// Not decided yet.
    #[default]
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

/// What the journal file says: what every operation records, and the
/// part of its own ([`OperationRecord`]), so that a create's record cannot
/// carry a restore's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// [`JOURNAL_VERSION`].
    pub version: u32,
    /// Create or restore, with what only that operation records. On disk
    /// its fields stand beside the others, tagged by the `"operation"` key
    /// (the layout of [`JOURNAL_VERSION`] 1).
    #[serde(flatten)]
    pub op: OperationRecord,
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
    /// stop hooks skip while it is alive (see [`crate::auto::own_operation`]).
    pub owns_stops: bool,
    /// The backup directory in use.
    pub backup_dir: PathBuf,
    /// create: the backup being written; restore: the backup being restored.
    #[serde(default)]
    pub backup_id: Option<String>,
    /// The backup being written right now into `.tmp-<ID>` (a create's own,
    /// or a restore's safety backup).
    #[serde(default)]
    pub writing: Option<String>,
    /// Services this operation stopped: create starts them again; for a
    /// restore they are the services that ran before it.
    #[serde(default)]
    pub stopped: Vec<String>,
    /// The step reached.
    pub step: Step,
}

/// What only one kind of operation records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "lowercase")]
pub enum OperationRecord {
    /// A `create`.
    Create(CreateRecord),
    /// A `restore` (or the `recover` that finishes one).
    Restore(RestoreRecord),
}

impl From<Operation> for OperationRecord {
    /// The record of an operation that has done nothing yet.
    fn from(operation: Operation) -> OperationRecord {
        match operation {
            Operation::Create => OperationRecord::Create(CreateRecord::default()),
            Operation::Restore => OperationRecord::Restore(RestoreRecord::default()),
        }
    }
}

/// What a `create` records of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRecord {
    /// Its reason (`manual`, `on-stop`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a `restore` records of its own: the state to return to and how far
/// the return has gone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRecord {
    /// Its safety backup.
    #[serde(default)]
    pub safety: Safety,
    /// The deployment's live files or volumes have begun to change.
    #[serde(default)]
    pub touched: bool,
    /// Rolling back to the safety backup, because of this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_back: Option<String>,
    /// Where each volume's data is moved aside (written before the move):
    /// what a rollback or `recover` moves back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aside: BTreeMap<String, PathBuf>,
    /// The rollback failed too (the journal is kept for `recover`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_failed: Option<String>,
}

/// How far an interrupted restore had gone, which decides what `recover`
/// does: one reading of the journal for the words (`status`, warnings) and
/// for the deed ([`crate::backup::restore::recover`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreStage {
    /// The restore itself had completed: only the data it had moved aside
    /// is left to drop.
    Completed,
    /// It had replaced nothing yet (nor begun a rollback that failed): its
    /// services are to start again.
    NothingReplaced,
    /// The deployment may be half-restored: back to the state before it.
    HalfDone,
}

impl RestoreRecord {
    /// How far this restore had gone when its record says it reached
    /// `step`.
    pub fn stage(&self, step: &Step) -> RestoreStage {
        if *step == Step::DroppingAside && self.rolling_back.is_none() {
            RestoreStage::Completed
        } else if !self.touched && self.rollback_failed.is_none() {
            RestoreStage::NothingReplaced
        } else {
            RestoreStage::HalfDone
        }
    }

    /// The safety backup's ID when it is complete.
    pub fn safety_id(&self) -> Option<&str> {
        match &self.safety {
            Safety::Taken { id } => Some(id),
            _ => None,
        }
    }
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

    /// Create or restore.
    pub fn operation(&self) -> Operation {
        match self.op {
            OperationRecord::Create(_) => Operation::Create,
            OperationRecord::Restore(_) => Operation::Restore,
        }
    }

    /// What a restore records of its own; `None` for a create.
    pub fn restore(&self) -> Option<&RestoreRecord> {
        match &self.op {
            OperationRecord::Restore(restore) => Some(restore),
            OperationRecord::Create(_) => None,
        }
    }

    /// Where a restore moves each volume's data aside; empty for a create.
    pub fn aside(&self) -> &BTreeMap<String, PathBuf> {
        static NONE: BTreeMap<String, PathBuf> = BTreeMap::new();
        self.restore().map_or(&NONE, |r| &r.aside)
    }

    /// The step, in words.
    pub fn step_text(&self) -> String {
        let in_safety = self.operation() == Operation::Restore
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
            Step::ReplacingHostPath { path } => format!("replacing host path {path}"),
            Step::StartingRestored => "starting the restored services".to_owned(),
            Step::MovingAside { volume } => format!("moving volume {volume}'s data aside"),
            Step::DroppingAside => "done; dropping the previous data it had moved aside".to_owned(),
        };
        let text = if in_safety {
            format!("taking the safety backup ({text})")
        } else {
            text
        };
        match self.restore().and_then(|r| r.rolling_back.as_ref()) {
            Some(cause) => format!("rolling back after \"{cause}\": {text}"),
            None => text,
        }
    }

    /// The safety backup's ID of a restore, when it is complete.
    pub fn safety_id(&self) -> Option<&str> {
        self.restore().and_then(RestoreRecord::safety_id)
    }
}
