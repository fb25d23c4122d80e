//! Writing an archive: the tar stream read in [`CHUNK`]s, compressed (zstd
//! level and worker threads, gzip, or none) and handed to the
//! [`sink`](super::sink) thread, which hashes and stores it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::config::Compression;
use crate::error::{Error, Result};

use super::read::MAX_ZSTD_WINDOW_LOG;
use super::sink::{spawn_sink, ChannelWriter};
use super::CHUNK;

/// zstd job size for multithreaded compression. Each worker holds its job's
/// input and output, and zstd's default at level 3 is 8 MiB per job.
/// Measured on ~480 MB of mixed data, 2 workers, through a pipe: peak RSS
/// of the whole process was 95 MB at the default, 62 MB at 4 MiB, 31-40 MB
/// at 2 MiB, 24-26 MB at 1 MiB; but 1 MiB jobs were ~15% slower (a shallow
/// pipeline of small jobs stalls the workers), 2 MiB as fast as
/// `zstd -3 -T0`. Archive sizes differ by under 0.1%. Peak RSS does not
/// grow with the volume (a 2.9 GB stream peaked at 20-26 MB).
pub const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// zstd's overlap between jobs, as `ZSTD_c_overlapLog`: 1 = none. By
/// default (6 at level 3) every job first re-reads the last eighth of the
/// window before it (256 KiB of each 2 MiB job) to find matches across the
/// boundary: ~12% more work for a ~0.03% smaller archive. With 2 CPUs the
/// compressor, not `podman volume export`, sets the pace, so that work is
/// dropped. Measured on the benchmark volume (`tests/bench/backup.sh`,
/// 717 MB tar): `zstd -3 -T2 -B2M` 4.3-4.6 s user time, 429,165,196 bytes;
/// with `--zstd=ovlog=1` 3.3-3.6 s, 429,385,706 bytes (+0.05%).
pub const ZSTD_OVERLAP_LOG: u32 = 1;

/// With `threads: 0`, one zstd worker per core but at most this many: 4
/// workers outpace `podman volume export`, and each costs ~7 MB (46 MB peak
/// RSS with 4, 72 MB with 8), so more would only cost memory.
pub const AUTO_ZSTD_WORKERS: u32 = 4;

/// An explicit `backup.threads` is honoured up to this many workers.
pub const MAX_ZSTD_WORKERS: u32 = 32;

/// What [`write_archive`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Bytes of the archive file (compressed).
    pub size: u64,
    /// Bytes of the tar stream read from the input.
    pub uncompressed_size: u64,
    /// sha256 of the archive file, lowercase hex.
    pub sha256: String,
}

/// The number of zstd workers for a configured thread count: 0 means one
/// per core up to [`AUTO_ZSTD_WORKERS`]; an explicit count is honoured up to
/// [`MAX_ZSTD_WORKERS`].
pub fn zstd_workers(threads: u32) -> u32 {
    if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
            .clamp(1, AUTO_ZSTD_WORKERS)
    } else {
        threads.min(MAX_ZSTD_WORKERS)
    }
}

