//! `.backup-metadata.json`: what a backup holds, written last so a backup
//! without it is never taken for a valid one.
//!
//! The fields leger documents come first and keep leger's names, so leger's
//! own `backup list` can read our backups; everything after them is ours.
//! Metadata read from disk is untrusted: [`Metadata::load`] checks it before
//! any path in it is used.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Compression;
use crate::deployment::Location;
use crate::error::{Error, Result};
use crate::layout::Scope;
use crate::names;
use crate::podman::RootOwnership;

/// Name of the metadata file inside a backup directory.
pub const METADATA_FILE: &str = ".backup-metadata.json";

/// Largest metadata file read: far above what a real backup records (its
/// files, volumes and device nodes), far below what would strain memory
/// when `list` reads every backup's metadata.
pub const MAX_METADATA_BYTES: u64 = 2 << 20;

/// The metadata format this version writes; loading refuses newer ones.
pub const FORMAT_VERSION: u32 = 1;

/// Manual or automatic, as leger documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Asked for by a person.
    Manual,
    /// Taken by a hook or before a destructive operation.
    Automatic,
}

impl BackupType {
    /// `before-*`, `pre-*` and `on-*` reasons are automatic, others manual.
    pub fn from_reason(reason: &str) -> BackupType {
        if ["before-", "pre-", "on-"]
            .iter()
            .any(|p| reason.starts_with(p))
        {
            BackupType::Automatic
        } else {
            BackupType::Manual
        }
    }
}

/// How the service whose stop triggered an on-stop backup ended, from the
/// `$SERVICE_RESULT`, `$EXIT_CODE` and `$EXIT_STATUS` systemd gives
/// `ExecStopPost=`. Recorded only when the stop failed: such a backup may
/// hold the state that made the service fail, so it is marked and pruned
/// apart from good ones (see `backup::prune`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopResult {
    /// `exit-code`, `signal`, `timeout`, `core-dump`, `oom-kill`, ...
    pub service_result: String,
    /// `exited`, `killed` or `dumped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<String>,
    /// The exit status (`1`) or the signal (`KILL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<String>,
}

impl StopResult {
    /// From systemd's variables: `None` for a clean stop (`success`) or
    /// when there are none (not run by systemd). Values that are not the
    /// short words systemd uses are dropped (an unknown result is kept as
    /// `unknown`): they end up in metadata and on terminals.
    pub fn from_systemd(
        service_result: Option<&str>,
        exit_code: Option<&str>,
        exit_status: Option<&str>,
    ) -> Option<StopResult> {
        let result = service_result?;
        if result == "success" || ended_by_the_stop(result, exit_code, exit_status) {
            return None;
        }
        let word = |v: Option<&str>| v.filter(|v| is_systemd_word(v)).map(str::to_owned);
        Some(StopResult {
            service_result: word(Some(result)).unwrap_or_else(|| "unknown".to_owned()),
            exit_code: word(exit_code),
            exit_status: word(exit_status),
        })
    }

    /// `exit-code (exited, status 1)`.
    pub fn describe(&self) -> String {
        let details: Vec<String> = self
            .exit_code
            .iter()
            .cloned()
            .chain(self.exit_status.iter().map(|s| format!("status {s}")))
            .collect();
        if details.is_empty() {
            self.service_result.clone()
        } else {
            format!("{} ({})", self.service_result, details.join(", "))
        }
    }
}

/// Whether the main process ended the way a requested stop ends it: by
/// SIGTERM (or SIGINT, SIGHUP), or by SIGKILL after the stop timeout, seen
/// either as the signal or as podman's `128 + signal` exit status. systemd
/// reports these as `exit-code` for Quadlet services (checked: a busybox
/// container stopped with `systemctl --user stop` gives `exit-code`,
/// `exited`, `143`), yet the stop was not a failure; only an exit of the
/// service's own (a crash) is.
fn ended_by_the_stop(result: &str, exit_code: Option<&str>, exit_status: Option<&str>) -> bool {
    let by_stop_signal = match (exit_code, exit_status) {
        (Some("killed"), Some(signal)) => {
            matches!(signal, "TERM" | "INT" | "HUP" | "KILL")
        }
        (Some("exited"), Some(status)) => matches!(status, "143" | "130" | "129" | "137"),
        _ => false,
    };
    matches!(result, "exit-code" | "signal") && by_stop_signal
}

