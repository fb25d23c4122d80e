//! Reading a local volume's directory ourselves, instead of through
//! `podman volume export`, into the same archive format: a tar of the
//! volume's contents without an entry for its root, entries in the order
//! of a depth-first walk with names sorted bytewise, headers as Go's
//! `archive/tar` writes them ([`header`]), and what podman's export
//! (`containers/storage` `pkg/archive`) records: numeric owners only, the
//! whole `st_mode`, mtimes to the second, second and later names of a file
//! as hard links, device nodes and FIFOs as header-only entries, and the
//! extended attributes `security.capability`, `security.ima` and `user.*`
//! (not `user.overlay.*`) as PAX `SCHILY.xattr.*` records. Sockets are left out, as podman leaves them.
//! Sparse files are written as plain data.
//!
//! Host paths (bind-mount sources, files the units refer to) are read the
//! same way with [`write_host_path`] (`volume-tar --host`), which records
//! two more things volumes do not need, so volume archives stay exactly
//! podman's: the POSIX ACLs (`system.posix_acl_access` and
//! `system.posix_acl_default`, as `SCHILY.xattr.*` like the others), and a
//! root that is a single regular file (a bind-mounted config file, an
//! `EnvironmentFile=`), archived as exactly one regular-file entry named by
//! the file's base name: the name carries no path the restore could
//! follow, and the caller restores it to the path it recorded. As for
//! volumes, a directory root is no entry: the caller records its mode and
//! owner.
//!
//! Why: podman's export costs a Go tar writer, a re-exec'd helper and a
//! pipe more than the data itself; reading the directory is the floor.
//! Rootless, the files of a container's other users belong to subordinate
//! uids the user cannot read, so the reader runs as a child process of our
//! own binary (the hidden `volume-tar` command) inside podman's user
//! namespace (`podman unshare`), where they are readable and owners appear
//! as the container sees them, as in podman's export; as root, the same
//! child without `podman unshare` (one code path: the parent streams,
//! aborts and reaps it as it does `podman volume export`, and its stderr
//! lands in the error). The parent passes the stream through the same
//! guard, hash and compressor as podman's.
//!
//! The walk holds a directory file descriptor per level and opens every
//! entry relative to it without following symlinks, so a container that
//! swaps a directory for a symlink while it is read cannot make the reader
//! (root, in `--system` scope) read outside the volume. Entries that vanish
//! while the volume is read (a live backup) are left out, as podman does;
//! a directory or file that cannot be read fails the read (podman would
//! leave it out of the archive without saying so).

mod header;

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io::{BufWriter, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::libc;
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

use crate::error::{Error, Result};
use crate::podman::{ContainerEngine, VolumeInfo};
use crate::process::{PipeReader, Producer};

use header::{Entry, BLOCK};

/// The environment variable that forces a reader: `podman` or `direct`.
pub const READER_ENV: &str = "LEGER_BACKUP_VOLUME_READER";

/// Which reader archives a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderChoice {
    /// The direct reader for local volumes, `podman volume export` for the
    /// others and when the direct read cannot start.
    Auto,
    /// Always `podman volume export`.
    Podman,
    /// Always the direct reader; its failure to start is an error.
    Direct,
}

impl ReaderChoice {
    /// The choice [`READER_ENV`] makes (unset or empty: [`ReaderChoice::Auto`]).
    pub fn from_env() -> Result<ReaderChoice> {
        ReaderChoice::parse(std::env::var_os(READER_ENV).as_deref())
    }

    /// The choice a value of [`READER_ENV`] makes.
    fn parse(value: Option<&OsStr>) -> Result<ReaderChoice> {
        let value = value.unwrap_or_default();
        match value.to_str() {
            Some("") => Ok(ReaderChoice::Auto),
            Some("podman") => Ok(ReaderChoice::Podman),
            Some("direct") => Ok(ReaderChoice::Direct),
            _ => Err(Error::user(format!(
                "{READER_ENV}={} is not a volume reader",
                value.to_string_lossy()
            ))
            .with_hint(format!(
                "set {READER_ENV} to `podman` or `direct`, or unset it"
            ))),
        }
    }
}

/// Whether the direct reader reads volume `info`: the local driver with a
/// mountpoint and no filesystem of its own mounted there (no `device`,
/// `type` or `o` option), so its directory holds all its data.
pub(crate) fn direct_readable(info: &VolumeInfo) -> bool {
    crate::backup::reuse::fingerprintable(info) && !info.options.contains_key("o")
}

/// A volume's tar stream as it is being read.
pub(crate) struct VolumeStream {
    /// The program writing it (`podman volume export`, or our reader).
    pub program: Box<dyn Producer>,
    /// Its stdout, the tar; `head` holds the bytes already read from it.
    pub stdout: Box<dyn PipeReader>,
    /// The first bytes, read to know that the program started.
    pub head: Vec<u8>,
    /// Whether our own reader writes it (else `podman volume export`).
    pub direct: bool,
    /// Why the direct read, wanted, could not start (podman's export
    /// reads the volume instead).
    pub fallback: Option<String>,
}

