//! The one runner of the `restic` binary.
//!
//! Every run goes through [`crate::process`], with the repository and its
//! secrets in restic's environment only ([`ResticEnv`]): argv holds options,
//! snapshot IDs and paths, nothing secret. restic's exit codes become
//! errors with the fix (10: no repository, 11: locked, 12: wrong password),
//! and every text taken from restic's stderr is scrubbed of the secrets.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;

use super::secrets::ResticEnv;
use super::{BackupRequest, BackupSummary, PasswordSource, Repository, RepositoryConfig, Snapshot};
use crate::error::{Error, ErrorKind, Result};
use crate::podman::Podman;
use crate::process;

/// The oldest restic that has what we use (`--stdin-from-command`, xattrs).
pub const MIN_VERSION: (u32, u32) = (0, 17);

/// restic retries an unreachable server for up to 15 minutes: after this
/// many retries of a connection failure (a few seconds), it is stopped and
/// the repository reported unreachable. An automatic backup must not hold
/// a stopping service that long.
const UNREACHABLE_RETRIES: usize = 3;

/// The program run.
const PROGRAM: &str = "restic";

/// Whether `restic version` was found good in this process.
static VERSION_CHECKED: AtomicBool = AtomicBool::new(false);

/// A configured repository, reached by running `restic`.
#[derive(Debug, Clone)]
pub struct Restic {
    /// Its configuration.
    pub config: RepositoryConfig,
    /// Its environment (checked secrets).
    env: ResticEnv,
    /// Runs `podman unshare` the way the rest of leger-backup does.
    podman: Podman,
}

impl Restic {
    /// Check the secrets of `config` and make its runner (restic itself is
    /// first run, and its version checked, by the first operation).
    pub fn new(config: RepositoryConfig) -> Result<Restic> {
        let env = ResticEnv::load(&config)?;
        Ok(Restic {
            config,
            env,
            podman: Podman::new(),
        })
    }

    /// `restic ARGS` with the repository's environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(PROGRAM);
        cmd.args(args);
        self.env.apply(&mut cmd);
        cmd
    }

    /// Run `cmd` (a restic run, perhaps wrapped), after the version check;
    /// a failure is classified by restic's exit code.
    fn run(&self, mut cmd: Command) -> Result<Output> {
        let (out, stopped) = self.exec(&mut cmd)?;
        self.checked(&cmd, out, stopped)
    }

    /// Run `cmd` after the version check; its output, and whether it was
    /// stopped for retrying an unreachable repository.
    fn exec(&self, cmd: &mut Command) -> Result<(Output, bool)> {
        ensure_version()?;
        let mut retries = 0;
        process::run_watching(cmd, |line| {
            retries += usize::from(line.contains("retrying after") && unreachable(line));
            retries >= UNREACHABLE_RETRIES
        })
    }

    /// The output of a run of `cmd`, or its failure classified by restic's
    /// exit code.
    fn checked(&self, cmd: &Command, out: Output, stopped: bool) -> Result<Output> {
        if out.status.success() && !stopped {
            return Ok(out);
        }
        let raw = process::failure(cmd, out.status, &out.stderr);
        let stderr = self.env.scrub(&said(&String::from_utf8_lossy(&out.stderr)));
        // Stopped: restic's last words are its retries, which say why.
        let code = if stopped { None } else { out.status.code() };
        Err(classify(
            &self.config,
            code,
            stderr.trim(),
            self.env.scrub(&raw.message),
        ))
    }

    /// `restic ARGS`, its stdout.
    fn run_args(&self, args: &[&str]) -> Result<Vec<u8>> {
        Ok(self.run(self.command(args))?.stdout)
    }

    /// `words` (a program and its arguments) in podman's user namespace
    /// when `in_namespace`, else directly; restic's environment set either
    /// way (`podman unshare` passes it on).
    fn wrapped(&self, words: &[&str], in_namespace: bool) -> Command {
        let mut cmd = if in_namespace {
            self.podman.in_user_namespace(words)
        } else {
            let mut cmd = Command::new(words[0]);
            cmd.args(&words[1..]);
            cmd
        };
        self.env.apply(&mut cmd);
        cmd
    }
}

