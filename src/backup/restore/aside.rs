//! The safety copy of volumes in Podman's storage: their data is moved
//! aside, not archived.
//!
//! A restore over a running deployment used to take a full backup of the
//! current state first (as long as a `create`) so that a failure could be
//! rolled back. For a volume of the local driver the same safety costs a
//! `rename(2)`: its data directory (`<volumes>/<name>/_data`) is moved to
//! `<volumes>/.leger-backup-aside/<deployment>-<time>/<name>`, on the same
//! filesystem (the volumes directory is often a disk of its own; a name
//! starting with a dot is no valid volume name, so it never clashes); the volume is then removed, recreated and imported into as
//! before. A rollback (or `recover`) recreates the volume and puts the
//! directory back in place of its empty data directory: the data, its
//! root's mode and owner, inode for inode, exactly as they were. Only after
//! the restored services are up is the moved data dropped.
//!
//! Each move is written to the journal ([`RestoreRecord::aside`](crate::backup::journal::RestoreRecord::aside)) before it is
//! made, so a process killed at any point leaves either the data in the
//! volume or at the recorded path; [`put_aside_back`] tells which by
//! looking. Volumes that are mounts of their own (another driver, a
//! device, options) keep the archived safety copy: moving their data would
//! move it off the mount.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::backup::journal::{Journal, Record, Step};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::podman::VolumeInfo;

/// The directory, next to Podman's volumes directory, holding data moved
/// aside by restores.
pub(super) const ASIDE_DIR: &str = ".leger-backup-aside";

/// Where each of `volumes` (as inspected now; `None`: it does not exist)
/// goes when moved aside by the restore journaled in `record`. Volumes
/// whose data cannot be moved aside by a rename are left out: they are
/// archived into the safety backup.
pub(super) fn plan(
    record: &Record,
    volumes: &[(String, Option<VolumeInfo>)],
) -> BTreeMap<String, PathBuf> {
    let restore = format!(
        "{}-{}",
        record.deployment,
        record.started_at.format("%Y%m%dT%H%M%S%.3fZ")
    );
    volumes
        .iter()
        .filter_map(|(name, info)| {
            let dest = destination(info.as_ref()?, &restore)?;
            Some((name.clone(), dest))
        })
        .collect()
}

/// Where the data of volume `info` goes for the restore called `restore`:
/// `None` unless it is a plain local volume whose data directory is
/// `<volumes>/<name>/_data`, all three on one filesystem.
fn destination(info: &VolumeInfo, restore: &str) -> Option<PathBuf> {
    if !matches!(info.driver.as_str(), "" | "local") || !info.options.is_empty() {
        return None;
    }
    let data = Path::new(&info.mountpoint);
    if !data.is_absolute() || data.file_name()? != "_data" {
        return None;
    }
    let volume_dir = data.parent()?;
    if volume_dir.file_name()? != info.name.as_str() {
        return None;
    }
    let volumes = volume_dir.parent()?;
    let device = |p: &Path| std::fs::symlink_metadata(p).ok().map(|m| m.dev());
    let here = device(volume_dir)?;
    (device(data)? == here && device(volumes)? == here)
        .then(|| volumes.join(ASIDE_DIR).join(restore).join(&info.name))
}

/// Move the data of `volume` (mounted at `mountpoint`) to `dest`: recorded
/// in `journal` first, then renamed.
pub(super) fn move_aside(
    ctx: &Context,
    journal: &mut Journal,
    volume: &str,
    mountpoint: &str,
    dest: &Path,
) -> Result<()> {
    let parent = dest
        .parent()
        .ok_or_else(|| Error::internal(format!("{} has no parent", dest.display())))?;
    fs_err::create_dir_all(parent)?;
    journal.update_restore(|r, restore| {
        restore.aside.insert(volume.to_owned(), dest.to_owned());
        r.step = Step::MovingAside {
            volume: volume.to_owned(),
        };
    })?;
    ctx.podman
        .move_dir(mountpoint, &path_text(dest)?)
        .map_err(|e| e.context(format!("moving volume {volume}'s data aside")))
}

