//! leger-backup's settings in leger's `~/.config/leger/config.yaml`
//! (`/etc/leger/config.yaml` for `--system`), under the `backup:` and
//! `auto:` keys. Other top-level keys belong to leger and are left alone;
//! inside our two sections an unknown key or a wrong type is an error naming
//! file, line and column, because a typo there silently disables backups.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::Layout;

/// How volume archives are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd, multithreaded: the default, several times faster than gzip.
    Zstd,
    /// gzip through flate2: the format leger documents.
    Gzip,
    /// Plain tar.
    None,
}

impl Compression {
    /// File extension of an archive (`tar.zst`).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Zstd => "tar.zst",
            Compression::Gzip => "tar.gz",
            Compression::None => "tar",
        }
    }

    /// The default level for this compressor. zstd 1: on the benchmark's
    /// data it costs half the CPU of level 3 for an archive 1.7% larger,
    /// which is what lets a backup keep pace with reading the volume.
    pub fn default_level(self) -> i32 {
        match self {
            Compression::Zstd => 1,
            Compression::Gzip => 6,
            Compression::None => 0,
        }
    }
}

/// A duration written as seconds (`600`) or with a unit (`10m`, `90s`, `1h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u64")]
pub struct Seconds(pub u64);

impl From<Seconds> for u64 {
    fn from(s: Seconds) -> u64 {
        s.0
    }
}

impl Seconds {
    /// As a std duration.
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Seconds(n)),
            Raw::Text(t) => parse_duration(&t).map(Seconds).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid duration {t:?}: use seconds (600) or a number with s, m, h or d (10m)"
                ))
            }),
        }
    }
}

/// Parse `90`, `90s`, `10m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Which host paths mounted into containers are backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindMounts {
    /// Those classified as the deployment's data (the default).
    Data,
    /// None, except what an `include:` glob names; referenced files
    /// (environment files, bind-mounted single files) still are.
    None,
}

/// A glob over absolute host paths (`/srv/media/**`, `~/photos/**`, `~`):
/// `*` and `?` stay within one path component, `**` crosses them.
/// Checked when the config is read, so a typo is an error with its line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PathGlob(pub String);

impl PathGlob {
    /// Compile, with `~/` taken from `home`.
    pub fn compile(&self, home: &Path) -> std::result::Result<globset::Glob, globset::Error> {
        let text = match self.0.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                format!("{}{rest}", home.display())
            }
            _ => self.0.clone(),
        };
        globset::GlobBuilder::new(&text)
            .literal_separator(true)
            .build()
    }
}

impl<'de> Deserialize<'de> for PathGlob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if !text.starts_with('/') && !text.starts_with("~/") && text != "~" {
            return Err(serde::de::Error::custom(format!(
                "invalid glob {text:?}: host path globs are absolute (/srv/media/**) or start with ~/"
            )));
        }
        let glob = PathGlob(text);
        glob.compile(Path::new("/"))
            .map_err(|e| serde::de::Error::custom(format!("invalid glob {:?}: {e}", glob.0)))?;
        Ok(glob)
    }
}

/// Per-deployment settings under `backup.deployments`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeploymentBackup {
    /// Host paths to back up although they are not classified as data (a
    /// whole-home bind, a path outside the usual places).
    #[serde(default)]
    pub include: Vec<PathGlob>,
    /// Host paths to leave out (a 2 TB media folder); wins over `include`.
    #[serde(default)]
    pub exclude: Vec<PathGlob>,
}

/// `backup:` as written in the file; `None` means "not set".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackup {
    dir: Option<PathBuf>,
    compression: Option<Compression>,
    level: Option<i32>,
    threads: Option<u32>,
    keep_manual: Option<usize>,
    keep_automatic: Option<usize>,
    keep_before_change: Option<usize>,
    keep_scheduled: Option<usize>,
    auto_prune: Option<bool>,
    stop_services: Option<bool>,
    start_timeout: Option<Seconds>,
    bind_mounts: Option<BindMounts>,
    #[serde(default)]
    deployments: BTreeMap<String, DeploymentBackup>,
    targets: Option<Vec<String>>,
    #[serde(default)]
    repositories: BTreeMap<String, crate::repository::settings::RawRepository>,
    notify: Option<crate::notify::NotifyConfig>,
}

