//! The archives of a backup's volumes: each volume is inspected, then its
//! archive is linked from the deployment's previous backup when the volume
//! has not changed since ([`reuse`]), or its tar is streamed (read directly
//! or by `podman volume export`, see [`volume_reader`]) through the
//! [`TarGuard`](crate::backup::tar_guard) into the compressor.

use std::collections::BTreeSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::{in_parallel, Subject, VolumeSpec};
use crate::backup::archive;
use crate::backup::journal::{Journal, Step};
use crate::backup::metadata::{Consistency, VolumeEntry};
use crate::backup::progress::{Progress, VolumeProgress};
use crate::backup::reuse;
use crate::backup::store::StoredBackup;
use crate::backup::tar_guard::{Guarded, Specials};
use crate::backup::volume_reader::{self, ReaderChoice};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::fault;
use crate::interrupt;
use crate::podman::{ContainerEngine, ContainerRef, RootOwnership, VolumeInfo};
use crate::ui;

/// A volume as `podman volume inspect` shows it, and its root's mode and
/// owner; `None` when it does not exist.
pub(super) type Inspected = Option<(VolumeInfo, Option<RootOwnership>)>;

/// Inspect every volume and read its root's mode and owner, volumes in
/// parallel (each is podman calls of its own); `None` for one that does
/// not exist.
pub(super) fn inspect_volumes(
    podman: &dyn ContainerEngine,
    volumes: &[VolumeSpec],
) -> Result<Vec<Inspected>> {
    in_parallel(volumes, |volume| {
        let Some(info) = podman.volume_inspect(&volume.name)? else {
            return Ok(None);
        };
        let root = if info.mountpoint.is_empty() {
            None
        } else {
            Some(podman.root_ownership(&info.mountpoint)?)
        };
        Ok(Some((info, root)))
    })
}

/// Where the archives of a backup's volumes come from, besides the export.
pub(super) struct VolumeSources<'a> {
    /// The deployment's newest backup, whose archives may be shared.
    pub(super) previous: Option<&'a StoredBackup>,
    /// The volumes nothing writes to while they are read: the services
    /// mounting them are stopped and no container of another deployment
    /// runs on them.
    pub(super) quiet: BTreeSet<String>,
    /// Volumes not archived: a restore moves their data aside.
    pub(super) held_aside: &'a BTreeSet<String>,
    /// Which reader archives the volumes.
    pub(super) reader: ReaderChoice,
}

