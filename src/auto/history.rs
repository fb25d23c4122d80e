//! What the backup directory says about a deployment's recent backups.
//! Coalescing and rate limiting are derived from it on every hook, never
//! kept as separate state: deleting backups resets both.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::backup::metadata::{BackupType, Metadata, METADATA_FILE};
use crate::backup::store::{BackupStore, Listed};
use crate::error::Result;

/// One readable backup, with when it finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Backup ID.
    pub id: String,
    /// Deployment.
    pub deployment: String,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it finished: the metadata file is written last, so its
    /// modification time; `created_at` when that cannot be read.
    pub finished_at: DateTime<Utc>,
    /// Manual or automatic.
    pub backup_type: BackupType,
    /// Why it was taken.
    pub reason: String,
    /// Bytes on disk.
    pub size: u64,
}

impl Summary {
    fn from_metadata(path: &Path, metadata: &Metadata) -> Summary {
        let finished_at = std::fs::metadata(path.join(METADATA_FILE))
            .and_then(|m| m.modified())
            .map(DateTime::<Utc>::from)
            .unwrap_or(metadata.created_at)
            .max(metadata.created_at);
        Summary {
            id: metadata.id.clone(),
            deployment: metadata.deployment_name.clone(),
            created_at: metadata.created_at,
            finished_at,
            backup_type: metadata.backup_type,
            reason: metadata.reason.clone(),
            size: metadata.size,
        }
    }
}

/// Summaries of every readable backup listed; unreadable ones are left out
/// (they cannot say when they were taken).
pub fn summaries(listed: &[Listed]) -> Vec<Summary> {
    listed
        .iter()
        .filter_map(|l| {
            l.metadata
                .as_ref()
                .ok()
                .map(|m| Summary::from_metadata(&l.path, m))
        })
        .collect()
}

/// The backup of `deployment` that finished last.
pub fn newest<'a>(summaries: &'a [Summary], deployment: &str) -> Option<&'a Summary> {
    summaries
        .iter()
        .filter(|s| s.deployment == deployment)
        .max_by_key(|s| s.finished_at)
}

/// Summaries of every backup in `dir`; none when the directory does not
/// exist yet (so a read-only `status` does not create it).
pub fn read_dir(dir: &Path) -> Result<Vec<Summary>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let store = BackupStore::open(dir)?;
    Ok(summaries(&store.list()?))
}