/// Per-deployment settings under `auto.deployments`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeploymentAuto {
    /// Automatic backups for this deployment (overrides `auto.enabled`).
    pub enabled: Option<bool>,
    /// When to back it up (overrides `auto.schedule`).
    pub schedule: Option<crate::auto::schedule::Schedule>,
    /// How its automatic backups treat its services (see [`crate::auto::modes`]).
    pub mode: Option<crate::auto::schedule::Mode>,
    /// Commands run before a `dump` backup, with the services up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<String>,
    /// Commands run after a `dump` backup, whether it succeeded or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

/// `auto:` as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuto {
    enabled: Option<bool>,
    #[serde(default)]
    deployments: BTreeMap<String, DeploymentAuto>,
    min_interval: Option<Seconds>,
    coalesce_seconds: Option<Seconds>,
    on_shutdown: Option<bool>,
    stop_timeout: Option<Seconds>,
    live_hooks: Option<bool>,
    schedule: Option<crate::auto::schedule::Schedule>,
    randomized_delay: Option<Seconds>,
}

/// The whole file: our two sections, everything else is leger's.
#[derive(Debug, Clone, Default, Deserialize)]
struct RawFile {
    #[serde(default)]
    backup: Option<RawBackup>,
    #[serde(default)]
    auto: Option<RawAuto>,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Built-in default.
    Default,
    /// The config file.
    File,
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting<T> {
    /// The effective value.
    pub value: T,
    /// Its origin.
    pub source: Source,
}

impl<T> Setting<T> {
    fn pick(set: Option<T>, default: T) -> Setting<T> {
        match set {
            Some(value) => Setting {
                value,
                source: Source::File,
            },
            None => Setting {
                value: default,
                source: Source::Default,
            },
        }
    }
}

/// Effective `backup:` settings.
#[derive(Debug, Clone, Serialize)]
pub struct BackupConfig {
    /// Where backups are stored.
    pub dir: Setting<PathBuf>,
    /// Archive compression.
    pub compression: Setting<Compression>,
    /// Compression level.
    pub level: Setting<i32>,
    /// Compression threads, 0 = one per core.
    pub threads: Setting<u32>,
    /// Manual backups kept per deployment by `prune`.
    pub keep_manual: Setting<usize>,
    /// Automatic backups kept per deployment (other than before-change).
    pub keep_automatic: Setting<usize>,
    /// Backups taken before a change (`before-remove`, `before-apply`,
    /// `pre-restore`) kept per deployment: a class of their own, so that
    /// on-stop backups never push them out.
    pub keep_before_change: Setting<usize>,
    /// Scheduled backups (reason `scheduled`) kept per deployment: a class
    /// of their own, so that a frequent schedule never pushes out on-stop
    /// backups, nor the reverse.
    pub keep_scheduled: Setting<usize>,
    /// Prune after each automatic backup.
    pub auto_prune: Setting<bool>,
    /// Stop services for a consistent backup (unless `--live`).
    pub stop_services: Setting<bool>,
    /// How long services may take to become active after a restore.
    pub start_timeout: Setting<Seconds>,
    /// Which bind-mounted host paths are backed up.
    pub bind_mounts: Setting<BindMounts>,
    /// Per-deployment `include:`/`exclude:` globs.
    pub deployments: BTreeMap<String, DeploymentBackup>,
    /// Where a backup goes when no `--to` is given: `local` and/or names
    /// of `repositories`.
    pub targets: Setting<Vec<String>>,
    /// The restic repositories, by name (`backup.repositories`).
    pub repositories: BTreeMap<String, crate::repository::RepositoryConfig>,
    /// Where notifications of backups go (`backup.notify`).
    pub notify: crate::notify::NotifyConfig,
}

impl BackupConfig {
    /// The host-path settings of `deployment` (empty when not listed).
    pub fn deployment(&self, deployment: &str) -> DeploymentBackup {
        self.deployments
            .get(deployment)
            .cloned()
            .unwrap_or_default()
    }
}

/// Effective `auto:` settings.
#[derive(Debug, Clone, Serialize)]
pub struct AutoConfig {
    /// Automatic backups for deployments not listed under `deployments`.
    pub enabled: Setting<bool>,
    /// Per-deployment overrides.
    pub deployments: BTreeMap<String, DeploymentAuto>,
    /// At most one stop-hook backup per deployment in this interval.
    pub min_interval: Setting<Seconds>,
    /// Stop hooks within this window of a finished backup coalesce into it.
    pub coalesce_seconds: Setting<Seconds>,
    /// Back up when the whole user manager is stopping (logout, shutdown).
    pub on_shutdown: Setting<bool>,
    /// `TimeoutStopSec=` of services with the stop hook.
    pub stop_timeout: Setting<Seconds>,
    /// leger hooks back up without stopping services.
    pub live_hooks: Setting<bool>,
    /// When deployments are backed up on a schedule (`off` or a calendar
    /// expression), unless their own `schedule` says otherwise.
    pub schedule: Setting<crate::auto::schedule::Schedule>,
    /// `RandomizedDelaySec=` of the schedule timers.
    pub randomized_delay: Setting<Seconds>,
}

impl AutoConfig {
    /// Whether automatic backups are on for `deployment`.
    pub fn enabled_for(&self, deployment: &str) -> bool {
        self.deployments
            .get(deployment)
            .and_then(|d| d.enabled)
            .unwrap_or(self.enabled.value)
    }
}

/// Effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The file read (it may not exist).
    pub file: PathBuf,
    /// Whether it existed.
    pub file_exists: bool,
    /// `backup:` section.
    pub backup: BackupConfig,
    /// `auto:` section.
    pub auto: AutoConfig,
}

