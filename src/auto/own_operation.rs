//! "leger-backup itself is working on this deployment": what the stop hook
//! reads to tell its own stops from the user's.
//!
//! Why: a consistent `create` stops the services, which runs their
//! `ExecStopPost=` stop hook, while `create` holds the deployment lock and
//! waits for the stop job. A hook that waited for that lock would hold up
//! `systemctl stop` until `TimeoutStopSec=`. The hook instead reads the
//! operation journal ([`crate::backup::journal`]), without any lock, and
//! returns at once when an operation that owns the stops is alive. The
//! journal names the process (pid and start time, so a reused pid is not
//! mistaken for it); one left by a killed process is stale and ignored here
//! (recovery deals with it). There is no separate marker file: the journal
//! is the one record of what is in progress.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backup::journal;

/// The operation in progress, as the stop hook needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnOperation {
    /// Process doing it.
    pub pid: u32,
    /// Its start time (field 22 of `/proc/PID/stat`), to tell a reused pid.
    pub start_time: Option<u64>,
    /// `create`, `restore`, ...
    pub operation: String,
    /// When it began.
    pub started_at: DateTime<Utc>,
}

/// The operation of leger-backup in progress on `deployment` whose service
/// stops are its own, if a live process holds it. Reads one small file;
/// takes no lock. A backup taken by a stop hook does not count: the other
/// hooks of the deployment take turns with it and coalesce instead.
pub fn in_progress(state_dir: &Path, deployment: &str) -> Option<OwnOperation> {
    let record = journal::read(state_dir, deployment).ok()??;
    (record.owns_stops && record.alive()).then(|| OwnOperation {
        pid: record.pid,
        start_time: record.start_time,
        operation: record.operation().as_str().to_owned(),
        started_at: record.started_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::journal::{Journal, Operation as Kind};

    #[test]
    fn seen_while_held_and_gone_after() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(in_progress(tmp.path(), "web"), None);
        let j = Journal::begin(tmp.path(), "web", Kind::Create, Path::new("/b"), true).unwrap();
        let op = in_progress(tmp.path(), "web").unwrap();
        assert_eq!(op.pid, std::process::id());
        assert_eq!(op.operation, "create");
        assert_eq!(in_progress(tmp.path(), "db"), None);
        drop(j);
        assert_eq!(in_progress(tmp.path(), "web"), None);
    }

    #[test]
    fn stop_hook_backups_do_not_count() {
        let tmp = tempfile::tempdir().unwrap();
        let _j = Journal::begin(tmp.path(), "web", Kind::Create, Path::new("/b"), false).unwrap();
        assert_eq!(in_progress(tmp.path(), "web"), None);
    }

    #[test]
    fn stale_or_broken_journals_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::begin(tmp.path(), "web", Kind::Restore, Path::new("/b"), true).unwrap();
        let mut record = j.record().clone();
        j.keep();
        let path = journal::path(tmp.path(), "web");
        // Our pid with another start time: a reused pid.
        record.start_time = Some(1);
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(in_progress(tmp.path(), "web"), None);
        // A pid that does not exist.
        record.pid = u32::MAX - 1;
        record.start_time = None;
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(in_progress(tmp.path(), "web"), None);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(in_progress(tmp.path(), "web"), None);
    }
}
