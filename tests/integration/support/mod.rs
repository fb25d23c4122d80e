//! Test harnesses: a private HOME for CLI tests and a handle on the testbed.

#![allow(dead_code)]

pub mod deploy;
pub mod packaging;
pub mod receiver;
pub mod repo_config;
pub mod servers;
pub mod tar_craft;
pub mod testbed;

use std::path::{Path, PathBuf};
use std::process::Output;

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture directory under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// A `systemctl` stand-in for which every unit asked about is inactive
/// (and every other call succeeds).
pub const SYSTEMCTL_ALL_INACTIVE: &str = r#"#!/bin/sh
case " $* " in
  *" show --property=ActiveState "*)
    seen=; for a; do [ -n "$seen" ] && echo inactive; [ "$a" = -- ] && seen=1; done ;;
esac
exit 0
"#;

/// Runs the real binary with its own HOME and a clean environment.
pub struct TestEnv {
    /// Temporary HOME, removed on drop.
    pub home: tempfile::TempDir,
}

impl TestEnv {
    /// A fresh, empty HOME.
    pub fn new() -> Self {
        TestEnv {
            home: tempfile::tempdir().expect("temp HOME"),
        }
    }

    /// Path inside HOME.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.home.path().join(rel)
    }

    /// Executable stand-ins (`(name, script)`) in `fake-bin/` of this
    /// HOME; returns a `PATH` that finds them first.
    pub fn fake_tools(&self, tools: &[(&str, &str)]) -> String {
        use std::os::unix::fs::PermissionsExt;
        for (name, script) in tools {
            let path = self.write(&format!("fake-bin/{name}"), script);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        format!(
            "{}:{}",
            self.path("fake-bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// Write a file inside HOME, creating parent directories.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Copy a fixture deployment into `rel` (relative to HOME).
    pub fn copy_fixture(&self, name: &str, rel: &str) -> PathBuf {
        let dest = self.path(rel);
        copy_dir(&fixture(name), &dest);
        dest
    }

    /// Where the binary looks for an installed leger-backup user generator
    /// (`LEGER_BACKUP_GENERATOR_DIRS`): empty unless a test installs one,
    /// whatever the host has.
    pub fn generator_dir(&self) -> PathBuf {
        self.path("user-generators")
    }

    /// A command for the binary with HOME set and XDG variables cleared.
    pub fn command(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(
            self.command_for(&assert_cmd::cargo::cargo_bin("leger-backup")),
        )
    }

    /// `program` with the environment of [`Self::command`] (a wrapper that
    /// then runs the binary, such as `sh -c 'ulimit ...; exec ...'`).
    pub fn command_for(&self, program: &Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        cmd.env_clear()
            .env("HOME", self.home.path())
            .env("LEGER_BACKUP_GENERATOR_DIRS", self.generator_dir())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .current_dir(self.home.path());
        cmd
    }

    /// Run with `args`, return the output (success or not).
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }
}

/// Recursively copy `src` to `dest`.
pub fn copy_dir(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dest.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// stdout as a string.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as a string.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
