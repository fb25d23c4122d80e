//! The gate every volume archive passes before `podman volume import` sees a
//! byte of it: a streaming tar validator that reads the stream the way Go's
//! `archive/tar` (and so podman) reads it, and refuses anything that could
//! write outside the volume or be read differently by another tar reader.
//!
//! Why our own parser rather than the `tar` crate: the importer is Go, and a
//! validator that interprets the stream differently from the importer is no
//! validator. The `tar` crate ignores records Go applies (a PAX
//! `GNU.sparse.name` renames an entry in Go), and it counts data blocks for
//! entry types that Go treats as header-only. So this module mirrors Go's
//! reading rules for the small subset podman writes and refuses the rest:
//!
//! - entry types: regular files, directories, symlinks, hard links, and —
//!   only when the backup recorded them at creation — device nodes and FIFOs;
//!   never sparse, multi-volume, global PAX or other vendor types;
//! - PAX records: only the ones that name, size, own or date an entry, and
//!   extended attributes; never `GNU.sparse.*` or anything unknown;
//! - names: relative, without `..`, and in the order `podman volume export`
//!   writes them (a directory's entries right after it, names sorted
//!   bytewise, no name twice). The order is what makes the "no entry passes
//!   through an earlier non-directory" rule checkable in constant memory:
//!   everything between an entry and its descendants is a descendant too,
//!   so a descendant of a symlink always directly follows a symlink;
//! - hard links: to an earlier entry, not through a symlink;
//! - the end-of-archive marker present, and nothing but zeros after it.
//!
//! The guard is fed the decompressed stream in chunks and answers before the
//! chunk is passed on, so the importer never receives a refused header.

mod header;

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use header::{parse_pax, Header};

/// Bytes in a tar block.
const BLOCK: usize = 512;

/// Largest PAX or GNU long-name payload accepted (Go's reader has the same
/// limit); larger ones are refused rather than buffered.
const MAX_META: u64 = 1 << 20;

/// Symlinks remembered so a hard link cannot reach through one. Each costs
/// 8 bytes plus table overhead; this bounds the memory a hostile archive can
/// make the guard use (real volumes hold far fewer).
pub const MAX_SYMLINKS: usize = 500_000;

/// Device nodes and FIFOs a backup may record for one volume.
pub const MAX_SPECIALS: usize = 10_000;

/// What a backup says about device nodes and FIFOs.
#[derive(Debug, Clone, Copy)]
pub enum Specials<'a> {
    /// Creating a backup: accept them and record their paths.
    Record,
    /// Restoring or verifying: accept exactly the paths the backup recorded,
    /// in the order recorded.
    Allow(&'a [String]),
}

/// The streaming validator. Feed it every byte of the tar in order with
/// [`TarGuard::feed`], then call [`TarGuard::finish`].
pub struct TarGuard<'a> {
    specials: Specials<'a>,
    state: State,
    /// A header or metadata payload being assembled across chunks.
    pending: Vec<u8>,
    /// Extended records waiting for the header they apply to.
    ext: Extended,
    /// Path and kind of the previous entry (ordering, descendants).
    previous: Option<(Vec<u8>, Kind)>,
    symlinks: HashSet<u64>,
    hasher: RandomState,
    /// Device nodes and FIFOs seen so far.
    recorded: Vec<String>,
    entries: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a header block.
    Header,
    /// Passing `left` bytes of file data and padding.
    Data { left: u64 },
    /// Collecting a PAX or GNU long-name payload of `size` bytes, followed by
    /// `pad` bytes of padding.
    Meta { kind: MetaKind, size: u64, pad: u64 },
    /// Skipping the padding after a payload.
    MetaPad { left: u64 },
    /// One zero block seen: the next must be zero too.
    OneZero,
    /// After the end marker: only zeros may follow.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetaKind {
    Pax,
    LongName,
    LongLink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    HardLink,
    Special,
}

/// PAX and GNU records collected for the next entry.
#[derive(Debug, Default)]
struct Extended {
    pax: Option<Pax>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
}

/// A refusal: why the stream is not accepted (the caller names the file).
pub type Refusal = String;

impl<'a> TarGuard<'a> {
    /// A guard for one tar stream.
    pub fn new(specials: Specials<'a>) -> TarGuard<'a> {
        TarGuard {
            specials,
            state: State::Header,
            pending: Vec::with_capacity(BLOCK),
            ext: Extended::default(),
            previous: None,
            symlinks: HashSet::new(),
            hasher: RandomState::new(),
            recorded: Vec::new(),
            entries: 0,
        }
    }

    /// Check the next bytes of the stream. An error is final: the stream
    /// must not be passed on.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Refusal> {
        while !data.is_empty() {
            data = self.step(data)?;
        }
        Ok(())
    }

