//! Pruning: per deployment and per type (manual, automatic), keep the newest
//! N backups and delete the rest.
//!
//! The selection ([`select`]) is a pure function so it is tested on its own.
//! Invalid backups are never pruned: nothing about them can be trusted,
//! including their age, so they are only reported for a person to look at.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::backup::metadata::{BackupType, Metadata};
use crate::backup::store::BackupStore;
use crate::error::{Error, Result};

/// The IDs to delete among `listed` (valid backups): per deployment and per
/// type, all but the newest `keep_*` (by `created_at`, then ID). With a
/// `deployment` filter, other deployments are left alone. Returned newest
/// first within each group, groups in name order.
pub fn select(
    listed: &[Metadata],
    keep_manual: usize,
    keep_automatic: usize,
    deployment: Option<&str>,
) -> Vec<String> {
    let mut groups: BTreeMap<(&str, u8), Vec<&Metadata>> = BTreeMap::new();
    for m in listed {
        if deployment.is_some_and(|d| d != m.deployment_name) {
            continue;
        }
        let kind = match m.backup_type {
            BackupType::Manual => 0,
            BackupType::Automatic => 1,
        };
        groups
            .entry((m.deployment_name.as_str(), kind))
            .or_default()
            .push(m);
    }
    let mut doomed = Vec::new();
    for ((_, kind), mut backups) in groups {
        backups.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let keep = if kind == 0 {
            keep_manual
        } else {
            keep_automatic
        };
        doomed.extend(backups.into_iter().skip(keep).map(|m| m.id.clone()));
    }
    doomed
}

/// A backup prune left alone because its metadata is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidBackup {
    /// Its directory name.
    pub id: String,
    /// Why it is invalid.
    pub error: String,
}

/// A backup the policy would delete but an unfinished operation needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldBackup {
    /// Its ID.
    pub id: String,
    /// What needs it (see `journal::backups_in_use`).
    pub why: String,
}

/// What [`prune`] did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneOutcome {
    /// Whether nothing was deleted on purpose.
    pub dry_run: bool,
    /// Deleted (or to delete), newest first per group.
    pub deleted: Vec<String>,
    /// Valid backups kept, newest first.
    pub kept: Vec<String>,
    /// Invalid backups, never pruned automatically.
    pub invalid: Vec<InvalidBackup>,
    /// Kept although the policy says delete: an unfinished operation
    /// needs them (also in `kept`).
    pub held: Vec<HeldBackup>,
}

