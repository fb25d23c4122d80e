//! The repository entries of leger's config and their secrets, written in
//! the testbed as the test user, in the format issue 13 fixes:
//!
//! ```yaml
//! backup:
//!   targets: [local, NAME]          # only when a test sets targets
//!   repositories:
//!     NAME:
//!       url: <restic repository string>
//!       password_file: ~/.config/leger/NAME.password   # 0600
//!       env_file: ~/.config/leger/NAME.env             # KEY=VALUE lines, 0600
//! ```
//!
//! The config is put back and the secret files are removed when the guard
//! drops, even when the test fails.

use super::deploy::LegerConfig;
use super::servers::{RestServer, S3Server};
use super::testbed::Testbed;

/// One repository of `backup.repositories` with its secrets.
#[derive(Debug, Clone)]
pub struct RepoEntry {
    /// Its name in the config (what `--to`, `--from`, `--repo` take).
    pub name: String,
    /// The restic repository string.
    pub url: String,
    /// The repository's password (the password file's content).
    pub password: String,
    /// The env file's `KEY=VALUE` lines.
    pub env: Vec<(&'static str, String)>,
}

impl RepoEntry {
    /// A repository on `server` (REST: one repository per server).
    pub fn rest(name: &str, server: &RestServer) -> RepoEntry {
        RepoEntry {
            name: name.to_owned(),
            url: server.url(),
            password: format!("{name}-repository-password"),
            env: server.env(),
        }
    }

    /// A repository at `NAME` in the bucket of `server`.
    pub fn s3(name: &str, server: &S3Server) -> RepoEntry {
        RepoEntry {
            name: name.to_owned(),
            url: server.url_at(name),
            password: format!("{name}-repository-password"),
            env: server.env(),
        }
    }

    /// The password file, as a shell word for the test user (`$HOME/...`).
    pub fn password_path(&self) -> String {
        format!("$HOME/.config/leger/{}.password", self.name)
    }

    /// The env file, as a shell word for the test user.
    pub fn env_path(&self) -> String {
        format!("$HOME/.config/leger/{}.env", self.name)
    }

    /// The env file's text.
    pub fn env_text(&self) -> String {
        self.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }

    /// A shell command running `restic ARGS` on this repository inside the
    /// testbed with the entry's secrets (for checks made without
    /// leger-backup, as a user of plain restic would).
    pub fn restic(&self, args: &str) -> String {
        format!(
            "( set -a; . \"{env}\"; set +a; restic --repo '{url}' --password-file \"{pw}\" {args} )",
            env = self.env_path(),
            url = self.url,
            pw = self.password_path(),
        )
    }

    /// This entry under `repositories:` (indented for it).
    fn yaml(&self) -> String {
        format!(
            "    {name}:\n      url: \"{url}\"\n      password_file: ~/.config/leger/{name}.password\n      env_file: ~/.config/leger/{name}.env\n",
            name = self.name,
            url = self.url
        )
    }
}

/// The repositories set in leger's config for one test, with their
/// secret files; all undone on drop.
pub struct Repositories<'a> {
    tb: &'a Testbed,
    entries: Vec<RepoEntry>,
    _config: LegerConfig<'a>,
}

impl<'a> Repositories<'a> {
    /// Write the secret files (0600) of `entries` and a config naming
    /// them, with `backup.targets` when `targets` is given.
    pub fn set(tb: &'a Testbed, entries: &[RepoEntry], targets: Option<&[&str]>) -> Self {
        for entry in entries {
            write_secrets(tb, entry);
        }
        let mut yaml = String::from("backup:\n");
        if let Some(targets) = targets {
            yaml.push_str(&format!("  targets: [{}]\n", targets.join(", ")));
        }
        yaml.push_str("  repositories:\n");
        for entry in entries {
            yaml.push_str(&entry.yaml());
        }
        let config = LegerConfig::set(tb, &yaml);
        Repositories {
            tb,
            entries: entries.to_vec(),
            _config: config,
        }
    }
}

impl Drop for Repositories<'_> {
    fn drop(&mut self) {
        for entry in &self.entries {
            self.tb.sh(&format!(
                "rm -f \"{}\" \"{}\"",
                entry.password_path(),
                entry.env_path()
            ));
        }
    }
}

/// The password file and the env file of `entry`, both 0600, written
/// through argv (not through a shell's parsing of their text).
pub fn write_secrets(tb: &Testbed, entry: &RepoEntry) {
    let out = tb.exec(&[
        "sh",
        "-c",
        "umask 077 && mkdir -p ~/.config/leger && d=~/.config/leger &&
         printf '%s' \"$2\" > \"$d/$1.password\" && printf '%s' \"$3\" > \"$d/$1.env\" &&
         chmod 600 \"$d/$1.password\" \"$d/$1.env\"",
        "sh",
        &entry.name,
        &entry.password,
        &entry.env_text(),
    ]);
    assert!(
        out.status.success(),
        "writing the secrets of {}: {}",
        entry.name,
        String::from_utf8_lossy(&out.stderr)
    );
}
