//! One backup or restore per deployment at a time.
//!
//! Two runs on the same deployment (a manual `create` and a stop hook, or a
//! `restore` and a `create`) would stop and start each other's services and
//! export half-imported volumes. Each takes an exclusive `flock` on
//! `<state_dir>/locks/<deployment>.lock`; the kernel drops it when the
//! process ends, however it ends, so a crash never leaves a stale lock. The
//! holder writes its pid into the file, so a refused run can name it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fs_err as fs;
use fs_err::os::unix::fs::OpenOptionsExt;
use nix::fcntl::Flock;

use crate::deployment::validate_name;
use crate::error::{Error, Result};
use crate::file_lock::{lock_within, Attempt};

/// An exclusive lock on one deployment, held until dropped.
#[derive(Debug)]
pub struct DeploymentLock {
    /// Kept open: closing the file releases the lock.
    _file: Flock<std::fs::File>,
    path: PathBuf,
}

impl DeploymentLock {
    /// Take the lock of `deployment`, waiting up to `wait` for another run
    /// to finish; then fail naming the holder's pid.
    pub fn acquire(state_dir: &Path, deployment: &str, wait: Duration) -> Result<DeploymentLock> {
        validate_name(deployment)?;
        let dir = state_dir.join("locks");
        fs::create_dir_all(&dir)?;
        // The state directory is ours alone, like the backups.
        let _ = fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        let path = dir.join(format!("{deployment}.lock"));
        // Never truncate on open: the file holds the current holder's pid.
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&path)?
            .into_parts()
            .0;
        let mut locked = match lock_within(file, &path, wait)? {
            Attempt::Held(locked) => locked,
            Attempt::Busy(file) => return Err(busy(deployment, &path, file, wait)),
        };
        let pid = std::process::id();
        let written = locked
            .set_len(0)
            .and_then(|()| locked.seek(SeekFrom::Start(0)).map(drop))
            .and_then(|()| writeln!(locked, "{pid}"));
        if let Err(e) = written {
            return Err(Error::internal(format!(
                "cannot write {}: {e}",
                path.display()
            )));
        }
        Ok(DeploymentLock {
            _file: locked,
            path,
        })
    }

    /// The lock file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The error for a lock held by someone else, naming the holder.
fn busy(deployment: &str, path: &Path, mut file: std::fs::File, wait: Duration) -> Error {
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_string(&mut text);
    let holder = match text.trim().parse::<u32>() {
        Ok(pid) => format!("process {pid}"),
        Err(_) => "another process".to_owned(),
    };
    let waited = if wait.is_zero() {
        String::new()
    } else {
        format!(" (waited {}s)", wait.as_secs())
    };
    Error::user(format!(
        "deployment {deployment:?} is busy: {holder} holds {}{waited}",
        path.display()
    ))
    .with_hint("another backup or restore of it is running; wait for it, or pass --wait SECS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DeploymentLock::acquire(dir.path(), "web", Duration::ZERO).unwrap();
        let err =
            DeploymentLock::acquire(dir.path(), "web", Duration::from_millis(250)).unwrap_err();
        assert!(
            err.message
                .contains(&format!("process {}", std::process::id())),
            "{}",
            err.message
        );
        assert!(err.message.contains("waited"), "{}", err.message);
        // Other deployments are independent.
        let _other = DeploymentLock::acquire(dir.path(), "db", Duration::ZERO).unwrap();
        drop(first);
        let again = DeploymentLock::acquire(dir.path(), "web", Duration::ZERO).unwrap();
        let text = std::fs::read_to_string(again.path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
    }

    #[test]
    fn waits_for_release() {
        let dir = tempfile::tempdir().unwrap();
        let first = DeploymentLock::acquire(dir.path(), "web", Duration::ZERO).unwrap();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
        });
        DeploymentLock::acquire(dir.path(), "web", Duration::from_secs(10)).unwrap();
        handle.join().unwrap();
    }

    #[test]
    fn names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DeploymentLock::acquire(dir.path(), "../x", Duration::ZERO).is_err());
    }
}
