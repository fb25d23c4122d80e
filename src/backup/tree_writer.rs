//! Writing a tar, as [`crate::backup::volume_reader`] writes it, back onto
//! the host exactly (the hidden `tree-write` command): for a directory,
//! into an empty directory the caller made with the recorded root mode and
//! owner; for a single file (`--file`), its one regular entry to a new path.
//!
//! Exactly: numeric owners (`lchown`; run inside podman's user namespace
//! the ids are the container's view, as the reader recorded them), the
//! whole mode with setuid, setgid and sticky bits (set after the owner, as
//! chown clears set-id bits), symlinks and their owners, hard links, the
//! extended attributes the reader records (ACLs included), mtimes to the
//! second, empty directories, FIFOs and device nodes, and sparse files:
//! blocks of zeros are skipped and the length set, so holes come back.
//! A directory's owner, attributes, mode and times are set once all the
//! entries are written, deepest first: its mtime is then the recorded one,
//! a read-only directory can still be filled, and a default ACL does not
//! give the entries under it ACLs they did not have.
//!
//! Archives are untrusted and the writer runs as root in `--system`
//! scope, so it never follows a symlink while writing: each entry is
//! made relative to a descriptor of its parent, opened from DEST's own
//! descriptor one component at a time with `O_NOFOLLOW`; absolute names,
//! `.` and `..` components are refused, and so is an entry whose parent is
//! not a directory written earlier or that already exists, and a hard link
//! whose target is not a file written earlier. An error names the entry;
//! what was written before it stays in DEST, for the caller to remove
//! (a restore rolls back as it does for a volume).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::libc;
use nix::sys::stat::{
    fchmod, fchmodat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, ftruncate, linkat, symlinkat, Gid, Uid};

use crate::backup::volume_reader::{open_dir, recorded_xattr};
use crate::error::{Error, Result};

/// Where the tar goes.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Into this empty directory (its own mode and owner are the caller's).
    Dir(&'a Path),
    /// Its one regular file to this path, which must not exist.
    File(&'a Path),
}

/// Blocks of this many zero bytes become holes.
const HOLE: usize = 4096;

/// Write the tar read from `input` to `target` (see the module doc).
pub fn write(input: impl Read, target: Target) -> Result<()> {
    // Headers are read a block at a time: one read(2) each without a buffer.
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(256 * 1024, input));
    let entries = archive
        .entries()
        .map_err(|e| Error::user(format!("cannot read the archive: {e}")))?;
    match target {
        Target::Dir(dest) => {
            let root = open_dir(None, dest.as_os_str())
                .map_err(|e| Error::internal(format!("cannot open {}: {e}", dest.display())))?;
            let mut writer = Writer::new(dest, root);
            for entry in entries {
                let mut entry = entry.map_err(|e| writer.unreadable(e))?;
                writer.entry(&mut entry)?;
            }
            writer.finish()
        }
        Target::File(dest) => write_file(entries, dest),
    }
}

/// What an entry records besides its data.
#[derive(Debug, Clone)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The state of one write into a directory.
struct Writer {
    dest: PathBuf,
    root: OwnedFd,
    /// Every path written (no trailing `/`) → whether it is a directory.
    written: HashMap<Vec<u8>, bool>,
    /// Directories, in the order they were made, finished at the end.
    dirs: Vec<(Vec<u8>, Meta)>,
    /// The last parent opened, by path: entries come directory by directory.
    parent: Option<(Vec<u8>, OwnedFd)>,
    buf: Vec<u8>,
}

impl Writer {
    fn new(dest: &Path, root: OwnedFd) -> Writer {
        Writer {
            dest: dest.to_owned(),
            root,
            written: HashMap::new(),
            dirs: Vec::new(),
            parent: None,
            buf: vec![0u8; 1 << 20],
        }
    }

    fn unreadable(&self, e: std::io::Error) -> Error {
        Error::user(format!(
            "cannot write the archive into {}: not a readable tar: {e}",
            self.dest.display()
        ))
    }

    /// An error about the entry `name`.
    fn refused(&self, name: &[u8], why: impl std::fmt::Display) -> Error {
        Error::user(format!(
            "cannot write the archive into {}: entry {:?} {why}",
            self.dest.display(),
            String::from_utf8_lossy(name)
        ))
        .with_hint("the backup is damaged or was not made by leger-backup; restore another one")
    }

