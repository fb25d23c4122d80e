//! "leger-backup itself is working on this deployment": a marker file that
//! `create` and `restore` hold while they may stop or start its services.
//!
//! Why: a consistent `create` stops the services, which runs their
//! `ExecStopPost=` stop hook, while `create` holds the deployment lock and
//! waits for the stop job. A hook that waited for that lock would hold up
//! `systemctl stop` until `TimeoutStopSec=`. The hook instead reads this
//! marker, without any lock, and returns at once when the operation is
//! alive. The marker names the process (pid and start time, so a reused
//! pid is not mistaken for it); a marker left by a killed process is stale
//! and ignored.
//!
//! `<state_dir>/ops/<deployment>.json`:
//! `{"pid": 1234, "start_time": 5678, "operation": "create", "started_at": "..."}`

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use fs_err as fs;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// What the marker file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Process doing it.
    pub pid: u32,
    /// Its start time (field 22 of `/proc/PID/stat`), to tell a reused pid.
    pub start_time: Option<u64>,
    /// `create`, `restore`, ...
    pub operation: String,
    /// When it began.
    pub started_at: DateTime<Utc>,
}

/// The marker file of `deployment`.
pub fn marker_path(state_dir: &Path, deployment: &str) -> PathBuf {
    state_dir.join("ops").join(format!("{deployment}.json"))
}

/// A marker held by this process; removed on drop.
#[derive(Debug)]
pub struct OperationMarker {
    path: PathBuf,
    pid: u32,
}

impl OperationMarker {
    /// Mark `operation` on `deployment` as in progress in this process.
    /// Call it once the deployment lock is held and before any service is
    /// stopped; keep the value alive until the services are started again
    /// (a failed start runs the stop hooks too).
    pub fn begin(state_dir: &Path, deployment: &str, operation: &str) -> Result<OperationMarker> {
        let path = marker_path(state_dir, deployment);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let pid = std::process::id();
        let op = Operation {
            pid,
            start_time: process_start_time(pid),
            operation: operation.to_owned(),
            started_at: Utc::now(),
        };
        let tmp = path.with_extension(format!("json.{pid}.tmp"));
        fs::write(&tmp, serde_json::to_vec(&op)?)?;
        fs::rename(&tmp, &path)?;
        Ok(OperationMarker { path, pid })
    }
}

impl Drop for OperationMarker {
    fn drop(&mut self) {
        // Only our own marker: never one a later operation wrote.
        if read(&self.path).is_some_and(|op| op.pid == self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn read(path: &Path) -> Option<Operation> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The operation of leger-backup in progress on `deployment`, if a live
/// process holds the marker. Reads one small file; takes no lock.
pub fn in_progress(state_dir: &Path, deployment: &str) -> Option<Operation> {
    let op = read(&marker_path(state_dir, deployment))?;
    is_alive(op.pid, op.start_time).then_some(op)
}

fn is_alive(pid: u32, start_time: Option<u64>) -> bool {
    match (process_start_time(pid), start_time) {
        (None, _) => false,
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
    }
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks since boot), or
/// `None` when the process does not exist.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_seen_while_held_and_gone_after() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(in_progress(tmp.path(), "web"), None);
        let marker = OperationMarker::begin(tmp.path(), "web", "create").unwrap();
        let op = in_progress(tmp.path(), "web").unwrap();
        assert_eq!(op.pid, std::process::id());
        assert_eq!(op.operation, "create");
        assert_eq!(in_progress(tmp.path(), "db"), None);
        drop(marker);
        assert_eq!(in_progress(tmp.path(), "web"), None);
        assert!(!marker_path(tmp.path(), "web").exists());
    }

    #[test]
    fn stale_marker_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let path = marker_path(tmp.path(), "web");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Our pid with another start time: a reused pid.
        let op = Operation {
            pid: std::process::id(),
            start_time: Some(1),
            operation: "create".into(),
            started_at: Utc::now(),
        };
        std::fs::write(&path, serde_json::to_vec(&op).unwrap()).unwrap();
        assert_eq!(in_progress(tmp.path(), "web"), None);
        // A pid that does not exist.
        let op = Operation {
            pid: u32::MAX - 1,
            start_time: None,
            ..op
        };
        std::fs::write(&path, serde_json::to_vec(&op).unwrap()).unwrap();
        assert_eq!(in_progress(tmp.path(), "web"), None);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(in_progress(tmp.path(), "web"), None);
    }

    #[test]
    fn start_time_of_self() {
        assert!(process_start_time(std::process::id()).is_some());
    }
}
