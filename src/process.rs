//! The one place external programs are run. Every failure names the command
//! line and carries the program's stderr, so "podman failed" is never all the
//! user sees.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// Most stderr kept in an error message.
const STDERR_LIMIT: usize = 4000;

/// The command line, shell-like, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(quote));
    words.join(" ")
}

fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The error for a program that could not be started at all.
fn spawn_error(cmd: &Command, err: std::io::Error) -> Error {
    let program = cmd.get_program().to_string_lossy().into_owned();
    if err.kind() == std::io::ErrorKind::NotFound {
        Error::user(format!("`{program}` was not found in PATH")).with_hint(
            match program.as_str() {
                "podman" => "install Podman (>= 4.4) or fix PATH",
                "restic" => "install restic 0.17 or newer (`dnf install restic`) or fix PATH",
                "systemctl" => {
                    "leger-backup needs systemd; run it on the machine that runs the deployment"
                }
                _ => "install it or fix PATH",
            },
        )
    } else {
        Error::internal(format!("cannot run `{}`: {err}", describe(cmd)))
    }
}

/// The error for a program that ran and failed.
pub fn failure(cmd: &Command, status: ExitStatus, stderr: &[u8]) -> Error {
    let stderr = String::from_utf8_lossy(stderr);
    let stderr = stderr.trim();
    let tail = if stderr.len() > STDERR_LIMIT {
        let mut start = stderr.len() - STDERR_LIMIT;
        while !stderr.is_char_boundary(start) {
            start += 1;
        }
        &stderr[start..]
    } else {
        stderr
    };
    let how = match status.code() {
        Some(code) => format!("exit status {code}"),
        None => format!("{status}"),
    };
    let mut message = format!("`{}` failed ({how})", describe(cmd));
    if !tail.is_empty() {
        message.push_str(": ");
        message.push_str(tail);
    }
    Error::internal(message)
}

/// Run to completion, capturing output; a non-zero exit is an error.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = run_unchecked(cmd)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(failure(cmd, out.status, &out.stderr))
    }
}

/// While leger-backup handles SIGINT/SIGTERM itself (see
/// [`crate::interrupt`]), a child gets a process group of its own, so a
/// Ctrl-C on the terminal does not kill, say, the `systemctl start` that
/// cleans up after the interruption.
fn isolate(cmd: &mut Command) {
    if crate::interrupt::installed() {
        std::os::unix::process::CommandExt::process_group(cmd, 0);
    }
}

/// A streamed program is killed when leger-backup dies (`PR_SET_PDEATHSIG`):
/// a `podman volume export` whose reader is gone does not exit on its own —
/// it stops reading its `storage-tar` helper and waits for it, which waits
/// to write, forever, holding the volume's files open. Our own errors end
/// the program through [`Streaming::abort`]; this covers SIGKILL and the
/// OOM killer. (The signal follows the *thread* that spawned the program:
/// streams are spawned and consumed on one thread.)
fn die_with_us(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: between fork and exec the closure makes only async-signal-safe
    // system calls (prctl, getppid) and does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            // Died between fork and prctl: nobody is left to read.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Run to completion, capturing output; the caller judges the exit status.
pub fn run_unchecked(cmd: &mut Command) -> Result<Output> {
    isolate(cmd);
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(cmd, e))
}

/// Run to completion like [`run_unchecked`], handing each line of stderr
/// to `stop` as it comes; when `stop` says so, the program is killed (a
/// restic that retries an unreachable server for 15 minutes). Returns the
/// output and whether it was stopped.
pub fn run_watching(
    cmd: &mut Command,
    mut stop: impl FnMut(&str) -> bool,
) -> Result<(Output, bool)> {
    use std::io::BufRead;
    isolate(cmd);
    die_with_us(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| spawn_error(cmd, e))?;
    let stdout = child.stdout.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    });
    let mut stderr = Vec::new();
    let mut stopped = false;
    if let Some(pipe) = child.stderr.take() {
        let mut reader = std::io::BufReader::new(pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            if !stopped && stop(&String::from_utf8_lossy(&line)) {
                stopped = true;
                let _ = child.kill();
            }
            stderr.append(&mut line);
        }
    }
    let status = child
        .wait()
        .map_err(|e| Error::internal(format!("waiting for `{}`: {e}", describe(cmd))))?;
    let stdout = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok((
        Output {
            status,
            stdout,
            stderr,
        },
        stopped,
    ))
}

