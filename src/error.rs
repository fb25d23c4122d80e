//! Errors as the user sees them: a kind that decides the exit code, a one-line
//! cause, and a hint saying what to do next.
//!
//! Library code returns [`Error`] so the kind is decided where the failure is
//! understood (a broken quadlet file is the user's to fix, a podman crash is
//! not), and the CLI only renders it.

use std::fmt;

/// Who has to act on an error; decides the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input, a missing deployment, a refused operation: exit 1.
    User,
    /// `~/.config/leger/config.yaml` is wrong: exit 1.
    Config,
    /// The command line itself is wrong: exit 2 (as clap does).
    Usage,
    /// Something failed that the user did not cause (a tool crashed, I/O): exit 3.
    Internal,
    /// Stopped by SIGINT/SIGTERM at a safe point, after cleaning up: exit 130
    /// (as a shell reports a command ended by Ctrl-C).
    Interrupted,
}

impl ErrorKind {
    /// The process exit code for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::User | ErrorKind::Config => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Internal => 3,
            ErrorKind::Interrupted => 130,
        }
    }
}

/// An error for the user: kind, message and an optional remediation hint.
#[derive(Debug)]
pub struct Error {
    /// Decides the exit code and the prefix shown.
    pub kind: ErrorKind,
    /// One line saying what went wrong and where.
    pub message: String,
    /// What to do next, when we know.
    pub hint: Option<String>,
}

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    /// Bad input or a refused operation.
    pub fn user(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::User, message)
    }

    /// A problem in the configuration file.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// A malformed command line.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }

    /// A failure the user did not cause.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The operation stopped because of a signal (see [`crate::interrupt`]).
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Interrupted, message)
    }

    /// A command of the tree that a later release fills in.
    pub fn not_implemented(command: &str) -> Self {
        Self::user(format!("`leger-backup {command}` is not implemented yet"))
            .with_hint("see `leger-backup --help` for the commands available in this version")
    }

    /// Attach a remediation hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prefix the message with context, keeping kind and hint.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    /// I/O errors come from `fs-err`, so their message already names the path.
    fn from(err: std::io::Error) -> Self {
        Error::internal(err.to_string())
    }
}

impl From<anyhow::Error> for Error {
    fn from(err: anyhow::Error) -> Self {
        Error::internal(format!("{err:#}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::internal(format!("JSON: {err}"))
    }
}

/// Adds context to any `Result` whose error converts into [`Error`].
pub trait ResultExt<T> {
    /// Prefix the error message with `context`.
    fn context_msg(self, context: impl fmt::Display) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context_msg(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_kinds() {
        assert_eq!(Error::user("x").kind.exit_code(), 1);
        assert_eq!(Error::config("x").kind.exit_code(), 1);
        assert_eq!(Error::usage("x").kind.exit_code(), 2);
        assert_eq!(Error::internal("x").kind.exit_code(), 3);
        assert_eq!(Error::interrupted("x").kind.exit_code(), 130);
    }

    #[test]
    fn context_keeps_kind_and_hint() {
        let e = Error::user("no such file")
            .with_hint("create it")
            .context("loading x");
        assert_eq!(e.message, "loading x: no such file");
        assert_eq!(e.kind, ErrorKind::User);
        assert_eq!(e.hint.as_deref(), Some("create it"));
    }
}
