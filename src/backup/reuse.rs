//! Unchanged data costs nothing: a volume (or host path) that has not
//! changed since the deployment's newest backup is not exported (read)
//! again; the new backup shares that backup's archive through a hard link
//! in the backup directory. A host path's signature is always taken before
//! it is read ([`reusable_host`]).
//!
//! "Not changed" is decided by a *tree signature*: a sha256 over one record
//! per entry of the volume (its root included) — path, type, size, mtime and
//! ctime to the nanosecond, inode, device, mode, uid and gid — read by one
//! `find -printf` inside the rootless user namespace (the files of
//! subordinate uids are unreadable outside it). ctime is what makes it
//! sound: the kernel sets it on every change of content or metadata
//! (xattrs and ACLs included) and nobody can set it back. Records are
//! hashed one by one and the digests sorted, so the directory order `find`
//! happens to read does not matter; memory is 32 bytes per entry.
//!
//! An archive is shared only when it provably holds the tree as it is now
//! (see [`reusable`]): the previous backup was taken with the services
//! stopped (a `--live` export may differ from the tree its signature saw,
//! so a live backup's archive is never shared; a live backup may share a
//! stopped one's), with the same compression, and recorded the same
//! signature; its archive file still has the recorded size (its checksum is
//! not re-read: that would cost what sharing saves; `verify` reads it).
//! Volumes that are mounts of their own (a driver other than `local`, or
//! `Device=`) are never fingerprinted: their ctimes are not the kernel's
//! word on the data.
//!
//! A signature is recorded only when it describes the archive: for a
//! volume nothing wrote to while it was read (its services stopped, no
//! container of another deployment running on it), or with a shared
//! archive. Taken before the export, a signature is sound whatever happens
//! next (any later change moves a ctime it read, so it never comes back);
//! taken beside the export, only while nothing writes.
//!
//! A shared archive is an ordinary file with two names: deleting or pruning
//! one backup unlinks one name and leaves the other backup whole; the last
//! backup holding it frees the space. A backup's `size` counts its archives
//! whether they are shared or not.

use std::io::{BufRead, BufReader};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::backup::metadata::{Consistency, HostPathEntry, Metadata, VolumeEntry};
use crate::backup::store::{BackupStore, StoredBackup};
use crate::config::Compression;
use crate::error::{Error, Result};
use crate::podman::{ContainerEngine, VolumeInfo};

/// `find -printf` format of one entry: the fixed fields first, the path
/// (relative to the volume root, empty for the root itself) last and
/// NUL-terminated, since a file name may hold anything but NUL and `/`.
/// `%T@` and `%C@` are mtime and ctime in seconds with nanoseconds.
pub(crate) const ENTRY_FORMAT: &str = "%y %s %T@ %C@ %i %D %m %U %G %P\\0";

/// Bumped whenever [`ENTRY_FORMAT`] or the hashing changes, so a signature
/// of another version never matches.
const SIGNATURE_VERSION: &[u8] = b"leger-backup tree signature v1\n";

/// Whether `info` is a volume whose tree signature can be trusted: the
/// local driver with no device of its own mounted.
pub(crate) fn fingerprintable(info: &VolumeInfo) -> bool {
    matches!(info.driver.as_str(), "" | "local")
        && !info.mountpoint.is_empty()
        && !info.options.contains_key("device")
        && !info.options.contains_key("type")
}

/// The tree signature of the volume mounted at `mountpoint`.
pub(crate) fn tree_signature(podman: &dyn ContainerEngine, mountpoint: &str) -> Result<String> {
    let mut listing = podman.list_tree(mountpoint, ENTRY_FORMAT)?;
    let Some(stdout) = listing.output() else {
        listing.abort();
        return Err(Error::internal("find: no stdout"));
    };
    match signature_of(stdout) {
        Ok(signature) => {
            // An unreadable directory makes find skip it and fail at the end:
            // only its exit status says the listing is whole.
            listing.finish()?;
            Ok(signature)
        }
        Err(e) => {
            listing.abort();
            Err(e)
        }
    }
}