/// Start reading volume `info`'s tar with the reader `choice` picks.
pub(crate) fn open(
    podman: &dyn ContainerEngine,
    info: &VolumeInfo,
    choice: ReaderChoice,
) -> Result<VolumeStream> {
    let wanted = match choice {
        ReaderChoice::Podman => false,
        ReaderChoice::Direct => true,
        ReaderChoice::Auto => direct_readable(info),
    };
    if !wanted {
        return start(podman.volume_export(&info.name)?, false);
    }
    let direct = std::env::current_exe()
        .map_err(|e| Error::internal(format!("cannot find leger-backup's own binary: {e}")))
        .and_then(|exe| podman.volume_tar(&exe, &info.mountpoint))
        .and_then(|program| start(program, true));
    match direct {
        Ok(stream) => Ok(stream),
        Err(e) if choice == ReaderChoice::Direct => Err(e.with_hint(format!(
            "unset {READER_ENV} to fall back to `podman volume export`"
        ))),
        Err(e) => {
            let mut stream = start(podman.volume_export(&info.name)?, false)?;
            stream.fallback = Some(e.message);
            Ok(stream)
        }
    }
}

/// Read the first bytes `program` writes: a tar has at least its end
/// marker, so nothing at all means it failed before it began.
fn start(mut program: Box<dyn Producer>, direct: bool) -> Result<VolumeStream> {
    let Some(mut stdout) = program.output() else {
        program.abort();
        return Err(Error::internal("the volume reader has no stdout"));
    };
    crate::backup::create::widen_pipe(stdout.pipe_fd());
    let mut head = vec![0u8; 64 * 1024];
    let n = loop {
        match stdout.read(&mut head) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    match n {
        Ok(0) => {
            drop(stdout);
            program.finish()?;
            Err(Error::internal("the volume reader wrote nothing"))
        }
        Ok(n) => {
            head.truncate(n);
            Ok(VolumeStream {
                program,
                stdout,
                head,
                direct,
                fallback: None,
            })
        }
        Err(e) => {
            program.abort();
            Err(Error::internal(format!("reading the volume's tar: {e}")))
        }
    }
}

/// Write the tar of the directory `root` to `out` (see the module doc).
pub fn write_tree(root: &Path, out: impl Write) -> Result<()> {
    raise_open_files_limit();
    let dir = open_dir(None, root.as_os_str())
        .map_err(|e| Error::internal(format!("cannot open {}: {e}", root.display())))?;
    let mut walk = Walk::new(root, out, false);
    walk.dir(&dir, &mut Vec::new())?;
    walk.finish()
}

/// Write the tar of the host path `root` to `out`: a directory as
/// [`write_tree`] writes a volume's, ACLs included; a regular file as one
/// entry named by its base name (see the module doc). A symlink or any
/// other kind of root is refused: the caller resolves the path first.
pub fn write_host_path(root: &Path, out: impl Write) -> Result<()> {
    raise_open_files_limit();
    let failed =
        |what: &str, e: Errno| Error::internal(format!("cannot {what} {}: {e}", root.display()));
    let st = nix::sys::stat::lstat(root).map_err(|e| failed("stat", e))?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let mut walk = Walk::new(root, out, true);
    match (kind, root.parent(), root.file_name()) {
        (SFlag::S_IFDIR, _, _) => {
            let dir = open_dir(None, root.as_os_str()).map_err(|e| failed("open", e))?;
            walk.dir(&dir, &mut Vec::new())?;
        }
        (SFlag::S_IFREG, Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            let dir = open_dir(None, parent.as_os_str())
                .map_err(|e| failed("open the directory of", e))?;
            // The walk appends the root's path to the entry's for messages.
            walk.root = parent.to_owned();
            if !walk.file(&dir, name, name.as_bytes(), &st)? {
                return Err(Error::internal(format!(
                    "{} was replaced or removed while it was read",
                    root.display()
                )));
            }
        }
        _ => {
            return Err(Error::internal(format!(
                "cannot read {}: not a directory or a regular file",
                root.display()
            ))
            .with_hint("pass the path a symlink points to, not the symlink"))
        }
    }
    walk.finish()
}

/// A deep tree holds a descriptor per level: allow as many as allowed.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The state of one walk.
struct Walk<W: Write> {
    root: PathBuf,
    out: BufWriter<W>,
    /// (device, inode) of files with more than one name -> the first name.
    links: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
    header: Vec<u8>,
    /// Whether POSIX ACLs are recorded too (host paths).
    acls: bool,
}

impl<W: Write> Walk<W> {
    fn new(root: &Path, out: W, acls: bool) -> Walk<W> {
        Walk {
            root: root.to_owned(),
            out: BufWriter::with_capacity(256 * 1024, out),
            links: HashMap::new(),
            buf: vec![0u8; 1 << 20],
            header: Vec::with_capacity(4 * BLOCK),
            acls,
        }
    }

    /// The end marker, and everything flushed.
    fn finish(mut self) -> Result<()> {
        self.write(&[0u8; 2 * BLOCK])?;
        self.out.flush().map_err(|e| {
            Error::internal(format!("writing the tar of {}: {e}", self.root.display()))
        })
    }

    /// The entries of the open directory `dir`, at `path` in the archive
    /// (empty or ending in `/`), sorted bytewise.
    fn dir(&mut self, dir: &OwnedFd, path: &mut Vec<u8>) -> Result<()> {
        let mut names = self.list(dir, path)?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let len = path.len();
            path.extend_from_slice(name.as_bytes());
            let added = self.entry(dir, &name, path);
            path.truncate(len);
            added?;
        }
        Ok(())
    }

    fn list(&self, dir: &OwnedFd, path: &[u8]) -> Result<Vec<OsString>> {
        let failed = |e: std::io::Error| {
            Error::internal(format!("cannot list {}: {e}", self.shown(path).display()))
        };
        std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
            .map_err(failed)?
            .map(|entry| entry.map(|e| e.file_name()).map_err(failed))
            .collect()
    }

    /// One entry `name` of `dir`, at `path` in the archive.
    fn entry(&mut self, dir: &OwnedFd, name: &OsStr, path: &mut Vec<u8>) -> Result<()> {
        let failed = |what: &str, e: Errno| {
            Error::internal(format!("cannot {what} {}: {e}", self.shown(path).display()))
        };
        let st = match fstatat(
            Some(dir.as_raw_fd()),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(failed("stat", e)),
        };
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if kind == SFlag::S_IFDIR {
            let sub = match open_dir(Some(dir), name) {
                Ok(sub) => sub,
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => return Ok(()),
                Err(e) => return Err(failed("open", e)),
            };
            let st = fstat(sub.as_raw_fd()).map_err(|e| failed("stat", e))?;
            path.push(b'/');
            self.header(dir, name, path, &st, b'5', &[])?;
            return self.dir(&sub, path);
        }
        if kind == SFlag::S_IFSOCK {
            return Ok(());
        }
        // Any other name of a file already written is a hard link to it
        // (podman links every non-directory so, symlinks included).
        let key = (st.st_dev, st.st_ino);
        if st.st_nlink > 1 {
            if let Some(first) = self.links.get(&key).cloned() {
                return self.header(dir, name, path, &st, b'1', &first).map(drop);
            }
        }
        let written = match kind {
            SFlag::S_IFREG => self.file(dir, name, path, &st)?,
            SFlag::S_IFLNK => match readlinkat(Some(dir.as_raw_fd()), name) {
                Ok(target) => self.header(dir, name, path, &st, b'2', target.as_bytes())?,
                Err(Errno::ENOENT | Errno::EINVAL) => return Ok(()),
                Err(e) => return Err(failed("read the symlink", e)),
            },
            SFlag::S_IFIFO => self.header(dir, name, path, &st, b'6', &[])?,
            SFlag::S_IFCHR => self.header(dir, name, path, &st, b'3', &[])?,
            SFlag::S_IFBLK => self.header(dir, name, path, &st, b'4', &[])?,
            _ => return Ok(()),
        };
        if written && st.st_nlink > 1 {
            self.links.insert(key, path.clone());
        }
        Ok(())
    }

    /// A regular file: its header, then exactly the size it had when its
    /// header was written (zeros for bytes it lost since, cut at that
    /// size if it grew), so the stream stays a valid tar when the volume
    /// changes while it is read.
    /// Returns whether it was written (false: it vanished or was replaced).
    fn file(&mut self, dir: &OwnedFd, name: &OsStr, path: &[u8], st: &FileStat) -> Result<bool> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = match openat(Some(dir.as_raw_fd()), name, flags, Mode::empty()) {
            // SAFETY: openat returned a new descriptor that nothing else owns.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            Err(Errno::ENOENT | Errno::ELOOP) => return Ok(false),
            Err(e) => {
                return Err(Error::internal(format!(
                    "cannot open {}: {e}",
                    self.shown(path).display()
                )))
            }
        };
        let mut file = std::fs::File::from(fd);
        // Replaced by something else between the stat and the open.
        let opened = fstat(file.as_raw_fd()).ok();
        if !opened.is_some_and(|o| o.st_ino == st.st_ino && o.st_dev == st.st_dev) {
            return Ok(false);
        }
        self.header(dir, name, path, st, b'0', &[])?;
        let size = st.st_size as u64;
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => {
                    // Shrunk: zeros up to the recorded size.
                    self.buf[..want].fill(0);
                    want
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::internal(format!(
                        "cannot read {}: {e}",
                        self.shown(path).display()
                    )))
                }
            };
            let chunk = std::mem::take(&mut self.buf);
            let written = self.write(&chunk[..n]);
            self.buf = chunk;
            written?;
            left -= n as u64;
        }
        let pad = header::padding(size) as usize;
        self.write(&[0u8; BLOCK][..pad])?;
        Ok(true)
    }

    /// Write the header of the entry `name` of `dir` (at `path`); true.
    fn header(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &[u8],
        st: &FileStat,
        typeflag: u8,
        linkname: &[u8],
    ) -> Result<bool> {
        let xattrs = wanted_xattrs(dir, name, self.acls).map_err(|e| {
            Error::internal(format!(
                "cannot read the extended attributes of {}: {e}",
                self.shown(path).display()
            ))
        })?;
        let special = matches!(typeflag, b'3' | b'4');
        let entry = Entry {
            name: path,
            typeflag,
            mode: st.st_mode,
            uid: u64::from(st.st_uid),
            gid: u64::from(st.st_gid),
            size: if typeflag == b'0' {
                st.st_size as u64
            } else {
                0
            },
            mtime: st.st_mtime,
            linkname,
            devmajor: if special {
                libc::major(st.st_rdev) as u64
            } else {
                0
            },
            devminor: if special {
                libc::minor(st.st_rdev) as u64
            } else {
                0
            },
            xattrs: &xattrs,
        };
        let mut block = std::mem::take(&mut self.header);
        block.clear();
        header::append(&entry, &mut block);
        let written = self.write(&block);
        self.header = block;
        written.map(|()| true)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| {
            Error::internal(format!("writing the tar of {}: {e}", self.root.display()))
        })
    }

    /// The host path of `path` (in the archive), for messages.
    fn shown(&self, path: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(path))
    }
}

