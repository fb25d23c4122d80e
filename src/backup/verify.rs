//! Verifying a backup: recompute every checksum and read every archive to
//! its end as a valid compressed tar, so a damaged backup is found before a
//! restore relies on it (restore calls [`verify`] first).
//!
//! Every problem is collected, not just the first, so the report names each
//! bad file. Backups written by leger's Go implementation have no checksums:
//! their archives are still read through as tar, with a warning that nothing
//! more could be verified.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::backup::archive::{self, compression_of};
use crate::backup::metadata::{FileEntry, HostPathEntry, VolumeEntry};
use crate::backup::store::StoredBackup;
use crate::error::{Error, Result};

/// One bad file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file, relative to the backup directory.
    pub file: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)
    }
}

/// The outcome of verifying one backup.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The backup.
    pub id: String,
    /// Written by leger's Go implementation: no checksums to compare.
    pub legacy: bool,
    /// Deployment files whose checksum matched.
    pub files_ok: usize,
    /// Archives read to their end without a problem.
    pub archives_ok: usize,
    /// Bad files; empty when the backup is sound.
    pub problems: Vec<Problem>,
    /// Things the user should know that do not fail verification.
    pub warnings: Vec<String>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// A user error naming each bad file, or `Ok` when there is none — for
    /// callers (restore) that must refuse a damaged backup.
    pub fn ensure_ok(&self) -> Result<()> {
        if self.is_ok() {
            return Ok(());
        }
        let list: Vec<String> = self.problems.iter().map(Problem::to_string).collect();
        Err(Error::user(format!(
            "backup {} failed verification: {}",
            self.id,
            list.join("; ")
        ))
        .with_hint(
            "the backup is damaged and cannot be trusted; use another one (`leger-backup list`)",
        ))
    }
}

/// The warning for backups that carry no checksums.
pub const LEGACY_WARNING: &str = "written by leger's Go implementation: it records no checksums, \
     so nothing can be verified beyond reading each archive as a tar";

/// Verify `backup`: each deployment file against its size and sha256, each
/// archive against its length and sha256, read to its end as a tar whose
/// entries stay inside the volume, with an intact compression frame.
pub fn verify(backup: &StoredBackup) -> Result<VerifyReport> {
    let metadata = &backup.metadata;
    let mut report = VerifyReport {
        id: metadata.id.clone(),
        legacy: metadata.is_legacy(),
        files_ok: 0,
        archives_ok: 0,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    if report.legacy {
        report.warnings.push(LEGACY_WARNING.to_owned());
    }
    // Files stored once serve both locations; check each stored file once.
    let mut seen = std::collections::BTreeSet::new();
    for file in &metadata.files {
        if !seen.insert((&file.stored_as, &file.sha256, file.size)) {
            continue;
        }
        match check_file(backup, file) {
            Ok(()) => report.files_ok += 1,
            Err(reason) => report.problems.push(Problem {
                file: file.stored_as.clone(),
                reason,
            }),
        }
    }
    for volume in &metadata.volumes {
        match check_volume(backup, volume) {
            Ok(true) => report.archives_ok += 1,
            Ok(false) => {}
            Err(reason) => report.problems.push(Problem {
                file: volume
                    .archive_path
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(format!("volumes/{}", volume.name))),
                reason,
            }),
        }
    }
    for host in &metadata.host_paths {
        match check_host_path(backup, host) {
            Ok(true) => report.archives_ok += 1,
            Ok(false) => {}
            Err(reason) => report.problems.push(Problem {
                file: host
                    .archive_path
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(&host.path)),
                reason,
            }),
        }
    }
    Ok(report)
}

/// Strip the absolute path `abs` from the front of an error message: the
/// report names files relative to the backup.
fn reason(err: Error, abs: &Path) -> String {
    let prefix = format!("{}: ", abs.display());
    err.message
        .strip_prefix(&prefix)
        .map(str::to_owned)
        .unwrap_or(err.message)
}

