//! `tree-write --file`: the one regular file of a host path's archive
//! written to its path.

use super::*;

/// Write the one regular file of the archive to the new path `dest`. Its
/// directory is the caller's (its path is followed as given); `dest`
/// itself is made with `O_EXCL | O_NOFOLLOW`.
pub(super) fn write_file<R: Read>(mut entries: tar::Entries<R>, dest: &Path) -> Result<()> {
    let refused = |why: String| {
        Error::user(format!(
            "cannot write the file {}: the archive {why}",
            dest.display()
        ))
        .with_hint("the backup is damaged or was not made by leger-backup; restore another one")
    };
    let (Some(dir), Some(base)) = (dest.parent(), dest.file_name()) else {
        return Err(Error::internal(format!(
            "{} is no path to a file",
            dest.display()
        )));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut entry = match entries.next() {
        Some(entry) => entry.map_err(|e| refused(format!("is not a readable tar: {e}")))?,
        None => return Err(refused("is empty".to_owned())),
    };
    let name = entry.path_bytes().into_owned();
    let kind = entry.header().entry_type();
    if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
        return Err(refused(format!(
            "holds {:?} of kind {kind:?}, not one regular file",
            String::from_utf8_lossy(&name)
        )));
    }
    let meta = meta(&mut entry)
        .map_err(|why| refused(format!("entry {:?} {why}", String::from_utf8_lossy(&name))))?;
    let parent = open_dir(None, dir.as_os_str())
        .map_err(|e| Error::internal(format!("cannot open {}: {e}", dir.display())))?;
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(
        Some(parent.as_raw_fd()),
        base,
        flags,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| Error::internal(format!("cannot create {}: {e}", dest.display())))?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let failed = |e: String| Error::internal(format!("cannot write {}: {e}", dest.display()));
    let size = copy_sparse(&mut entry, &file, &mut vec![0u8; 1 << 20])
        .map_err(|e| failed(e.to_string()))?;
    ftruncate(&file, size as libc::off_t).map_err(|e| failed(e.to_string()))?;
    finish_fd(&file, &meta).map_err(|e| failed(e.to_string()))?;
    drop(entry);
    match entries.next() {
        None => Ok(()),
        Some(Ok(more)) => Err(refused(format!(
            "holds more than one entry ({:?})",
            String::from_utf8_lossy(&more.path_bytes())
        ))),
        Some(Err(e)) => Err(refused(format!(
            "is not a readable tar after its file: {e}"
        ))),
    }
}
