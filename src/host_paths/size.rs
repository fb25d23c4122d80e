//! How much is at a host path, within a budget: `plan` must stay quick on a
//! photo library of a million files, so the walk stops after a number of
//! entries or some time and says the size is a lower bound.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How far a walk may go.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Entries (files, directories, links) looked at.
    pub entries: u64,
    /// Wall-clock time.
    pub time: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            entries: 200_000,
            time: Duration::from_secs(2),
        }
    }
}

/// The bytes found, and whether that is only a lower bound (the budget ran
/// out, or something could not be read: files of a container's subordinate
/// uids often cannot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Sum of the sizes of the regular files counted.
    pub bytes: u64,
    /// Whether more may be there.
    pub at_least: bool,
}

/// The size of what is at `path` (following `path` itself, as a bind mount
/// does, never a symlink below it).
pub fn measure(path: &Path, budget: Budget) -> Size {
    let start = Instant::now();
    let mut size = Size {
        bytes: 0,
        at_least: false,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => {
            size.at_least = true;
            return size;
        }
    };
    if !meta.is_dir() {
        size.bytes = if meta.is_file() { meta.len() } else { 0 };
        return size;
    }
    let mut pending: Vec<PathBuf> = vec![path.to_owned()];
    let mut seen: u64 = 0;
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            size.at_least = true;
            continue;
        };
        for entry in entries {
            seen += 1;
            if seen > budget.entries || start.elapsed() > budget.time {
                size.at_least = true;
                return size;
            }
            let Ok(entry) = entry else {
                size.at_least = true;
                continue;
            };
            match entry.metadata() {
                Ok(m) if m.is_dir() => pending.push(entry.path()),
                Ok(m) if m.is_file() => size.bytes = size.bytes.saturating_add(m.len()),
                Ok(_) => {}
                Err(_) => size.at_least = true,
            }
        }
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_below_and_stops_at_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("a/b")).unwrap();
        fs_err::write(dir.path().join("a/one"), [0u8; 100]).unwrap();
        fs_err::write(dir.path().join("a/b/two"), [0u8; 23]).unwrap();
        std::os::unix::fs::symlink("/usr", dir.path().join("link")).unwrap();
        let full = measure(dir.path(), Budget::default());
        assert_eq!(
            full,
            Size {
                bytes: 123,
                at_least: false
            }
        );
        let cut = measure(
            dir.path(),
            Budget {
                entries: 1,
                time: Duration::from_secs(5),
            },
        );
        assert!(cut.at_least);
        assert_eq!(
            measure(&dir.path().join("a/one"), Budget::default()).bytes,
            100
        );
    }
}
