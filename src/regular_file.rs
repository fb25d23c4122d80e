//! Reading a file that someone else may have put there, within bounds.
//!
//! Quadlet files and drop-ins are read by the generator at every
//! `daemon-reload`, before any unit starts. A name in a Quadlet directory can
//! be a symlink to `/dev/zero` (endless), a FIFO (blocks until a writer
//! comes) or a huge file: read naively, one such name hangs the reload or
//! eats the memory, and no deployment gets its drop-ins. So the file is
//! opened without blocking, checked to be a regular file *after* opening
//! (symlinks to regular files stay legitimate, as Quadlet follows them, and
//! the check is on what was opened, not on a name that can change), and at
//! most `cap + 1` bytes are read.

use fs_err::os::unix::fs::OpenOptionsExt;
use std::io::{self, Read};
use std::path::Path;

/// The whole content of the regular file at `path`, when it has at most
/// `cap` bytes. A FIFO, device, socket or directory is an
/// [`io::ErrorKind::InvalidInput`] error, a larger file an
/// [`io::ErrorKind::InvalidData`] one; both name the path, as every other
/// error does (fs-err).
pub fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let (file, _) = open(path, true)?;
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {cap} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

/// Open the regular file at `path` for reading, with its size. A FIFO,
/// device, socket or directory is an [`io::ErrorKind::InvalidInput`] error
/// naming the path. `follow`: whether a final symlink is followed.
pub fn open(path: &Path, follow: bool) -> io::Result<(fs_err::File, u64)> {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer. It changes nothing for a regular file. O_NOCTTY: a terminal
    // device never becomes our controlling terminal.
    let mut flags = nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOCTTY;
    if !follow {
        flags |= nix::fcntl::OFlag::O_NOFOLLOW;
    }
    let file = fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is {}, not a regular file",
                path.display(),
                describe(&meta.file_type())
            ),
        ));
    }
    Ok((file, meta.len()))
}

/// Whether `err` is one of [`read_capped`]'s refusals (not a regular file,
/// too large) rather than an I/O failure: bad input, for the user to fix.
pub fn is_refusal(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
    )
}

fn describe(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_and_symlinks_to_them_within_the_cap() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "12345").unwrap();
        let link = tmp.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_capped(&file, 5).unwrap(), b"12345");
        assert_eq!(read_capped(&link, 100).unwrap(), b"12345");
        let err = read_capped(&file, 4).unwrap_err();
        assert!(is_refusal(&err));
        assert!(err.to_string().contains("larger than 4 bytes"), "{err}");
        let err = read_capped(&tmp.path().join("missing"), 4).unwrap_err();
        assert!(!is_refusal(&err));
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn refuses_devices_fifos_and_directories_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let zero = tmp.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let fifo = tmp.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        for (path, what) in [
            (zero, "a character device"),
            (fifo, "a FIFO"),
            (tmp.path().to_owned(), "a directory"),
        ] {
            let err = read_capped(&path, 1 << 20).unwrap_err();
            assert!(is_refusal(&err), "{err}");
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(what), "{text}");
        }
    }
}
