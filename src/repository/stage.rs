//! The stage of a snapshot: one directory whose tree is the backup, made
//! of bind mounts, in a mount namespace of its own, where restic runs.
//!
//! Why bind mounts: restic reads each volume in place, as a tree, so it
//! deduplicates per file and skips files unchanged since the parent
//! snapshot (same inode, size and times: a bind mount keeps them), and the
//! snapshot's root is exactly the backup (`.backup-metadata.json`, the
//! deployment's files, `volumes/NAME/`, `host-paths/N`). Why a mount
//! namespace of its own: the mounts vanish with the process, whatever
//! kills it, and nobody else ever sees them. Rootless, it runs inside
//! `podman unshare`, so every file of a volume is readable and owners are
//! recorded as the containers see them.

use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::process_identity::ProcessIdentity;

/// One `SOURCE=REL` of the command line, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// An absolute path that exists and is not a symlink.
    pub source: PathBuf,
    /// A relative path of plain components, inside the stage.
    pub rel: PathBuf,
}

/// Parse `SOURCE=REL` (split at the last `=`: sources may hold one).
pub fn parse_bind(text: &str) -> Result<Bind> {
    let bad = |why: &str| {
        Error::user(format!("bad --bind `{text}`: {why}"))
            .with_hint("give SOURCE=REL, SOURCE absolute, REL relative without `..`")
    };
    let (source, rel) = text.rsplit_once('=').ok_or_else(|| bad("no `=`"))?;
    let (source, rel) = (PathBuf::from(source), PathBuf::from(rel));
    if !source.is_absolute() {
        return Err(bad("SOURCE is not absolute"));
    }
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if rel.as_os_str().is_empty() || !plain {
        return Err(bad("REL must be a relative path of plain names"));
    }
    Ok(Bind { source, rel })
}

/// Enter a private mount namespace, bind every source into `stage`, and
/// run `command` there: this process becomes it, or with `watch` runs it
/// as a child that is interrupted when the watched process is gone (then
/// restic saves no snapshot). Returns only on error; exits with the
/// command's status otherwise.
pub fn run_in_stage(
    stage: &Path,
    binds: &[Bind],
    command: &[OsString],
    watch: Option<ProcessIdentity>,
) -> Result<()> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Error::user("stage: no command given"))?;
    if !fs_err::metadata(stage)?.is_dir() {
        return Err(Error::user(format!(
            "{} is not a directory",
            stage.display()
        )));
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| {
        Error::user(format!("cannot make a private mount namespace: {e}"))
            .with_hint("run it as root or inside `podman unshare`")
    })?;
    // Our mounts must not propagate back to the namespace we came from.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::internal(format!("cannot make / private in the new namespace: {e}")))?;
    for bind in binds {
        bind_one(stage, bind)?;
    }
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).current_dir(stage);
    if let Some(watched) = watch {
        let child = cmd.spawn().map_err(|e| {
            Error::user(format!(
                "cannot run `{}` in the stage: {e}",
                program.to_string_lossy()
            ))
        })?;
        std::process::exit(watch_child(child, watched));
    }
    let err = cmd.exec();
    Err(Error::user(format!(
        "cannot run `{}` in the stage: {err}",
        program.to_string_lossy()
    )))
}

/// Wait for `child`; when `watched` is gone first, interrupt the child
/// (restic then removes its lock and saves nothing), and kill it if it
/// does not end soon. Returns the exit status to leave with.
fn watch_child(mut child: std::process::Child, watched: ProcessIdentity) -> i32 {
    let mut gone_since: Option<std::time::Instant> = None;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code().unwrap_or(1),
            Ok(None) => {}
            Err(_) => return 1,
        }
        if gone_since.is_none() && !watched.is_alive() {
            gone_since = Some(std::time::Instant::now());
            signal_child(&child, Signal::SIGINT);
        }
        if gone_since.is_some_and(|t| t.elapsed() > std::time::Duration::from_secs(10)) {
            signal_child(&child, Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn signal_child(child: &std::process::Child, signal: Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Make the mount point (a directory, or an empty file for a file) and
/// bind the source on it.
fn bind_one(stage: &Path, bind: &Bind) -> Result<()> {
    let meta = fs_err::symlink_metadata(&bind.source)?;
    if meta.file_type().is_symlink() {
        return Err(Error::user(format!(
            "{} is a symlink: the backup does not follow it",
            bind.source.display()
        )));
    }
    let point = stage.join(&bind.rel);
    let mut dirs = std::fs::DirBuilder::new();
    dirs.recursive(true).mode(0o700);
    if let Some(parent) = point.parent() {
        dirs.create(parent)
            .map_err(|e| Error::user(format!("cannot create {}: {e}", parent.display())))?;
    }
    if meta.is_dir() {
        dirs.create(&point)
            .map_err(|e| Error::user(format!("cannot create {}: {e}", point.display())))?;
    } else {
        fs_err::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&point)?;
    }
    mount(
        Some(&bind.source),
        &point,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        Error::user(format!(
            "cannot bind {} at {}: {e}",
            bind.source.display(),
            point.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_and_refuse_escapes() {
        let b = parse_bind("/home/u/.local/share/containers/storage/volumes/db/_data=volumes/db")
            .unwrap();
        assert_eq!(b.rel, PathBuf::from("volumes/db"));
        assert_eq!(
            parse_bind("/srv/a=b=host-paths/0").unwrap().source,
            PathBuf::from("/srv/a=b")
        );
        for bad in ["relative=volumes/db", "/x=../up", "/x=/abs", "/x=", "/x"] {
            assert!(parse_bind(bad).is_err(), "{bad}");
        }
    }
}
