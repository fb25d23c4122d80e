//! The one place `podman` is run. Rootless by default: commands run as the
//! calling user against that user's storage.

use std::collections::BTreeMap;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::process::{self, Consumer, Producer, Streaming};

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

/// The podman operations a backup and a restore use: what tests replace
/// with an in-memory engine, so the stop/start, create and rollback paths
/// run without podman.
pub trait ContainerEngine: std::fmt::Debug + Send + Sync {
    /// Whether a volume exists.
    fn volume_exists(&self, name: &str) -> Result<bool>;

    /// Inspect a volume; `None` when it does not exist.
    fn volume_inspect(&self, name: &str) -> Result<Option<VolumeInfo>>;

    /// Start `podman volume export NAME`, its tar on stdout.
    fn volume_export(&self, name: &str) -> Result<Box<dyn Producer>>;

    /// Start `podman volume import NAME -`, the tar fed to stdin. Import
    /// merges into what is there: callers empty the volume first.
    fn volume_import(&self, name: &str) -> Result<Box<dyn Consumer>>;

    /// Remove a volume (never `--force`: that would remove containers too).
    fn volume_rm(&self, name: &str) -> Result<()>;

    /// Create a volume with the driver, labels and options it had.
    fn volume_create(&self, info: &VolumeInfo) -> Result<()>;

    /// Mode and owner of `path` inside the user namespace.
    fn root_ownership(&self, path: &str) -> Result<RootOwnership>;

    /// Start `find DIR -printf FORMAT` inside the user namespace (where the
    /// files of subordinate uids are readable), one line per entry of the
    /// tree, `DIR` itself included, on stdout. One process walks the whole
    /// tree: a fingerprint must not cost a process per file.
    fn list_tree(&self, dir: &str, format: &str) -> Result<Box<dyn Producer>>;

    /// Set mode and owner of `path` inside the user namespace.
    fn set_root_ownership(&self, path: &str, own: RootOwnership) -> Result<()>;

    /// Containers (running or not) that mount the volume.
    fn containers_using_volume(&self, name: &str) -> Result<Vec<ContainerRef>>;

    /// Whether a secret exists.
    fn secret_exists(&self, name: &str) -> Result<bool>;
    /// Start `EXE volume-tar DIR` (leger-backup's own binary) with the
    /// rights of the user namespace, where every file of the volume is
    /// readable: the tar of `dir` on stdout (see
    /// [`crate::backup::volume_reader`]).
    fn volume_tar(&self, exe: &std::path::Path, dir: &str) -> Result<Box<dyn Producer>>;
    /// Start `EXE volume-tar --host PATH` as [`ContainerEngine::volume_tar`]
    /// does: the tar of the host path `path` (a directory, ACLs included,
    /// or a single regular file) on stdout (see
    /// [`crate::backup::volume_reader::write_host_path`]).
    fn host_path_tar(&self, exe: &std::path::Path, path: &str) -> Result<Box<dyn Producer>>;
    /// Start `EXE tree-write DEST` (with `file`, `EXE tree-write --file
    /// DEST`) with the rights of the user namespace: it writes the tar fed
    /// to its stdin exactly into the empty directory `dest` (or its one
    /// regular file to the new path `dest`); see
    /// [`crate::backup::tree_writer`]. The caller checks the tar first.
    fn tree_write(
        &self,
        exe: &std::path::Path,
        dest: &str,
        file: bool,
    ) -> Result<Box<dyn Consumer>>;
    /// Rename the directory `from` to `to`, on the same filesystem, with
    /// the rights of the user namespace (a restore moves a volume's data
    /// aside with it). `to` must not exist.
    fn move_dir(&self, from: &str, to: &str) -> Result<()>;
    /// Replace the empty directory `dir` with the directory `from`.
    fn replace_empty_dir(&self, dir: &str, from: &str) -> Result<()>;
    /// Remove the tree at the absolute path `path`, files of subordinate
    /// uids included.
    fn remove_tree(&self, path: &str) -> Result<()>;
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

    /// Run `args` in Podman's user namespace (`podman unshare`), or directly
    /// when root, where there is no user namespace to enter. `args[0]` is
    /// always a fixed program (`stat`, `sh`), never a name from elsewhere,
    /// so no `--` is needed before it; the paths after it are the inner
    /// command's, behind its own `--`.
    pub(crate) fn in_user_namespace(&self, args: &[&str]) -> Command {
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

    /// `EXE ARGS PATH` (leger-backup's own binary, `exe`) in the user
    /// namespace. `path` must be absolute: nothing after the subcommand is
    /// read as an option.
    fn own_command(&self, exe: &std::path::Path, args: &[&str], path: &str) -> Result<Command> {
        let Some(exe) = exe.to_str() else {
            return Err(Error::internal(format!(
                "leger-backup's own path {} is not UTF-8",
                exe.display()
            )));
        };
        if !path.starts_with('/') {
            return Err(Error::internal(format!(
                "cannot use {path:?}: not an absolute path"
            )));
        }
        let mut all = vec![exe];
        all.extend_from_slice(args);
        all.push(path);
        Ok(self.in_user_namespace(&all))
    }
}

impl ContainerEngine for Podman {
    fn volume_exists(&self, name: &str) -> Result<bool> {
        let mut cmd = self.command(&["volume", "exists", "--", name]);
        let out = process::run_unchecked(&mut cmd)?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(process::failure(&cmd, out.status, &out.stderr)),
        }
    }