/// A short word of letters, digits, `-` and `_`, as systemd's results,
/// exit codes, statuses and signal names are.
fn is_systemd_word(value: &str) -> bool {
    (1..=32).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// Whether services were stopped while volumes were exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Every service mounting a volume was stopped: crash-consistent.
    Stopped,
    /// Exported while running (`--live`).
    Live,
}

/// One file of the deployment kept in the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Where it was installed.
    pub location: Location,
    /// Path relative to that location's root (checked: relative, no `..`).
    pub path: PathBuf,
    /// Path inside the backup directory.
    pub stored_as: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// sha256, hex.
    pub sha256: String,
    /// Target, when the file was a symlink (then `size` and `sha256` are of
    /// the target text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink: Option<PathBuf>,
}

/// One directory of the deployment's trees, so a restore gives it back its
/// mode (a `secrets/` directory stays 0700) and empty ones come back too.
/// The owner is the user running leger-backup: nothing to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// Which root it lies under.
    pub location: Location,
    /// Path relative to that root (`.`: the root itself; checked: relative,
    /// no `..`).
    pub path: PathBuf,
    /// Permission bits (never setuid, setgid or sticky).
    pub mode: u32,
}

/// One Podman volume in the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeEntry {
    /// Podman volume name (leger's field).
    pub name: String,
    /// Archive path relative to the backup directory (leger's field); `None`
    /// when the volume did not exist at backup time.
    pub archive_path: Option<PathBuf>,
    /// Archive size in bytes (leger's field).
    pub size: u64,
    /// Whether the volume existed when the backup was taken.
    #[serde(default = "yes")]
    pub existed: bool,
    /// Bytes of the uncompressed tar.
    #[serde(default)]
    pub uncompressed_size: u64,
    /// sha256 of the archive file, hex.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Mode and owner of the volume root inside the user namespace.
    #[serde(default)]
    pub root: Option<RootOwnership>,
    /// Volume driver.
    #[serde(default)]
    pub driver: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Driver options.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The `.volume` file defining it (relative path), if any.
    #[serde(default)]
    pub defined_by: Option<String>,
    /// The `-volume.service` that creates it, when a `.volume` file defines it.
    #[serde(default)]
    pub volume_service: Option<String>,
    /// Services mounting it.
    #[serde(default)]
    pub used_by: Vec<String>,
    /// Device nodes and FIFOs the volume held when the backup was created
    /// (paths in the archive): the only ones a restore lets through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub special_files: Vec<String>,
    /// Fingerprint of the volume's tree when the backup was taken (see
    /// [`crate::backup::reuse`]): a later backup finding the same one
    /// shares this archive instead of exporting the volume again. `None`
    /// for a volume that is not fingerprinted (absent, not of the local
    /// driver, or the fingerprint failed) and in older backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_signature: Option<String>,
    /// Only in the safety backup of a restore: the volume's data is not in
    /// this backup but was moved aside, next to Podman's volumes, by the
    /// restore (see `backup::restore::aside`). Only that restore's rollback
    /// or `recover` can put it back; it is dropped when the restore succeeds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_aside: bool,
}

fn yes() -> bool {
    true
}

/// A service of the deployment and its state at backup time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// The systemd unit.
    pub name: String,
    /// Whether it was active (or activating) before the backup began.
    pub was_running: bool,
}

/// Where the deployment's files were installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    /// leger's active directory, if it was a leger deployment.
    pub active_dir: Option<PathBuf>,
    /// Root the quadlet files were installed under.
    pub installed_root: PathBuf,
    /// True for leger deployments: only the files leger installed from the
    /// active directory belong to the deployment under `installed_root`.
    pub installed_from_active: bool,
}

