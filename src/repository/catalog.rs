//! The backups of a repository as leger-backup shows them: `list`, `info`,
//! `delete` and `prune` over its snapshots, found by their tags.
//!
//! The same rules as the backup directory: a snapshot whose tags do not
//! parse is listed as invalid with the reason and never pruned; metadata
//! read from a snapshot is checked like local metadata; retention uses the
//! same classes ([`crate::backup::prune::select_candidates`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::snapshot::{SnapshotTags, METADATA_PATH, TAG};
use super::{Repository, RepositoryConfig, Snapshot};
use crate::backup::metadata::{Metadata, MAX_METADATA_BYTES};
use crate::backup::prune::{
    hold, select_candidates, Candidate, Class, InvalidBackup, Keep, PruneOutcome,
};
use crate::config::BackupConfig;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout::Scope;

/// One snapshot of ours, with its tags read (or why they do not parse).
#[derive(Debug, Clone)]
pub struct Entry {
    /// The restic snapshot.
    pub snapshot: Snapshot,
    /// Its leger-backup tags, or why they are unusable.
    pub tags: std::result::Result<SnapshotTags, String>,
}

impl Entry {
    fn new(snapshot: Snapshot) -> Entry {
        let tags = snapshot.backup_tags().map_err(|e| e.message);
        Entry { snapshot, tags }
    }

    /// The backup ID, or for an invalid snapshot its short ID.
    pub fn id(&self) -> String {
        match &self.tags {
            Ok(t) => t.id.clone(),
            Err(_) => self.snapshot.short_id().to_owned(),
        }
    }

    /// The JSON object `list --repo --json` prints: the keys of local
    /// `list` that tags can fill, plus `snapshot` and `repository`.
    pub fn json(&self, repository: &str) -> Value {
        let mut o = Map::new();
        o.insert("id".into(), self.id().into());
        o.insert("valid".into(), self.tags.is_ok().into());
        o.insert(
            "error".into(),
            self.tags
                .as_ref()
                .err()
                .map_or(Value::Null, |e| e.clone().into()),
        );
        if let Ok(t) = &self.tags {
            o.insert("retention".into(), class_of(t).name().into());
            o.insert("deployment_name".into(), t.deployment.clone().into());
            o.insert(
                "backup_type".into(),
                serde_json::to_value(t.backup_type).unwrap_or(Value::Null),
            );
            o.insert("reason".into(), t.reason.clone().into());
        }
        o.insert("created_at".into(), self.snapshot.time.to_rfc3339().into());
        o.insert("snapshot".into(), self.snapshot.id.clone().into());
        o.insert("repository".into(), repository.into());
        Value::Object(o)
    }
}

fn class_of(t: &SnapshotTags) -> Class {
    Class::from_reason(&t.reason, t.backup_type)
}

/// Newest first (by time, then snapshot ID).
fn sort_newest_first(snapshots: &mut [Snapshot]) {
    snapshots.sort_by(|a, b| (b.time, &b.id).cmp(&(a.time, &a.id)));
}

/// Our snapshots (of `deployment` when given), newest first; those whose
/// tags do not parse are listed too, as invalid.
pub fn list(repo: &dyn Repository, deployment: Option<&str>) -> Result<Vec<Entry>> {
    let tags = match deployment {
        Some(d) => SnapshotTags::of_deployment(d),
        None => vec![TAG.to_owned()],
    };
    let mut snapshots = repo.snapshots(&tags)?;
    sort_newest_first(&mut snapshots);
    Ok(snapshots.into_iter().map(Entry::new).collect())
}

/// The snapshot of backup `id` (the newest when there are several).
#[derive(Debug, Clone)]
pub struct Found {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Its tags.
    pub tags: SnapshotTags,
    /// Every snapshot tagged with this ID (the newest first): `delete`
    /// forgets them all; more than one deserves a warning.
    pub all: Vec<String>,
}