/// The largest config file read, in bytes: a real one is a few hundred;
/// a symlink to `/dev/zero` must not hang the generator.
pub const CONFIG_FILE_MAX: u64 = 1 << 20;

impl Config {
    /// Load the config for `layout`; a missing file means all defaults.
    /// Read within [`CONFIG_FILE_MAX`] and never blocking: the generator
    /// loads it at every `daemon-reload`.
    pub fn load(layout: &Layout) -> Result<Config> {
        let file = layout.config_file();
        match crate::regular_file::read_capped(&file, CONFIG_FILE_MAX) {
            Ok(bytes) => Self::parse(&String::from_utf8_lossy(&bytes), &file, layout),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Self::resolve(RawFile::default(), file, false, layout)
            }
            Err(e) => Err(Error::config(e.to_string())),
        }
    }

    /// Parse config text; errors name `file`, line and column.
    pub fn parse(text: &str, file: &Path, layout: &Layout) -> Result<Config> {
        let raw: RawFile = if text.trim().is_empty() {
            RawFile::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&e, file))?
        };
        Self::resolve(raw, file.to_owned(), true, layout)
    }

    fn resolve(raw: RawFile, file: PathBuf, file_exists: bool, layout: &Layout) -> Result<Config> {
        let mut b = raw.backup.unwrap_or_default();
        let repositories = crate::repository::settings::resolve_repositories(
            std::mem::take(&mut b.repositories),
            &file,
            |p| expand_home(p, layout),
        )?;
        let targets = Setting::pick(b.targets.take(), vec![crate::repository::LOCAL.to_owned()]);
        crate::repository::settings::check_targets(&targets.value, &repositories, &file)?;
        let a = raw.auto.unwrap_or_default();
        let off = crate::auto::schedule::Schedule::Off;
        let compression = Setting::pick(b.compression, Compression::Zstd);
        let default_level = compression.value.default_level();
        let dir = b.dir.map(|d| expand_home(&d, layout));
        Config {
            file,
            file_exists,
            backup: BackupConfig {
                dir: Setting::pick(dir, layout.default_backup_dir()),
                level: Setting::pick(b.level, default_level),
                compression,
                threads: Setting::pick(b.threads, 0),
                keep_manual: Setting::pick(b.keep_manual, 5),
                keep_automatic: Setting::pick(b.keep_automatic, 10),
                keep_before_change: Setting::pick(b.keep_before_change, 5),
                keep_scheduled: Setting::pick(b.keep_scheduled, 7),
                auto_prune: Setting::pick(b.auto_prune, true),
                stop_services: Setting::pick(b.stop_services, true),
                start_timeout: Setting::pick(b.start_timeout, Seconds(120)),
                bind_mounts: Setting::pick(b.bind_mounts, BindMounts::Data),
                deployments: b.deployments,
                targets,
                repositories,
                notify: b.notify.unwrap_or_default(),
            },
            auto: AutoConfig {
                enabled: Setting::pick(a.enabled, true),
                deployments: a.deployments,
                min_interval: Setting::pick(a.min_interval, Seconds(600)),
                coalesce_seconds: Setting::pick(a.coalesce_seconds, Seconds(60)),
                on_shutdown: Setting::pick(a.on_shutdown, false),
                stop_timeout: Setting::pick(a.stop_timeout, Seconds(900)),
                live_hooks: Setting::pick(a.live_hooks, false),
                schedule: Setting::pick(a.schedule, off),
                randomized_delay: Setting::pick(a.randomized_delay, Seconds(300)),
            },
        }
        .checked_commands()
    }

    fn checked_commands(self) -> Result<Config> {
        crate::auto::schedule::check_commands(&self.auto, &self.file)?;
        Ok(self)
    }
}

