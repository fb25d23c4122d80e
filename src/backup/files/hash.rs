//! Checksums (sha256, hex) and sizes of files and bytes, read within a
//! limit: what a backup records and what verify and restore check.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::deployment::open_regular;
use crate::error::Result;

/// sha256 and size of a regular file's content (never a FIFO or device),
/// reading at most `limit` + 1 bytes: enough to tell it is too long.
pub fn hash_file(path: &Path, limit: u64) -> Result<(String, u64)> {
    let (input, _) = open_regular(path, false)?;
    Ok(copy_hashed(
        &mut input.take(limit.saturating_add(1)),
        &mut std::io::sink(),
    )?)
}

/// Copy `input` to `out` to its end; the sha256 (hex) and size of what
/// passed. One read of each file both stores and checksums it.
pub(super) fn copy_hashed(
    input: &mut impl Read,
    out: &mut impl Write,
) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// sha256 (hex) and length of `bytes`.
pub(crate) fn hash_bytes(bytes: &[u8]) -> (String, u64) {
    (hex::encode(Sha256::digest(bytes)), bytes.len() as u64)
}