/// Open the directory `name` (relative to `dir`, or as is) without
/// following a symlink.
pub(crate) fn open_dir(dir: Option<&OwnedFd>, name: &OsStr) -> std::result::Result<OwnedFd, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir.map(AsRawFd::as_raw_fd), name, flags, Mode::empty())?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether podman's export records the extended attribute `name`
/// (`containers/storage` `pkg/archive`: file capabilities and IMA
/// signatures, and the user namespace but for overlayfs' own); with
/// `acls` (host paths), the POSIX ACLs too.
pub(crate) fn recorded_xattr(name: &[u8], acls: bool) -> bool {
    matches!(name, b"security.capability" | b"security.ima")
        || (name.starts_with(b"user.") && !name.starts_with(b"user.overlay."))
        || (acls
            && matches!(
                name,
                b"system.posix_acl_access" | b"system.posix_acl_default"
            ))
}

/// The extended attributes of entry `name` of `dir` that podman's export
/// records (and the ACLs with `acls`), sorted by name. Read through `/proc/self/fd/DIR/NAME` with the
/// `l*` calls: the last component is not followed, the directory is the
/// one already open.
fn wanted_xattrs(
    dir: &OwnedFd,
    name: &OsStr,
    acls: bool,
) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.as_bytes());
    let path = CString::new(path).map_err(std::io::Error::other)?;
    // SAFETY: `path` is a valid C string; the buffer pointers and lengths
    // passed match (see `read_sized`).
    let names = read_sized(|buf, len| unsafe { libc::llistxattr(path.as_ptr(), buf, len) })?;
    let mut found = Vec::new();
    for key in names.split(|&b| b == 0).filter(|k| recorded_xattr(k, acls)) {
        let ckey = CString::new(key).map_err(std::io::Error::other)?;
        // SAFETY: as above.
        let value = read_sized(|buf, len| unsafe {
            libc::lgetxattr(path.as_ptr(), ckey.as_ptr(), buf.cast(), len)
        });
        match value {
            Ok(value) => found.push((key.to_vec(), value)),
            // Removed since it was listed.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    found.sort();
    Ok(found)
}

/// The bytes a `getxattr`-like call returns: asked for the size first,
/// then read into a buffer of that size (again if it grew meanwhile).
/// No extended attributes on the file system: nothing.
fn read_sized(call: impl Fn(*mut libc::c_char, usize) -> isize) -> std::io::Result<Vec<u8>> {
    loop {
        let size = call(std::ptr::null_mut(), 0);
        if size < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOTSUP) => Ok(Vec::new()),
                _ => Err(e),
            };
        }
        let mut buf = vec![0u8; size as usize];
        if size == 0 {
            return Ok(buf);
        }
        let n = call(buf.as_mut_ptr().cast(), buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
