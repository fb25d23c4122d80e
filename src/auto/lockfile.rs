//! A small `flock(2)` lock on a file, with a bounded wait. Used to let stop
//! hooks of one deployment take turns (so the second sees the first one's
//! backup and coalesces) and to update the event record without losing an
//! entry. The kernel drops the lock when the process dies, so a killed hook
//! never leaves a stale lock behind.

use std::path::Path;
use std::time::{Duration, Instant};

use fs_err as fs;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct FileLock {
    _lock: Flock<std::fs::File>,
}

/// Lock `path` (created if absent, with its parent) exclusively, waiting at
/// most `wait`. `Ok(None)` when another process still holds it after that.
pub fn lock(path: &Path, wait: Duration) -> Result<Option<FileLock>> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let deadline = Instant::now() + wait;
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?
        .into_file();
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(Some(FileLock { _lock: lock })),
            Err((f, Errno::EWOULDBLOCK)) => {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                file = f;
                std::thread::sleep(Duration::from_millis(100));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_waits_then_gives_up() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/x.lock");
        let first = lock(&path, Duration::ZERO).unwrap();
        assert!(first.is_some());
        assert!(lock(&path, Duration::from_millis(150)).unwrap().is_none());
        drop(first);
        assert!(lock(&path, Duration::ZERO).unwrap().is_some());
    }
}