/// The whole metadata document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Backup ID (leger).
    pub id: String,
    /// Deployment (leger).
    pub deployment_name: String,
    /// When the backup started (leger; RFC 3339).
    pub created_at: DateTime<Utc>,
    /// Manual or automatic (leger).
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    /// Why it was taken (leger).
    pub reason: String,
    /// Total bytes of the backup directory (leger).
    pub size: u64,
    /// Relative paths of the quadlet files (leger).
    pub quadlet_files: Vec<String>,
    /// Volumes (leger, extended).
    pub volumes: Vec<VolumeEntry>,
    /// Format of this document; absent in leger's own backups.
    #[serde(default)]
    pub format_version: Option<u32>,
    /// leger-backup version that wrote it.
    #[serde(default)]
    pub leger_backup_version: Option<String>,
    /// User or system scope.
    #[serde(default)]
    pub scope: Option<Scope>,
    /// Archive compression.
    #[serde(default)]
    pub compression: Option<Compression>,
    /// Every file of the deployment with its checksum.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// Every directory of the deployment with its mode (absent in older
    /// backups: their directories are created with the default mode).
    #[serde(default)]
    pub dirs: Vec<DirEntry>,
    /// Where the files were installed.
    #[serde(default)]
    pub installation: Option<Installation>,
    /// Services and whether each was running.
    #[serde(default)]
    pub services: Vec<ServiceEntry>,
    /// Secret names the units require (never values).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Stopped or live.
    #[serde(default)]
    pub consistency: Option<Consistency>,
    /// Seconds services were down for the backup.
    #[serde(default)]
    pub downtime_seconds: Option<f64>,
    /// Set on an on-stop backup taken after the service failed to stop cleanly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_result: Option<StopResult>,
}

impl Metadata {
    /// Whether this was written by leger's Go implementation (no checksums:
    /// nothing can be verified).
    pub fn is_legacy(&self) -> bool {
        self.format_version.is_none()
    }

    /// Whether this backup was taken after its service failed to stop cleanly.
    pub fn after_failed_stop(&self) -> bool {
        self.stop_result.is_some()
    }

    /// Parse and check metadata read from `path` (the metadata file).
    /// Every path in it must stay inside the backup directory.
    pub fn load(path: &Path) -> Result<Metadata> {
        let unreadable = |e: std::io::Error| {
            Error::user(format!("cannot read backup metadata: {e}")).with_hint(
                "the backup is incomplete or damaged; delete it with `leger-backup delete <ID>`",
            )
        };
        let mut bytes = Vec::new();
        fs_err::File::open(path)
            .map_err(unreadable)?
            .take(MAX_METADATA_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        if bytes.len() as u64 > MAX_METADATA_BYTES {
            return Err(Error::user(format!(
                "{}: larger than {} MiB: not metadata leger-backup writes",
                path.display(),
                MAX_METADATA_BYTES >> 20
            ))
            .with_hint("the backup cannot be trusted; delete it with `leger-backup delete <ID>`"));
        }
        Self::parse(&bytes, path)
    }

    /// Parse and check metadata bytes; `path` names the file in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Metadata> {
        let metadata: Metadata = serde_json::from_slice(bytes).map_err(|e| {
            Error::user(format!("{}: malformed metadata: {e}", path.display())).with_hint(
                "the backup cannot be trusted; delete it with `leger-backup delete <ID>`",
            )
        })?;
        metadata.check(path)?;
        Ok(metadata)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let bad = |what: String| {
            Error::user(format!("{}: {what}", path.display()))
                .with_hint("the metadata is damaged or hostile; the backup is refused")
        };
        if let Some(v) = self.format_version {
            if v > FORMAT_VERSION {
                return Err(bad(format!(
                    "format_version {v} is newer than this leger-backup understands ({FORMAT_VERSION})"
                ))
                .with_hint("upgrade leger-backup to read this backup"));
            }
        }
        crate::deployment::validate_name(&self.deployment_name)
            .map_err(|e| bad(format!("deployment_name: {}", e.message)))?;
        for volume in &self.volumes {
            if let Some(archive) = &volume.archive_path {
                check_relative(archive)
                    .map_err(|why| bad(format!("archive_path {archive:?} {why}")))?;
            }
            if volume.special_files.len() > crate::backup::tar_guard::MAX_SPECIALS {
                return Err(bad(format!(
                    "volume {:?} records more than {} device nodes and FIFOs",
                    volume.name,
                    crate::backup::tar_guard::MAX_SPECIALS
                )));
            }
            for special in &volume.special_files {
                check_relative(Path::new(special))
                    .map_err(|why| bad(format!("special file {special:?} {why}")))?;
            }
        }
        for file in &self.files {
            for p in [&file.path, &file.stored_as] {
                check_relative(p).map_err(|why| bad(format!("file path {p:?} {why}")))?;
            }
            check_mode(file.mode).map_err(|why| bad(format!("file {:?}: {why}", file.path)))?;
        }
        for dir in &self.dirs {
            check_relative(&dir.path)
                .map_err(|why| bad(format!("directory path {:?} {why}", dir.path)))?;
            check_mode(dir.mode).map_err(|why| bad(format!("directory {:?}: {why}", dir.path)))?;
        }
        self.check_names().map_err(bad)
    }

