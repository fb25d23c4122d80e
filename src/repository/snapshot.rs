//! One backup in a repository: a restic snapshot, found by its tags.
//!
//! The tags are the contract with users who never installed leger-backup
//! (`restic snapshots --tag leger-backup,deployment=web`): `leger-backup`,
//! `deployment=NAME`, `id=ID`, `type=manual|automatic`, `reason=REASON`.
//! Tags are untrusted input like any metadata: a snapshot whose tags do not
//! parse is listed as invalid, never restored by guess.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::backup::metadata::BackupType;
use crate::error::{Error, Result};

/// The tag every snapshot of ours carries.
pub const TAG: &str = "leger-backup";

/// The snapshot's root: where the metadata file of a backup is.
pub const METADATA_PATH: &str = "/.backup-metadata.json";

/// A snapshot as `restic snapshots --json` lists it (the fields we use).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Snapshot {
    /// The full ID.
    pub id: String,
    /// When restic took it.
    pub time: DateTime<Utc>,
    /// The machine it was taken on.
    #[serde(default)]
    pub hostname: String,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Snapshot {
    /// The first 8 characters of the ID, as restic shows it.
    pub fn short_id(&self) -> &str {
        self.id.get(..8).unwrap_or(&self.id)
    }

    /// Its leger-backup tags, or why they are not ours.
    pub fn backup_tags(&self) -> Result<SnapshotTags> {
        SnapshotTags::parse(&self.tags)
    }
}

/// What the tags of one of our snapshots say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotTags {
    /// The deployment backed up.
    pub deployment: String,
    /// The backup's ID (the same form as local backups').
    pub id: String,
    /// Manual or automatic (the retention class follows the reason).
    pub backup_type: BackupType,
    /// Why it was taken.
    pub reason: String,
}

impl SnapshotTags {
    /// The tags to give restic. A comma separates restic's tags, so a value
    /// holding one is refused (deployment names and IDs never do).
    pub fn to_tags(&self) -> Result<Vec<String>> {
        let tags = vec![
            TAG.to_owned(),
            format!("deployment={}", self.deployment),
            format!("id={}", self.id),
            format!("type={}", type_name(self.backup_type)),
            format!("reason={}", self.reason),
        ];
        if let Some(bad) = tags
            .iter()
            .find(|t| t.contains(',') || t.trim() != t.as_str())
        {
            return Err(Error::user(format!(
                "`{bad}` cannot be a restic tag (no commas, no surrounding spaces)"
            ))
            .with_hint("choose a --reason without commas"));
        }
        Ok(tags)
    }

    /// Read our tags back; every one must be there, each once.
    pub fn parse(tags: &[String]) -> Result<SnapshotTags> {
        if !tags.iter().any(|t| t == TAG) {
            return Err(Error::user(format!("the snapshot has no `{TAG}` tag")));
        }
        let value = |key: &str| -> Result<String> {
            let prefix = format!("{key}=");
            let mut found = tags.iter().filter_map(|t| t.strip_prefix(&prefix));
            match (found.next(), found.next()) {
                (Some(v), None) if !v.is_empty() => Ok(v.to_owned()),
                (None, _) => Err(Error::user(format!("the snapshot has no `{key}=` tag"))),
                _ => Err(Error::user(format!(
                    "the snapshot has more than one `{key}=` tag, or an empty one"
                ))),
            }
        };
        let (deployment, id) = (value("deployment")?, value("id")?);
        let backup_type = match value("type")?.as_str() {
            "manual" => BackupType::Manual,
            "automatic" => BackupType::Automatic,
            other => {
                return Err(Error::user(format!(
                    "the snapshot's `type={other}` tag is neither manual nor automatic"
                )))
            }
        };
        Ok(SnapshotTags {
            deployment,
            id,
            backup_type,
            reason: value("reason")?,
        })
    }

    /// The tags that find this deployment's snapshots.
    pub fn of_deployment(deployment: &str) -> Vec<String> {
        vec![TAG.to_owned(), format!("deployment={deployment}")]
    }

    /// The tags that find the snapshot of backup `id`.
    pub fn of_id(id: &str) -> Vec<String> {
        vec![TAG.to_owned(), format!("id={id}")]
    }
}

fn type_name(t: BackupType) -> &'static str {
    match t {
        BackupType::Manual => "manual",
        BackupType::Automatic => "automatic",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags() -> SnapshotTags {
        SnapshotTags {
            deployment: "web".into(),
            id: "web-2026-11-27-190000".into(),
            backup_type: BackupType::Automatic,
            reason: "on-stop".into(),
        }
    }

    #[test]
    fn tags_round_trip() {
        let t = tags();
        let list = t.to_tags().unwrap();
        assert_eq!(list[0], "leger-backup");
        assert!(list.contains(&"deployment=web".to_owned()));
        assert_eq!(SnapshotTags::parse(&list).unwrap(), t);
    }

    #[test]
    fn commas_and_foreign_snapshots_are_refused() {
        let mut t = tags();
        t.reason = "a,b".into();
        assert!(t.to_tags().is_err());
        assert!(SnapshotTags::parse(&["other".into()]).is_err());
        let mut list = tags().to_tags().unwrap();
        list.push("id=again".into());
        assert!(SnapshotTags::parse(&list).is_err());
        let list: Vec<String> = vec!["leger-backup".into(), "deployment=web".into()];
        assert!(SnapshotTags::parse(&list)
            .unwrap_err()
            .message
            .contains("id="));
    }

    #[test]
    fn snapshots_parse_from_restic_json() {
        let json = r#"[{"time":"2026-11-27T19:00:01.123456789+01:00","tree":"ab","paths":["/s"],
            "hostname":"box","username":"u","tags":["leger-backup"],"id":"0123456789abcdef","short_id":"01234567"}]"#;
        let list: Vec<Snapshot> = serde_json::from_str(json).unwrap();
        assert_eq!(list[0].short_id(), "01234567");
        assert_eq!(
            list[0].time.to_rfc3339(),
            "2026-11-27T18:00:01.123456789+00:00"
        );
    }
}
