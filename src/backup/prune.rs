//! Pruning: per deployment and per retention class, keep the newest N
//! backups and delete the rest.
//!
//! Three classes, each with its own keep count, so that a flood of one kind
//! never pushes out another ([`Class`]): manual backups, backups taken
//! before a change (`before-remove`, `before-apply`, `pre-restore`: the ones
//! a user rolls back to after a bad change), and other automatic backups
//! (`on-stop`, ...). Within a class, backups taken after a failed stop (a
//! crash-looping service) are counted apart: besides the newest `keep` good
//! ones, only the newest failed one is kept, so they never push out a good
//! one. Whatever the counts (0 included), a deployment's newest good backup
//! (not taken after a failed stop) is never deleted.
//!
//! The selection ([`select`]) is a pure function so it is tested on its own.
//! Invalid backups are never pruned: nothing about them can be trusted,
//! including their age, so they are only reported for a person to look at.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::backup::metadata::{BackupType, Metadata};
use crate::backup::store::BackupStore;
use crate::error::{Error, Result};

/// Reasons of the backups taken before a change to the deployment.
pub const BEFORE_CHANGE_REASONS: [&str; 3] = ["before-remove", "before-apply", "pre-restore"];

/// A retention class: what a keep count applies to. Derived from the
/// backup's reason (and leger's `type`), never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Asked for by a person (`type` manual).
    Manual,
    /// Taken before a change: [`BEFORE_CHANGE_REASONS`].
    BeforeChange,
    /// Every other automatic backup (`on-stop`, `before-update`, ...).
    Automatic,
    /// Taken by a deployment's schedule (reason `scheduled`): kept apart,
    /// so that a frequent schedule never pushes out on-stop backups.
    Scheduled,
}

impl Class {
    /// The class of a backup.
    pub fn of(m: &Metadata) -> Class {
        Class::from_reason(&m.reason, m.backup_type)
    }

    /// The class of a backup with this reason and type (what a
    /// repository's snapshot tags say).
    pub fn from_reason(reason: &str, backup_type: BackupType) -> Class {
        if BEFORE_CHANGE_REASONS.contains(&reason) {
            Class::BeforeChange
        } else if reason == crate::auto::schedule::REASON && backup_type == BackupType::Automatic {
            Class::Scheduled
        } else if backup_type == BackupType::Manual {
            Class::Manual
        } else {
            Class::Automatic
        }
    }

    /// `manual`, `before-change`, `automatic`, `scheduled`.
    pub fn name(self) -> &'static str {
        match self {
            Class::Manual => "manual",
            Class::BeforeChange => "before-change",
            Class::Automatic => "automatic",
            Class::Scheduled => "scheduled",
        }
    }
}

/// How many backups of each class to keep per deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    /// `backup.keep_manual`.
    pub manual: usize,
    /// `backup.keep_before_change`.
    pub before_change: usize,
    /// `backup.keep_automatic`.
    pub automatic: usize,
    /// `backup.keep_scheduled`.
    pub scheduled: usize,
}

impl Keep {
    /// The counts of the `backup:` settings.
    pub fn configured(b: &crate::config::BackupConfig) -> Keep {
        Keep {
            manual: b.keep_manual.value,
            before_change: b.keep_before_change.value,
            automatic: b.keep_automatic.value,
            scheduled: b.keep_scheduled.value,
        }
    }

    /// The count for `class`; for backups taken after a failed stop, at
    /// most one (counted apart from the good ones).
    fn of(&self, class: Class, failed_stop: bool) -> usize {
        let keep = match class {
            Class::Manual => self.manual,
            Class::BeforeChange => self.before_change,
            Class::Automatic => self.automatic,
            Class::Scheduled => self.scheduled,
        };
        if failed_stop {
            keep.min(1)
        } else {
            keep
        }
    }
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} manual, {} before-change, {} automatic and {} scheduled",
            self.manual, self.before_change, self.automatic, self.scheduled
        )
    }
}

/// What [`select`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// IDs to delete, newest first within each group, groups in
    /// deployment, then class order.
    pub doomed: Vec<String>,
    /// IDs the keep counts would delete but that are kept as their
    /// deployment's newest good backup.
    pub protected: Vec<String>,
}

/// What [`select`] needs to know of one backup: from its metadata
/// ([`Candidate::of`]), or from a repository snapshot's tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The backup's ID.
    pub id: &'a str,
    /// Its deployment.
    pub deployment: &'a str,
    /// Its retention class.
    pub class: Class,
    /// Its reason (the newest of each before-change reason is kept).
    pub reason: &'a str,
    /// Taken after a failed stop (counted apart).
    pub failed_stop: bool,
    /// When it was taken.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl<'a> Candidate<'a> {
    /// A local backup's candidate.
    pub fn of(m: &'a Metadata) -> Candidate<'a> {
        Candidate {
            id: &m.id,
            deployment: &m.deployment_name,
            class: Class::of(m),
            reason: &m.reason,
            failed_stop: m.after_failed_stop(),
            created_at: m.created_at,
        }
    }
}

