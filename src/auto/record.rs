//! What the automatic triggers last did per deployment: the last skip, the
//! last failure and the last success, each with time, trigger and why, and
//! the last success and failure per target (`local`, each repository).
//! `status` shows them; the journal has the full history (every event is
//! also logged to stderr).
//!
//! Only events are kept here. Whether a backup is recent enough to coalesce
//! or rate-limit is read from the backup directory itself ([`super::history`]),
//! so deleting backups resets those checks.
//!
//! `<state_dir>/auto/<deployment>.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fs_err as fs;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::file_lock;

/// One thing a trigger did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When.
    pub time: DateTime<Utc>,
    /// What triggered it: `stop-hook web.service`, `leger pre-remove`.
    pub trigger: String,
    /// Why it was skipped, why it failed, or what was done.
    pub message: String,
    /// The backup taken, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
}

/// How an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing done, on purpose.
    Skipped,
    /// A leger hook was told not to back up (`--no-backup`); also a skip.
    Declined,
    /// A backup was attempted and failed.
    Failed,
    /// A backup was taken.
    BackedUp,
}

/// The record of one deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The last skip.
    pub last_skip: Option<Event>,
    /// The last failure.
    pub last_failure: Option<Event>,
    /// The last automatic backup taken.
    pub last_success: Option<Event>,
    /// The last time leger was told `--no-backup`: the stop hooks that fire
    /// when leger then stops the services stay quiet too. A slot of its own,
    /// so that those hooks' own skips do not hide it from each other.
    #[serde(default)]
    pub last_declined: Option<Event>,
    /// Per target of `backup.targets`: how its last automatic backups went
    /// (one target can fail while another gets the backup).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, TargetRecord>,
}

/// The last success and failure of the automatic backups to one target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// The last backup that reached the target.
    pub last_success: Option<Event>,
    /// The last backup that did not.
    pub last_failure: Option<Event>,
}

/// The record file of `deployment`.
pub fn record_path(state_dir: &Path, deployment: &str) -> PathBuf {
    state_dir.join("auto").join(format!("{deployment}.json"))
}

/// The record of `deployment`; empty when none was written (or it is
/// unreadable: it only informs `status`).
pub fn load(state_dir: &Path, deployment: &str) -> Record {
    std::fs::read(record_path(state_dir, deployment))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Store `event` as the last of its `outcome`. Hooks of one deployment may
/// finish together: the update is made under a lock, written to a temporary
/// file and renamed, so no event is lost and no reader sees half a file.
pub fn store(state_dir: &Path, deployment: &str, outcome: Outcome, event: Event) -> Result<()> {
    update(state_dir, deployment, |record| match outcome {
        Outcome::Skipped => record.last_skip = Some(event),
        Outcome::Declined => {
            record.last_skip = Some(event.clone());
            record.last_declined = Some(event);
        }
        Outcome::Failed => record.last_failure = Some(event),
        Outcome::BackedUp => record.last_success = Some(event),
    })
}

/// Record how an automatic backup to `target` went: `Ok` with the event of
/// the backup it got, `Err` with the event of its failure.
pub fn store_target(
    state_dir: &Path,
    deployment: &str,
    target: &str,
    outcome: std::result::Result<Event, Event>,
) -> Result<()> {
    update(state_dir, deployment, |record| {
        let slot = record.targets.entry(target.to_owned()).or_default();
        match outcome {
            Ok(event) => slot.last_success = Some(event),
            Err(event) => slot.last_failure = Some(event),
        }
    })
}

/// Change `deployment`'s record under its lock, written atomically.
fn update(state_dir: &Path, deployment: &str, change: impl FnOnce(&mut Record)) -> Result<()> {
    let path = record_path(state_dir, deployment);
    let _lock = file_lock::lock(&path.with_extension("json.lock"), Duration::from_secs(10))?;
    let mut record = load(state_dir, deployment);
    change(&mut record);
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    fs::write(&tmp, serde_json::to_vec_pretty(&record)?)?;
    fs::rename(&tmp, &path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(message: &str) -> Event {
        Event {
            time: Utc::now(),
            trigger: "stop-hook web.service".into(),
            message: message.into(),
            backup_id: None,
        }
    }

    #[test]
    fn each_outcome_has_its_slot() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(load(tmp.path(), "web"), Record::default());
        store(tmp.path(), "web", Outcome::Skipped, event("one")).unwrap();
        store(tmp.path(), "web", Outcome::Failed, event("two")).unwrap();
        store(tmp.path(), "web", Outcome::Declined, event("three")).unwrap();
        store(tmp.path(), "web", Outcome::Skipped, event("four")).unwrap();
        let r = load(tmp.path(), "web");
        assert_eq!(r.last_skip.unwrap().message, "four");
        assert_eq!(r.last_declined.unwrap().message, "three");
        assert_eq!(r.last_failure.unwrap().message, "two");
        assert_eq!(r.last_success, None);
        assert_eq!(load(tmp.path(), "db"), Record::default());
    }

    #[test]
    fn each_target_keeps_its_own_last_success_and_failure() {
        let tmp = tempfile::tempdir().unwrap();
        store_target(tmp.path(), "web", "local", Ok(event("one"))).unwrap();
        store_target(tmp.path(), "web", "offsite", Err(event("two"))).unwrap();
        store_target(tmp.path(), "web", "local", Ok(event("three"))).unwrap();
        store(tmp.path(), "web", Outcome::Skipped, event("four")).unwrap();
        let r = load(tmp.path(), "web");
        let local = &r.targets["local"];
        assert_eq!(local.last_success.as_ref().unwrap().message, "three");
        assert_eq!(local.last_failure, None);
        let offsite = &r.targets["offsite"];
        assert_eq!(offsite.last_success, None);
        assert_eq!(offsite.last_failure.as_ref().unwrap().message, "two");
        assert_eq!(r.last_skip.unwrap().message, "four", "the rest is kept");
    }
}