/// Run and return stdout as trimmed text.
pub fn run_stdout(cmd: &mut Command) -> Result<String> {
    let out = run(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A running program whose stdout or stdin the caller streams, with stderr
/// collected in the background so it can be put into the error.
pub struct Streaming {
    command: Command,
    child: Child,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Streaming {
    /// Start `cmd` with its stdout piped to the caller.
    pub fn reading(mut cmd: Command) -> Result<Streaming> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        Self::spawn(cmd)
    }

    /// Start `cmd` with its stdin piped from the caller.
    pub fn writing(mut cmd: Command) -> Result<Streaming> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::null());
        Self::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Result<Streaming> {
        isolate(&mut cmd);
        die_with_us(&mut cmd);
        cmd.stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| spawn_error(&cmd, e))?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                buf
            })
        });
        Ok(Streaming {
            command: cmd,
            child,
            stderr,
        })
    }

    /// The program's stdout (once).
    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// The program's stdin (once); drop it to signal end of input.
    pub fn stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// The process id, for journals and signals.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the end; a non-zero exit is an error carrying stderr.
    pub fn finish(mut self) -> Result<()> {
        drop(self.child.stdin.take());
        drop(self.child.stdout.take());
        let status = self.child.wait().map_err(|e| {
            Error::internal(format!("waiting for `{}`: {e}", describe(&self.command)))
        })?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(failure(&self.command, status, &stderr))
        }
    }

    /// Stop the program (after a failure on our side) and reap it.
    pub fn abort(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Like [`Streaming::abort`], after reading its stream failed: when
    /// the program exits on its own within a second, having failed, its
    /// failure (with its stderr) — a stream cut short because the program
    /// failed is best explained by the program. `None` when it succeeded
    /// or had to be killed: then the failure was the reader's (the caller
    /// keeps the stream's pipe open meanwhile, so a program still writing
    /// blocks instead of failing on a closed pipe).
    pub fn abort_explained(mut self) -> Option<Error> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while std::time::Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return None,
                Ok(Some(status)) => {
                    let stderr = self.stderr.take().and_then(|h| h.join().ok());
                    return Some(failure(&self.command, status, &stderr.unwrap_or_default()));
                }
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(10)),
                Err(_) => break,
            }
        }
        self.abort();
        None
    }
}

/// The output end of a stream: a program's stdout, or an in-memory stand-in
/// in tests.
pub trait PipeReader: Read + Send {
    /// The pipe's descriptor, to tune it (a wider pipe moves data faster);
    /// `None` when it is no pipe.
    fn pipe_fd(&self) -> Option<RawFd>;
}

/// The input end of a stream: a program's stdin, or an in-memory stand-in
/// in tests.
pub trait PipeWriter: Write + Send {
    /// The pipe's descriptor, to tune it; `None` when it is no pipe.
    fn pipe_fd(&self) -> Option<RawFd>;
}

impl PipeReader for ChildStdout {
    fn pipe_fd(&self) -> Option<RawFd> {
        Some(self.as_raw_fd())
    }
}

impl PipeWriter for ChildStdin {
    fn pipe_fd(&self) -> Option<RawFd> {
        Some(self.as_raw_fd())
    }
}

/// A running producer of a stream the caller reads (`podman volume export`,
/// a tree listing): what the engine traits hand out, so that tests can put
/// an in-memory stream in its place.
pub trait Producer: Send {
    /// Its output (once).
    fn output(&mut self) -> Option<Box<dyn PipeReader>>;
    /// Wait for the end; a failure of the producer is an error.
    fn finish(self: Box<Self>) -> Result<()>;
    /// Stop it (after a failure on our side).
    fn abort(self: Box<Self>);
    /// Stop it after its output ended early, and say why when the failure
    /// was its own (see [`Streaming::abort_explained`]).
    fn abort_explained(self: Box<Self>) -> Option<Error> {
        self.abort();
        None
    }
}