/// The signature of a listing of NUL-terminated records: the sha256 of the
/// sorted sha256 digests of the records, so their order does not matter.
pub(crate) fn signature_of(listing: impl std::io::Read) -> Result<String> {
    let mut reader = BufReader::with_capacity(1 << 16, listing);
    let mut digests: Vec<[u8; 32]> = Vec::new();
    let mut record = Vec::new();
    loop {
        record.clear();
        let n = reader
            .read_until(0, &mut record)
            .map_err(|e| Error::internal(format!("reading the volume's listing: {e}")))?;
        if n == 0 {
            break;
        }
        if record.last() != Some(&0) {
            return Err(Error::internal("the volume's listing ends mid-entry"));
        }
        digests.push(Sha256::digest(&record).into());
    }
    if digests.is_empty() {
        // The root itself is always listed: an empty listing is no tree.
        return Err(Error::internal("the volume's listing is empty"));
    }
    digests.sort_unstable();
    let mut hasher = Sha256::new();
    hasher.update(SIGNATURE_VERSION);
    for digest in &digests {
        hasher.update(digest);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The deployment's newest valid backup, the only one whose archives a new
/// backup may share (an older one may hold a tree that changed and changed
/// back, whose ctimes say otherwise anyway; the newest is the one a later
/// backup was compared with).
pub(crate) fn newest_backup(store: &BackupStore, deployment: &str) -> Result<Option<StoredBackup>> {
    let newest = store
        .list()?
        .into_iter()
        .find_map(|listed| match listed.metadata {
            Ok(metadata) if metadata.deployment_name == deployment => Some(StoredBackup {
                path: listed.path,
                metadata,
            }),
            _ => None,
        });
    Ok(newest)
}

/// The entry of `previous` whose archive holds volume `name` exactly as its
/// tree `signature` says it is now, written with `compression`: `None`
/// unless every condition in the module docs holds.
pub(crate) fn reusable<'a>(
    previous: &'a Metadata,
    name: &str,
    signature: &str,
    compression: Compression,
) -> Option<&'a VolumeEntry> {
    candidate(previous, name, compression)
        .filter(|v| v.tree_signature.as_deref() == Some(signature))
}

/// The entry of `previous` whose archive holds the host path `path` as its
/// tree `signature` (taken before the read) says it is now: the same
/// conditions as a volume's ([`reusable`]).
pub(crate) fn reusable_host<'a>(
    previous: &'a Metadata,
    path: &str,
    signature: &str,
    compression: Compression,
) -> Option<&'a HostPathEntry> {
    if !comparable(previous, compression) {
        return None;
    }
    previous.host_paths.iter().find(|h| {
        h.path == path
            && h.existed
            && h.archive_path.is_some()
            && h.sha256.is_some()
            && h.tree_signature.as_deref() == Some(signature)
    })
}

/// Whether archives of `previous` may be shared by a backup written with
/// `compression`: the same compression, taken with the services stopped,
/// not leger's own format.
fn comparable(previous: &Metadata, compression: Compression) -> bool {
    previous.compression == Some(compression)
        && previous.consistency == Some(Consistency::Stopped)
        && !previous.is_legacy()
}

/// The entry of `previous` whose archive a backup of volume `name` written
/// with `compression` may share if the signatures match: every condition
/// of [`reusable`] but the signature's value. Without one there is no need
/// to know the signature before the export.
pub(crate) fn candidate<'a>(
    previous: &'a Metadata,
    name: &str,
    compression: Compression,
) -> Option<&'a VolumeEntry> {
    if !comparable(previous, compression) {
        return None;
    }
    previous.volumes.iter().find(|v| {
        v.name == name
            && v.existed
            && v.archive_path.is_some()
            && v.sha256.is_some()
            && v.tree_signature.is_some()
            && matches!(v.driver.as_deref(), Some("local" | ""))
    })
}

/// Link the archive of `entry` in `previous` to `dest` (in the pending
/// backup), after checking it is a regular file of the recorded size. Any
/// failure (the file gone or changed, `EXDEV`, `EMLINK`) is returned for
/// the caller to export instead.
pub(crate) fn link_archive(
    previous: &StoredBackup,
    archive: Option<&Path>,
    size: u64,
    dest: &Path,
) -> Result<()> {
    let Some(rel) = archive else {
        return Err(Error::internal("the previous backup has no archive"));
    };
    let source = previous.resolve(rel)?;
    let meta = fs_err::symlink_metadata(&source)?;
    if !meta.is_file() || meta.len() != size {
        return Err(Error::internal(format!(
            "{} is not the archive the previous backup recorded ({} bytes, not {size})",
            source.display(),
            meta.len(),
        )));
    }
    fs_err::hard_link(&source, dest)?;
    Ok(())
}