/// `~/x` and relative paths in the config are taken from HOME.
fn expand_home(path: &Path, layout: &Layout) -> PathBuf {
    let home = layout.leger_config_dir.parent().and_then(Path::parent);
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) if layout.scope == crate::layout::Scope::User => home.join(rest),
        _ => path.to_owned(),
    }
}

fn yaml_error(err: &serde_yaml_ng::Error, file: &Path) -> Error {
    let location = err
        .location()
        .map(|l| format!(":{}:{}", l.line(), l.column()))
        .unwrap_or_default();
    let mut message = err.to_string();
    if let Some(idx) = message.find(" at line ") {
        message.truncate(idx);
    }
    Error::config(format!("{}{location}: {message}", file.display())).with_hint(
        "fix the `backup:`/`auto:` settings (see `leger-backup config show` for the keys and defaults)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::user_at(Path::new("/h"))
    }

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/h/.config/leger/config.yaml"), &layout())
    }

    #[test]
    fn defaults_without_file() {
        let c = parse("").unwrap();
        assert_eq!(c.backup.compression.value, Compression::Zstd);
        assert_eq!(c.backup.level.value, 1);
        assert_eq!(c.backup.threads.value, 0);
        assert_eq!(c.backup.keep_manual.value, 5);
        assert_eq!(c.backup.keep_automatic.value, 10);
        assert_eq!(c.backup.keep_before_change.value, 5);
        assert_eq!(c.auto.min_interval.value, Seconds(600));
        assert_eq!(c.backup.dir.source, Source::Default);
    }

    #[test]
    fn values_and_sources() {
        let c = parse(
            "leger_own_key: 1\nbackup:\n  dir: ~/bk\n  compression: gzip\n  keep_automatic: 3\nauto:\n  min_interval: 10m\n  deployments:\n    web: {enabled: false}\n",
        )
        .unwrap();
        assert_eq!(c.backup.dir.value, PathBuf::from("/h/bk"));
        assert_eq!(c.backup.compression.value, Compression::Gzip);
        assert_eq!(c.backup.level.value, 6);
        assert_eq!(c.backup.keep_automatic.source, Source::File);
        assert_eq!(c.backup.keep_before_change.source, Source::Default);
        assert_eq!(c.auto.min_interval.value, Seconds(600));
        assert!(!c.auto.enabled_for("web"));
        assert!(c.auto.enabled_for("db"));
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let err = parse("backup:\n  keep_manaul: 3\n").unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::Config);
        assert!(err.message.contains("config.yaml:2:"), "{}", err.message);
        assert!(err.message.contains("keep_manaul"), "{}", err.message);
    }

    #[test]
    fn wrong_type_is_an_error() {
        let err = parse("backup:\n  keep_manual: lots\n").unwrap_err();
        assert!(err.message.contains(":2:"), "{}", err.message);
        let err = parse("backup:\n  keep_before_change: -1\n").unwrap_err();
        assert!(err.message.contains(":2:"), "{}", err.message);
        let err = parse("auto:\n  min_interval: soon\n").unwrap_err();
        assert!(err.message.contains("invalid duration"), "{}", err.message);
    }

    #[test]
    fn bind_mounts_and_deployment_globs() {
        let c = parse("").unwrap();
        assert_eq!(c.backup.bind_mounts.value, BindMounts::Data);
        assert_eq!(c.backup.deployment("album"), DeploymentBackup::default());
        let c = parse(
            "backup:\n  bind_mounts: none\n  deployments:\n    album:\n      include: [\"~/Pictures/**\"]\n      exclude:\n        - /srv/media/**\n",
        )
        .unwrap();
        assert_eq!(c.backup.bind_mounts.value, BindMounts::None);
        let d = c.backup.deployment("album");
        assert_eq!(d.include, [PathGlob("~/Pictures/**".into())]);
        assert_eq!(d.exclude, [PathGlob("/srv/media/**".into())]);
        let glob = d.include[0]
            .compile(Path::new("/h"))
            .unwrap()
            .compile_matcher();
        assert!(glob.is_match("/h/Pictures/2024/a.jpg"));
    }

    #[test]
    fn bad_globs_and_keys_name_line_and_column() {
        let err =
            parse("backup:\n  deployments:\n    a:\n      exclude: [\"media/**\"]\n").unwrap_err();
        assert!(err.message.contains("config.yaml:4:"), "{}", err.message);
        assert!(err.message.contains("absolute"), "{}", err.message);
        let err =
            parse("backup:\n  deployments:\n    a:\n      exclude: [\"/srv/[x\"]\n").unwrap_err();
        assert!(err.message.contains(":4:"), "{}", err.message);
        let err = parse("backup:\n  deployments:\n    a:\n      exclud: []\n").unwrap_err();
        assert!(err.message.contains(":4:"), "{}", err.message);
        let err = parse("backup:\n  bind_mounts: all\n").unwrap_err();
        assert!(err.message.contains(":2:"), "{}", err.message);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("2h"), Some(7200));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("5y"), None);
    }

    const REPOS: &str = "backup:\n  targets: [local, offsite]\n  repositories:\n    offsite:\n      url: rest:https://u:secret@h/\n      password_file: ~/.config/leger/offsite.password\n      env_file: ~/.config/leger/offsite.env\n      keep_manual: 2\n";

    #[test]
    fn repositories_and_targets_resolve() {
        let c = parse("").unwrap();
        assert_eq!(c.backup.targets.value, ["local"]);
        assert!(c.backup.repositories.is_empty());
        let c = parse(REPOS).unwrap();
        assert_eq!(c.backup.targets.value, ["local", "offsite"]);
        assert_eq!(c.backup.targets.source, Source::File);
        let r = &c.backup.repositories["offsite"];
        assert_eq!(r.name, "offsite");
        assert_eq!(
            r.password,
            crate::repository::PasswordSource::File("/h/.config/leger/offsite.password".into())
        );
        assert_eq!(r.env_file, Some("/h/.config/leger/offsite.env".into()));
        assert_eq!((r.keep_manual, r.keep_automatic), (Some(2), None));
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("secret"), "{json}");
        assert!(json.contains("rest:https://***@h/"), "{json}");
        let home = parse("backup:\n  repositories:\n    p: {url: ~/repo, password_file: /p}\n");
        assert_eq!(home.unwrap().backup.repositories["p"].url, "/h/repo");
    }

    #[test]
    fn repository_mistakes_name_the_file_and_key() {
        let repo = |body: &str| format!("backup:\n  repositories:\n    {body}\n");
        for (text, expected) in [
            (
                repo("r: {url: /x, password_file: /p, pasword_command: c}"),
                "config.yaml:3:",
            ),
            (
                repo("r: {url: /x, password_file: /p, password_command: c}"),
                "both",
            ),
            (repo("r: {url: /x}"), "no `password_file`"),
            (
                repo("local: {url: /x, password_file: /p}"),
                "`local` is the backup directory",
            ),
            (
                repo("\"a b\": {url: /x, password_file: /p}"),
                "letters, digits",
            ),
            (repo("r: {url: \" \", password_file: /p}"), "`url` is empty"),
            (
                "backup:\n  targets: [local, nowhere]\n".to_owned(),
                "`nowhere` is neither",
            ),
            ("backup:\n  targets: []\n".to_owned(), "empty"),
        ] {
            let err = parse(&text).unwrap_err();
            assert_eq!(err.kind, crate::error::ErrorKind::Config, "{text}");
            assert!(err.message.contains("config.yaml"), "{}", err.message);
            assert!(err.message.contains(expected), "{text}: {}", err.message);
            assert!(err.hint.is_some(), "{text}");
        }
    }

    proptest::proptest! {
        /// A damaged config file is an error, never a crash of the generator
        /// or a hook.
        #[test]
        fn loader_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse(&text);
        }

        /// Arbitrary text inside our sections: an error or a config, no panic.
        #[test]
        fn loader_never_panics_inside_sections(body in "[ -~\n]{0,200}") {
            let _ = parse(&format!("backup:\n  {body}\nauto:\n  {body}\n"));
        }
    }
}
