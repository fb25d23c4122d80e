//! `backup.targets` and `backup.repositories` as the user wrote them, and
//! their checks: a mistake here sends backups nowhere, so every one is an
//! error naming the file and the key, with the fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

use super::{PasswordSource, RepositoryConfig, LOCAL};
use crate::error::{Error, Result};

/// One entry of `backup.repositories`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRepository {
    url: String,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    env_file: Option<PathBuf>,
    keep_manual: Option<usize>,
    keep_automatic: Option<usize>,
}

/// Whether `name` can name a repository: it appears in tags, messages and
/// on the command line, so only `[A-Za-z0-9_-]+`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Check and resolve the raw entries; `expand` turns `~/x` into a path in
/// HOME, as for `backup.dir`.
pub(crate) fn resolve_repositories(
    raw: BTreeMap<String, RawRepository>,
    file: &Path,
    expand: impl Fn(&Path) -> PathBuf,
) -> Result<BTreeMap<String, RepositoryConfig>> {
    let mut out = BTreeMap::new();
    for (name, r) in raw {
        let key = format!("backup.repositories.{name}");
        let bad = |what: String, hint: &str| {
            Error::config(format!("{}: {key}: {what}", file.display())).with_hint(hint.to_owned())
        };
        if name == LOCAL {
            return Err(bad(
                "`local` is the backup directory, not a repository".into(),
                "give the repository another name",
            ));
        }
        if !valid_name(&name) {
            return Err(bad(
                "a repository name is letters, digits, `_` and `-` only".into(),
                "rename the repository (the key under `repositories:`)",
            ));
        }
        if r.url.trim().is_empty() {
            return Err(bad(
                "`url` is empty".into(),
                "set `url:` to a restic repository (`s3:https://host/bucket`, `rest:https://host/`, `sftp:user@host:/path`, a path)",
            ));
        }
        let password =
            match (r.password_file, r.password_command) {
                (Some(f), None) => PasswordSource::File(expand(&f)),
                (None, Some(c)) if !c.trim().is_empty() => PasswordSource::Command(c),
                (Some(_), Some(_)) => {
                    return Err(bad(
                        "both `password_file` and `password_command` are set".into(),
                        "keep exactly one of them",
                    ))
                }
                _ => return Err(bad(
                    "no `password_file` or `password_command`".into(),
                    "set `password_file:` to a file (chmod 600) holding the repository's password",
                )),
            };
        out.insert(
            name.clone(),
            RepositoryConfig {
                name,
                // A local path repository may be written `~/...` too.
                url: match r.url.strip_prefix("~/") {
                    Some(_) => expand(Path::new(&r.url)).display().to_string(),
                    None => r.url,
                },
                password,
                env_file: r.env_file.map(|f| expand(&f)),
                keep_manual: r.keep_manual,
                keep_automatic: r.keep_automatic,
            },
        );
    }
    Ok(out)
}

/// Check `backup.targets`: each one `local` or a configured repository.
pub(crate) fn check_targets(
    targets: &[String],
    repositories: &BTreeMap<String, RepositoryConfig>,
    file: &Path,
) -> Result<()> {
    if targets.is_empty() {
        return Err(Error::config(format!(
            "{}: backup.targets: empty: automatic backups would go nowhere",
            file.display()
        ))
        .with_hint("list `local` and/or repositories of `backup.repositories`"));
    }
    for target in targets {
        if target != LOCAL && !repositories.contains_key(target) {
            return Err(Error::config(format!(
                "{}: backup.targets: `{target}` is neither `local` nor a repository of `backup.repositories`",
                file.display()
            ))
            .with_hint(known_names(repositories)));
        }
    }
    Ok(())
}

/// "the repositories configured are: a, b" (or that there are none).
pub fn known_names(repositories: &BTreeMap<String, RepositoryConfig>) -> String {
    if repositories.is_empty() {
        "no repository is configured: add one under `backup.repositories` in the config file"
            .to_owned()
    } else {
        let names: Vec<&str> = repositories.keys().map(String::as_str).collect();
        format!(
            "the repositories configured under `backup.repositories` are: {}",
            names.join(", ")
        )
    }
}

/// `config show --json` shows a repository without its secrets: the URL
/// redacted, the password only by where it comes from.
impl Serialize for RepositoryConfig {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            url: String,
            password_file: Option<&'a Path>,
            password_command: Option<&'a str>,
            env_file: Option<&'a Path>,
            keep_manual: Option<usize>,
            keep_automatic: Option<usize>,
        }
        let (password_file, password_command) = match &self.password {
            PasswordSource::File(f) => (Some(f.as_path()), None),
            PasswordSource::Command(_) => (None, Some("(set)")),
        };
        Shown {
            url: self.display_url(),
            password_file,
            password_command,
            env_file: self.env_file.as_deref(),
            keep_manual: self.keep_manual,
            keep_automatic: self.keep_automatic,
        }
        .serialize(s)
    }
}