    /// An entry that could not be written for a reason of the host
    /// (no space, no permission): the archive is not to blame.
    fn failed(&self, name: &[u8], what: &str, e: Errno) -> Error {
        if e == Errno::EEXIST {
            return self.refused(name, "appears twice in the archive");
        }
        Error::internal(format!(
            "cannot write the archive into {}: entry {:?} {what}: {e}",
            self.dest.display(),
            String::from_utf8_lossy(name)
        ))
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let name = entry.path_bytes().into_owned();
        let path = clean(&name).map_err(|why| self.refused(&name, why))?;
        let (parent_path, base) = split(path);
        let meta = meta(entry).map_err(|why| self.refused(&name, why))?;
        let kind = entry.header().entry_type();
        let parent = self
            .parent(parent_path)
            .map_err(|why| self.refused(&name, why))?;
        let made = match kind {
            tar::EntryType::Directory => {
                mkdirat(Some(parent), base, Mode::from_bits_truncate(0o700))
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                return self.regular(entry, &name, path, meta)
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or(Cow::Borrowed(&[]));
                symlinkat(OsStr::from_bytes(&target), Some(parent), base)
            }
            tar::EntryType::Link => return self.hard_link(entry, &name, path),
            tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
                let (kind, dev) = special(entry, kind).map_err(|why| self.refused(&name, why))?;
                mknodat(
                    Some(parent),
                    base,
                    kind,
                    Mode::from_bits_truncate(0o600),
                    dev,
                )
            }
            other => {
                return Err(self.refused(
                    &name,
                    format_args!("is of a kind never written ({other:?})"),
                ))
            }
        };
        made.map_err(|e| self.failed(&name, "cannot be made", e))?;
        if kind == tar::EntryType::Directory {
            self.written.insert(path.to_vec(), true);
            self.dirs.push((path.to_vec(), meta));
            return Ok(());
        }
        self.written.insert(path.to_vec(), false);
        let parent = self
            .parent(parent_path)
            .map_err(|why| self.refused(&name, why))?;
        finish_node(parent, base, &meta, kind != tar::EntryType::Symlink)
            .map_err(|e| self.failed(&name, "cannot be finished", e))
    }

    /// A regular file with its data, holes for blocks of zeros.
    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        name: &[u8],
        path: &[u8],
        meta: Meta,
    ) -> Result<()> {
        let (parent_path, base) = split(path);
        let parent = self
            .parent(parent_path)
            .map_err(|why| self.refused(name, why))?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(Some(parent), base, flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| self.failed(name, "cannot be made", e))?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        self.written.insert(path.to_vec(), false);
        let mut buf = std::mem::take(&mut self.buf);
        let copied = copy_sparse(entry, &file, &mut buf);
        self.buf = buf;
        let size = copied.map_err(|e| match e.raw_os_error() {
            Some(n) => self.failed(name, "cannot be written", Errno::from_raw(n)),
            None => self.refused(name, format_args!("cannot be read: {e}")),
        })?;
        ftruncate(&file, size as libc::off_t)
            .and_then(|()| finish_fd(&file, &meta))
            .map_err(|e| self.failed(name, "cannot be finished", e))
    }

    /// A second name of a file written earlier inside DEST.
    fn hard_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        name: &[u8],
        path: &[u8],
    ) -> Result<()> {
        let target = entry
            .link_name_bytes()
            .unwrap_or(Cow::Borrowed(&[]))
            .into_owned();
        let target = clean(&target).map_err(|why| {
            self.refused(
                name,
                format_args!(
                    "links to {:?}, which {why}",
                    String::from_utf8_lossy(&target)
                ),
            )
        })?;
        if self.written.get(target) != Some(&false) {
            return Err(self.refused(
                name,
                format_args!(
                    "links to {:?}, which is not a file written earlier in the archive",
                    String::from_utf8_lossy(target)
                ),
            ));
        }
        let (target_parent, target_base) = split(target);
        let from = self
            .open_path(target_parent)
            .map_err(|why| self.refused(name, why))?;
        let (parent_path, base) = split(path);
        let parent = self
            .parent(parent_path)
            .map_err(|why| self.refused(name, why))?;
        linkat(
            Some(from.as_raw_fd()),
            target_base,
            Some(parent),
            base,
            AtFlags::empty(),
        )
        .map_err(|e| self.failed(name, "cannot be made", e))?;
        self.written.insert(path.to_vec(), false);
        Ok(())
    }

    /// The descriptor of the directory `path` (empty: DEST), which must
    /// have been written earlier in the archive.
    fn parent(&mut self, path: &[u8]) -> std::result::Result<libc::c_int, String> {
        if path.is_empty() {
            return Ok(self.root.as_raw_fd());
        }
        if self.written.get(path) != Some(&true) {
            return Err(format!(
                "is in {:?}, which is not a directory written earlier in the archive",
                String::from_utf8_lossy(path)
            ));
        }
        if !matches!(&self.parent, Some((p, _)) if p == path) {
            let fd = self.open_path(path)?;
            self.parent = Some((path.to_vec(), fd));
        }
        Ok(self.parent.as_ref().map_or(-1, |(_, fd)| fd.as_raw_fd()))
    }

    /// Open the directory `path` under DEST one component at a time,
    /// following no symlink.
    fn open_path(&self, path: &[u8]) -> std::result::Result<OwnedFd, String> {
        let mut fd = open_dir(Some(&self.root), OsStr::new("."))
            .map_err(|e| format!("cannot open {}: {e}", self.dest.display()))?;
        for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            fd = open_dir(Some(&fd), OsStr::from_bytes(part)).map_err(|e| {
                format!(
                    "cannot open its directory {:?}: {e}",
                    String::from_utf8_lossy(path)
                )
            })?;
        }
        Ok(fd)
    }

    /// Owners, attributes, modes and times of the directories, deepest
    /// (last made) first.
    fn finish(mut self) -> Result<()> {
        for (path, meta) in std::mem::take(&mut self.dirs).iter().rev() {
            let fd = self
                .open_path(path)
                .map_err(|why| self.refused(path, why))?;
            finish_fd(&fd, meta).map_err(|e| self.failed(path, "cannot be finished", e))?;
        }
        Ok(())
    }
}