/// Find backup `id` in `repo` by its tags.
pub fn find(repo: &dyn Repository, id: &str) -> Result<Found> {
    crate::backup::store::validate_id(id)?;
    let mut snapshots = repo.snapshots(&SnapshotTags::of_id(id))?;
    sort_newest_first(&mut snapshots);
    let all: Vec<String> = snapshots.iter().map(|s| s.id.clone()).collect();
    let Some(snapshot) = snapshots.into_iter().next() else {
        return Err(
            Error::user(format!("no backup {id} in repository {}", repo.name())).with_hint(
                format!(
                    "`leger-backup list --repo {}` shows its backups",
                    repo.name()
                ),
            ),
        );
    };
    let tags = snapshot.backup_tags().map_err(|e| {
        Error::user(format!(
            "the snapshot {} of backup {id} in repository {} is invalid: {}",
            snapshot.short_id(),
            repo.name(),
            e.message
        ))
    })?;
    Ok(Found {
        snapshot,
        tags,
        all,
    })
}

/// The backup's metadata, read from its snapshot and checked exactly like
/// local metadata (size cap, every path and mode); it must name the
/// backup and deployment its tags name.
pub fn load_metadata(repo: &dyn Repository, found: &Found) -> Result<Metadata> {
    let bytes = repo.dump(&found.snapshot.id, METADATA_PATH, MAX_METADATA_BYTES)?;
    let shown = format!(
        "{}:{}{METADATA_PATH}",
        repo.name(),
        found.snapshot.short_id()
    );
    let metadata = Metadata::parse(&bytes, Path::new(&shown))?;
    if metadata.id != found.tags.id || metadata.deployment_name != found.tags.deployment {
        return Err(Error::user(format!(
            "{shown}: the metadata is of backup {} ({}), the snapshot's tags say {} ({})",
            metadata.id, metadata.deployment_name, found.tags.id, found.tags.deployment
        ))
        .with_hint("the snapshot cannot be trusted; remove it with `leger-backup delete --repo`"));
    }
    Ok(metadata)
}

/// Refuse to delete a backup an unfinished restore needs (`in_use`: ID ->
/// what needs it, [`crate::backup::journal::backups_in_use`]), in `scope`,
/// whose own `recover` is the way out.
pub fn check_not_in_use(id: &str, in_use: &BTreeMap<String, String>, scope: Scope) -> Result<()> {
    match in_use.get(id) {
        Some(why) => Err(
            Error::user(format!("not deleting {id}: it is {why}")).with_hint(format!(
                "run `{}` first (`{}` shows what is pending); the backup can be deleted once \
                 the restore is recovered",
                scope.command("recover"),
                scope.command("status")
            )),
        ),
        None => Ok(()),
    }
}

/// The keep counts of `repository`: its own `keep_manual` and
/// `keep_automatic`, else those of `backup:`.
pub fn keep_for(backup: &BackupConfig, repository: &RepositoryConfig) -> Keep {
    let configured = Keep::configured(backup);
    Keep {
        manual: repository.keep_manual.unwrap_or(configured.manual),
        automatic: repository.keep_automatic.unwrap_or(configured.automatic),
        before_change: configured.before_change,
        scheduled: configured.scheduled,
    }
}

