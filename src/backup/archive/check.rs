//! Checking an archive against its backup's metadata ([`Expected`]): the
//! sha256, the decompressed size, and every tar entry through the
//! [`TarGuard`].

use std::io::{self, Read};
use std::path::Path;

use crate::backup::tar_guard::{Specials, TarGuard};
use crate::config::Compression;
use crate::error::{Error, Result};

use super::read::{damaged, open_archive, raw_read_error, ReadDigest};
use super::CHUNK;

/// What an archive must hold, from its backup's metadata.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// sha256 of the file; `None` for legacy backups that record none.
    pub sha256: Option<&'a str>,
    /// Most decompressed bytes allowed ([`decompressed_limit`](super::decompressed_limit)).
    pub limit: u64,
    /// Device nodes and FIFOs the backup recorded when it was created.
    pub specials: &'a [String],
}

/// Read the whole archive at `path` as a tar: every entry passes the
/// [`TarGuard`], the compression frame is valid to its end, the stream
/// stays within `expected.limit`, and the sha256 equals `expected.sha256`
/// when given. Errors are user errors naming the file.
pub fn check_archive_digest(
    path: &Path,
    compression: Compression,
    expected: Expected<'_>,
) -> Result<ReadDigest> {
    let mut reader = open_archive(path, compression)?.limit(expected.limit);
    let entries = guard_stream(&mut reader, Specials::Allow(expected.specials));
    // Read to the end even after a bad entry or a decompression error, so
    // the checksum is known: a mismatch is the better explanation when the
    // file was damaged. (A stream over its limit stops there: the rest is
    // hashed, not decompressed.)
    let parts = reader.finish_parts();
    let (sha256, size) = parts.raw.map_err(|e| raw_read_error(path, &e))?;
    if let Some(expected) = expected.sha256 {
        if !sha256.eq_ignore_ascii_case(expected) {
            return Err(Error::user(format!(
                "{}: checksum mismatch: sha256 {sha256} but the metadata records {expected}",
                path.display(),
            ))
            .with_hint("the archive was modified or damaged; restore another backup"));
        }
    }
    entries.map_err(|why| damaged(path, &why))?;
    parts.decode.map_err(|e| damaged(path, &e.to_string()))?;
    Ok(ReadDigest {
        sha256,
        size,
        uncompressed_size: parts.uncompressed_size,
    })
}

/// Feed the whole decompressed stream through a [`TarGuard`]; Err(reason)
/// names the first refused entry or the read error.
fn guard_stream(reader: &mut impl Read, specials: Specials<'_>) -> std::result::Result<(), String> {
    let mut guard = TarGuard::new(specials);
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return guard.finish().map(drop),
            Ok(n) => guard.feed(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}