    fn volume_inspect(&self, name: &str) -> Result<Option<VolumeInfo>> {
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

    fn volume_export(&self, name: &str) -> Result<Box<dyn Producer>> {
        Ok(Box::new(Streaming::reading(
            self.command(&["volume", "export", "--", name]),
        )?))
    }

    fn volume_import(&self, name: &str) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(Streaming::writing(
            self.command(&["volume", "import", "--", name, "-"]),
        )?))
    }

    fn volume_rm(&self, name: &str) -> Result<()> {
        process::run(&mut self.command(&["volume", "rm", "--", name]))?;
        Ok(())
    }

    fn volume_create(&self, info: &VolumeInfo) -> Result<()> {
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

    fn root_ownership(&self, path: &str) -> Result<RootOwnership> {
        let text = process::run_stdout(
            &mut self.in_user_namespace(&["stat", "-c", "%a %u %g", "--", path]),
        )?;
        parse_stat(&text)
            .ok_or_else(|| Error::internal(format!("unexpected stat output {text:?} for {path}")))
    }

    fn list_tree(&self, dir: &str, format: &str) -> Result<Box<dyn Producer>> {
        // find reads an argument starting with `-` as an expression, and has
        // no `--` for its starting points: only absolute paths are given.
        if !dir.starts_with('/') {
            return Err(Error::internal(format!(
                "cannot list {dir:?}: not an absolute path"
            )));
        }
        Ok(Box::new(Streaming::reading(
            self.in_user_namespace(&["find", dir, "-printf", format]),
        )?))
    }

    /// Start `EXE volume-tar DIR` (leger-backup's own binary, `exe`) inside
    /// the user namespace, where every file of the volume is readable: the
    /// tar of `dir` on stdout (see [`crate::backup::volume_reader`]).
    fn volume_tar(&self, exe: &std::path::Path, dir: &str) -> Result<Box<dyn Producer>> {
        Ok(Box::new(Streaming::reading(self.own_command(
            exe,
            &["volume-tar"],
            dir,
        )?)?))
    }

    fn host_path_tar(&self, exe: &std::path::Path, path: &str) -> Result<Box<dyn Producer>> {
        Ok(Box::new(Streaming::reading(self.own_command(
            exe,
            &["volume-tar", "--host"],
            path,
        )?)?))
    }

    fn tree_write(
        &self,
        exe: &std::path::Path,
        dest: &str,
        file: bool,
    ) -> Result<Box<dyn Consumer>> {
        let args: &[&str] = if file {
            &["tree-write", "--file"]
        } else {
            &["tree-write"]
        };
        Ok(Box::new(Streaming::writing(
            self.own_command(exe, args, dest)?,
        )?))
    }

    fn set_root_ownership(&self, path: &str, own: RootOwnership) -> Result<()> {
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

    /// Rename the directory `from` to `to` (on the same filesystem) inside
    /// the user namespace: moving a directory to another parent rewrites
    /// its `..` entry, which needs write access to it, and a volume's data
    /// directory may belong to a subordinate uid. `to` must not exist.
    fn move_dir(&self, from: &str, to: &str) -> Result<()> {
        process::run(&mut self.in_user_namespace(&["mv", "-T", "--", from, to]))?;
        Ok(())
    }

    /// Replace the empty directory `dir` (a volume just created) with the
    /// directory `from`, inside the user namespace, in one process.
    fn replace_empty_dir(&self, dir: &str, from: &str) -> Result<()> {
        process::run(&mut self.in_user_namespace(&[
            "sh",
            "-c",
            r#"rmdir -- "$1" && mv -T -- "$2" "$1""#,
            "sh",
            dir,
            from,
        ]))?;
        Ok(())
    }

    /// Remove the tree `path` inside the user namespace (files of
    /// subordinate uids included). Only absolute paths.
    fn remove_tree(&self, path: &str) -> Result<()> {
        if !path.starts_with('/') {
            return Err(Error::internal(format!(
                "cannot remove {path:?}: not an absolute path"
            )));
        }
        process::run(&mut self.in_user_namespace(&["rm", "-rf", "--", path]))?;
        Ok(())
    }

    fn containers_using_volume(&self, name: &str) -> Result<Vec<ContainerRef>> {
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

    fn secret_exists(&self, name: &str) -> Result<bool> {
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
    fn our_own_commands_take_absolute_paths_after_their_options() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "as root no `podman unshare` comes first: run this test as root"
        );
        let podman = Podman::new();
        let exe = std::path::Path::new("/usr/bin/leger-backup");
        let write = podman
            .own_command(exe, &["tree-write", "--file"], "/etc/app/app.env")
            .unwrap();
        assert_eq!(
            process::describe(&write),
            "/usr/bin/leger-backup tree-write --file /etc/app/app.env"
        );
        let read = podman
            .own_command(exe, &["volume-tar", "--host"], "/srv/db")
            .unwrap();
        assert_eq!(
            process::describe(&read),
            "/usr/bin/leger-backup volume-tar --host /srv/db"
        );
        let err = podman
            .own_command(exe, &["tree-write"], "--file")
            .unwrap_err();
        assert!(
            err.message.contains("not an absolute path"),
            "{}",
            err.message
        );
    }

    #[test]
    fn inspect_json_with_null_maps() {
        let json =
            r#"[{"Name":"v","Driver":"local","Mountpoint":"/x","Labels":null,"Options":{}}]"#;
        let v: Vec<VolumeInfo> = serde_json::from_str(json).unwrap();
        assert!(v[0].labels.is_empty());
    }
}
