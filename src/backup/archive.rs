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
//! [`ZSTD_JOB_SIZE`] and whose number is capped by [`AUTO_ZSTD_WORKERS`].

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::backup::tar_guard::{Specials, TarGuard};
use crate::config::Compression;
use crate::error::{Error, Result};

/// Size of each read from the input and of each chunk handed between
/// threads: big enough that per-call overhead vanishes.
pub const CHUNK: usize = 1 << 20;

/// Chunks queued between the compressor and the writer thread (and between
/// the reader thread and the decompressor); bounds memory to a few MiB.
const QUEUE: usize = 4;

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

/// Start the writer thread, which hashes chunks and writes them to the
/// file. Owning the file on its own thread keeps `write(2)` and
/// sha256 off the compressor's path.
fn spawn_sink(mut file: File, path: PathBuf) -> (ChannelWriter, Sink) {
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
    let (back_tx, back_rx) = sync_channel::<Vec<u8>>(QUEUE + 2);
    let handle = std::thread::spawn(move || -> Result<(String, u64)> {
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let write_error = |e: io::Error| {
            Error::internal(format!("writing {}: {e}", path.display()))
                .with_hint("check free space in the backup directory")
        };
        let mut writeback = Writeback::default();
        for mut chunk in rx {
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(write_error)?;
            total += chunk.len() as u64;
            writeback.written(&file, total);
            chunk.clear();
            let _ = back_tx.try_send(chunk);
        }
        // No fsync here: the backup's seal fsyncs every file before it is
        // made visible, and a create starts its services meanwhile.
        Ok((hex::encode(hasher.finalize()), total))
    });
    let writer = ChannelWriter {
        tx,
        recycled: back_rx,
        buf: Vec::with_capacity(CHUNK),
    };
    (writer, Sink { handle })
}

/// Start writing the archive to disk while it is still being produced, so
/// the seal's fsync has only the last few MiB left to wait for (a plain
/// `zstd > file` never waits for the disk; we must, for durability). Every
/// [`WRITEBACK_STEP`] bytes, `posix_fadvise(DONTNEED)` over the most recent
/// [`WRITEBACK_WINDOW`] starts asynchronous writeback of its dirty pages
/// and drops the ones already written, which also keeps a multi-gigabyte
/// backup from flushing everyone else's page cache. Advice only: errors are
/// ignored, correctness rests on the fsync.
#[derive(Default)]
struct Writeback {
    advised: u64,
}

/// See [`Writeback`].
const WRITEBACK_STEP: u64 = 8 << 20;
/// See [`Writeback`].
const WRITEBACK_WINDOW: u64 = 32 << 20;