/// Newest first: by `created_at`, then ID.
fn newest_first(a: &&Candidate, b: &&Candidate) -> std::cmp::Ordering {
    (b.created_at, b.id).cmp(&(a.created_at, a.id))
}

/// The backups to delete among `listed` (valid backups): see
/// [`select_candidates`].
pub fn select(listed: &[Metadata], keep: &Keep, deployment: Option<&str>) -> Selection {
    let candidates: Vec<Candidate> = listed.iter().map(Candidate::of).collect();
    select_candidates(&candidates, keep, deployment)
}

/// The backups to delete among `listed`: per deployment,
/// class, and good or after a failed stop, all but the newest `keep`
/// ([`Keep::of`]) — and, before a change, the newest of each reason; never
/// a deployment's newest good backup. With a
/// `deployment` filter, other deployments are left alone.
pub fn select_candidates(listed: &[Candidate], keep: &Keep, deployment: Option<&str>) -> Selection {
    type Group<'a> = (&'a str, Class, bool);
    let mut groups: BTreeMap<Group, Vec<&Candidate>> = BTreeMap::new();
    let mut newest_good: BTreeMap<&str, &Candidate> = BTreeMap::new();
    for m in listed {
        if deployment.is_some_and(|d| d != m.deployment) {
            continue;
        }
        groups
            .entry((m.deployment, m.class, m.failed_stop))
            .or_default()
            .push(m);
        if !m.failed_stop {
            let best = newest_good.entry(m.deployment).or_insert(m);
            if newest_first(&m, best).is_lt() {
                *best = m;
            }
        }
    }
    let mut selection = Selection::default();
    for ((name, class, failed), mut backups) in groups {
        backups.sort_by(newest_first);
        let count = keep.of(class, failed);
        // Repeated restores (`pre-restore`) must not push out the backup
        // taken before the last apply: in the before-change class the newest
        // of each reason is kept too (unless the count is 0).
        let mut reasons_seen = std::collections::BTreeSet::new();
        for (i, m) in backups.into_iter().enumerate() {
            let newest_of_reason = reasons_seen.insert(m.reason);
            if i < count || (class == Class::BeforeChange && count > 0 && newest_of_reason) {
                continue;
            }
            if newest_good.get(name).is_some_and(|n| n.id == m.id) {
                selection.protected.push(m.id.to_owned());
            } else {
                selection.doomed.push(m.id.to_owned());
            }
        }
    }
    selection
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
    /// Kept although the keep counts say delete: the newest good backup of
    /// its deployment (also in `kept`).
    pub protected: Vec<String>,
}

/// Split `selection` by what unfinished operations need (`in_use`: ID ->
/// what): the IDs to delete, those protected, and those held. What an
/// unfinished operation needs is the reason worth telling, also when the
/// backup is the newest good one anyway.
pub fn hold(
    selection: Selection,
    in_use: &BTreeMap<String, String>,
) -> (Vec<String>, Vec<String>, Vec<HeldBackup>) {
    let (held, doomed): (Vec<String>, Vec<String>) = selection
        .doomed
        .into_iter()
        .chain(selection.protected.iter().cloned())
        .partition(|id| in_use.contains_key(id));
    let deleted = doomed
        .into_iter()
        .filter(|id| !selection.protected.contains(id))
        .collect();
    let protected = selection
        .protected
        .into_iter()
        .filter(|id| !in_use.contains_key(id))
        .collect();
    let held = held
        .into_iter()
        .map(|id| HeldBackup {
            why: in_use[&id].clone(),
            id,
        })
        .collect();
    (deleted, protected, held)
}

