//! The writer thread: takes the compressor's [`CHUNK`]s, hashes them and
//! writes them to the archive file, starting writeback as it goes, so
//! neither sha256 nor `write(2)` holds up the compressor.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

use super::{CHUNK, QUEUE};

/// Start the writer thread, which hashes chunks and writes them to the
/// file. Owning the file on its own thread keeps `write(2)` and
/// sha256 off the compressor's path.
pub(super) fn spawn_sink(mut file: File, path: PathBuf) -> (ChannelWriter, Sink) {
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
pub(super) struct Sink {
    handle: JoinHandle<Result<(String, u64)>>,
}

impl Sink {
    /// Wait for the thread (the [`ChannelWriter`] must be gone): sha256 and
    /// bytes written.
    pub(super) fn finish(self) -> Result<(String, u64)> {
        self.handle
            .join()
            .unwrap_or_else(|_| Err(Error::internal("archive writer thread panicked")))
    }
}

/// A `Write` that gathers bytes into [`CHUNK`]s for the writer thread,
/// reusing the buffers it hands back.
pub(super) struct ChannelWriter {
    tx: SyncSender<Vec<u8>>,
    recycled: Receiver<Vec<u8>>,
    pub(super) buf: Vec<u8>,
}

/// Below this much free space, a chunk is sent rather than handing zstd a
/// sliver of buffer.
const MIN_ROOM: usize = 128 << 10;

impl ChannelWriter {
    /// Send the current chunk if less than [`MIN_ROOM`] is left in it.
    pub(super) fn make_room(&mut self) -> io::Result<()> {
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
