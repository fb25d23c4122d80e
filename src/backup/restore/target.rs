//! What a restore, a rollback or `recover` puts in place: a backup with
//! its file entries and, for a safety backup, where its restore moved the
//! volumes' data aside. Apart from the steps that use it, which all take
//! one.

use super::*;

/// Which services [`put_back`] starts at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// Those that were running when the backup was taken.
    WasRunning,
    /// All of them (the deployment had been removed).
    All,
    /// None (`--no-start`).
    Nothing,
}

impl Start {
    /// What a restore starts: nothing with `--no-start`; else the services
    /// that ran when the backup was taken, or all of them when the
    /// deployment did not exist (`existed` false: it had been removed, and
    /// a restore is how it comes back).
    pub(super) fn after_restore(opts: &RestoreOptions, existed: bool) -> Start {
        if opts.no_start {
            Start::Nothing
        } else if existed {
            Start::WasRunning
        } else {
            Start::All
        }
    }
}

/// A state to put back: a backup's metadata, where its files are, and its
/// file entries (from the metadata, or found on disk for leger's backups).
pub(super) struct Target {
    pub(super) backup: StoredBackup,
    pub(super) entries: Vec<FileEntry>,
    /// Where the data of its volumes marked [`VolumeEntry::held_aside`]
    /// is (a safety backup's, from the journal; see [`aside`]).
    pub(super) aside: BTreeMap<String, PathBuf>,
    /// For a backup fetched from a repository: where its volumes' and host
    /// paths' trees are.
    pub(super) trees: Option<Trees>,
}

impl Target {
    pub(super) fn of(backup: StoredBackup) -> Result<Target> {
        let entries = if backup.metadata.is_legacy() {
            files::legacy_entries(&backup.path, is_leger(&backup.metadata))?
        } else {
            backup.metadata.files.clone()
        };
        Ok(Target {
            backup,
            entries,
            aside: BTreeMap::new(),
            trees: None,
        })
    }

    /// A safety backup with the data its restore moved aside (as the
    /// journal `record` says).
    pub(super) fn of_safety(backup: StoredBackup, record: &Record) -> Result<Target> {
        let mut target = Target::of(backup)?;
        target.aside = record.aside().clone();
        Ok(target)
    }

    /// Whether some of its volumes' data is held aside, not archived: such
    /// a safety backup is of no use once the restore is over.
    pub(super) fn holds_aside(&self) -> bool {
        self.metadata().volumes.iter().any(|v| v.held_aside)
    }

    /// "Nothing was installed": the state to return to when a restore of a
    /// deployment that did not exist at all fails. Files and volumes the
    /// restore created are removed again.
    pub(super) fn nothing(store: &BackupStore, failed: &Metadata) -> Target {
        let mut metadata = failed.clone();
        metadata.files.clear();
        metadata.dirs.clear();
        metadata.quadlet_files.clear();
        metadata.services.clear();
        metadata.secrets.clear();
        metadata.format_version = Some(crate::backup::metadata::FORMAT_VERSION);
        for volume in &mut metadata.volumes {
            volume.existed = false;
            volume.archive_path = None;
            volume.tree = None;
        }
        for host in &mut metadata.host_paths {
            host.existed = false;
            host.archive_path = None;
            host.tree = None;
        }
        Target {
            backup: StoredBackup {
                path: store.dir().to_owned(),
                metadata,
            },
            entries: Vec::new(),
            aside: BTreeMap::new(),
            trees: None,
        }
    }

    pub(super) fn metadata(&self) -> &Metadata {
        &self.backup.metadata
    }
}