/// Stream a tar from `input` through the compressor into a new file `dest`
/// (0600, created exclusively, never through a symlink), hashing the
/// compressed bytes (not fsynced: the caller seals the backup, see
/// `store::PendingBackup::seal`). `progress` is called with the
/// uncompressed bytes read so far. On error the partial file is removed.
pub fn write_archive(
    input: impl Read,
    dest: &Path,
    compression: Compression,
    level: i32,
    threads: u32,
    progress: &mut dyn FnMut(u64),
) -> Result<ArchiveStats> {
    let file = create_exclusive(dest)?;
    let result = write_archive_to(input, file, dest, compression, level, threads, progress);
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

/// Create `path` for writing: exclusive, 0600, no symlink followed.
fn create_exclusive(path: &Path) -> Result<File> {
    crate::backup::store::create_private_file(path).map_err(|e| e.context("cannot create archive"))
}

fn write_archive_to(
    input: impl Read,
    file: File,
    dest: &Path,
    compression: Compression,
    level: i32,
    threads: u32,
    progress: &mut dyn FnMut(u64),
) -> Result<ArchiveStats> {
    let (writer, sink) = spawn_sink(file, dest.to_owned());
    let stopped = |_| Error::internal("archive writer stopped");
    let pumped: Result<(ChannelWriter, u64)> = match compression {
        Compression::Zstd => {
            let mut w = writer;
            compress_zstd(input, &mut w, level, threads, progress).map(|n| (w, n))
        }
        Compression::Gzip => {
            let level = flate2::Compression::new(level.clamp(0, 9) as u32);
            let mut enc = flate2::write::GzEncoder::new(writer, level);
            pump(input, &mut enc, progress).and_then(|n| Ok((enc.finish().map_err(stopped)?, n)))
        }
        Compression::None => {
            let mut w = writer;
            pump(input, &mut w, progress).map(|n| (w, n))
        }
    };
    let flushed = pumped.and_then(|(mut w, n)| {
        w.flush().map_err(stopped)?;
        drop(w);
        Ok(n)
    });
    // The sink's own error (disk full...) explains a stopped writer best.
    let finished = sink.finish();
    match (flushed, finished) {
        (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
        (Ok(uncompressed_size), Ok((sha256, size))) => Ok(ArchiveStats {
            size,
            uncompressed_size,
            sha256,
        }),
    }
}

/// The zstd encoder: multithreaded, jobs of [`ZSTD_JOB_SIZE`] without
/// overlap ([`ZSTD_OVERLAP_LOG`]), with zstd's
/// own content checksum (defense in depth under our sha256).
fn zstd_encoder(level: i32, threads: u32) -> Result<zstd::stream::raw::Encoder<'static>> {
    use zstd::stream::raw::CParameter;
    let setup = |e: io::Error| {
        Error::internal(format!("cannot set up the zstd encoder: {e}"))
            .with_hint("check backup.level and backup.threads in the config")
    };
    let mut enc = zstd::stream::raw::Encoder::new(level).map_err(setup)?;
    for p in [
        CParameter::NbWorkers(zstd_workers(threads)),
        CParameter::JobSize(ZSTD_JOB_SIZE),
        CParameter::OverlapSizeLog(ZSTD_OVERLAP_LOG),
        CParameter::ChecksumFlag(true),
    ] {
        enc.set_parameter(p).map_err(setup)?;
    }
    // zstd's levels above 19 ask for windows of up to 2^27; every archive
    // we write must read back within the reader's bound.
    if level > 19 {
        enc.set_parameter(CParameter::WindowLog(MAX_ZSTD_WINDOW_LOG))
            .map_err(setup)?;
    }
    Ok(enc)
}

/// Compress `input` with zstd straight into the writer's chunk buffers (no
/// intermediate output buffer, one `compressStream2` call per input chunk
/// while output fits), so zstd's finished jobs are drained as fast as its
/// workers produce them. Returns the bytes read.
fn compress_zstd(
    mut input: impl Read,
    w: &mut ChannelWriter,
    level: i32,
    threads: u32,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
    let failed = |e: io::Error| Error::internal(format!("zstd compression failed: {e}"));
    let stopped = |_| Error::internal("archive writer stopped");
    let mut enc = zstd_encoder(level, threads)?;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = read_input(&mut input, &mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        let mut src = InBuffer::around(&buf[..n]);
        while src.pos() < n {
            w.make_room().map_err(stopped)?;
            let pos = w.buf.len();
            let mut dst = OutBuffer::around_pos(&mut w.buf, pos);
            enc.run(&mut src, &mut dst).map_err(failed)?;
        }
        progress(total);
    }
    loop {
        w.make_room().map_err(stopped)?;
        let pos = w.buf.len();
        let mut dst = OutBuffer::around_pos(&mut w.buf, pos);
        let remaining = enc.finish(&mut dst, true).map_err(failed)?;
        if remaining == 0 {
            return Ok(total);
        }
    }
}

/// One read of the input into `buf`, retrying on EINTR.
fn read_input(input: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    loop {
        match input.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::internal(format!("reading the volume stream: {e}"))
                    .with_hint("the exporting process failed; see the message above"))
            }
        }
    }
}

/// Copy `input` into `w` in [`CHUNK`]s, reporting progress; bytes copied.
fn pump(mut input: impl Read, w: &mut impl Write, progress: &mut dyn FnMut(u64)) -> Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = read_input(&mut input, &mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        w.write_all(&buf[..n])
            .map_err(|_| Error::internal("archive writer stopped"))?;
        progress(total);
    }
}