/// Whether the data of a volume moved aside to `dest` is there (rather
/// than still, or again, in the volume). A path that is not where this
/// module puts data is refused: the journal is read back from disk.
pub(super) fn is_held(volume: &str, dest: &Path) -> Result<bool> {
    let shaped = dest.file_name().is_some_and(|n| n == volume)
        && dest
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .is_some_and(|n| n == ASIDE_DIR);
    if !shaped || !dest.is_absolute() {
        return Err(Error::user(format!(
            "the journal says volume {volume}'s data was moved to {}, which is not where \
             leger-backup moves data",
            dest.display()
        ))
        .with_hint("move the volume's data back by hand; the journal is kept"));
    }
    Ok(std::fs::symlink_metadata(dest).is_ok())
}

/// Put the data moved aside to `dest` back as the data directory of the
/// volume just recreated at `mountpoint` (empty).
pub(super) fn put_aside_back(
    ctx: &Context,
    volume: &str,
    dest: &Path,
    mountpoint: &str,
) -> Result<()> {
    ctx.podman
        .replace_empty_dir(mountpoint, &path_text(dest)?)
        .map_err(|e| {
            e.context(format!(
                "putting volume {volume}'s data back from {}",
                dest.display()
            ))
        })
}

/// Drop what the restore journaled in `record` moved aside (the
/// directory of this restore under [`ASIDE_DIR`]), and that directory
/// when it is empty.
pub(super) fn drop_all(ctx: &Context, record: &Record) -> Result<()> {
    let restores: std::collections::BTreeSet<&Path> = record
        .aside()
        .iter()
        .filter_map(|(volume, dest)| is_held(volume, dest).ok().map(|_| dest.parent()))
        .flatten()
        .collect();
    for dir in restores {
        if dir.exists() {
            ctx.podman.remove_tree(&path_text(dir)?)?;
        }
        if let Some(root) = dir.parent() {
            // Other restores may hold data there: only when empty.
            let _ = std::fs::remove_dir(root);
        }
    }
    Ok(())
}

fn path_text(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::internal(format!("{} is not UTF-8", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, mountpoint: &Path) -> VolumeInfo {
        VolumeInfo {
            name: name.to_owned(),
            driver: "local".to_owned(),
            mountpoint: mountpoint.display().to_string(),
            labels: Default::default(),
            options: Default::default(),
        }
    }

    #[test]
    fn only_plain_local_volumes_are_moved_aside_next_to_the_volumes_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("storage/volumes/db/_data");
        std::fs::create_dir_all(&data).unwrap();
        let plain = info("db", &data);
        let dest = destination(&plain, "app-1").unwrap();
        assert_eq!(
            dest,
            tmp.path()
                .join("storage/volumes")
                .join(ASIDE_DIR)
                .join("app-1/db")
        );

        let mut other_driver = plain.clone();
        other_driver.driver = "nfs".to_owned();
        assert_eq!(destination(&other_driver, "app-1"), None);
        let mut with_options = plain.clone();
        with_options
            .options
            .insert("device".into(), "/dev/sdb1".into());
        assert_eq!(destination(&with_options, "app-1"), None);
        // A mountpoint not shaped `<volumes>/<name>/_data`.
        assert_eq!(destination(&info("other", &data), "app-1"), None);
        assert_eq!(destination(&info("db", tmp.path()), "app-1"), None);
    }

    #[test]
    fn a_journaled_path_elsewhere_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let good = tmp.path().join(ASIDE_DIR).join("app-1/db");
        assert!(!is_held("db", &good).unwrap());
        std::fs::create_dir_all(&good).unwrap();
        assert!(is_held("db", &good).unwrap());
        for bad in [
            "/home/u/db",
            "/x/.leger-backup-aside/db",
            "relative/.leger-backup-aside/a/db",
            "/x/leger-backup-aside/a/db",
        ] {
            let err = is_held("db", Path::new(bad)).unwrap_err();
            assert!(err.message.contains("not where"), "{bad}: {}", err.message);
        }
        assert!(is_held("other", &good).is_err());
    }
}