/// Check once per process that restic is there and new enough.
fn ensure_version() -> Result<()> {
    if VERSION_CHECKED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let text = process::run_stdout(Command::new(PROGRAM).arg("version"))?;
    check_version(&text)?;
    VERSION_CHECKED.store(true, Ordering::Relaxed);
    Ok(())
}

/// `restic 0.18.0 compiled with go1.24 on linux/amd64` must be >= 0.17.
pub fn check_version(text: &str) -> Result<()> {
    let version = text.split_whitespace().nth(1).unwrap_or("");
    let mut parts = version
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>().ok());
    let found = match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => {
            return Err(Error::user(format!(
                "cannot tell restic's version from `restic version`: {text:?}"
            ))
            .with_hint("install restic 0.17 or newer"))
        }
    };
    if found < MIN_VERSION {
        return Err(Error::user(format!(
            "restic {version} is installed; leger-backup needs restic {}.{} or newer",
            MIN_VERSION.0, MIN_VERSION.1
        ))
        .with_hint("install restic 0.17 or newer"));
    }
    Ok(())
}

/// The error for a failed restic run: by exit code, then by what stderr
/// says (connection failures). `stderr` and `raw` are already scrubbed.
fn classify(config: &RepositoryConfig, code: Option<i32>, stderr: &str, raw: String) -> Error {
    let name = &config.name;
    let url = config.display_url();
    let said = if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    };
    match code {
        Some(10) => Error::user(format!("repository {name} ({url}) does not exist"))
            .with_hint(format!("create it with `leger-backup repo init {name}`")),
        Some(12) => {
            let source = match &config.password {
                PasswordSource::File(f) => format!("the password file {}", f.display()),
                PasswordSource::Command(_) => "what `password_command` prints".to_owned(),
            };
            Error::user(format!("wrong password for repository {name} ({url})"))
                .with_hint(format!("check {source}"))
        }
        Some(11) => Error::user(format!("repository {name} ({url}) is locked{said}"))
            .with_hint(format!(
                "if no other restic is using it, see `leger-backup repo check {name}`; a stale lock is removed with `restic unlock`"
            )),
        _ if unreachable(stderr) => {
            Error::user(format!("repository {name} ({url}) is unreachable{said}"))
                .with_hint("check the network, the server and the url; `sync` catches up later")
        }
        _ => Error {
            kind: ErrorKind::Internal,
            message: raw,
            hint: None,
        }
        .with_hint(format!(
            "check repository {name} with `leger-backup repo check {name}`"
        )),
    }
}

/// What restic said on stderr, in short: the message of its `--json`
/// `exit_error` line when there is one, else its last line (after retries,
/// the reason).
fn said(stderr: &str) -> String {
    #[derive(Deserialize)]
    struct ExitError {
        message_type: String,
        message: String,
    }
    let lines = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    if let Some(e) = lines
        .clone()
        .filter_map(|l| serde_json::from_str::<ExitError>(l).ok())
        .find(|e| e.message_type == "exit_error")
    {
        return e.message.replace('\n', " ");
    }
    let mut lines = lines;
    lines.next_back().unwrap_or_default().to_owned()
}

/// Whether restic's stderr says the server could not be reached.
fn unreachable(stderr: &str) -> bool {
    let text = stderr.to_lowercase();
    [
        "dial ",
        "dial:",
        "connection refused",
        "no such host",
        "timeout",
        "i/o timeout",
        "network is unreachable",
    ]
    .iter()
    .any(|s| text.contains(s))
}

/// A snapshot ID given to restic: hex only, so it is never read as an option.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::internal(format!(
            "{id:?} is not a restic snapshot ID"
        )));
    }
    Ok(())
}

/// One line of `restic backup --json`; only the summary is kept.
#[derive(Deserialize)]
struct BackupLine {
    message_type: String,
    #[serde(default)]
    snapshot_id: Option<String>,
    #[serde(default)]
    files_new: u64,
    #[serde(default)]
    files_changed: u64,
    #[serde(default)]
    files_unmodified: u64,
    #[serde(default)]
    data_added: u64,
    #[serde(default)]
    total_bytes_processed: u64,
}