/// An entry's name as a relative path without `.` or `..` components or
/// a trailing `/`; why not otherwise.
fn clean(name: &[u8]) -> std::result::Result<&[u8], &'static str> {
    if name.starts_with(b"/") {
        return Err("has an absolute name");
    }
    let path = name.strip_suffix(b"/").unwrap_or(name);
    if path.is_empty() || path.contains(&0) {
        return Err("has no name");
    }
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" => return Err("has an empty component in its name"),
            b"." | b".." => return Err("has `.` or `..` in its name"),
            _ => {}
        }
    }
    Ok(path)
}

/// A clean path's directory (empty: the root) and last component.
fn split(path: &[u8]) -> (&[u8], &OsStr) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], OsStr::from_bytes(&path[i + 1..])),
        None => (&[], OsStr::from_bytes(path)),
    }
}

/// The owner, mode, mtime and attributes of an entry, PAX records taking
/// precedence over the header's fields (large ids and times live there).
fn meta<R: Read>(entry: &mut tar::Entry<R>) -> std::result::Result<Meta, String> {
    let header = entry.header();
    let bad = |field: &str, e: std::io::Error| format!("has an unreadable {field}: {e}");
    let mut meta = Meta {
        mode: header.mode().map_err(|e| bad("mode", e))? & 0o7777,
        uid: number(header.uid().map_err(|e| bad("uid", e))?, "uid")?,
        gid: number(header.gid().map_err(|e| bad("gid", e))?, "gid")?,
        mtime: header.mtime().map_err(|e| bad("mtime", e))? as i64,
        xattrs: Vec::new(),
    };
    let Some(pax) = entry.pax_extensions().map_err(|e| bad("PAX header", e))? else {
        return Ok(meta);
    };
    for record in pax {
        let record = record.map_err(|e| bad("PAX record", e))?;
        let (key, value) = (record.key_bytes(), record.value_bytes());
        // Times may have a fraction (other writers): kept to the second.
        let parsed = || {
            std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.split('.').next()?.parse::<i64>().ok())
                .ok_or_else(|| {
                    format!(
                        "has a PAX record {} that is no number",
                        String::from_utf8_lossy(key)
                    )
                })
        };
        match key {
            b"uid" => meta.uid = number(parsed()? as u64, "uid")?,
            b"gid" => meta.gid = number(parsed()? as u64, "gid")?,
            b"mtime" => meta.mtime = parsed()?,
            _ => {
                if let Some(xattr) = key.strip_prefix(b"SCHILY.xattr.") {
                    if !recorded_xattr(xattr, true) {
                        return Err(format!(
                            "has the extended attribute {}, which is never recorded",
                            String::from_utf8_lossy(xattr)
                        ));
                    }
                    meta.xattrs.push((xattr.to_vec(), value.to_vec()));
                }
            }
        }
    }
    Ok(meta)
}