impl Writeback {
    fn written(&mut self, file: &File, total: u64) {
        use std::os::fd::AsRawFd;
        if total - self.advised < WRITEBACK_STEP {
            return;
        }
        let start = total.saturating_sub(WRITEBACK_WINDOW);
        let _ = nix::fcntl::posix_fadvise(
            file.as_raw_fd(),
            start as i64,
            (total - start) as i64,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
        self.advised = total;
    }
}

/// The writer thread's handle.
struct Sink {
    handle: JoinHandle<Result<(String, u64)>>,
}

impl Sink {
    /// Wait for the thread (the [`ChannelWriter`] must be gone): sha256 and
    /// bytes written.
    fn finish(self) -> Result<(String, u64)> {
        self.handle
            .join()
            .unwrap_or_else(|_| Err(Error::internal("archive writer thread panicked")))
    }
}

/// A `Write` that gathers bytes into [`CHUNK`]s for the writer thread,
/// reusing the buffers it hands back.
struct ChannelWriter {
    tx: SyncSender<Vec<u8>>,
    recycled: Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

/// Below this much free space, a chunk is sent rather than handing zstd a
/// sliver of buffer.
const MIN_ROOM: usize = 128 << 10;

impl ChannelWriter {
    /// Send the current chunk if less than [`MIN_ROOM`] is left in it.
    fn make_room(&mut self) -> io::Result<()> {
        if self.buf.capacity() - self.buf.len() < MIN_ROOM {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let fresh = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.buf, fresh);
        self.tx
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "archive writer stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

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
struct Finished {
    decode: std::result::Result<(), io::Error>,
    raw: io::Result<(String, u64)>,
    uncompressed_size: u64,
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
    fn finish_parts(mut self) -> Finished {
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

fn raw_read_error(path: &Path, e: &io::Error) -> Error {
    Error::internal(format!("reading {}: {e}", path.display()))
        .with_hint("check the disk holding the backup directory")
}

fn damaged(path: &Path, why: &str) -> Error {
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

/// Start the thread that reads `file` in [`CHUNK`]s, hashing them, and hands
/// them to the returned reader.
fn spawn_feeder(
    mut file: File,
    drain: Arc<AtomicBool>,
) -> (ChannelReader, JoinHandle<io::Result<(String, u64)>>) {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(QUEUE);
    let (back_tx, back_rx) = sync_channel::<Vec<u8>>(QUEUE + 2);
    let handle = std::thread::spawn(move || -> io::Result<(String, u64)> {
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut receiver_gone = false;
        loop {
            let mut chunk = back_rx.try_recv().unwrap_or_default();
            chunk.resize(CHUNK, 0);
            let n = match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            };
            chunk.truncate(n);
            hasher.update(&chunk);
            total += n as u64;
            if !receiver_gone && tx.send(Ok(chunk)).is_err() {
                receiver_gone = true;
            }
            if receiver_gone && !drain.load(Ordering::SeqCst) {
                // The reader was dropped early: nobody wants the rest.
                return Err(io::Error::other("archive reading stopped early"));
            }
        }
        Ok((hex::encode(hasher.finalize()), total))
    });
    let reader = ChannelReader {
        rx,
        recycled: back_tx,
        current: Vec::new(),
        pos: 0,
    };
    (reader, handle)
}

/// A `Read` over the chunks the feeder thread sends.
struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    recycled: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let old = std::mem::replace(&mut self.current, chunk);
                    let _ = self.recycled.try_send(old);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What an archive must hold, from its backup's metadata.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// sha256 of the file; `None` for legacy backups that record none.
    pub sha256: Option<&'a str>,
    /// Most decompressed bytes allowed ([`decompressed_limit`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    /// [`check_archive_digest`] with only a checksum expected.
    fn check_archive(path: &Path, c: Compression, sha256: Option<&str>) -> Result<u64> {
        let expected = Expected {
            sha256,
            limit: u64::MAX,
            specials: &[],
        };
        Ok(check_archive_digest(path, c, expected)?.uncompressed_size)
    }

    /// A tar with a directory, a compressible file, a random-ish file and a
    /// symlink, built with the `tar` crate.
    fn sample_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o750);
        h.set_size(0);
        b.append_data(&mut h, "dir/", io::empty()).unwrap();
        let text = "hello volume\n".repeat(50_000);
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o600);
        h.set_size(text.len() as u64);
        b.append_data(&mut h, "dir/text.txt", text.as_bytes())
            .unwrap();
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..3_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(noise.len() as u64);
        b.append_data(&mut h, "noise.bin", &noise[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "zlink", "/etc/hostname").unwrap();
        b.into_inner().unwrap()
    }

    fn write(dir: &Path, name: &str, data: &[u8], c: Compression) -> (PathBuf, ArchiveStats) {
        let dest = dir.join(name);
        let mut last = 0;
        let stats = write_archive(data, &dest, c, c.default_level(), 2, &mut |n| last = n).unwrap();
        assert_eq!(last, data.len() as u64);
        (dest, stats)
    }

    #[test]
    fn round_trip_every_compression() {
        let dir = tempfile::tempdir().unwrap();
        let tar = sample_tar();
        for c in [Compression::Zstd, Compression::Gzip, Compression::None] {
            let (dest, stats) = write(dir.path(), &format!("v.{}", c.extension()), &tar, c);
            assert_eq!(compression_of(&dest), Some(c));
            assert_eq!(stats.uncompressed_size, tar.len() as u64);
            let on_disk = std::fs::read(&dest).unwrap();
            assert_eq!(stats.size, on_disk.len() as u64);
            assert_eq!(stats.sha256, hex::encode(Sha256::digest(&on_disk)));
            let mode = std::fs::metadata(&dest).unwrap().permissions();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                0o600
            );
            if c != Compression::None {
                assert!(stats.size < tar.len() as u64, "{c:?} compresses");
            }

            let mut reader = open_archive(&dest, c).unwrap();
            let mut back = Vec::new();
            reader.read_to_end(&mut back).unwrap();
            assert!(back == tar, "{c:?}: byte-identical round trip");
            let digest = reader.finish().unwrap();
            assert_eq!(digest.sha256, stats.sha256);
            assert_eq!(digest.size, stats.size);
            assert_eq!(digest.uncompressed_size, tar.len() as u64);

            let n = check_archive(&dest, c, Some(&stats.sha256)).unwrap();
            assert_eq!(n, tar.len() as u64);
        }
    }