/// Apply the retention policy to `repo`'s snapshots (of `deployment` when
/// given): `restic forget` of the rest by ID, then one `restic prune`.
/// Invalid snapshots and backups in `in_use` are kept. Tags do not say
/// whether a backup followed a failed stop: every one counts as good.
pub fn prune(
    repo: &dyn Repository,
    deployment: Option<&str>,
    keep: &Keep,
    in_use: &BTreeMap<String, String>,
    dry_run: bool,
) -> Result<PruneOutcome> {
    let entries = list(repo, deployment)?;
    let mut outcome = PruneOutcome {
        dry_run,
        ..PruneOutcome::default()
    };
    let mut valid = Vec::new();
    for e in &entries {
        match &e.tags {
            Ok(t) => valid.push((e, t)),
            Err(error) => outcome.invalid.push(InvalidBackup {
                id: e.id(),
                error: error.clone(),
            }),
        }
    }
    let candidates: Vec<Candidate> = valid
        .iter()
        .map(|(e, t)| Candidate {
            id: &t.id,
            deployment: &t.deployment,
            class: class_of(t),
            reason: &t.reason,
            failed_stop: false,
            created_at: e.snapshot.time,
        })
        .collect();
    let selection = select_candidates(&candidates, keep, deployment);
    (outcome.deleted, outcome.protected, outcome.held) = hold(selection, in_use);
    outcome.kept = valid
        .iter()
        .map(|(_, t)| t.id.clone())
        .filter(|id| !outcome.deleted.contains(id))
        .collect();
    let snapshots: Vec<String> = valid
        .iter()
        .filter(|(_, t)| outcome.deleted.contains(&t.id))
        .map(|(e, _)| e.snapshot.id.clone())
        .collect();
    if dry_run || snapshots.is_empty() {
        return Ok(outcome);
    }
    // A run of ours killed mid-way leaves its lock behind, which blocks
    // forget and prune (they lock exclusively): `restic unlock` removes
    // only stale locks (a process gone from this host, or none refreshed
    // for 30 minutes), never a live run's.
    repo.unlock()?;
    repo.forget(&snapshots)?;
    repo.prune()?;
    Ok(outcome)
}

/// One line of `repo list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepositoryStatus {
    /// Its name.
    pub name: String,
    /// Its URL, redacted.
    pub url: String,
    /// Whether listing its snapshots worked.
    pub reachable: bool,
    /// Why not.
    pub error: Option<String>,
    /// How many snapshots of ours it holds.
    pub snapshots: Option<usize>,
}