/// The new backup's entry for a volume whose archive is shared: what the
/// archive is comes from `previous`, what the volume is from `current`.
pub(crate) fn shared_entry(current: VolumeEntry, previous: &VolumeEntry) -> VolumeEntry {
    VolumeEntry {
        size: previous.size,
        uncompressed_size: previous.uncompressed_size,
        sha256: previous.sha256.clone(),
        special_files: previous.special_files.clone(),
        tree_signature: previous.tree_signature.clone(),
        ..current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::store::tests::{metadata, publish, store};

    const SIG: &str = "ab12";

    fn volume(name: &str, signature: Option<&str>) -> VolumeEntry {
        VolumeEntry {
            archive_path: Some(format!("volumes/{name}.tar.zst").into()),
            size: 5,
            existed: true,
            uncompressed_size: 10240,
            sha256: Some("00".repeat(32)),
            driver: Some("local".into()),
            special_files: vec!["fifo".into()],
            tree_signature: signature.map(str::to_owned),
            ..VolumeEntry::absent(name)
        }
    }

    fn previous(volumes: Vec<VolumeEntry>) -> Metadata {
        let mut m = metadata("web-a", "web", 1);
        m.compression = Some(Compression::Zstd);
        m.consistency = Some(Consistency::Stopped);
        m.volumes = volumes;
        m
    }

    #[test]
    fn same_signature_same_compression_stopped_is_reused() {
        let prev = previous(vec![volume("other", Some(SIG)), volume("data", Some(SIG))]);
        let entry = reusable(&prev, "data", SIG, Compression::Zstd).unwrap();
        assert_eq!(entry.name, "data");
        // Before the signature is known: worth taking it first.
        assert_eq!(candidate(&prev, "data", Compression::Zstd), Some(entry));
    }

    #[test]
    fn anything_else_is_exported_again() {
        let prev = previous(vec![volume("data", Some(SIG))]);
        // Changed, or another volume.
        assert!(reusable(&prev, "data", "cd34", Compression::Zstd).is_none());
        assert!(reusable(&prev, "db", SIG, Compression::Zstd).is_none());
        // Another compression.
        assert!(reusable(&prev, "data", SIG, Compression::Gzip).is_none());
        // A live backup's archive may differ from its signature's tree.
        let mut live = prev.clone();
        live.consistency = Some(Consistency::Live);
        assert!(reusable(&live, "data", SIG, Compression::Zstd).is_none());
        let mut unknown = prev.clone();
        unknown.consistency = None;
        assert!(reusable(&unknown, "data", SIG, Compression::Zstd).is_none());
        // No signature recorded (an older backup).
        let old = previous(vec![volume("data", None)]);
        assert!(reusable(&old, "data", SIG, Compression::Zstd).is_none());
        assert!(candidate(&old, "data", Compression::Zstd).is_none());
        // Not of the local driver, absent, without archive or checksum.
        let variants: [fn(&mut VolumeEntry); 4] = [
            |v| v.driver = Some("nfs-plugin".into()),
            |v| v.existed = false,
            |v| v.archive_path = None,
            |v| v.sha256 = None,
        ];
        for change in variants {
            let mut v = volume("data", Some(SIG));
            change(&mut v);
            let prev = previous(vec![v]);
            assert!(reusable(&prev, "data", SIG, Compression::Zstd).is_none());
        }
    }

    #[test]
    fn a_shared_entry_takes_the_archive_from_the_previous_one() {
        let prev = volume("data", Some(SIG));
        let mut current = volume("data", Some(SIG));
        current.size = 0;
        current.uncompressed_size = 0;
        current.sha256 = None;
        current.special_files = vec![];
        current.used_by = vec!["web.service".into()];
        let shared = shared_entry(current, &prev);
        assert_eq!(shared.size, prev.size);
        assert_eq!(shared.uncompressed_size, prev.uncompressed_size);
        assert_eq!(shared.sha256, prev.sha256);
        assert_eq!(shared.special_files, prev.special_files);
        assert_eq!(shared.used_by, ["web.service"]);
    }

    #[test]
    fn only_local_volumes_without_a_device_are_fingerprinted() {
        let info = |driver: &str, option: Option<&str>| VolumeInfo {
            name: "v".into(),
            driver: driver.into(),
            mountpoint: "/v".into(),
            labels: Default::default(),
            options: option
                .map(|k| (k.to_owned(), "x".to_owned()))
                .into_iter()
                .collect(),
        };
        assert!(fingerprintable(&info("local", None)));
        assert!(fingerprintable(&info("local", Some("o"))));
        assert!(!fingerprintable(&info("local", Some("device"))));
        assert!(!fingerprintable(&info("local", Some("type"))));
        assert!(!fingerprintable(&info("image", None)));
    }

    #[test]
    fn the_signature_ignores_listing_order_only() {
        let a =
            signature_of(&b"d 4096 1.5 1.5 2 64769 755 0 0 \0f 3 1.5 1.5 3 64769 644 0 0 x\0"[..])
                .unwrap();
        let b =
            signature_of(&b"f 3 1.5 1.5 3 64769 644 0 0 x\0d 4096 1.5 1.5 2 64769 755 0 0 \0"[..])
                .unwrap();
        assert_eq!(a, b);
        let c =
            signature_of(&b"f 3 1.5 1.6 3 64769 644 0 0 x\0d 4096 1.5 1.5 2 64769 755 0 0 \0"[..])
                .unwrap();
        assert_ne!(a, c);
        assert!(signature_of(&b""[..]).is_err());
        assert!(signature_of(&b"f 3 1.5 1.5 3 64769 644 0 0 x"[..]).is_err());
    }

    /// The format as GNU find runs it: a tree listed twice signs the same;
    /// new content of the same size, a chmod or a rename does not.
    #[test]
    fn find_listings_change_with_any_change() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("v");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f"), "one").unwrap();
        let sign = || {
            let out = crate::process::run(
                std::process::Command::new("find")
                    .arg(&root)
                    .args(["-printf", ENTRY_FORMAT]),
            )
            .unwrap();
            signature_of(&out.stdout[..]).unwrap()
        };
        let first = sign();
        assert_eq!(sign(), first);
        std::thread::sleep(std::time::Duration::from_millis(20));
        // Same size, new content.
        std::fs::write(root.join("sub/f"), "two").unwrap();
        let second = sign();
        assert_ne!(second, first);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("sub/f"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let third = sign();
        assert_ne!(third, second);
        std::fs::rename(root.join("sub/f"), root.join("sub/g")).unwrap();
        assert_ne!(sign(), third);
    }

    #[test]
    fn the_newest_valid_backup_of_the_deployment_is_found() {
        let (_tmp, store) = store();
        assert!(newest_backup(&store, "web").unwrap().is_none());
        publish(&store, metadata("web-a", "web", 1));
        publish(&store, metadata("web-b", "web", 2));
        publish(&store, metadata("db-c", "db", 3));
        std::fs::create_dir(store.dir().join("web-broken")).unwrap();
        assert_eq!(newest_backup(&store, "web").unwrap().unwrap().id(), "web-b");
    }

    /// A shared archive has two names; deleting either backup leaves the
    /// other whole.
    #[test]
    fn linked_archives_survive_the_deletion_of_either_backup() {
        let (_tmp, store) = store();
        let entry = volume("data", Some(SIG));
        let pending = store.begin("web-a").unwrap();
        std::fs::create_dir(pending.path().join("volumes")).unwrap();
        std::fs::write(pending.path().join("volumes/data.tar.zst"), "12345").unwrap();
        pending.finalize(previous(vec![entry.clone()])).unwrap();
        let first = store.load("web-a").unwrap();

        let mut pending = store.begin("web-b").unwrap();
        std::fs::create_dir(pending.path().join("volumes")).unwrap();
        let dest = pending.path().join("volumes/data.tar.zst");
        link_archive(&first, entry.archive_path.as_deref(), entry.size, &dest).unwrap();
        pending.seal().unwrap();
        let mut second = previous(vec![entry.clone()]);
        second.id = "web-b".into();
        pending.finalize(second).unwrap();

        let archive = |id: &str| store.dir().join(id).join("volumes/data.tar.zst");
        use std::os::unix::fs::MetadataExt;
        let a = std::fs::metadata(archive("web-a")).unwrap();
        let b = std::fs::metadata(archive("web-b")).unwrap();
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
        store.delete("web-a").unwrap();
        assert_eq!(std::fs::read(archive("web-b")).unwrap(), b"12345");
        assert_eq!(std::fs::metadata(archive("web-b")).unwrap().nlink(), 1);
    }

    #[test]
    fn an_archive_of_another_size_is_not_linked() {
        let (_tmp, store) = store();
        let entry = volume("data", Some(SIG));
        let pending = store.begin("web-a").unwrap();
        std::fs::create_dir(pending.path().join("volumes")).unwrap();
        std::fs::write(pending.path().join("volumes/data.tar.zst"), "1234").unwrap();
        pending.finalize(previous(vec![entry.clone()])).unwrap();
        let first = store.load("web-a").unwrap();
        let dest = store.dir().join("elsewhere");
        let err =
            link_archive(&first, entry.archive_path.as_deref(), entry.size, &dest).unwrap_err();
        assert!(err.message.contains("not the archive"), "{}", err.message);
        assert!(!dest.exists());
    }
}