fn check_file(backup: &StoredBackup, file: &FileEntry) -> std::result::Result<(), String> {
    let path = backup
        .resolve(&file.stored_as)
        .map_err(|e| reason(e, &backup.path))?;
    let meta =
        std::fs::symlink_metadata(backup.path.join(&file.stored_as)).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    // Streamed, and never more than one byte past the recorded size.
    let (sha, size) = crate::backup::files::hash_file(&path, file.size)
        .map_err(|e| format!("unreadable: {}", e.message))?;
    if size != file.size {
        let more = if size > file.size { "more than " } else { "" };
        return Err(format!(
            "size {more}{size} but the metadata records {}",
            file.size
        ));
    }
    if !sha.eq_ignore_ascii_case(&file.sha256) {
        return Err(format!(
            "checksum mismatch: sha256 {sha} but the metadata records {}",
            file.sha256
        ));
    }
    if let Some(target) = &file.symlink {
        let (target_sha, _) =
            crate::backup::files::hash_bytes(target.as_os_str().as_encoded_bytes());
        if !target_sha.eq_ignore_ascii_case(&sha) {
            return Err("stored symlink target differs from the metadata".into());
        }
    }
    Ok(())
}

/// Ok(true): archive checked; Ok(false): nothing to check (volume absent).
fn check_volume(backup: &StoredBackup, volume: &VolumeEntry) -> std::result::Result<bool, String> {
    let legacy = backup.metadata.is_legacy();
    if volume.tree.is_some() {
        // In a repository's snapshot: restic authenticates it.
        return Ok(false);
    }
    let Some(rel) = &volume.archive_path else {
        // A restore's safety backup whose volume was moved aside: its
        // data is not in the backup (see `restore::aside`).
        if volume.existed && !legacy && !volume.held_aside {
            return Err(format!(
                "volume {} existed but the backup has no archive for it",
                volume.name
            ));
        }
        return Ok(false);
    };
    check_archive(
        backup,
        Recorded {
            rel,
            size: volume.size,
            sha256: volume.sha256.as_deref(),
            uncompressed_size: volume.uncompressed_size,
            specials: &volume.special_files,
        },
    )?;
    Ok(true)
}

/// Ok(true): archive checked; Ok(false): nothing to check (the path did
/// not exist at backup time).
fn check_host_path(
    backup: &StoredBackup,
    host: &HostPathEntry,
) -> std::result::Result<bool, String> {
    if host.tree.is_some() {
        return Ok(false);
    }
    let Some(rel) = &host.archive_path else {
        if host.existed {
            return Err(format!(
                "host path {} existed but the backup has no archive for it",
                host.path
            ));
        }
        return Ok(false);
    };
    check_archive(
        backup,
        Recorded {
            rel,
            size: host.size,
            sha256: host.sha256.as_deref(),
            uncompressed_size: host.uncompressed_size,
            specials: &host.special_files,
        },
    )?;
    Ok(true)
}

/// What the metadata records of one archive (of a volume or a host path).
struct Recorded<'a> {
    rel: &'a Path,
    size: u64,
    sha256: Option<&'a str>,
    uncompressed_size: u64,
    specials: &'a [String],
}