    /// The stream ended: it must have ended at the end-of-archive marker.
    /// Returns the device nodes and FIFOs seen (in [`Specials::Record`]
    /// mode; empty otherwise).
    pub fn finish(self) -> Result<Vec<String>, Refusal> {
        match self.state {
            // Go's reader also accepts a single zero block before EOF.
            State::End | State::OneZero if self.pending.is_empty() && !has_pending(&self.ext) => {
                match self.specials {
                    Specials::Record => Ok(self.recorded),
                    Specials::Allow(_) => Ok(Vec::new()),
                }
            }
            State::Header if self.pending.is_empty() => Err(
                "the tar has no end-of-archive marker: it was cut short at an entry boundary"
                    .into(),
            ),
            _ => Err("the tar ends in the middle of an entry: truncated".into()),
        }
    }

    /// Entries accepted so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Consume a prefix of `data`, return the rest.
    fn step<'d>(&mut self, data: &'d [u8]) -> Result<&'d [u8], Refusal> {
        match self.state {
            State::Data { left } | State::MetaPad { left } => {
                let n = left.min(data.len() as u64) as usize;
                self.state = if left == n as u64 {
                    State::Header
                } else if matches!(self.state, State::Data { .. }) {
                    State::Data {
                        left: left - n as u64,
                    }
                } else {
                    State::MetaPad {
                        left: left - n as u64,
                    }
                };
                Ok(&data[n..])
            }
            State::Meta { kind, size, pad } => {
                let want = size as usize - self.pending.len();
                let n = want.min(data.len());
                self.pending.extend_from_slice(&data[..n]);
                if self.pending.len() == size as usize {
                    let payload = std::mem::take(&mut self.pending);
                    self.take_meta(kind, &payload)?;
                    self.state = if pad == 0 {
                        State::Header
                    } else {
                        State::MetaPad { left: pad }
                    };
                }
                Ok(&data[n..])
            }
            State::End => match data.iter().position(|&b| b != 0) {
                None => Ok(&[]),
                Some(_) => Err("data after the end-of-archive marker".into()),
            },
            State::Header | State::OneZero => {
                let n = (BLOCK - self.pending.len()).min(data.len());
                self.pending.extend_from_slice(&data[..n]);
                if self.pending.len() == BLOCK {
                    let block = std::mem::take(&mut self.pending);
                    self.pending = Vec::with_capacity(BLOCK);
                    self.take_block(&block)?;
                }
                Ok(&data[n..])
            }
        }
    }

    /// A whole header-position block.
    fn take_block(&mut self, block: &[u8]) -> Result<(), Refusal> {
        if block.iter().all(|&b| b == 0) {
            self.state = match self.state {
                State::OneZero => State::End,
                _ => State::OneZero,
            };
            if self.state == State::End && has_pending(&self.ext) {
                return Err("extended header records with no entry before the end".into());
            }
            return Ok(());
        }
        if self.state == State::OneZero {
            return Err("a zero block followed by a header: not a valid tar".into());
        }
        let header = Header::parse(block)?;
        match header.typeflag {
            b'x' => self.start_meta(MetaKind::Pax, header.size),
            b'L' => self.start_meta(MetaKind::LongName, header.size),
            b'K' => self.start_meta(MetaKind::LongLink, header.size),
            _ => self.take_entry(header),
        }
    }

    fn start_meta(&mut self, kind: MetaKind, size: u64) -> Result<(), Refusal> {
        let taken = match kind {
            MetaKind::Pax => self.ext.pax.is_some(),
            MetaKind::LongName => self.ext.long_name.is_some(),
            MetaKind::LongLink => self.ext.long_link.is_some(),
        };
        if taken {
            return Err(format!("two {} records for one entry", meta_name(kind)));
        }
        if size > MAX_META {
            return Err(format!(
                "{} record of {size} bytes (more than {MAX_META})",
                meta_name(kind)
            ));
        }
        let pad = padding(size);
        self.state = if size == 0 {
            self.take_meta(kind, &[])?;
            if pad == 0 {
                State::Header
            } else {
                State::MetaPad { left: pad }
            }
        } else {
            State::Meta { kind, size, pad }
        };
        Ok(())
    }

    fn take_meta(&mut self, kind: MetaKind, payload: &[u8]) -> Result<(), Refusal> {
        match kind {
            MetaKind::Pax => self.ext.pax = Some(parse_pax(payload)?),
            // Go reads these payloads up to the first NUL, and ignores an
            // empty one (the header's own name stays).
            MetaKind::LongName => self.ext.long_name = non_empty(until_nul(payload)),
            MetaKind::LongLink => self.ext.long_link = non_empty(until_nul(payload)),
        }
        Ok(())
    }

    /// An entry header, with the extended records that came before it.
    fn take_entry(&mut self, header: Header) -> Result<(), Refusal> {
        let ext = std::mem::take(&mut self.ext);
        let pax = ext.pax.unwrap_or_default();
        if ext.long_name.is_some() && pax.path.is_some() {
            return Err("an entry named by both a GNU long name and a PAX path".into());
        }
        let raw_name = ext.long_name.or(pax.path).unwrap_or(header.name);
        let link = ext.long_link.or(pax.linkpath).unwrap_or(header.linkname);
        let kind = match header.typeflag {
            // Go: a pre-POSIX regular file whose name ends in '/' is a directory.
            b'0' | 0 if raw_name.ends_with(b"/") && header.typeflag == 0 => Kind::Dir,
            b'0' | 0 => Kind::File,
            b'5' => Kind::Dir,
            b'2' => Kind::Symlink,
            b'1' => Kind::HardLink,
            b'3' | b'4' | b'6' => Kind::Special,
            other => return Err(format!("entry type {} is not accepted", type_name(other))),
        };
        let path =
            normalize(&raw_name).map_err(|why| format!("entry {} {why}", show(&raw_name)))?;
        self.check_place(&path, kind)?;
        match kind {
            Kind::HardLink => self.check_hard_link(&path, &link)?,
            Kind::Symlink => {
                if link.is_empty() {
                    return Err(format!("symlink {} has no target", show(&path)));
                }
                if self.symlinks.len() >= MAX_SYMLINKS {
                    return Err(format!("more than {MAX_SYMLINKS} symlinks"));
                }
                self.symlinks.insert(self.hasher.hash_one(&path));
            }
            Kind::Special => self.check_special(&path)?,
            Kind::Dir | Kind::File => {}
        }
        // Go reads no data for header-only types, whatever the size says.
        let size = if kind == Kind::File {
            pax.size.unwrap_or(header.size)
        } else {
            0
        };
        self.state = match size + padding(size) {
            0 => State::Header,
            left => State::Data { left },
        };
        self.previous = Some((path, kind));
        self.entries += 1;
        Ok(())
    }

    /// Order, duplicates, and no passage through a non-directory.
    fn check_place(&self, path: &[u8], kind: Kind) -> Result<(), Refusal> {
        if path.is_empty() {
            // The volume root itself ("./"): a directory, and first.
            return match (kind, &self.previous) {
                (Kind::Dir, None) => Ok(()),
                // After the `root_header` a restore sends, an archive's own.
                (Kind::Dir, Some((prev, Kind::Dir))) if prev.is_empty() && self.entries == 1 => {
                    Ok(())
                }
                _ => Err("an entry for the volume root that is not the first directory".into()),
            };
        }
        let Some((prev, prev_kind)) = &self.previous else {
            return Ok(());
        };
        if walk_order(prev, path) != std::cmp::Ordering::Less {
            return Err(format!(
                "entry {} comes after {}: not in the order podman writes (names twice, or reordered)",
                show(path),
                show(prev)
            ));
        }
        if *prev_kind != Kind::Dir && is_ancestor(prev, path) {
            return Err(format!(
                "entry {} passes through {}, which is not a directory",
                show(path),
                show(prev)
            ));
        }
        Ok(())
    }

    fn check_hard_link(&self, path: &[u8], target: &[u8]) -> Result<(), Refusal> {
        let refuse = |why: &str| {
            Err(format!(
                "hard link {} -> {}: {why}",
                show(path),
                show(target)
            ))
        };
        let Ok(target) = normalize(target) else {
            return refuse("the target leaves the volume");
        };
        if target.is_empty() || walk_order(&target, path) != std::cmp::Ordering::Less {
            return refuse("the target is not an earlier entry");
        }
        // A hard link to a symlink is a second name for the symlink, which a
        // later link target could then pass through.
        if self.symlinks.contains(&self.hasher.hash_one(&target)) {
            return refuse("the target is a symlink");
        }
        let mut prefix = Vec::new();
        for component in target.split(|&b| b == b'/') {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(component);
            if prefix.len() < target.len() && self.symlinks.contains(&self.hasher.hash_one(&prefix))
            {
                return refuse("the target passes through a symlink");
            }
        }
        Ok(())
    }

    fn check_special(&mut self, path: &[u8]) -> Result<(), Refusal> {
        let text = String::from_utf8_lossy(path).into_owned();
        match self.specials {
            Specials::Record => {
                if self.recorded.len() >= MAX_SPECIALS {
                    return Err(format!("more than {MAX_SPECIALS} device nodes and FIFOs"));
                }
                self.recorded.push(text);
                Ok(())
            }
            // Recorded in stream order, so they come back in that order.
            Specials::Allow(allowed) if allowed.get(self.recorded.len()) == Some(&text) => {
                self.recorded.push(text);
                Ok(())
            }
            Specials::Allow(_) => Err(format!(
                "device node or FIFO {} that the backup did not record when it was created",
                show(path)
            )),
        }
    }
}