/// Every configured repository: reachable or not, our snapshot count.
pub fn status(ctx: &Context) -> Vec<RepositoryStatus> {
    ctx.config
        .backup
        .repositories
        .values()
        .map(|config| {
            let counted = ctx
                .repositories
                .open(config)
                .and_then(|repo| repo.snapshots(&[TAG.to_owned()]));
            RepositoryStatus {
                name: config.name.clone(),
                url: config.display_url(),
                reachable: counted.is_ok(),
                error: counted.as_ref().err().map(|e| e.message.clone()),
                snapshots: counted.ok().map(|s| s.len()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::metadata::BackupType;
    use crate::testing::fake_restic::FakeRestic;
    use chrono::TimeZone;

    fn tags(deployment: &str, day: u32, reason: &str) -> (String, Vec<String>) {
        let id = format!("{deployment}-2025-01-{day:02}-120000");
        let t = SnapshotTags {
            deployment: deployment.into(),
            id: id.clone(),
            backup_type: BackupType::from_reason(reason),
            reason: reason.into(),
        };
        (id, t.to_tags().unwrap())
    }

    fn time(day: u32) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc
            .with_ymd_and_hms(2025, 1, day, 12, 0, 0)
            .unwrap()
    }

    /// A repository with a backup of `deployment` per `(day, reason)`,
    /// each holding its metadata.
    fn repo_with(backups: &[(&str, u32, &str)]) -> FakeRestic {
        let repo = FakeRestic::new("offsite");
        for (deployment, day, reason) in backups {
            let (id, list) = tags(deployment, *day, reason);
            let m = Metadata {
                backup_type: BackupType::from_reason(reason),
                reason: (*reason).into(),
                ..crate::backup::store::tests::metadata(&id, deployment, *day)
            };
            let json = serde_json::to_vec(&m).unwrap();
            repo.add(&list, time(*day), &[(METADATA_PATH, &json)]);
        }
        repo
    }

    #[test]
    fn list_is_newest_first_and_shows_foreign_tags_as_invalid() {
        let repo = repo_with(&[
            ("web", 1, "manual"),
            ("web", 3, "on-stop"),
            ("db", 2, "manual"),
        ]);
        repo.add(&["leger-backup".into(), "id=x".into()], time(4), &[]);
        let all = list(&repo, None).unwrap();
        let ids: Vec<String> = all.iter().map(Entry::id).collect();
        assert_eq!(
            ids[1..],
            [
                "web-2025-01-03-120000",
                "db-2025-01-02-120000",
                "web-2025-01-01-120000"
            ]
        );
        assert!(
            all[0].tags.is_err(),
            "the invalid one is listed, not hidden"
        );
        let json = all[0].json("offsite");
        assert_eq!(json["valid"], false);
        assert!(json["error"].as_str().unwrap().contains("deployment="));
        let json = all[1].json("offsite");
        assert_eq!(json["retention"], "automatic");
        assert_eq!(json["deployment_name"], "web");
        assert_eq!(json["repository"], "offsite");
        assert_eq!(json["snapshot"].as_str().unwrap().len(), 64);
        let web = list(&repo, Some("db")).unwrap();
        assert_eq!(web.len(), 1);
    }

    #[test]
    fn info_reads_and_checks_the_metadata() {
        let repo = repo_with(&[("web", 1, "manual")]);
        let found = find(&repo, "web-2025-01-01-120000").unwrap();
        let m = load_metadata(&repo, &found).unwrap();
        assert_eq!(m.deployment_name, "web");
        let err = find(&repo, "web-2025-01-09-120000").unwrap_err();
        assert!(
            err.message.contains("repository offsite"),
            "{}",
            err.message
        );
        assert!(find(&repo, "../x").is_err());

        // Tags and metadata that disagree, and hostile metadata, are refused.
        let (_, list) = tags("web", 2, "manual");
        let other = serde_json::to_vec(&crate::backup::store::tests::metadata(
            "web-2025-01-05-120000",
            "web",
            5,
        ))
        .unwrap();
        repo.add(&list, time(2), &[(METADATA_PATH, &other)]);
        let found = find(&repo, "web-2025-01-02-120000").unwrap();
        assert!(load_metadata(&repo, &found)
            .unwrap_err()
            .message
            .contains("tags say"));
        let (_, list) = tags("web", 6, "manual");
        repo.add(&list, time(6), &[(METADATA_PATH, b"{\"id\": 1}")]);
        let found = find(&repo, "web-2025-01-06-120000").unwrap();
        assert!(load_metadata(&repo, &found)
            .unwrap_err()
            .message
            .contains("malformed"));
    }

    #[test]
    fn duplicates_use_the_newest_and_delete_forgets_them_all() {
        let repo = repo_with(&[("web", 1, "manual")]);
        let (_, list) = tags("web", 1, "manual");
        let newer = repo.add(&list, time(9), &[]);
        let found = find(&repo, "web-2025-01-01-120000").unwrap();
        assert_eq!(found.snapshot.id, newer);
        assert_eq!(found.all.len(), 2);
        repo.forget(&found.all).unwrap();
        assert!(repo.ids().is_empty());
        let in_use = BTreeMap::from([("web-1".to_owned(), "needed by a restore".to_owned())]);
        let err = check_not_in_use("web-1", &in_use, Scope::User).unwrap_err();
        assert!(err.message.contains("needed"), "{}", err.message);
        assert!(err
            .hint
            .unwrap()
            .starts_with("run `leger-backup recover` first"));
        let err = check_not_in_use("web-1", &in_use, Scope::System).unwrap_err();
        let hint = err.hint.unwrap();
        assert!(
            hint.contains("`leger-backup --system recover`")
                && hint.contains("`leger-backup --system status`"),
            "{hint}"
        );
        assert!(check_not_in_use("web-2", &in_use, Scope::System).is_ok());
    }

    #[test]
    fn prune_forgets_by_class_then_prunes_once() {
        let repo = repo_with(&[
            ("web", 1, "manual"),
            ("web", 2, "manual"),
            ("web", 3, "manual"),
            ("web", 4, "before-apply"),
            ("web", 5, "on-stop"),
            ("web", 6, "on-stop"),
            ("db", 1, "manual"),
        ]);
        repo.add(&["leger-backup".into()], time(7), &[]);
        let keep = Keep {
            manual: 1,
            before_change: 1,
            automatic: 1,
            scheduled: 1,
        };
        let in_use = BTreeMap::from([("web-2025-01-01-120000".to_owned(), "needed".to_owned())]);
        let dry = prune(&repo, Some("web"), &keep, &in_use, true).unwrap();
        assert_eq!(
            dry.deleted,
            ["web-2025-01-02-120000", "web-2025-01-05-120000"]
        );
        assert_eq!(dry.held[0].id, "web-2025-01-01-120000");
        assert_eq!(repo.ids().len(), 8, "a dry run forgets nothing");
        let done = prune(&repo, Some("web"), &keep, &in_use, false).unwrap();
        assert_eq!(done.deleted, dry.deleted);
        assert_eq!(repo.ids().len(), 6);
        let log = repo.log();
        assert!(
            log.iter().filter(|l| l.starts_with("forget")).count() == 1,
            "{log:?}"
        );
        assert_eq!(log.last().unwrap(), "prune offsite");
        let all = prune(&repo, None, &keep, &BTreeMap::new(), true).unwrap();
        assert_eq!(all.invalid.len(), 1, "foreign snapshots are never pruned");
        assert!(all.kept.contains(&"db-2025-01-01-120000".to_owned()));
    }

    #[test]
    fn repository_keep_counts_fall_back_to_backup_settings() {
        let layout = crate::layout::Layout::user_at(Path::new("/h"));
        let config = crate::config::Config::parse(
            "backup:\n  keep_manual: 7\n  keep_automatic: 9\n  repositories:\n    r: {url: /r, password_file: /p, keep_automatic: 2}\n",
            Path::new("/h/c.yaml"),
            &layout,
        )
        .unwrap();
        let keep = keep_for(&config.backup, &config.backup.repositories["r"]);
        assert_eq!((keep.manual, keep.automatic, keep.before_change), (7, 2, 5));
    }

    #[test]
    fn repo_list_reports_each_repository_and_open_names_the_configured_ones() {
        let layout = crate::layout::Layout::user_at(Path::new("/h"));
        let config = crate::config::Config::parse(
            "backup:\n  repositories:\n    a: {url: /a, password_file: /p}\n    b: {url: \"rest:http://u:pw@h/\", password_file: /p}\n",
            Path::new("/h/c.yaml"),
            &layout,
        )
        .unwrap();
        let mut ctx = Context::new(layout, config);
        let fakes = std::sync::Arc::new(crate::testing::fake_restic::FakeRepositories::default());
        ctx.repositories = fakes.clone();
        let (_, list) = tags("web", 1, "manual");
        fakes.get("a").add(&list, time(1), &[]);
        fakes.get("b").fail("snapshots");
        let shown = status(&ctx);
        assert_eq!(shown[0].snapshots, Some(1));
        assert!(shown[0].reachable);
        assert!(!shown[1].reachable);
        assert_eq!(shown[1].url, "rest:http://***@h/");
        assert!(shown[1].error.as_ref().unwrap().contains("injected"));

        let err = super::super::open(&ctx, "nope").unwrap_err();
        assert!(
            err.message.contains("no repository `nope`"),
            "{}",
            err.message
        );
        assert!(err.hint.unwrap().contains("a, b"));
        assert!(super::super::open(&ctx, "local").is_err());
        assert_eq!(super::super::open(&ctx, "a").unwrap().name(), "a");
    }
}