/// The summary of `restic backup --json`'s output (its `status` lines
/// ignored, as is anything that is not JSON).
pub fn parse_backup_output(stdout: &[u8]) -> Result<BackupSummary> {
    let text = String::from_utf8_lossy(stdout);
    let summary = text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<BackupLine>(l).ok())
        .find(|l| l.message_type == "summary")
        .ok_or_else(|| Error::internal("`restic backup` printed no summary"))?;
    let snapshot_id = summary
        .snapshot_id
        .ok_or_else(|| Error::internal("`restic backup` made no snapshot"))?;
    Ok(BackupSummary {
        snapshot_id,
        files_new: summary.files_new,
        files_changed: summary.files_changed,
        files_unmodified: summary.files_unmodified,
        data_added: summary.data_added,
        total_bytes_processed: summary.total_bytes_processed,
    })
}

/// The argv of a backup: `EXE stage --stage ROOT --bind SRC=REL ... --
/// restic backup --json --tag T,... [--parent P] .` (the stage binds the
/// sources and runs restic in it).
pub fn backup_args(exe: &Path, request: &BackupRequest) -> Result<Vec<String>> {
    let utf8 = |p: &Path| {
        p.to_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::user(format!("{} is not a UTF-8 path", p.display())))
    };
    let mut args = vec![
        utf8(exe)?,
        "stage".to_owned(),
        "--stage".to_owned(),
        utf8(&request.root)?,
    ];
    args.push("--watch".to_owned());
    args.push(crate::process_identity::ProcessIdentity::current().to_record());
    for bind in &request.binds {
        args.push("--bind".to_owned());
        args.push(format!("{}={}", utf8(&bind.source)?, utf8(&bind.rel)?));
    }
    args.extend(
        ["--", PROGRAM, "backup", "--json", "--tag"]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    args.push(request.tags.join(","));
    // The pending directory's owner marker is not part of the backup.
    args.push("--exclude".to_owned());
    args.push(format!(
        "{}/{}",
        utf8(&request.root)?,
        crate::backup::store::PID_FILE
    ));
    if let Some(parent) = &request.parent {
        check_id(parent)?;
        args.push("--parent".to_owned());
        args.push(parent.clone());
    }
    if let Some(time) = request.time {
        // restic reads it in local time.
        args.push("--time".to_owned());
        let local = time.with_timezone(&chrono::Local);
        args.push(local.format("%Y-%m-%d %H:%M:%S").to_string());
    }
    args.push(".".to_owned());
    Ok(args)
}