/// A reader passing a tar stream through a [`TarGuard`]: a refusal is a read
/// error, so whatever consumes the stream stops there. At the end of the
/// stream the guard's verdict is kept for [`Guarded::recorded`].
pub struct Guarded<'a, R> {
    inner: R,
    guard: Option<TarGuard<'a>>,
    recorded: Vec<String>,
}

impl<'a, R> Guarded<'a, R> {
    /// Guard `inner`.
    pub fn new(inner: R, specials: Specials<'a>) -> Guarded<'a, R> {
        Guarded {
            inner,
            guard: Some(TarGuard::new(specials)),
            recorded: Vec::new(),
        }
    }

    /// The device nodes and FIFOs seen ([`Specials::Record`]), once the
    /// stream was read to its end; `None` before that.
    pub fn recorded(self) -> Option<Vec<String>> {
        self.guard.is_none().then_some(self.recorded)
    }
}

impl<R: std::io::Read> std::io::Read for Guarded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let refused = |why: Refusal| {
            std::io::Error::other(format!("not a tar leger-backup can restore: {why}"))
        };
        if n == 0 {
            if let Some(guard) = self.guard.take() {
                self.recorded = guard.finish().map_err(refused)?;
            }
            return Ok(0);
        }
        match &mut self.guard {
            Some(guard) => guard.feed(&buf[..n]).map_err(refused)?,
            None => return Err(std::io::Error::other("data after the end of the stream")),
        }
        Ok(n)
    }
}