/// A running consumer of a stream the caller writes (`podman volume
/// import`); see [`Producer`].
pub trait Consumer: Send {
    /// Its input (once); drop it to signal end of input.
    fn input(&mut self) -> Option<Box<dyn PipeWriter>>;
    /// Wait for the end; a failure of the consumer is an error.
    fn finish(self: Box<Self>) -> Result<()>;
    /// Stop it (after a failure on our side).
    fn abort(self: Box<Self>);
}

impl Producer for Streaming {
    fn output(&mut self) -> Option<Box<dyn PipeReader>> {
        Streaming::stdout(self).map(|out| Box::new(out) as Box<dyn PipeReader>)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        Streaming::finish(*self)
    }

    fn abort(self: Box<Self>) {
        Streaming::abort(*self)
    }

    fn abort_explained(self: Box<Self>) -> Option<Error> {
        Streaming::abort_explained(*self)
    }
}

impl Consumer for Streaming {
    fn input(&mut self) -> Option<Box<dyn PipeWriter>> {
        Streaming::stdin(self).map(|stdin| Box::new(stdin) as Box<dyn PipeWriter>)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        Streaming::finish(*self)
    }

    fn abort(self: Box<Self>) {
        Streaming::abort(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_carries_stderr_and_command() {
        let err = run(Command::new("sh").args(["-c", "echo boom >&2; exit 4"])).unwrap_err();
        assert!(
            err.message.contains("sh -c 'echo boom >&2; exit 4'"),
            "{}",
            err.message
        );
        assert!(err.message.contains("exit status 4"), "{}", err.message);
        assert!(err.message.ends_with("boom"), "{}", err.message);
    }

    #[test]
    fn missing_program_is_a_user_error_with_hint() {
        let err = run(&mut Command::new("podman-does-not-exist-here")).unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::User);
        assert!(err.message.contains("not found in PATH"));
        assert!(err.hint.is_some());
    }

    #[test]
    fn a_stream_cut_short_is_explained_by_the_program_that_failed() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf partial; echo 'cannot read /v/x' >&2; exit 3"]);
        let mut s = Streaming::reading(cmd).unwrap();
        let mut out = String::new();
        s.stdout().unwrap().read_to_string(&mut out).unwrap();
        let err = s.abort_explained().expect("the program's failure");
        assert!(err.message.ends_with("cannot read /v/x"), "{}", err.message);

        let mut hangs = Command::new("sh");
        hangs.args(["-c", "exec sleep 30"]);
        let started = std::time::Instant::now();
        assert!(Streaming::reading(hangs)
            .unwrap()
            .abort_explained()
            .is_none());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_watched_program_is_stopped_when_its_stderr_says_so() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo out; echo retrying >&2; echo retrying >&2; exec sleep 30",
        ]);
        let started = std::time::Instant::now();
        let mut seen = 0;
        let (out, stopped) = run_watching(&mut cmd, |line| {
            seen += usize::from(line.contains("retrying"));
            seen == 2
        })
        .unwrap();
        assert!(stopped);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
        assert!(String::from_utf8_lossy(&out.stderr).contains("retrying\nretrying"));
        let (out, stopped) = run_watching(Command::new("true").arg("x"), |_| true).unwrap();
        assert!(out.status.success() && !stopped);
    }

    #[test]
    fn streaming_reads_stdout_and_reports_exit() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf hello; echo oops >&2; exit 3"]);
        let mut s = Streaming::reading(cmd).unwrap();
        let mut out = String::new();
        s.stdout().unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello");
        let err = s.finish().unwrap_err();
        assert!(err.message.ends_with("oops"), "{}", err.message);
    }
}