/// Apply the policy ([`select`] with `keep`, only `deployment`'s backups
/// when given) to the backups in `store`; with `dry_run`, only report.
/// Backups in `in_use` (ID -> what needs them) are kept whatever the
/// policy says. Every deletion is attempted; failures are reported
/// together.
pub fn prune(
    store: &BackupStore,
    deployment: Option<&str>,
    keep: &Keep,
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
                let mine = deployment.is_none_or(|d| entry.id.starts_with(&format!("{d}-")));
                if mine {
                    outcome.invalid.push(InvalidBackup {
                        id: entry.id,
                        error,
                    });
                }
            }
        }
    }
    let selection = select(&valid, keep, deployment);
    (outcome.deleted, outcome.protected, outcome.held) = hold(selection, in_use);
    // `valid` is newest first (store order).
    outcome.kept = valid
        .iter()
        .filter(|m| deployment.is_none_or(|d| d == m.deployment_name))
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
    use crate::backup::metadata::StopResult;

    fn meta(deployment: &str, day: u32, reason: &str) -> Metadata {
        let id = format!("{deployment}-2025-01-{day:02}-120000");
        Metadata {
            backup_type: BackupType::from_reason(reason),
            reason: reason.into(),
            format_version: Some(1),
            ..crate::backup::store::tests::metadata(&id, deployment, day)
        }
    }

    fn keep(manual: usize, before_change: usize, automatic: usize) -> Keep {
        Keep {
            manual,
            before_change,
            automatic,
            scheduled: automatic,
        }
    }

    /// An on-stop backup taken after the service failed.
    fn failed_stop(day: u32) -> Metadata {
        Metadata {
            stop_result: StopResult::from_systemd(Some("exit-code"), Some("exited"), Some("1")),
            ..meta("web", day, "on-stop")
        }
    }

    fn ids(days: impl IntoIterator<Item = u32>) -> Vec<String> {
        days.into_iter()
            .map(|d| format!("web-2025-01-{d:02}-120000"))
            .collect()
    }

    #[test]
    fn before_apply_survives_ten_on_stop_backups() {
        let mut all = vec![meta("web", 1, "before-apply")];
        all.extend((2..=11).map(|d| meta("web", d, "on-stop")));
        let selection = select(&all, &keep(5, 5, 3), None);
        // The three newest on-stop are kept, and the before-apply.
        assert_eq!(selection.doomed, ids((2..=8).rev()));
        assert!(selection.protected.is_empty());
    }

    #[test]
    fn repeated_restores_never_push_out_the_before_apply_backup() {
        let mut all = vec![meta("web", 1, "before-apply")];
        all.extend((2..=8).map(|d| meta("web", d, "pre-restore")));
        let selection = select(&all, &keep(5, 2, 3), None);
        // The two newest pre-restore, and the before-apply as the newest of
        // its reason.
        assert_eq!(selection.doomed, ids((2..=6).rev()));
    }

    #[test]
    fn failed_stop_backups_never_push_out_a_good_one() {
        let mut all = vec![meta("web", 1, "on-stop")];
        all.extend((2..=11).map(failed_stop));
        let selection = select(&all, &keep(5, 5, 3), None);
        // Only the newest failed one is kept besides the good one.
        assert_eq!(selection.doomed, ids((2..=10).rev()));
        // Alone in its class, the good one is still kept with a count of 1.
        let selection = select(&all, &keep(5, 5, 1), None);
        assert_eq!(selection.doomed, ids((2..=10).rev()));
    }

    #[test]
    fn zero_keep_counts_never_delete_the_newest_good_backup() {
        let all = vec![
            meta("web", 1, "manual"),
            meta("web", 2, "before-apply"),
            meta("web", 3, "on-stop"),
            failed_stop(4),
            meta("db", 1, "before-remove"),
        ];
        let selection = select(&all, &keep(0, 0, 0), None);
        assert_eq!(
            selection.doomed,
            [
                "web-2025-01-01-120000",
                "web-2025-01-02-120000",
                "web-2025-01-04-120000"
            ]
        );
        assert_eq!(
            selection.protected,
            ["db-2025-01-01-120000", "web-2025-01-03-120000"]
        );
    }

    #[test]
    fn class_comes_from_the_reason() {
        for (reason, class) in [
            ("manual", Class::Manual),
            ("weekly", Class::Manual),
            ("before-remove", Class::BeforeChange),
            ("before-apply", Class::BeforeChange),
            ("pre-restore", Class::BeforeChange),
            ("on-stop", Class::Automatic),
            ("before-update", Class::Automatic),
            ("scheduled", Class::Scheduled),
        ] {
            assert_eq!(Class::of(&meta("web", 1, reason)), class, "{reason}");
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
        let doomed = select(&all, &keep(2, 0, 3), None).doomed;
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
        let doomed = select(&all, &keep(1, 1, 1), Some("db")).doomed;
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
        assert!(select(&all, &keep(5, 5, 10), None).doomed.is_empty());
        assert_eq!(
            select(&all, &keep(0, 10, 10), None).doomed,
            vec!["web-2025-01-01-120000"]
        );
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
        let outcome = prune(&store, None, &keep(1, 1, 1), &in_use, false).unwrap();
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
        let doomed = select(&[a.clone(), b], &keep(1, 1, 1), None).doomed;
        assert_eq!(doomed, vec![a.id]);
    }
}