    /// Every name that reaches `podman` or `systemctl` follows its grammar
    /// ([`crate::names`]): a backup naming `--url=…` or a path is refused
    /// here, so `list` and `info` show it invalid too.
    fn check_names(&self) -> std::result::Result<(), String> {
        let service = |field: &str, name: &str| {
            names::check_service(name).map_err(|why| format!("{field} {name:?} {why}"))
        };
        for s in &self.services {
            service("services", &s.name)?;
        }
        for v in &self.volumes {
            names::check_podman_name(&v.name)
                .map_err(|why| format!("volume name {:?} {why}", v.name))?;
            if let Some(s) = &v.volume_service {
                service("volume_service", s)?;
            }
            for s in &v.used_by {
                service("used_by", s)?;
            }
            if let Some(d) = &v.driver {
                if !d.is_empty() {
                    names::check_podman_name(d)
                        .map_err(|why| format!("driver {d:?} of volume {} {why}", v.name))?;
                }
            }
            if let Some(file) = &v.defined_by {
                check_relative(Path::new(file))
                    .map_err(|why| format!("defined_by {file:?} {why}"))?;
            }
            for (k, value) in v.labels.iter().chain(&v.options) {
                names::check_label(k, value)
                    .map_err(|why| format!("label or option {k:?} of volume {} {why}", v.name))?;
            }
        }
        if let Some(stop) = &self.stop_result {
            let words = [
                Some(&stop.service_result),
                stop.exit_code.as_ref(),
                stop.exit_status.as_ref(),
            ];
            if let Some(word) = words.into_iter().flatten().find(|w| !is_systemd_word(w)) {
                return Err(format!(
                    "stop_result {word:?} is not a systemd result (up to 32 letters, digits, '-', '_')"
                ));
            }
        }
        Ok(())
    }
}

/// A path from metadata must be relative and must not climb out.
pub fn check_relative(path: &Path) -> std::result::Result<(), &'static str> {
    if path.as_os_str().is_empty() {
        return Err("is empty");
    }
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err("contains '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("is absolute"),
        }
    }
    Ok(())
}

