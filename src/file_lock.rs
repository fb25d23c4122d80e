//! An exclusive `flock(2)` on a file with a bounded wait: the one retry loop
//! behind every lock leger-backup takes — the deployment lock
//! ([`crate::backup::lock`]), the turns stop hooks of one deployment take
//! (so the second sees the first one's backup and coalesces) and the update
//! of the automatic-backup event record (so no entry is lost).
//!
//! The kernel drops a `flock` when the process ends, however it ends, so a
//! killed run never leaves a stale lock behind. A non-blocking attempt is
//! retried rather than a blocking `flock` used, so the wait has a deadline
//! and the caller decides what "still busy" means: an error naming the
//! holder, or going on without the lock.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use fs_err as fs;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// How often a waiting run retries the lock.
const RETRY: Duration = Duration::from_millis(100);

/// The outcome of [`lock_within`].
#[derive(Debug)]
pub enum Attempt {
    /// The lock is ours until the `Flock` is dropped.
    Held(Flock<File>),
    /// Another process still held it when the wait ran out; the file comes
    /// back so the caller can read who (the deployment lock names its pid).
    Busy(File),
}

/// Lock the open `file` exclusively, retrying until `wait` has passed
/// (`Duration::ZERO`: one attempt). `path` names the file in errors.
pub fn lock_within(mut file: File, path: &Path, wait: Duration) -> Result<Attempt> {
    let deadline = Instant::now() + wait;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(Attempt::Held(held)),
            Err((f, Errno::EWOULDBLOCK)) => {
                if Instant::now() >= deadline {
                    return Ok(Attempt::Busy(f));
                }
                file = f;
                std::thread::sleep(RETRY);
            }
            Err((_, Errno::EINTR)) => {
                return Err(Error::internal(format!(
                    "interrupted while waiting for {}",
                    path.display()
                )))
            }
            Err((_, errno)) => {
                return Err(Error::internal(format!(
                    "cannot lock {}: {errno}",
                    path.display()
                )))
            }
        }
    }
}

/// A held lock on a file; released on drop.
#[derive(Debug)]
pub struct FileLock {
    _lock: Flock<File>,
}

/// Lock `path` (created if absent, with its parent) exclusively, waiting at
/// most `wait`. `Ok(None)` when another process still holds it after that.
pub fn lock(path: &Path, wait: Duration) -> Result<Option<FileLock>> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?
        .into_file();
    Ok(match lock_within(file, path, wait)? {
        Attempt::Held(lock) => Some(FileLock { _lock: lock }),
        Attempt::Busy(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_waits_then_gives_up() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/x.lock");
        let first = lock(&path, Duration::ZERO).unwrap();
        assert!(first.is_some());
        let started = Instant::now();
        assert!(lock(&path, Duration::from_millis(150)).unwrap().is_none());
        assert!(started.elapsed() >= Duration::from_millis(150));
        drop(first);
        assert!(lock(&path, Duration::ZERO).unwrap().is_some());
    }

    #[test]
    fn a_waiting_lock_gets_it_once_released() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.lock");
        let first = lock(&path, Duration::ZERO).unwrap().unwrap();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
        });
        assert!(lock(&path, Duration::from_secs(10)).unwrap().is_some());
        handle.join().unwrap();
    }
}