    #[test]
    fn empty_input_makes_a_valid_empty_archive() {
        let dir = tempfile::tempdir().unwrap();
        for c in [Compression::Zstd, Compression::Gzip] {
            let (dest, stats) = write(dir.path(), &format!("e.{}", c.extension()), b"", c);
            assert_eq!(stats.uncompressed_size, 0);
            let mut back = Vec::new();
            let mut r = open_archive(&dest, c).unwrap();
            r.read_to_end(&mut back).unwrap();
            assert!(back.is_empty());
        }
    }

    #[test]
    fn dest_is_created_exclusively() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("v.tar.zst");
        std::fs::write(&dest, b"x").unwrap();
        let err =
            write_archive(&b"abc"[..], &dest, Compression::Zstd, 3, 1, &mut |_| {}).unwrap_err();
        assert!(
            err.message.contains("cannot create archive"),
            "{}",
            err.message
        );
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            b"x",
            "existing file untouched"
        );
        let link = dir.path().join("l.tar");
        std::os::unix::fs::symlink(dir.path().join("target"), &link).unwrap();
        assert!(write_archive(&b"abc"[..], &link, Compression::None, 0, 1, &mut |_| {}).is_err());
        assert!(!dir.path().join("target").exists(), "symlink not followed");
    }

    #[test]
    fn failing_input_removes_the_partial_file() {
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("export died"));
                }
                self.0 -= 1;
                buf.fill(7);
                Ok(buf.len())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("v.tar.zst");
        let err =
            write_archive(Broken(3), &dest, Compression::Zstd, 3, 2, &mut |_| {}).unwrap_err();
        assert!(err.message.contains("export died"), "{}", err.message);
        assert!(!dest.exists());
    }

    #[test]
    fn flipped_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let tar = sample_tar();
        for c in [Compression::Zstd, Compression::Gzip, Compression::None] {
            let (dest, stats) = write(dir.path(), &format!("f.{}", c.extension()), &tar, c);
            let mut bytes = std::fs::read(&dest).unwrap();
            let i = bytes.len() / 2;
            bytes[i] ^= 0x01;
            std::fs::write(&dest, &bytes).unwrap();
            let err = check_archive(&dest, c, Some(&stats.sha256)).unwrap_err();
            assert_eq!(err.kind, crate::error::ErrorKind::User);
            assert!(
                err.message.contains("f."),
                "names the file: {}",
                err.message
            );
            assert!(
                err.message.contains("checksum mismatch"),
                "{c:?}: {}",
                err.message
            );
            // Without a checksum, the compression frame catches it (zstd's
            // and gzip's own checks); a plain tar has none.
            if c != Compression::None {
                assert!(check_archive(&dest, c, None).is_err(), "{c:?} frame check");
            }
        }
    }

    #[test]
    fn truncated_archive_is_detected_without_a_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let tar = sample_tar();
        for c in [Compression::Zstd, Compression::Gzip, Compression::None] {
            let (dest, stats) = write(dir.path(), &format!("t.{}", c.extension()), &tar, c);
            let bytes = std::fs::read(&dest).unwrap();
            std::fs::write(&dest, &bytes[..bytes.len() * 2 / 3]).unwrap();
            assert!(check_archive(&dest, c, Some(&stats.sha256)).is_err());
            let err = check_archive(&dest, c, None).unwrap_err();
            assert!(err.message.contains("damaged"), "{c:?}: {}", err.message);
        }
    }

    #[test]
    fn trailing_garbage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        for c in [Compression::Zstd, Compression::Gzip] {
            let (dest, _) = write(
                dir.path(),
                &format!("g.{}", c.extension()),
                &sample_tar(),
                c,
            );
            let mut bytes = std::fs::read(&dest).unwrap();
            bytes.extend_from_slice(b"garbage after the frame");
            std::fs::write(&dest, &bytes).unwrap();
            assert!(check_archive(&dest, c, None).is_err(), "{c:?}");
        }
    }

    /// Raw tar bytes with one entry named `name` (bypassing the tar crate's
    /// own refusal to write `..`).
    fn tar_with_name(name: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn unsafe_entries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("../escape", tar::EntryType::Regular, None, "contains '..'"),
            (
                "a/../../escape",
                tar::EntryType::Regular,
                None,
                "contains '..'",
            ),
            ("/etc/passwd", tar::EntryType::Regular, None, "is absolute"),
            (
                "hard",
                tar::EntryType::Link,
                Some("../x"),
                "the target leaves the volume",
            ),
        ];
        for (i, (name, kind, link, why)) in cases.into_iter().enumerate() {
            let tar = tar_with_name(name, kind, link);
            let (dest, stats) = write(
                dir.path(),
                &format!("u{i}.tar.zst"),
                &tar,
                Compression::Zstd,
            );
            let err = check_archive(&dest, Compression::Zstd, Some(&stats.sha256)).unwrap_err();
            assert!(err.message.contains(why), "{name}: {}", err.message);
            assert!(
                err.message.contains(&format!("u{i}.tar.zst")),
                "{}",
                err.message
            );
        }
        // A symlink may point anywhere: that is data, not an escape.
        let tar = tar_with_name("ok", tar::EntryType::Symlink, Some("/etc/x"));
        let (dest, stats) = write(dir.path(), "sym.tar", &tar, Compression::None);
        check_archive(&dest, Compression::None, Some(&stats.sha256)).unwrap();
    }

    #[test]
    fn not_a_tar_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let junk = vec![0x41u8; 5000];
        let (dest, _) = write(dir.path(), "j.tar.gz", &junk, Compression::Gzip);
        let err = check_archive(&dest, Compression::Gzip, None).unwrap_err();
        assert!(err.message.contains("tar"), "{}", err.message);
    }

    #[test]
    fn compression_from_name() {
        assert_eq!(
            compression_of(Path::new("volumes/a.tar.zst")),
            Some(Compression::Zstd)
        );
        assert_eq!(
            compression_of(Path::new("a.tar.gz")),
            Some(Compression::Gzip)
        );
        assert_eq!(
            compression_of(Path::new("volumes/a.tar")),
            Some(Compression::None)
        );
        assert_eq!(compression_of(Path::new("a.zip")), None);
        assert_eq!(compression_of(Path::new(".tar")), None);
    }

    #[test]
    fn workers_are_bounded() {
        assert!(zstd_workers(0) >= 1);
        assert_eq!(zstd_workers(3), 3);
        assert!(zstd_workers(0) <= AUTO_ZSTD_WORKERS);
        assert_eq!(zstd_workers(8), 8);
        assert_eq!(zstd_workers(64), MAX_ZSTD_WORKERS);
    }

    #[test]
    fn a_zstd_window_over_128_mib_is_refused_before_allocating_it() {
        let dir = tempfile::tempdir().unwrap();
        let tar = sample_tar();
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        enc.window_log(31).unwrap();
        enc.long_distance_matching(true).unwrap();
        enc.write_all(&tar).unwrap();
        let bytes = enc.finish().unwrap();
        let dest = dir.path().join("wide.tar.zst");
        std::fs::write(&dest, &bytes).unwrap();
        let err = check_archive(&dest, Compression::Zstd, None).unwrap_err();
        assert!(
            err.message.contains("window larger than 2^24"),
            "{}",
            err.message
        );
        assert!(err.message.contains("wide.tar.zst"), "{}", err.message);
    }

    #[test]
    fn decompression_stops_at_the_recorded_size() {
        let dir = tempfile::tempdir().unwrap();
        // 64 MiB of zeros in a tar: a small archive that expands a lot.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(64 << 20);
        h.set_mode(0o644);
        b.append_data(&mut h, "zeros", std::io::repeat(0).take(64 << 20))
            .unwrap();
        let tar = b.into_inner().unwrap();
        let (dest, stats) = write(dir.path(), "bomb.tar.zst", &tar, Compression::Zstd);
        assert!(stats.size < 1 << 20, "{} bytes", stats.size);
        let expected = Expected {
            sha256: Some(&stats.sha256),
            limit: 4 << 20,
            specials: &[],
        };
        let err = check_archive_digest(&dest, Compression::Zstd, expected).unwrap_err();
        assert!(
            err.message.contains("more than the 4194304 bytes"),
            "{}",
            err.message
        );
        // Without a recorded size, gzip's maximum ratio bounds it.
        assert_eq!(decompressed_limit(0, 1000), 1000 * 1032 + (1 << 20));
        assert_eq!(decompressed_limit(5, 1000), 5);
    }
}
