//! Volume archives: a tar stream compressed (zstd, gzip or not at all) into
//! one file, hashed on the way.
//!
//! Volumes can be many gigabytes, so nothing here holds an archive in memory
//! or writes an uncompressed copy: bytes flow from the reader through the
//! compressor into the file in 1 MiB chunks. The sha256 is taken over the
//! *compressed* bytes (what is on disk, and fewer of them), on a thread of
//! its own together with the file I/O, so neither hashing nor `write(2)`
//! holds up the compressor; zstd compresses on its own worker threads,
//! writing straight into the 1 MiB chunks the writer thread takes. The
//! same split is used when reading: one thread reads and hashes the file, the
//! caller's thread decompresses.
//!
//! Archives are fsynced before they count (by the backup's seal, see
//! `store::PendingBackup::seal`); writeback is started while the archive is
//! still being written (`Writeback`), so that wait is short.
//!
//! Memory stays bounded whatever the volume size: a few 1 MiB chunks in
//! flight, plus zstd's per-worker job buffers, whose size is capped by
//! `write::ZSTD_JOB_SIZE` and whose number is capped by
//! `write::AUTO_ZSTD_WORKERS`.
//!
//! The module is cut by concern: `write` compresses, `sink` is the writer
//! thread that hashes and stores the compressed bytes, `read` decompresses
//! within bounds, `feeder` is the reader thread that hashes the file, and
//! `check` reads a whole archive against what its backup records.

use std::path::Path;

use crate::config::Compression;

mod check;
mod feeder;
mod read;
mod sink;
mod write;

pub use check::{check_archive_digest, Expected};
pub use read::{decompressed_limit, open_archive, ArchiveReader, ReadDigest};
pub use write::{write_archive, ArchiveStats};

/// Size of each read from the input and of each chunk handed between
/// threads: big enough that per-call overhead vanishes.
pub const CHUNK: usize = 1 << 20;

/// Chunks queued between the compressor and the writer thread (and between
/// the reader thread and the decompressor); bounds memory to a few MiB.
const QUEUE: usize = 4;

/// Compression of a stored archive from its file name (`.tar.zst`,
/// `.tar.gz`, `.tar`), so a backup's archives are read the way they were
/// written even when the config has changed since (and leger's `.tar`).
pub fn compression_of(path: &Path) -> Option<Compression> {
    let name = path.file_name()?.to_str()?;
    [Compression::Zstd, Compression::Gzip, Compression::None]
        .into_iter()
        .find(|c| {
            name.strip_suffix(c.extension())
                .is_some_and(|stem| stem.ends_with('.') && stem.len() > 1)
        })
}

#[cfg(test)]
mod tests;