/// A mode from metadata holds permission bits only: anything above
/// `0o7777` (a file type, garbage) was not written by leger-backup.
pub fn check_mode(mode: u32) -> std::result::Result<(), String> {
    if mode > 0o7777 {
        return Err(format!("mode {mode:#o} has bits above 0o7777"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_decides_type() {
        assert_eq!(BackupType::from_reason("manual"), BackupType::Manual);
        assert_eq!(
            BackupType::from_reason("before-remove"),
            BackupType::Automatic
        );
        assert_eq!(
            BackupType::from_reason("pre-restore"),
            BackupType::Automatic
        );
        assert_eq!(BackupType::from_reason("on-stop"), BackupType::Automatic);
        assert_eq!(BackupType::from_reason("weekly"), BackupType::Manual);
    }

    #[test]
    fn relative_paths_only() {
        assert!(check_relative(Path::new("volumes/a.tar.zst")).is_ok());
        assert_eq!(check_relative(Path::new("/etc/passwd")), Err("is absolute"));
        assert_eq!(
            check_relative(Path::new("volumes/../../x")),
            Err("contains '..'")
        );
        assert_eq!(check_relative(Path::new("")), Err("is empty"));
    }

    #[test]
    fn leger_go_metadata_loads_as_legacy() {
        let json = br#"{"id":"web-2025-01-01-000000","deployment_name":"web",
            "created_at":"2025-01-01T00:00:00Z","type":"manual","reason":"manual","size":10,
            "quadlet_files":["web.container"],
            "volumes":[{"name":"systemd-data","archive_path":"volumes/systemd-data.tar","size":10}]}"#;
        let m = Metadata::parse(json, Path::new("m.json")).unwrap();
        assert!(m.is_legacy());
        assert!(m.volumes[0].existed);
    }

    #[test]
    fn traversal_is_refused() {
        let json = br#"{"id":"x","deployment_name":"web","created_at":"2025-01-01T00:00:00Z",
            "type":"manual","reason":"m","size":0,"quadlet_files":[],"format_version":1,
            "volumes":[{"name":"v","archive_path":"../../etc/shadow","size":0}]}"#;
        let err = Metadata::parse(json, Path::new("m.json")).unwrap_err();
        assert!(err.message.contains("contains '..'"), "{}", err.message);
    }

    #[test]
    fn future_format_is_refused() {
        let json = br#"{"id":"x","deployment_name":"web","created_at":"2025-01-01T00:00:00Z",
            "type":"manual","reason":"m","size":0,"quadlet_files":[],"volumes":[],"format_version":99}"#;
        let err = Metadata::parse(json, Path::new("m.json")).unwrap_err();
        assert!(err.message.contains("format_version 99"), "{}", err.message);
    }

    /// Names that would reach podman or systemctl as options, or as units
    /// that are not services, make the metadata invalid, naming the field.
    #[test]
    fn option_like_names_are_refused() {
        let cases = [
            (
                r#""services":[{"name":"--host=x","was_running":true}]"#,
                "services \"--host=x\"",
            ),
            (
                r#""services":[{"name":"sshd.socket","was_running":true}]"#,
                "services \"sshd.socket\"",
            ),
            (
                r#""volumes":[{"name":"--url=ssh://x","archive_path":null,"size":0}]"#,
                "volume name \"--url=ssh://x\"",
            ),
            (
                r#""volumes":[{"name":"v","archive_path":null,"size":0,"used_by":["-H"]}]"#,
                "used_by \"-H\"",
            ),
            (
                r#""volumes":[{"name":"v","archive_path":null,"size":0,"volume_service":"--user"}]"#,
                "volume_service \"--user\"",
            ),
            (
                r#""volumes":[{"name":"v","archive_path":null,"size":0,"labels":{"a":"b\u0000c"}}]"#,
                "control character",
            ),
        ];
        for (field, expected) in cases {
            let json = format!(
                r#"{{"id":"x","deployment_name":"web","created_at":"2025-01-01T00:00:00Z","type":"manual","reason":"m","size":0,"quadlet_files":[],"volumes":[],"format_version":1,{field}}}"#
            );
            // A later key wins in serde_json only when unique: drop the
            // empty `volumes` when the case brings its own.
            let json = if field.starts_with(r#""volumes""#) {
                json.replacen(r#""volumes":[],"#, "", 1)
            } else {
                json
            };
            let err = Metadata::parse(json.as_bytes(), Path::new("m.json")).unwrap_err();
            assert!(err.message.contains(expected), "{}", err.message);
        }
    }

    #[test]
    fn stop_result_only_for_failed_stops() {
        assert_eq!(StopResult::from_systemd(None, None, None), None);
        assert_eq!(
            StopResult::from_systemd(Some("success"), Some("exited"), Some("0")),
            None
        );
        let failed =
            StopResult::from_systemd(Some("exit-code"), Some("exited"), Some("1")).unwrap();
        assert_eq!(failed.describe(), "exit-code (exited, status 1)");
        // Values from the environment are bounded words, nothing else.
        let odd = StopResult::from_systemd(Some("\x1b[2J"), Some("killed"), Some(&"9".repeat(40)))
            .unwrap();
        assert_eq!(odd.describe(), "unknown (killed)");
        // A requested stop ends a container by SIGTERM, or by SIGKILL after
        // the stop timeout: not a failure, however systemd words it.
        for (code, status) in [("exited", "143"), ("exited", "137"), ("killed", "TERM")] {
            let r = StopResult::from_systemd(Some("exit-code"), Some(code), Some(status));
            assert_eq!(r, None, "{code} {status}");
        }
        let crash = StopResult::from_systemd(Some("signal"), Some("killed"), Some("SEGV"));
        assert!(crash.is_some());
    }

    #[test]
    fn stop_result_is_checked_when_loaded() {
        let json = |stop: &str| {
            format!(
                r#"{{"id":"x","deployment_name":"web","created_at":"2025-01-01T00:00:00Z",
                "type":"automatic","reason":"on-stop","size":0,"quadlet_files":[],"volumes":[],
                "format_version":1,"stop_result":{stop}}}"#
            )
        };
        let ok = Metadata::parse(
            json(r#"{"service_result":"exit-code","exit_code":"exited","exit_status":"1"}"#)
                .as_bytes(),
            Path::new("m.json"),
        )
        .unwrap();
        assert!(ok.after_failed_stop());
        let err = Metadata::parse(
            json(r#"{"service_result":"signal","exit_status":"\u001b]0;x\u0007"}"#).as_bytes(),
            Path::new("m.json"),
        )
        .unwrap_err();
        assert!(
            err.message.contains("is not a systemd result"),
            "{}",
            err.message
        );
        // Absent in older backups.
        let old = br#"{"id":"x","deployment_name":"web","created_at":"2025-01-01T00:00:00Z",
            "type":"automatic","reason":"on-stop","size":0,"quadlet_files":[],"volumes":[]}"#;
        assert!(!Metadata::parse(old, Path::new("m.json"))
            .unwrap()
            .after_failed_stop());
    }

    proptest::proptest! {
        /// Metadata is untrusted input: arbitrary bytes give an error naming
        /// the file, never a panic.
        #[test]
        fn loader_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1024)) {
            if let Err(e) = Metadata::parse(&bytes, Path::new("m.json")) {
                proptest::prop_assert!(e.message.contains("m.json"));
            }
        }

        /// Valid JSON of the right shape with hostile strings in its paths.
        #[test]
        fn hostile_paths_never_pass(path in "(/|\\.\\./|[a-z]{1,3}/){1,4}[a-z.]{0,6}") {
            let json = format!(
                r#"{{"id":"x","deployment_name":"web","created_at":"2025-01-01T00:00:00Z","type":"manual","reason":"m","size":0,"quadlet_files":[],"format_version":1,"volumes":[{{"name":"v","archive_path":{},"size":0}}]}}"#,
                serde_json::to_string(&path).unwrap()
            );
            let result = Metadata::parse(json.as_bytes(), Path::new("m.json"));
            if path.starts_with('/') || path.split('/').any(|c| c == "..") {
                proptest::prop_assert!(result.is_err());
            }
        }
    }
}