/// The argv of a restore: `restic restore --target T --sparse [--exclude
/// E]... SNAP[:SUBPATH]`.
pub fn restore_args(
    snapshot: &str,
    subpath: &str,
    target: &Path,
    excludes: &[String],
) -> Result<Vec<String>> {
    check_id(snapshot)?;
    let target = target
        .to_str()
        .ok_or_else(|| Error::user(format!("{} is not a UTF-8 path", target.display())))?;
    let mut args: Vec<String> = [PROGRAM, "restore", "--target", target, "--sparse"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for e in excludes {
        args.push("--exclude".to_owned());
        args.push(e.clone());
    }
    args.push(match subpath.trim_matches('/') {
        "" => snapshot.to_owned(),
        sub => format!("{snapshot}:{sub}"),
    });
    Ok(args)
}

impl Repository for Restic {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn init(&self) -> Result<()> {
        self.run_args(&["init"]).map(drop)
    }

    fn check(&self, read_data: bool) -> Result<String> {
        let mut args = vec!["check"];
        if read_data {
            args.push("--read-data");
        }
        let out = self.run_args(&args)?;
        Ok(self.env.scrub(&String::from_utf8_lossy(&out)))
    }

    fn snapshots(&self, tags: &[String]) -> Result<Vec<Snapshot>> {
        let joined = tags.join(",");
        let mut args = vec!["snapshots", "--json"];
        if !tags.is_empty() {
            args.extend(["--tag", joined.as_str()]);
        }
        let out = self.run_args(&args)?;
        serde_json::from_slice::<Option<Vec<Snapshot>>>(&out)
            .map(Option::unwrap_or_default)
            .map_err(|e| {
                Error::internal(format!(
                    "cannot read `restic snapshots --json` of repository {}: {e}",
                    self.config.name
                ))
            })
    }

    fn backup(&self, request: &BackupRequest) -> Result<BackupSummary> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::internal(format!("cannot find leger-backup's own path: {e}")))?;
        let args = backup_args(&exe, request)?;
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.wrapped(&words, request.in_namespace);
        let (out, stopped) = self.exec(&mut cmd)?;
        if !stopped && out.status.code() == Some(3) {
            // restic saved a snapshot without the files it could not read:
            // that is no backup, and it must not be listed as one.
            if let Ok(summary) = parse_backup_output(&out.stdout) {
                let _ = self.forget(&[summary.snapshot_id]);
            }
            let stderr = self.env.scrub(&said(&String::from_utf8_lossy(&out.stderr)));
            return Err(Error::user(format!(
                "restic could not read every file of the backup, so its incomplete snapshot \
                 was removed from repository {}: {}",
                self.config.name,
                stderr.trim()
            ))
            .with_hint("make those files readable (or leave them out of the deployment), then back up again"));
        }
        parse_backup_output(&self.checked(&cmd, out, stopped)?.stdout)
    }

    fn dump(&self, snapshot: &str, path: &str, limit: u64) -> Result<Vec<u8>> {
        check_id(snapshot)?;
        ensure_version()?;
        let cmd = self.command(&["dump", snapshot, path]);
        let mut stream = process::Streaming::reading(cmd)?;
        let mut bytes = Vec::new();
        let read = match stream.stdout() {
            Some(out) => out.take(limit.saturating_add(1)).read_to_end(&mut bytes),
            None => Ok(0),
        };
        if read.is_err() || bytes.len() as u64 > limit {
            stream.abort();
            return Err(Error::user(format!(
                "{path} of snapshot {snapshot} in repository {} is larger than {limit} bytes or unreadable",
                self.config.name
            ))
            .with_hint("the snapshot cannot be trusted"));
        }
        stream.finish().map_err(|e| Error {
            message: self.env.scrub(&e.message),
            ..e
        })?;
        Ok(bytes)
    }

    fn restore(
        &self,
        snapshot: &str,
        subpath: &str,
        target: &Path,
        excludes: &[String],
        in_namespace: bool,
    ) -> Result<()> {
        let args = restore_args(snapshot, subpath, target, excludes)?;
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let cmd = self.wrapped(&words, in_namespace);
        self.run(cmd).map(drop)
    }

    fn forget(&self, snapshots: &[String]) -> Result<()> {
        if snapshots.is_empty() {
            return Ok(());
        }
        let mut args = vec!["forget"];
        for id in snapshots {
            check_id(id)?;
            args.push(id);
        }
        self.run_args(&args).map(drop)
    }

    fn prune(&self) -> Result<()> {
        self.run_args(&["prune"]).map(drop)
    }

    fn unlock(&self) -> Result<()> {
        self.run_args(&["unlock"]).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::StageBind;

    fn config() -> RepositoryConfig {
        RepositoryConfig {
            name: "offsite".into(),
            url: "rest:https://u:pw@h/".into(),
            password: PasswordSource::File("/c/pw".into()),
            env_file: None,
            keep_manual: None,
            keep_automatic: None,
        }
    }

    #[test]
    fn versions_older_than_0_17_are_refused_by_name() {
        assert!(check_version("restic 0.18.0 compiled with go1.24.4 on linux/amd64").is_ok());
        assert!(check_version("restic 0.17.3").is_ok());
        assert!(check_version("restic 1.0.0").is_ok());
        let err = check_version("restic 0.16.4 compiled with go1.21 on linux/amd64").unwrap_err();
        assert!(err.message.contains("0.16.4"), "{}", err.message);
        assert!(err.hint.unwrap().contains("0.17 or newer"));
        assert!(check_version("garbage").is_err());
    }

    #[test]
    fn exit_codes_become_errors_with_the_fix() {
        let c = config();
        let e = classify(
            &c,
            Some(10),
            "Fatal: repository does not exist",
            "raw".into(),
        );
        assert!(e
            .message
            .contains("repository offsite (rest:https://***@h/) does not exist"));
        assert!(e.hint.unwrap().contains("leger-backup repo init offsite"));
        let e = classify(&c, Some(12), "wrong password", "raw".into());
        assert!(e.hint.unwrap().contains("/c/pw"));
        let e = classify(
            &c,
            Some(11),
            "repository is already locked by PID 7",
            "raw".into(),
        );
        assert!(e.message.contains("locked by PID 7"), "{}", e.message);
        assert!(e.hint.unwrap().contains("repo check offsite"));
        let e = classify(
            &c,
            Some(1),
            "Fatal: Get \"https://h/config\": dial tcp 127.0.0.1:1: connect: connection refused",
            "raw".into(),
        );
        assert!(
            e.message
                .contains("offsite (rest:https://***@h/) is unreachable"),
            "{}",
            e.message
        );
        assert!(!e.message.contains(":pw@"));
        let e = classify(&c, Some(1), "Fatal: other", "`restic x` failed".into());
        assert_eq!(e.kind, ErrorKind::Internal);
    }

    #[test]
    fn restic_said_its_exit_error_or_its_last_line() {
        let stderr = "Stat(<config/>) returned error, retrying after 1s: dial tcp: connection refused\n\
            {\"message_type\":\"exit_error\",\"code\":1,\"message\":\"Fatal: unable to open config file\\nIs there a repository?\"}\n";
        assert_eq!(
            said(stderr),
            "Fatal: unable to open config file Is there a repository?"
        );
        assert_eq!(said("a\nFatal: b\n\n"), "Fatal: b");
    }

    #[test]
    fn backup_output_yields_the_summary() {
        let out = br#"{"message_type":"status","percent_done":0.5}
{"message_type":"summary","files_new":2,"files_changed":1,"files_unmodified":7,"data_added":1234,"total_bytes_processed":99,"snapshot_id":"abcdef0123"}
"#;
        let s = parse_backup_output(out).unwrap();
        assert_eq!(s.snapshot_id, "abcdef0123");
        assert_eq!(
            (s.files_new, s.files_changed, s.files_unmodified),
            (2, 1, 7)
        );
        assert_eq!((s.data_added, s.total_bytes_processed), (1234, 99));
        assert!(parse_backup_output(b"{\"message_type\":\"status\"}\n").is_err());
    }

    #[test]
    fn restore_names_the_subtree_target_and_excludes() {
        let args = restore_args(
            "abc123",
            "/volumes/db/",
            Path::new("/t"),
            &["/volumes/db/tmp".to_owned()],
        )
        .unwrap();
        assert_eq!(
            args.join(" "),
            "restic restore --target /t --sparse --exclude /volumes/db/tmp abc123:volumes/db"
        );
        let all = restore_args("abc123", "/", Path::new("/t"), &[]).unwrap();
        assert_eq!(all.last().unwrap(), "abc123");
        assert!(restore_args("latest;rm", "/", Path::new("/t"), &[]).is_err());
    }

    #[test]
    fn backup_runs_restic_in_the_stage_with_tags_and_parent() {
        let request = BackupRequest {
            tags: vec!["leger-backup".into(), "id=web-1".into()],
            root: "/b/.tmp-web".into(),
            binds: vec![StageBind {
                source: "/v/db/_data".into(),
                rel: "volumes/db".into(),
            }],
            parent: Some("0123abcd".into()),
            time: None,
            in_namespace: true,
        };
        let args = backup_args(Path::new("/usr/bin/leger-backup"), &request).unwrap();
        let me = crate::process_identity::ProcessIdentity::current().to_record();
        assert_eq!(
            args.join(" "),
            format!(
                "/usr/bin/leger-backup stage --stage /b/.tmp-web --watch {me} --bind /v/db/_data=volumes/db \
             -- restic backup --json --tag leger-backup,id=web-1 --exclude /b/.tmp-web/.pid \
             --parent 0123abcd ."
            )
        );
        let bad = BackupRequest {
            parent: Some("--password=x".into()),
            ..request
        };
        assert!(backup_args(Path::new("/e"), &bad).is_err());
    }
}