/// A header for the volume root (`./`, a directory), to send to `podman
/// volume import` before the archive's own bytes. podman sniffs the first
/// bytes of its input for gzip, bzip2, xz and zstd magic and decompresses
/// what matches: a tar whose first entry name begins with such bytes would
/// be taken for a compressed stream, and the tar inside it unpacked without
/// having passed the guard. With this block first, the first bytes are
/// always ours; podman skips a `.` directory entry for an existing volume.
/// Feed it to the guard too, so the guard reads what podman reads.
pub fn root_header() -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..2].copy_from_slice(b"./");
    for (at, field) in [(100, "0000755"), (108, "0000000"), (116, "0000000")] {
        b[at..at + 7].copy_from_slice(field.as_bytes());
    }
    b[124..135].copy_from_slice(b"00000000000");
    b[136..147].copy_from_slice(b"00000000000");
    b[156] = b'5';
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    b
}

fn non_empty(bytes: &[u8]) -> Option<Vec<u8>> {
    (!bytes.is_empty()).then(|| bytes.to_vec())
}

fn has_pending(ext: &Extended) -> bool {
    ext.pax.is_some() || ext.long_name.is_some() || ext.long_link.is_some()
}

fn meta_name(kind: MetaKind) -> &'static str {
    match kind {
        MetaKind::Pax => "PAX extended header",
        MetaKind::LongName => "GNU long name",
        MetaKind::LongLink => "GNU long link",
    }
}

fn type_name(flag: u8) -> String {
    let what = match flag {
        b'7' => "contiguous file",
        b'g' => "PAX global header",
        b'S' => "GNU sparse file",
        b'D' => "GNU directory dump",
        b'M' => "GNU multi-volume continuation",
        b'N' => "GNU old long name",
        b'V' => "GNU volume label",
        _ => "unknown",
    };
    if flag.is_ascii_graphic() {
        format!("'{}' ({what})", flag as char)
    } else {
        format!("{flag:#04x} ({what})")
    }
}

/// Bytes of zero padding after a payload of `size` bytes.
fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(i) => &bytes[..i],
        None => bytes,
    }
}

/// A name for messages: control characters escaped, long names shortened.
fn show(path: &[u8]) -> String {
    let text = String::from_utf8_lossy(path);
    let mut shown: String = text
        .chars()
        .take(200)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > 200 {
        shown.push('…');
    }
    format!("\"{shown}\"")
}

/// The path as a list of normal components joined by '/': no empty or `.`
/// components. Err for an absolute path or a `..`.
fn normalize(raw: &[u8]) -> Result<Vec<u8>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("is absolute");
    }
    let mut out = Vec::with_capacity(raw.len());
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err("contains '..'"),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

/// The order of a depth-first walk with names sorted bytewise, as
/// `podman volume export` writes: component by component.
fn walk_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.split(|&c| c == b'/').cmp(b.split(|&c| c == b'/'))
}

/// Whether `a` is a proper ancestor of `b` (both normalized).
fn is_ancestor(a: &[u8], b: &[u8]) -> bool {
    b.len() > a.len() && b.starts_with(a) && b[a.len()] == b'/'
}

#[cfg(test)]
mod tests;