fn number(value: u64, field: &str) -> std::result::Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("has a {field} {value} out of range"))
}

/// The node kind and device number of a FIFO or device entry.
fn special<R: Read>(
    entry: &tar::Entry<R>,
    kind: tar::EntryType,
) -> std::result::Result<(SFlag, libc::dev_t), String> {
    let header = entry.header();
    let major = header
        .device_major()
        .map_err(|e| format!("has an unreadable device number: {e}"))?;
    let minor = header
        .device_minor()
        .map_err(|e| format!("has an unreadable device number: {e}"))?;
    let dev = libc::makedev(major.unwrap_or(0), minor.unwrap_or(0));
    Ok(match kind {
        tar::EntryType::Char => (SFlag::S_IFCHR, dev),
        tar::EntryType::Block => (SFlag::S_IFBLK, dev),
        _ => (SFlag::S_IFIFO, 0),
    })
}

/// Copy `entry`'s data into `file` at its offsets, leaving blocks of
/// zeros unwritten (holes); the size copied.
fn copy_sparse(
    entry: &mut impl Read,
    file: &std::fs::File,
    buf: &mut [u8],
) -> std::io::Result<u64> {
    let mut offset = 0u64;
    loop {
        let n = fill(entry, buf)?;
        if n == 0 {
            return Ok(offset);
        }
        let mut start = None;
        for (i, block) in buf[..n].chunks(HOLE).enumerate() {
            let at = i * HOLE;
            let zero = block.iter().all(|&b| b == 0);
            match (zero, start) {
                (false, None) => start = Some(at),
                (true, Some(s)) => {
                    file.write_all_at(&buf[s..at], offset + s as u64)?;
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            file.write_all_at(&buf[s..n], offset + s as u64)?;
        }
        offset += n as u64;
    }
}

/// Read until `buf` is full or the input ends: whole buffers keep the
/// blocks aligned to the file's offsets.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Owner, then attributes (chown drops `security.capability`), then mode
/// (after chown, which clears set-id bits), then times, of an open file
/// or directory.
fn finish_fd(fd: &impl AsRawFd, meta: &Meta) -> std::result::Result<(), Errno> {
    let raw = fd.as_raw_fd();
    fchown(
        raw,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
    )?;
    for (name, value) in &meta.xattrs {
        let name = CString::new(name.as_slice()).map_err(|_| Errno::EINVAL)?;
        // SAFETY: a valid C string and a buffer of the length given.
        let rc =
            unsafe { libc::fsetxattr(raw, name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if rc != 0 {
            return Err(Errno::last());
        }
    }
    fchmod(raw, Mode::from_bits_truncate(meta.mode))?;
    let time = TimeSpec::new(meta.mtime, 0);
    nix::sys::stat::futimens(raw, &time, &time)
}

/// The same for the symlink, FIFO or device `name` of `dir`, not opened
/// (opening a device can act on it) and never followed; a symlink's mode
/// is not set (Linux has none to set).
fn finish_node(
    dir: libc::c_int,
    name: &OsStr,
    meta: &Meta,
    chmod: bool,
) -> std::result::Result<(), Errno> {
    fchownat(
        Some(dir),
        name,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    let mut path = format!("/proc/self/fd/{dir}/").into_bytes();
    path.extend_from_slice(name.as_bytes());
    let path = CString::new(path).map_err(|_| Errno::EINVAL)?;
    for (key, value) in &meta.xattrs {
        let key = CString::new(key.as_slice()).map_err(|_| Errno::EINVAL)?;
        // SAFETY: valid C strings and a buffer of the length given.
        let rc = unsafe {
            libc::lsetxattr(
                path.as_ptr(),
                key.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc != 0 {
            return Err(Errno::last());
        }
    }
    if chmod {
        // Just made by mknodat and written by no one else: no symlink.
        fchmodat(
            Some(dir),
            name,
            Mode::from_bits_truncate(meta.mode),
            FchmodatFlags::FollowSymlink,
        )?;
    }
    let time = TimeSpec::new(meta.mtime, 0);
    utimensat(
        Some(dir),
        name,
        &time,
        &time,
        UtimensatFlags::NoFollowSymlink,
    )
}

mod file;
use file::write_file;

#[cfg(test)]
mod tests;