/// Apply the policy (keep the newest `keep_manual` manual and
/// `keep_automatic` automatic backups per deployment, only `deployment`'s
/// when given) to the backups in `store`; with `dry_run`, only report.
/// Backups in `in_use` (ID -> what needs them) are kept whatever the
/// policy says. Every deletion is attempted; failures are reported
/// together.
pub fn prune(
    store: &BackupStore,
    deployment: Option<&str>,
    keep_manual: usize,
    keep_automatic: usize,
    in_use: &BTreeMap<String, String>,
    dry_run: bool,
) -> Result<PruneOutcome> {
    let listed = store.list()?;
    let mut valid = Vec::new();
    let mut outcome = PruneOutcome {
        dry_run,
        ..PruneOutcome::default()
    };
    for entry in listed {
        match entry.metadata {
            Ok(m) => valid.push(m),
            Err(error) => {
                let mine = deployment.map_or(true, |d| entry.id.starts_with(&format!("{d}-")));
                if mine {
                    outcome.invalid.push(InvalidBackup {
                        id: entry.id,
                        error,
                    });
                }
            }
        }
    }
    let (held, doomed): (Vec<String>, Vec<String>) =
        select(&valid, keep_manual, keep_automatic, deployment)
            .into_iter()
            .partition(|id| in_use.contains_key(id));
    outcome.deleted = doomed;
    outcome.held = held
        .into_iter()
        .map(|id| HeldBackup {
            why: in_use[&id].clone(),
            id,
        })
        .collect();
    // `valid` is newest first (store order).
    outcome.kept = valid
        .iter()
        .filter(|m| deployment.map_or(true, |d| d == m.deployment_name))
        .map(|m| m.id.clone())
        .filter(|id| !outcome.deleted.contains(id))
        .collect();
    if dry_run {
        return Ok(outcome);
    }
    let mut failures = Vec::new();
    let mut deleted = Vec::new();
    for id in std::mem::take(&mut outcome.deleted) {
        match store.delete(&id) {
            Ok(()) => deleted.push(id),
            Err(e) => failures.push(format!("{id}: {}", e.message)),
        }
    }
    outcome.deleted = deleted;
    if !failures.is_empty() {
        return Err(Error::internal(format!(
            "prune could not delete {} backup(s): {}",
            failures.len(),
            failures.join("; ")
        ))
        .with_hint("check the permissions of the backup directory, then run prune again"));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn meta(deployment: &str, day: u32, reason: &str) -> Metadata {
        let created = Utc.with_ymd_and_hms(2025, 1, day, 12, 0, 0).unwrap();
        Metadata {
            id: format!("{deployment}-2025-01-{day:02}-120000"),
            deployment_name: deployment.into(),
            created_at: created,
            backup_type: BackupType::from_reason(reason),
            reason: reason.into(),
            size: 0,
            quadlet_files: vec![],
            volumes: vec![],
            format_version: Some(1),
            leger_backup_version: None,
            scope: None,
            compression: None,
            files: vec![],
            dirs: vec![],
            installation: None,
            services: vec![],
            secrets: vec![],
            consistency: None,
            downtime_seconds: None,
        }
    }

    #[test]
    fn keeps_newest_per_deployment_and_type() {
        let mut all = Vec::new();
        for day in 1..=6 {
            all.push(meta("web", day, "manual"));
            all.push(meta("web", day + 10, "before-update"));
            all.push(meta("db", day, "manual"));
        }
        // Order in the input does not matter.
        all.reverse();
        let doomed = select(&all, 2, 3, None);
        assert_eq!(
            doomed,
            vec![
                "db-2025-01-04-120000",
                "db-2025-01-03-120000",
                "db-2025-01-02-120000",
                "db-2025-01-01-120000",
                "web-2025-01-04-120000",
                "web-2025-01-03-120000",
                "web-2025-01-02-120000",
                "web-2025-01-01-120000",
                "web-2025-01-13-120000",
                "web-2025-01-12-120000",
                "web-2025-01-11-120000",
            ]
        );
    }

    #[test]
    fn deployment_filter_leaves_others_alone() {
        let all: Vec<_> = (1..=4)
            .flat_map(|d| [meta("web", d, "manual"), meta("db", d, "manual")])
            .collect();
        let doomed = select(&all, 1, 1, Some("db"));
        assert_eq!(
            doomed,
            vec![
                "db-2025-01-03-120000",
                "db-2025-01-02-120000",
                "db-2025-01-01-120000"
            ]
        );
    }

    #[test]
    fn fewer_than_kept_deletes_nothing_and_zero_deletes_all() {
        let all = vec![meta("web", 1, "manual"), meta("web", 2, "pre-restore")];
        assert!(select(&all, 5, 10, None).is_empty());
        assert_eq!(select(&all, 0, 10, None), vec!["web-2025-01-01-120000"]);
    }

    #[test]
    fn backups_in_use_are_held_whatever_the_policy() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BackupStore::open(&tmp.path().join("backups")).unwrap();
        for day in 1..=3 {
            let m = meta("web", day, "manual");
            store.begin(&m.id).unwrap().finalize(m).unwrap();
        }
        let held_id = "web-2025-01-01-120000".to_owned();
        let in_use = BTreeMap::from([(held_id.clone(), "needed".to_owned())]);
        let outcome = prune(&store, None, 1, 1, &in_use, false).unwrap();
        assert_eq!(outcome.deleted, ["web-2025-01-02-120000"]);
        assert_eq!(
            outcome.held,
            [HeldBackup {
                id: held_id.clone(),
                why: "needed".into()
            }]
        );
        assert_eq!(outcome.kept, ["web-2025-01-03-120000", held_id.as_str()]);
        assert!(store.exists(&held_id).unwrap());
        assert!(!store.exists("web-2025-01-02-120000").unwrap());
    }

    #[test]
    fn same_time_orders_by_id() {
        let a = meta("web", 1, "manual");
        let mut b = a.clone();
        b.id = format!("{}-2", a.id);
        let doomed = select(&[a.clone(), b], 1, 1, None);
        assert_eq!(doomed, vec![a.id]);
    }
}
