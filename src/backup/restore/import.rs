//! Step 6's import: an archive streamed through the decompressor and the
//! tar guard into the program that writes it back — `podman volume import`
//! for a volume, our own `tree-write` for a host path.

use super::*;
use crate::process::Consumer;

/// The program an archive is streamed into.
pub(super) struct Sink {
    /// It, started, reading the tar on its stdin.
    pub(super) program: Box<dyn Consumer>,
    /// What it is, for messages (`podman volume import db`).
    pub(super) what: String,
    /// What the progress bar calls the data (a volume's name, a path).
    pub(super) label: String,
    /// Send [`tar_guard::root_header`] first: podman's import sniffs its
    /// input's first bytes for a compression format, our writer does not
    /// (and takes no entry for the root).
    pub(super) root_header: bool,
}

/// Stream an archive through the decompressor and the [`TarGuard`] into
/// `sink`, then check that every byte of the archive was read and matches
/// its recorded checksum. The sink is handed only chunks the guard
/// accepted, and never more bytes than the metadata records.
/// `interruptible`: a signal stops the copy.
pub(super) fn import_archive(
    sink: Sink,
    path: &Path,
    compression: crate::config::Compression,
    expected: archive::Expected<'_>,
    progress: &Progress,
    interruptible: bool,
) -> Result<()> {
    let Sink {
        program: mut import,
        what,
        label,
        root_header,
    } = sink;
    let bar = progress.bar("importing", &label);
    let reader = archive::open_archive(path, compression)?.limit(expected.limit);
    let guard = TarGuard::new(Specials::Allow(expected.specials));
    let mut stdin = import
        .input()
        .ok_or_else(|| Error::internal(format!("{what}: no stdin")))?;
    create::widen_pipe(stdin.pipe_fd());
    // Decompress on a thread of its own while this one writes to the sink:
    // neither waits for the other (a bounded queue keeps memory small).
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(IMPORT_QUEUE);
    let (reader, copied) = std::thread::scope(|scope| {
        let decoder = scope.spawn(move || decompress_into(reader, guard, root_header, tx));
        let written = write_chunks(rx, &mut *stdin, &what, &*bar, interruptible);
        // The receiver is dropped by now, which ends the decoder.
        let (reader, decoded) = decoder.join().expect("the decompression thread panicked");
        let copied = match decoded {
            Err(e) => Err(reader.damaged(&e)),
            Ok(()) => written,
        };
        (reader, copied)
    });
    drop(stdin);
    if let Err(e) = copied {
        import.abort();
        bar.fail();
        return Err(e);
    }
    if let Err(e) = import.finish() {
        bar.fail();
        return Err(e);
    }
    let digest = reader.finish()?;
    if let Some(expected) = expected.sha256 {
        if !digest.sha256.eq_ignore_ascii_case(expected) {
            bar.fail();
            return Err(Error::user(format!(
                "{}: checksum mismatch while importing (the archive changed after it was verified)",
                path.display()
            )));
        }
    }
    bar.done(&ui::human_size(digest.uncompressed_size));
    Ok(())
}

/// The writer's half of [`import_archive`], on the calling thread: hand
/// each chunk the guard accepted to podman's `stdin` as it comes, checking
/// for a signal between chunks (`interruptible`). Kept apart from the
/// pipeline's setup and its final checks because this loop is where the
/// time goes and where an import is stopped. A podman that stopped reading
/// ends it without an error: its exit status says why.
fn write_chunks(
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    stdin: &mut dyn Write,
    what: &str,
    bar: &dyn crate::backup::progress::VolumeProgress,
    interruptible: bool,
) -> Result<()> {
    let mut fault_armed = interruptible && fault::armed("restore:during-import");
    let mut total = 0u64;
    for chunk in rx {
        if interruptible {
            interrupt::check()?;
        }
        match stdin.write_all(&chunk) {
            Ok(()) => {}
            // podman stopped reading: its exit status says why (or, after
            // the tar's end marker, that all is well).
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(Error::internal(format!("writing to `{what}`: {e}"))),
        }
        total += chunk.len() as u64;
        bar.set(total);
        if fault_armed {
            fault_armed = false;
            fault::point("restore:during-import");
        }
    }
    Ok(())
}

/// Decompressed chunks queued between the decompression thread and the
/// writer: a few MiB at most.
pub(super) const IMPORT_QUEUE: usize = 4;

/// Read `reader` to its end in chunks handed to `tx`, each only after
/// `guard` accepted it; stop early when the receiver is gone. Returns the
/// reader (for its digest) and any read error or refusal.
pub(super) fn decompress_into(
    mut reader: archive::ArchiveReader,
    mut guard: TarGuard<'_>,
    root_header: bool,
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
) -> (archive::ArchiveReader, std::io::Result<()>) {
    if root_header {
        // Our own first block: podman never sniffs the archive's bytes for
        // a compression format (see `tar_guard::root_header`).
        let root = tar_guard::root_header();
        if let Err(why) = guard.feed(&root) {
            return (reader, Err(std::io::Error::other(why)));
        }
        if tx.send(root.to_vec()).is_err() {
            return (reader, Ok(()));
        }
    }
    loop {
        let mut chunk = vec![0u8; archive::CHUNK];
        let n = match reader.read(&mut chunk) {
            Ok(0) => {
                let end = guard.finish().map(drop).map_err(std::io::Error::other);
                return (reader, end);
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return (reader, Err(e)),
        };
        chunk.truncate(n);
        if let Err(why) = guard.feed(&chunk) {
            return (reader, Err(std::io::Error::other(why)));
        }
        if tx.send(chunk).is_err() {
            return (reader, Ok(()));
        }
    }
}
