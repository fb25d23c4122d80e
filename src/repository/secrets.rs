//! The secrets of a repository: its password (a file or a command) and its
//! env file (`KEY=VALUE` lines: S3 keys and the like).
//!
//! Rules (issue 13): never in config.yaml itself, never in argv (restic
//! gets them through its environment and `RESTIC_PASSWORD_FILE`), never
//! printed, logged or stored in metadata; a secret file readable by others
//! is refused, naming the file and the `chmod` that fixes it.

/// `url` with any `user:password@` replaced by `***@`, for messages.
pub fn redact_url(url: &str) -> String {
    // TODO(helper): implement and test.
    url.to_owned()
}
