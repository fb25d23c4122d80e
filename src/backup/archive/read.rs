//! Reading an archive: the decompressors (zstd within
//! [`MAX_ZSTD_WINDOW_LOG`], gzip, none), the limit on decompressed bytes
//! that stops a decompression bomb, and the digest of the file, hashed by
//! the [`feeder`](super::feeder) thread.

use std::io::{self, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::Compression;
use crate::error::{Error, Result};

use super::feeder::{spawn_feeder, ChannelReader};
use super::CHUNK;

/// A reader yielding the decompressed tar of an archive, while a thread of
/// its own reads and hashes the compressed file.
pub struct ArchiveReader {
    path: PathBuf,
    inner: Decoded,
    uncompressed: u64,
    /// Most decompressed bytes allowed (see [`ArchiveReader::limit`]).
    limit: u64,
    feeder: Option<JoinHandle<io::Result<(String, u64)>>>,
    /// Tells the feeder to hash the rest of the file even after the
    /// decompressor is gone (a damaged archive is still checksummed).
    drain: Arc<AtomicBool>,
}

/// The pieces of a finished read: whether the stream decompressed to its
/// end, the raw file's digest, and the decompressed length.
pub(super) struct Finished {
    pub(super) decode: std::result::Result<(), io::Error>,
    pub(super) raw: io::Result<(String, u64)>,
    pub(super) uncompressed_size: u64,
}

enum Decoded {
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<ChannelReader>>>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<ChannelReader>>>),
    None(ChannelReader),
}

/// What [`ArchiveReader::finish`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadDigest {
    /// sha256 of every byte of the file, lowercase hex.
    pub sha256: String,
    /// Bytes of the file (compressed).
    pub size: u64,
    /// Bytes of the decompressed tar stream.
    pub uncompressed_size: u64,
}

/// Largest zstd window (log2) accepted when reading, and used when writing:
/// 16 MiB. The window is allocated whole when a frame is decoded, so this
/// keeps a restore's memory well under 64 MB whatever the archive says (a
/// 2^27 window measured 132 MB resident). zstd levels up to 19 use at most
/// 2^23; our encoder caps higher levels at this; frames asking for more
/// are refused with a message.
pub const MAX_ZSTD_WINDOW_LOG: u32 = 24;

/// Decompression ratio no gzip stream can exceed (deflate's limit is about
/// 1032:1): the bound for archives whose metadata records no size.
const GZIP_MAX_RATIO: u64 = 1032;

/// The most decompressed bytes to accept from an archive of `size` bytes:
/// exactly what the metadata records when it records it, otherwise what
/// gzip can expand to at most. Decompression stops at once beyond it, so a
/// decompression bomb neither runs for hours nor fills a volume.
pub fn decompressed_limit(recorded: u64, size: u64) -> u64 {
    if recorded > 0 {
        recorded
    } else {
        size.saturating_mul(GZIP_MAX_RATIO).saturating_add(1 << 20)
    }
}

/// Open an archive for reading: a reader yielding the decompressed tar of
/// `path` while hashing the compressed bytes; [`ArchiveReader::finish`]
/// returns the sha256 and lengths. The file is opened without following a
/// symlink.
pub fn open_archive(path: &Path, compression: Compression) -> Result<ArchiveReader> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            Error::user(format!("cannot open archive {}: {e}", path.display())).with_hint(
                "the backup is incomplete or damaged; check it with `leger-backup verify <ID>`",
            )
        })?;
    let drain = Arc::new(AtomicBool::new(false));
    let (reader, feeder) = spawn_feeder(file, drain.clone());
    let inner = match compression {
        Compression::Zstd => {
            let mut d =
                zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(CHUNK, reader))
                    .map_err(|e| Error::internal(format!("cannot set up the zstd decoder: {e}")))?;
            // Our own encoder never uses more than this window; a
            // larger window would let a small hostile archive make us
            // allocate up to 2 GiB (see `explain_zstd`).
            d.window_log_max(MAX_ZSTD_WINDOW_LOG)
                .map_err(|e| Error::internal(format!("cannot set up the zstd decoder: {e}")))?;
            Decoded::Zstd(Box::new(d))
        }
        Compression::Gzip => Decoded::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(
            BufReader::with_capacity(CHUNK, reader),
        ))),
        Compression::None => Decoded::None(reader),
    };
    Ok(ArchiveReader {
        path: path.to_owned(),
        inner,
        uncompressed: 0,
        limit: u64::MAX,
        feeder: Some(feeder),
        drain,
    })
}

impl ArchiveReader {
    /// The archive file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fail reads as soon as the decompressed stream exceeds `bytes`.
    pub fn limit(mut self, bytes: u64) -> Self {
        self.limit = bytes;
        self
    }

    /// Read what is left to the end (so the whole compression frame is
    /// checked and every byte hashed), then return the digest. Fails if the
    /// compressed stream is damaged or truncated.
    pub fn finish(self) -> Result<ReadDigest> {
        let path = self.path.clone();
        let parts = self.finish_parts();
        parts.decode.map_err(|e| damaged(&path, &e.to_string()))?;
        let (sha256, size) = parts.raw.map_err(|e| raw_read_error(&path, &e))?;
        Ok(ReadDigest {
            sha256,
            size,
            uncompressed_size: parts.uncompressed_size,
        })
    }

    /// Read to the end; on a decompression error, still hash the whole file.
    pub(super) fn finish_parts(mut self) -> Finished {
        let mut buf = vec![0u8; CHUNK];
        let decode = loop {
            match self.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.drain.store(true, Ordering::SeqCst);
        let uncompressed_size = self.uncompressed;
        drop(self.inner);
        let raw = self
            .feeder
            .take()
            .expect("finished once")
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("archive reader thread panicked")));
        Finished {
            decode,
            raw,
            uncompressed_size,
        }
    }

    /// The error for a stream that does not decompress.
    pub fn damaged(&self, e: &io::Error) -> Error {
        damaged(&self.path, &e.to_string())
    }
}

pub(super) fn raw_read_error(path: &Path, e: &io::Error) -> Error {
    Error::internal(format!("reading {}: {e}", path.display()))
        .with_hint("check the disk holding the backup directory")
}

pub(super) fn damaged(path: &Path, why: &str) -> Error {
    Error::user(format!("{}: damaged archive: {why}", path.display())).with_hint(
        "the backup cannot be used; restore another one (`leger-backup list`) and delete this one",
    )
}

impl Read for ArchiveReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.inner {
            Decoded::Zstd(d) => d.read(buf).map_err(explain_zstd)?,
            Decoded::Gzip(d) => d.read(buf)?,
            Decoded::None(r) => r.read(buf)?,
        };
        self.uncompressed += n as u64;
        if self.uncompressed > self.limit {
            return Err(io::Error::other(format!(
                "it decompresses to more than the {} bytes the metadata records \
                 (stopped there: a decompression bomb or a damaged archive)",
                self.limit
            )));
        }
        Ok(n)
    }
}

/// zstd's own words for a frame whose window is over our limit are
/// "Frame requires too much memory for decoding": say what that means.
fn explain_zstd(e: io::Error) -> io::Error {
    if e.to_string().contains("too much memory") {
        io::Error::other(format!(
            "the zstd stream asks for a window larger than 2^{MAX_ZSTD_WINDOW_LOG} bytes \
             (16 MiB), which leger-backup refuses: it was not written by leger-backup \
             or `zstd` at a level up to 19 (`--long` or `--ultra` archives need repacking)"
        ))
    } else {
        e
    }
}
