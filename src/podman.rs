//! The one place `podman` is run. Rootless by default: commands run as the
//! calling user against that user's storage.

use std::collections::BTreeMap;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::process::{self, Streaming};

/// What `podman volume inspect` says about a volume, as far as a restore
/// needs it to recreate the volume identically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// Volume name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Driver (`local` unless a plugin is used).
    #[serde(rename = "Driver", default)]
    pub driver: String,
    /// Where its data lives on the host.
    #[serde(rename = "Mountpoint", default)]
    pub mountpoint: String,
    /// Labels (Quadlet adds its own).
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Driver options (`type`, `device`, `o`, ...).
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A container as `podman ps -a --format json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRef {
    /// Container ID.
    #[serde(rename = "Id", default)]
    pub id: String,
    /// Names (usually one).
    #[serde(rename = "Names", default, deserialize_with = "null_as_default")]
    pub names: Vec<String>,
    /// `running`, `exited`, ...
    #[serde(rename = "State", default)]
    pub state: String,
    /// Labels; Quadlet containers carry `PODMAN_SYSTEMD_UNIT`.
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

impl ContainerRef {
    /// The systemd unit that runs this container, when Quadlet made it.
    pub fn systemd_unit(&self) -> Option<&str> {
        self.labels.get("PODMAN_SYSTEMD_UNIT").map(String::as_str)
    }

    /// A name for messages.
    pub fn display_name(&self) -> String {
        self.names
            .first()
            .cloned()
            .unwrap_or_else(|| self.id.chars().take(12).collect())
    }
}

/// Mode and owner of a volume's root directory as seen inside the user
/// namespace (what `podman unshare stat` shows): `podman volume import`
/// resets them, so a backup records them and a restore puts them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootOwnership {
    /// Permission bits, e.g. `0o750`.
    pub mode: u32,
    /// Owner uid inside the user namespace.
    pub uid: u32,
    /// Group gid inside the user namespace.
    pub gid: u32,
}

/// Runs podman.
#[derive(Debug, Clone, Default)]
pub struct Podman {
    program: Option<String>,
}

impl Podman {
    /// The `podman` in PATH (or `LEGER_BACKUP_PODMAN`, for tests of error paths).
    pub fn new() -> Podman {
        Podman {
            program: std::env::var("LEGER_BACKUP_PODMAN").ok(),
        }
    }

    /// `podman ARGS`. Every caller puts `--` before the positional names
    /// (volume, secret): a name from a backup is never read as an option.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.program.as_deref().unwrap_or("podman"));
        cmd.args(args);
        cmd
    }

    /// Whether a volume exists.
    pub fn volume_exists(&self, name: &str) -> Result<bool> {
        let mut cmd = self.command(&["volume", "exists", "--", name]);
        let out = process::run_unchecked(&mut cmd)?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(process::failure(&cmd, out.status, &out.stderr)),
        }
    }

    /// Inspect a volume; `None` when it does not exist.
    pub fn volume_inspect(&self, name: &str) -> Result<Option<VolumeInfo>> {
        // One podman call in the common case (each costs ~50 ms, and a
        // backup inspects every volume); `volume exists` only to tell a
        // missing volume from a failure.
        let mut cmd = self.command(&["volume", "inspect", "--format", "json", "--", name]);
        let out = process::run_unchecked(&mut cmd)?;
        if !out.status.success() {
            if !self.volume_exists(name)? {
                return Ok(None);
            }
            return Err(process::failure(&cmd, out.status, &out.stderr));
        }
        let mut infos: Vec<VolumeInfo> = serde_json::from_slice(&out.stdout).map_err(|e| {
            Error::internal(format!("unexpected `podman volume inspect` output: {e}"))
        })?;
        Ok(infos.pop())
    }

    /// Start `podman volume export NAME`, its tar on stdout.
    pub fn volume_export(&self, name: &str) -> Result<Streaming> {
        Streaming::reading(self.command(&["volume", "export", "--", name]))
    }

    /// Start `podman volume import NAME -`, the tar fed to stdin. Import
    /// merges into what is there: callers empty the volume first.
    pub fn volume_import(&self, name: &str) -> Result<Streaming> {
        Streaming::writing(self.command(&["volume", "import", "--", name, "-"]))
    }

    /// Remove a volume (never `--force`: that would remove containers too).
    pub fn volume_rm(&self, name: &str) -> Result<()> {
        process::run(&mut self.command(&["volume", "rm", "--", name]))?;
        Ok(())
    }

    /// Create a volume with the driver, labels and options it had.
    pub fn volume_create(&self, info: &VolumeInfo) -> Result<()> {
        let mut cmd = self.command(&["volume", "create"]);
        if !info.driver.is_empty() {
            cmd.args(["--driver", &info.driver]);
        }
        for (k, v) in &info.labels {
            cmd.arg("--label").arg(format!("{k}={v}"));
        }
        for (k, v) in &info.options {
            cmd.arg("--opt").arg(format!("{k}={v}"));
        }
        cmd.arg("--").arg(&info.name);
        process::run(&mut cmd)?;
        Ok(())
    }

    /// Run `args` in Podman's user namespace (`podman unshare`), or directly
    /// when root, where there is no user namespace to enter. `args[0]` is
    /// always a fixed program (`stat`, `sh`), never a name from elsewhere,
    /// so no `--` is needed before it; the paths after it are the inner
    /// command's, behind its own `--`.
    fn in_user_namespace(&self, args: &[&str]) -> Command {
        if nix::unistd::geteuid().is_root() {
            let mut cmd = Command::new(args[0]);
            cmd.args(&args[1..]);
            cmd
        } else {
            let mut all = vec!["unshare"];
            all.extend_from_slice(args);
            self.command(&all)
        }
    }

    /// Mode and owner of `path` inside the user namespace.
    pub fn root_ownership(&self, path: &str) -> Result<RootOwnership> {
        let text = process::run_stdout(
            &mut self.in_user_namespace(&["stat", "-c", "%a %u %g", "--", path]),
        )?;
        parse_stat(&text)
            .ok_or_else(|| Error::internal(format!("unexpected stat output {text:?} for {path}")))
    }

    /// Start `find DIR -printf FORMAT` inside the user namespace (where the
    /// files of subordinate uids are readable), one line per entry of the
    /// tree, `DIR` itself included, on stdout. One process walks the whole
    /// tree: a fingerprint must not cost a process per file.
    pub fn list_tree(&self, dir: &str, format: &str) -> Result<Streaming> {
        // find reads an argument starting with `-` as an expression, and has
        // no `--` for its starting points: only absolute paths are given.
        if !dir.starts_with('/') {
            return Err(Error::internal(format!(
                "cannot list {dir:?}: not an absolute path"
            )));
        }
        Streaming::reading(self.in_user_namespace(&["find", dir, "-printf", format]))
    }

    /// Start `EXE volume-tar DIR` (leger-backup's own binary, `exe`) inside
    /// the user namespace, where every file of the volume is readable: the
    /// tar of `dir` on stdout (see [`crate::backup::volume_reader`]).
    pub fn volume_tar(&self, exe: &std::path::Path, dir: &str) -> Result<Streaming> {
        let Some(exe) = exe.to_str() else {
            return Err(Error::internal(format!(
                "leger-backup's own path {} is not UTF-8",
                exe.display()
            )));
        };
        // Absolute: nothing after the subcommand is read as an option.
        if !dir.starts_with('/') {
            return Err(Error::internal(format!(
                "cannot read {dir:?}: not an absolute path"
            )));
        }
        Streaming::reading(self.in_user_namespace(&[exe, "volume-tar", dir]))
    }

    /// Set mode and owner of `path` inside the user namespace.
    pub fn set_root_ownership(&self, path: &str, own: RootOwnership) -> Result<()> {
        let owner = format!("{}:{}", own.uid, own.gid);
        let mode = format!("{:o}", own.mode);
        // One `podman unshare` (it costs a user namespace each time); chown
        // first, as chown clears set-id bits that chmod then sets.
        process::run(&mut self.in_user_namespace(&[
            "sh",
            "-c",
            r#"chown -- "$1" "$3" && chmod -- "$2" "$3""#,
            "sh",
            &owner,
            &mode,
            path,
        ]))?;
        Ok(())
    }

    /// Containers (running or not) that mount the volume.
    pub fn containers_using_volume(&self, name: &str) -> Result<Vec<ContainerRef>> {
        let filter = format!("volume={name}");
        let out = process::run(
            &mut self.command(&["ps", "-a", "--filter", &filter, "--format", "json"]),
        )?;
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| Error::internal(format!("unexpected `podman ps` output: {e}")))
    }

    /// Whether a secret exists.
    pub fn secret_exists(&self, name: &str) -> Result<bool> {
        let mut cmd = self.command(&["secret", "exists", "--", name]);
        let out = process::run_unchecked(&mut cmd)?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(process::failure(&cmd, out.status, &out.stderr)),
        }
    }
}

fn parse_stat(text: &str) -> Option<RootOwnership> {
    let mut parts = text.split_whitespace();
    let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
    let uid = parts.next()?.parse().ok()?;
    let gid = parts.next()?.parse().ok()?;
    Some(RootOwnership { mode, uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_line() {
        assert_eq!(
            parse_stat("750 999 999\n"),
            Some(RootOwnership {
                mode: 0o750,
                uid: 999,
                gid: 999
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn inspect_json_with_null_maps() {
        let json =
            r#"[{"Name":"v","Driver":"local","Mountpoint":"/x","Labels":null,"Options":{}}]"#;
        let v: Vec<VolumeInfo> = serde_json::from_str(json).unwrap();
        assert!(v[0].labels.is_empty());
    }
}