/// Write the archive of every volume into the pending backup at `dir`: a
/// link to the previous backup's archive when the volume has not changed
/// since, an export otherwise. Returns the volumes' entries, in order.
pub(super) fn write_volumes(
    ctx: &Context,
    subject: &Subject,
    infos: Vec<Inspected>,
    sources: &VolumeSources,
    dir: &Path,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<Vec<VolumeEntry>> {
    let compression = ctx.config.backup.compression.value;
    let mut volumes = Vec::new();
    for (spec, info) in subject.volumes.iter().zip(infos) {
        let (mut entry, info) = volume_entry(spec, info, progress);
        let Some(info) = info else {
            volumes.push(entry);
            continue;
        };
        if sources.held_aside.contains(&spec.name) {
            entry.held_aside = true;
            volumes.push(entry);
            continue;
        }
        interrupt::check()?;
        journal.step(Step::Exporting {
            volume: spec.name.clone(),
        })?;
        let rel =
            PathBuf::from("volumes").join(format!("{}.{}", spec.name, compression.extension()));
        private_dir(&dir.join("volumes"))?;
        let dest = dir.join(&rel);
        entry.archive_path = Some(rel);
        volumes.push(archive_volume(ctx, &info, entry, sources, &dest, progress)?);
    }
    Ok(volumes)
}

/// The entry of volume `spec` as inspected (`info`): everything but its
/// data, and the volume as podman shows it; `None` (said) when it does
/// not exist, recorded as absent.
pub(super) fn volume_entry(
    spec: &VolumeSpec,
    info: Inspected,
    progress: &Progress,
) -> (VolumeEntry, Option<VolumeInfo>) {
    let mut entry = VolumeEntry {
        existed: info.is_some(),
        defined_by: spec.defined_by.clone(),
        volume_service: spec.volume_service.clone(),
        used_by: spec.used_by.clone(),
        ..VolumeEntry::absent(&spec.name)
    };
    let Some((info, root)) = info else {
        progress.step(format!(
            "volume {} does not exist yet: recorded as absent",
            spec.name
        ));
        return (entry, None);
    };
    entry.root = root;
    entry.driver = Some(info.driver.clone());
    entry.labels = info.labels.clone();
    entry.options = info.options.clone();
    (entry, Some(info))
}

/// Create the directory `path` of a pending backup (mode 0700) unless it
/// exists: where the archives of volumes or host paths go.
pub(super) fn private_dir(path: &Path) -> Result<()> {
    if !path.exists() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|e| Error::internal(format!("cannot create {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Write the archive of the existing volume `info` to `dest` and complete
/// its `entry`, tree signature included.
///
/// When the previous backup holds an archive of the volume that may be
/// shared, the signature is taken first and decides: a match proves the
/// tree is the one that archive holds. Otherwise, on a quiet volume (see
/// [`VolumeSources`]) it is taken while the volume is exported, so a backup
/// with nothing to share waits no longer than for the export. A signature
/// is recorded only for a quiet volume, or with a shared archive (it is
/// the one that archive was proven against): a tree that changes while it
/// is read may differ from what the signature describes.
fn archive_volume(
    ctx: &Context,
    info: &VolumeInfo,
    mut entry: VolumeEntry,
    sources: &VolumeSources,
    dest: &Path,
    progress: &Progress,
) -> Result<VolumeEntry> {
    let compression = ctx.config.backup.compression.value;
    let podman = &*ctx.podman;
    let name = entry.name.clone();
    let fingerprint = || fingerprint(podman, info, progress);
    let export = || export_volume(ctx, info, sources.reader, dest, progress);
    let candidate = sources.previous.filter(|p| {
        reuse::fingerprintable(info)
            && reuse::candidate(&p.metadata, &entry.name, compression).is_some()
    });
    let quiet = sources.quiet.contains(&name);
    let (stats, specials) = match candidate {
        Some(previous) => {
            let signature = fingerprint();
            if let Some(shared) =
                share_archive(previous, &entry, signature.as_deref(), dest, progress)
            {
                return Ok(shared);
            }
            entry.tree_signature = signature.filter(|_| quiet);
            export()?
        }
        None if !quiet => export()?,
        None => std::thread::scope(|scope| {
            let signing = scope.spawn(fingerprint);
            let exported = export();
            // A panic in the signature thread only loses the signature.
            entry.tree_signature = signing.join().ok().flatten();
            exported
        })?,
    };
    entry.size = stats.size;
    entry.uncompressed_size = stats.uncompressed_size;
    entry.sha256 = Some(stats.sha256);
    entry.special_files = specials;
    Ok(entry)
}

/// The tree signature of volume `info` (see [`reuse`]), `None` when it is
/// not fingerprinted or the fingerprint failed: that costs only the
/// sharing of its archive by the next backup, so it is a note, not an
/// error.
fn fingerprint(
    podman: &dyn ContainerEngine,
    info: &VolumeInfo,
    progress: &Progress,
) -> Option<String> {
    if !reuse::fingerprintable(info) {
        return None;
    }
    reuse::tree_signature(podman, &info.mountpoint)
        .map_err(|e| {
            progress.step(format!(
                "volume {}: no tree signature ({e}); the next backup exports it again",
                info.name
            ))
        })
        .ok()
}

/// The entry of a volume whose archive in `previous` (a candidate: of the
/// same compression) is linked to `dest`, when the volume's `signature`
/// says it has not changed since (see [`reuse::reusable`]); `None`
/// when it must be exported, a failed link (`EXDEV`, `EMLINK`, the archive
/// gone) included.
fn share_archive(
    previous: &StoredBackup,
    entry: &VolumeEntry,
    signature: Option<&str>,
    dest: &Path,
    progress: &Progress,
) -> Option<VolumeEntry> {
    let compression = previous.metadata.compression?;
    let old = reuse::reusable(&previous.metadata, &entry.name, signature?, compression)?;
    match reuse::link_archive(previous, old.archive_path.as_deref(), old.size, dest) {
        Ok(()) => {
            progress.step(format!(
                "volume {}: unchanged since backup {}, its archive is shared",
                entry.name,
                previous.id()
            ));
            Some(reuse::shared_entry(entry.clone(), old))
        }
        Err(e) => {
            progress.step(format!(
                "volume {}: unchanged since backup {}, but its archive cannot be shared ({e}): \
                 exporting it",
                entry.name,
                previous.id()
            ));
            None
        }
    }
}

/// Stream one volume into its archive: its tar read directly or by
/// `podman volume export` (see [`volume_reader`]), then [`write_stream`].
fn export_volume(
    ctx: &Context,
    info: &VolumeInfo,
    reader: ReaderChoice,
    dest: &Path,
    progress: &Progress,
) -> Result<(archive::ArchiveStats, Vec<String>)> {
    let name = info.name.as_str();
    let what = format!("exporting volume {name}");
    let bar = progress.bar("exporting", name);
    let stream = volume_reader::open(&*ctx.podman, info, reader).map_err(|e| {
        bar.fail();
        e.context(what.clone())
    })?;
    if let Some(why) = &stream.fallback {
        progress.step(format!(
            "reading volume {name} with `podman volume export`: the direct read did not start ({why})"
        ));
    }
    let how = if stream.direct {
        "read directly"
    } else {
        "podman volume export"
    };
    write_stream(ctx, stream, bar, &what, how, dest)
}

/// Stream a tar being read (of a volume or a host path) into its archive
/// at `dest`: piped through the [`TarGuard`] (so a backup that a restore
/// would refuse fails now, not on the bad day) into
/// [`archive::write_archive`], as volumes and host paths alike are stored.
/// Either side failing ends the other; errors say `what` was done. Returns
/// the archive's figures and the device nodes and FIFOs the tree holds (a
/// restore lets only those through).
pub(super) fn write_stream(
    ctx: &Context,
    stream: volume_reader::VolumeStream,
    bar: Box<dyn VolumeProgress>,
    what: &str,
    how: &str,
    dest: &Path,
) -> Result<(archive::ArchiveStats, Vec<String>)> {
    let backup = &ctx.config.backup;
    let (compression, level, threads) = (
        backup.compression.value,
        backup.level.value,
        backup.threads.value,
    );
    let export = stream.program;
    let stdout = Interruptible {
        inner: std::io::Read::chain(std::io::Cursor::new(stream.head), stream.stdout),
        fault: fault::armed("create:during-export"),
    };
    let mut guarded = Guarded::new(stdout, Specials::Record);
    let written =
        archive::write_archive(&mut guarded, dest, compression, level, threads, &mut |n| {
            bar.set(n)
        });
    match written {
        Ok(stats) => {
            // A reader's failure mid-stream ends the tar early; only its
            // exit status tells.
            if let Err(e) = export.finish() {
                let _ = std::fs::remove_file(dest);
                bar.fail();
                return Err(e.context(what.to_owned()));
            }
            let Some(specials) = guarded.recorded() else {
                let _ = std::fs::remove_file(dest);
                bar.fail();
                return Err(Error::internal(format!(
                    "{what}: the stream was not read to its end"
                )));
            };
            bar.done(&format!(
                "{} -> {} ({how})",
                ui::human_size(stats.uncompressed_size),
                ui::human_size(stats.size)
            ));
            Ok((stats, specials))
        }
        Err(e) => {
            // A reader that failed (a file it could not read) says why.
            let e = export.abort_explained().unwrap_or(e);
            bar.fail();
            Err(e.context(what.to_owned()))
        }
    }
}

/// The export stream, cut short when SIGINT/SIGTERM arrived: the read that
/// the signal interrupted (`EINTR`, retried by the archive writer) comes
/// back here and fails, so the archive writer stops and removes its file.
/// It is also where the `create:during-export` fault point fires.
struct Interruptible<R> {
    inner: R,
    fault: bool,
}

impl<R: std::io::Read> std::io::Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(signal) = interrupt::requested() {
            return Err(std::io::Error::other(format!("interrupted by {signal}")));
        }
        let n = self.inner.read(buf)?;
        if n > 0 && self.fault {
            self.fault = false;
            fault::point("create:during-export");
        }
        Ok(n)
    }
}

/// Grow a pipe to podman to 1 MiB (the unprivileged maximum by default), so
/// data crosses it in whole chunks instead of 64 KiB at a time. Only a
/// speed-up: failure is ignored, and a stream that is no pipe (`None`, an
/// in-memory one in tests) is left alone.
pub(crate) fn widen_pipe(fd: Option<std::os::fd::RawFd>) {
    if let Some(fd) = fd {
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
    }
}

/// The volumes nothing writes to while they are read: all of them when the
/// services are stopped, none when they keep running, less those a running
/// container of another deployment (or of none) uses. Such a container
/// keeps writing: say so.
pub(super) fn quiet_volumes(
    subject: &Subject,
    consistency: Consistency,
    foreign: Vec<(String, ContainerRef)>,
    progress: &Progress,
) -> BTreeSet<String> {
    // the deployment's services keep running.
    let mut quiet: BTreeSet<String> = match consistency {
        Consistency::Stopped => subject.volumes.iter().map(|v| v.name.clone()).collect(),
        Consistency::Live => BTreeSet::new(),
    };
    for (volume, container) in foreign {
        if container.state == "running" {
            quiet.remove(&volume);
            progress.warn(format!(
                "volume {volume} is also used by container {}{}, which is not part of {} and \
                 keeps running: its writes during the export may make this backup of {volume} \
                 inconsistent (stop it first for a consistent backup)",
                container.display_name(),
                container
                    .systemd_unit()
                    .map(|u| format!(" (run by {u})"))
                    .unwrap_or_default(),
                subject.name
            ));
        }
    }
    quiet
}
