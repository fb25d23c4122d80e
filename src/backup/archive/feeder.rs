//! The reader thread: reads the archive file in [`CHUNK`]s and hashes
//! them, handing them to the decompressor through a [`ChannelReader`]; it
//! hashes the whole file even when the decompressor stops early on a
//! damaged stream.

use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use super::{CHUNK, QUEUE};

/// Start the thread that reads `file` in [`CHUNK`]s, hashing them, and hands
/// them to the returned reader.
pub(super) fn spawn_feeder(
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
pub(super) struct ChannelReader {
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