/// Check one archive against what the metadata records of it: a regular
/// file inside the backup, of the recorded length and checksum, read to
/// its end as a valid tar of the recorded size. Backups of leger's Go
/// implementation record neither length nor checksum.
fn check_archive(backup: &StoredBackup, recorded: Recorded) -> std::result::Result<(), String> {
    let legacy = backup.metadata.is_legacy();
    let rel = recorded.rel;
    let path = backup.resolve(rel).map_err(|e| reason(e, &backup.path))?;
    let meta = std::fs::symlink_metadata(backup.path.join(rel)).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let compression = compression_of(rel)
        .ok_or("unknown archive type (expected .tar.zst, .tar.gz or .tar)".to_owned())?;
    let expected = if legacy {
        None
    } else {
        if meta.size() != recorded.size {
            return Err(format!(
                "length {} but the metadata records {}: truncated or replaced",
                meta.size(),
                recorded.size
            ));
        }
        Some(
            recorded
                .sha256
                .ok_or("the metadata records no checksum for it".to_owned())?,
        )
    };
    let expected = archive::Expected {
        sha256: expected,
        limit: archive::decompressed_limit(recorded.uncompressed_size, meta.size()),
        specials: recorded.specials,
    };
    let digest = archive::check_archive_digest(&path, compression, expected)
        .map_err(|e| reason(e, &path))?;
    if !legacy
        && recorded.uncompressed_size != 0
        && digest.uncompressed_size != recorded.uncompressed_size
    {
        return Err(format!(
            "holds {} bytes of tar but the metadata records {}",
            digest.uncompressed_size, recorded.uncompressed_size
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::metadata::{BackupType, Metadata, FORMAT_VERSION};
    use crate::backup::store::BackupStore;
    use crate::config::Compression;
    use crate::deployment::Location;
    use chrono::{TimeZone, Utc};
    use sha2::Digest;

    fn entry(stored: &str, content: &[u8], symlink: Option<&str>) -> FileEntry {
        FileEntry {
            location: Location::Active,
            path: stored.trim_start_matches(".active/").into(),
            stored_as: stored.into(),
            size: content.len() as u64,
            mode: 0o644,
            sha256: hex::encode(sha2::Sha256::digest(content)),
            symlink: symlink.map(PathBuf::from),
        }
    }

    /// A backup with one file, one symlink record and one archive, written
    /// through the store like `create` does.
    fn backup() -> (tempfile::TempDir, StoredBackup) {
        let tmp = tempfile::tempdir().unwrap();
        let store = BackupStore::open(&tmp.path().join("b")).unwrap();
        let pending = store.begin("web-1").unwrap();
        let p = pending.path().to_owned();
        std::fs::create_dir_all(p.join(".active")).unwrap();
        std::fs::create_dir_all(p.join("volumes")).unwrap();
        std::fs::write(p.join(".active/web.container"), b"[Container]\n").unwrap();
        std::fs::write(p.join(".active/link.container"), b"web.container").unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o600);
        tar.append_data(&mut h, "f", &b"abc"[..]).unwrap();
        let tar = tar.into_inner().unwrap();
        let dest = p.join("volumes/data.tar.zst");
        let stats =
            archive::write_archive(&tar[..], &dest, Compression::Zstd, 3, 1, &mut |_| {}).unwrap();
        let metadata = Metadata {
            id: "web-1".into(),
            deployment_name: "web".into(),
            created_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            backup_type: BackupType::Manual,
            reason: "manual".into(),
            size: 0,
            quadlet_files: vec!["web.container".into()],
            volumes: vec![VolumeEntry {
                archive_path: Some("volumes/data.tar.zst".into()),
                size: stats.size,
                existed: true,
                uncompressed_size: stats.uncompressed_size,
                sha256: Some(stats.sha256),
                ..VolumeEntry::absent("data")
            }],
            format_version: Some(FORMAT_VERSION),
            leger_backup_version: None,
            scope: None,
            compression: Some(Compression::Zstd),
            files: vec![
                entry(".active/web.container", b"[Container]\n", None),
                entry(
                    ".active/link.container",
                    b"web.container",
                    Some("web.container"),
                ),
            ],
            dirs: vec![],
            installation: None,
            services: vec![],
            secrets: vec![],
            consistency: None,
            downtime_seconds: None,
            stop_result: None,
            host_paths: Vec::new(),
        };
        pending.finalize(metadata).unwrap();
        let b = store.load("web-1").unwrap();
        (tmp, b)
    }

    #[test]
    fn a_sound_backup_verifies() {
        let (_tmp, b) = backup();
        let report = verify(&b).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!((report.files_ok, report.archives_ok), (2, 1));
        report.ensure_ok().unwrap();
    }

    #[test]
    fn every_bad_file_is_named() {
        let (_tmp, mut b) = backup();
        std::fs::write(b.path.join(".active/web.container"), b"[Container]\nX=1\n").unwrap();
        b.metadata.files[1].symlink = Some("elsewhere".into());
        b.metadata.volumes[0].uncompressed_size += 512;
        let report = verify(&b).unwrap();
        let files: Vec<_> = report.problems.iter().map(|p| p.file.clone()).collect();
        assert_eq!(
            files,
            [
                PathBuf::from(".active/web.container"),
                PathBuf::from(".active/link.container"),
                PathBuf::from("volumes/data.tar.zst"),
            ]
        );
        let err = report.ensure_ok().unwrap_err();
        assert!(
            err.message.contains(".active/web.container: size"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("volumes/data.tar.zst: holds"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_missing_archive_of_an_existing_volume_is_a_problem() {
        let (_tmp, mut b) = backup();
        b.metadata.volumes[0].archive_path = None;
        let report = verify(&b).unwrap();
        assert_eq!(report.problems.len(), 1);
        assert!(report.problems[0].reason.contains("existed"));
        std::fs::remove_file(b.path.join("volumes/data.tar.zst")).unwrap();
        b.metadata.volumes[0].archive_path = Some("volumes/data.tar.zst".into());
        let report = verify(&b).unwrap();
        assert!(
            report.problems[0].reason.contains("is missing"),
            "{:?}",
            report.problems
        );
    }
}
