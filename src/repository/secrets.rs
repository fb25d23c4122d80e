//! The secrets of a repository: its password (a file or a command) and its
//! env file (`KEY=VALUE` lines: S3 keys and the like).
//!
//! Rules (issue 13): never in config.yaml itself, never in argv (restic
//! gets them through its environment and `RESTIC_PASSWORD_FILE`), never
//! printed, logged or stored in metadata; a secret file readable by others
//! is refused, naming the file and the `chmod` that fixes it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use super::{PasswordSource, RepositoryConfig};
use crate::error::{Error, Result};

/// The largest secret file read: a password or a few keys, never more.
const SECRET_FILE_MAX: u64 = 64 << 10;

/// Values shorter than this are not scrubbed from messages: a one-letter
/// value (a region `a`) would make every message unreadable, and is no
/// secret worth the name.
const SCRUB_MIN: usize = 4;

/// Variables of the caller that must not reach restic: they would pick
/// another repository, password or credentials than the config says.
const FOREIGN_PREFIXES: [&str; 2] = ["RESTIC_", "AWS_"];

/// `url` with any `user:password@` replaced by `***@`, for messages.
/// A bare `user@` (sftp's login) is no secret and stays. Errs on the side
/// of hiding: anything before the first `@` that holds a `:` is hidden.
pub fn redact_url(url: &str) -> String {
    let start = match url.find("://") {
        Some(i) => i + 3,
        None => url.find(':').map_or(0, |i| i + 1),
    };
    let rest = &url[start..];
    match rest.find('@') {
        Some(at) if rest[..at].contains(':') => format!("{}***{}", &url[..start], &rest[at..]),
        _ => url.to_owned(),
    }
}

/// What restic's environment gets for one repository, and the secret
/// values to scrub from anything restic prints.
#[derive(Clone, Default)]
pub struct ResticEnv {
    vars: Vec<(String, String)>,
    secrets: Vec<String>,
}

impl std::fmt::Debug for ResticEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.vars.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ResticEnv").field("keys", &keys).finish()
    }
}

impl ResticEnv {
    /// Check the secret files of `config` (present, private, ours) and
    /// read the env file.
    pub fn load(config: &RepositoryConfig) -> Result<ResticEnv> {
        let mut env = ResticEnv::default();
        env.vars
            .push(("RESTIC_REPOSITORY".to_owned(), config.url.clone()));
        match &config.password {
            PasswordSource::File(file) => {
                let text = read_private(file, "password file", &config.name)?;
                env.secrets.push(text.trim().to_owned());
                env.vars.push((
                    "RESTIC_PASSWORD_FILE".to_owned(),
                    file.display().to_string(),
                ));
            }
            PasswordSource::Command(command) => {
                env.vars
                    .push(("RESTIC_PASSWORD_COMMAND".to_owned(), command.clone()));
            }
        }
        if let Some(file) = &config.env_file {
            let text = read_private(file, "env file", &config.name)?;
            for (key, value) in parse_env(&text, file)? {
                env.secrets.push(value.clone());
                env.vars.push((key, value));
            }
        }
        env.secrets.retain(|s| s.len() >= SCRUB_MIN);
        // The URL's own password, when it carries one.
        if let Some(password) = url_password(&config.url) {
            env.secrets.push(password.to_owned());
        }
        Ok(env)
    }

    /// Give `cmd` this environment, after removing the caller's `RESTIC_*`
    /// and `AWS_*` variables.
    pub fn apply(&self, cmd: &mut Command) {
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if FOREIGN_PREFIXES.iter().any(|p| key.starts_with(p)) {
                cmd.env_remove(key.as_ref());
            }
        }
        for (key, value) in &self.vars {
            cmd.env(key, value);
        }
    }

    /// `text` with every secret value replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if secret.len() >= SCRUB_MIN {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }

    /// The variables set, for tests.
    #[cfg(test)]
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }
}

/// The password of a `scheme://user:password@host` URL.
fn url_password(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let userinfo = &rest[..rest.find('@')?];
    let (_, password) = userinfo.split_once(':')?;
    (password.len() >= SCRUB_MIN).then_some(password)
}

/// Read a secret file after checking it is a file of the effective user
/// that no one else may read or write.
fn read_private(path: &Path, what: &str, repository: &str) -> Result<String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::user(format!(
                "the {what} of repository {repository}, {}, does not exist",
                path.display()
            ))
            .with_hint(format!(
                "create it (then `chmod 600 {}`) or fix `backup.repositories.{repository}` in the config file",
                path.display()
            )))
        }
        Err(e) => return Err(Error::user(format!("{}: {e}", path.display()))),
    };
    check_private(path, what, &meta)?;
    let bytes = crate::regular_file::read_capped(path, SECRET_FILE_MAX)
        .map_err(|e| Error::user(format!("cannot read the {what} {}: {e}", path.display())))?;
    String::from_utf8(bytes)
        .map_err(|_| Error::user(format!("the {what} {} is not UTF-8 text", path.display())))
}

/// A secret file must be a regular file, ours, and closed to group and others.
fn check_private(path: &Path, what: &str, meta: &std::fs::Metadata) -> Result<()> {
    let shown = path.display();
    if !meta.is_file() {
        return Err(Error::user(format!(
            "the {what} {shown} is not a regular file"
        )));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(Error::user(format!(
            "the {what} {shown} is owned by uid {}, not by you (uid {euid}): refused, it holds secrets",
            meta.uid()
        ))
        .with_hint(format!("chown it to yourself and `chmod 600 {shown}`")));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::user(format!(
            "the {what} {shown} is open to others (mode {mode:04o}): refused, it holds secrets; \
             run `chmod 600 {shown}`"
        ))
        .with_hint(format!("chmod 600 {shown}")));
    }
    Ok(())
}

/// Parse an env file: `KEY=VALUE` lines, `#` comments and blank lines,
/// an optional `export `, one pair of surrounding quotes stripped. A bad
/// line is named by file and line, never quoted (it may hold a secret).
pub fn parse_env(text: &str, file: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let bad = |what: &str| {
            Error::user(format!("{}:{}: {what}", file.display(), n + 1)).with_hint(
                "write one `KEY=VALUE` per line (KEY in capitals, digits and `_`; `#` starts a comment)",
            )
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad("not a `KEY=VALUE` line"));
        };
        let key = key.trim();
        if !valid_key(key) {
            return Err(bad("the key is not `[A-Z_][A-Z0-9_]*`"));
        }
        out.push((key.to_owned(), unquote(value.trim()).to_owned()));
    }
    Ok(out)
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn urls_lose_their_passwords_only() {
        assert_eq!(redact_url("rest:https://u:p@h/"), "rest:https://***@h/");
        assert_eq!(redact_url("s3:https://h/b"), "s3:https://h/b");
        assert_eq!(redact_url("sftp:u@h:/p"), "sftp:u@h:/p");
        assert_eq!(redact_url("/srv/restic"), "/srv/restic");
        assert_eq!(
            redact_url("rest:http://user:pa:ss@127.0.0.1:8000/r"),
            "rest:http://***@127.0.0.1:8000/r"
        );
    }

    #[test]
    fn env_files_parse_and_bad_lines_are_named() {
        let file = Path::new("/c/offsite.env");
        let text =
            "# keys\n\nAWS_ACCESS_KEY_ID=abc\nexport AWS_SECRET_ACCESS_KEY=\"s e\"\nB2_X='y'\n";
        let vars = parse_env(text, file).unwrap();
        assert_eq!(
            vars,
            [
                ("AWS_ACCESS_KEY_ID".to_owned(), "abc".to_owned()),
                ("AWS_SECRET_ACCESS_KEY".to_owned(), "s e".to_owned()),
                ("B2_X".to_owned(), "y".to_owned()),
            ]
        );
        let err = parse_env("A=1\nhunter2secret\n", file).unwrap_err();
        assert!(
            err.message.starts_with("/c/offsite.env:2:"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        let err = parse_env("lower=1\n", file).unwrap_err();
        assert!(err.message.contains(":1:"), "{}", err.message);
        assert!(parse_env("1A=1\n", file).is_err());
    }

    fn config(dir: &Path) -> RepositoryConfig {
        RepositoryConfig {
            name: "offsite".into(),
            url: "rest:https://me:urlsecret@h/".into(),
            password: PasswordSource::File(dir.join("pw")),
            env_file: Some(dir.join("env")),
            keep_manual: None,
            keep_automatic: None,
        }
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn secret_files_must_exist_and_be_private() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path());
        let err = ResticEnv::load(&c).unwrap_err();
        assert!(err.message.contains("pw"), "{}", err.message);
        assert!(err.message.contains("does not exist"), "{}", err.message);
        assert!(err.hint.is_some());
        write(&tmp.path().join("pw"), "hunter22\n", 0o644);
        let err = ResticEnv::load(&c).unwrap_err();
        let pw = tmp.path().join("pw");
        assert!(
            err.message.contains(&format!("chmod 600 {}", pw.display())),
            "{}",
            err.message
        );
        write(&pw, "hunter22\n", 0o600);
        write(
            &tmp.path().join("env"),
            "AWS_SECRET_ACCESS_KEY=topsecret\n",
            0o640,
        );
        let err = ResticEnv::load(&c).unwrap_err();
        assert!(err.message.contains("env"), "{}", err.message);
        assert!(err.message.contains("0640"), "{}", err.message);
    }

    #[test]
    fn environment_carries_secrets_and_scrub_hides_them() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path());
        write(&tmp.path().join("pw"), "hunter22\n", 0o600);
        write(
            &tmp.path().join("env"),
            "AWS_SECRET_ACCESS_KEY=topsecret\n",
            0o600,
        );
        let env = ResticEnv::load(&c).unwrap();
        let keys: Vec<&str> = env.vars().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "RESTIC_REPOSITORY",
                "RESTIC_PASSWORD_FILE",
                "AWS_SECRET_ACCESS_KEY"
            ]
        );
        assert_eq!(
            env.scrub("bad topsecret, hunter22 and urlsecret"),
            "bad ***, *** and ***"
        );
        assert!(!format!("{env:?}").contains("topsecret"));

        std::env::set_var("AWS_PROFILE_LEAK_TEST", "x");
        let mut cmd = Command::new("env");
        env.apply(&mut cmd);
        std::env::remove_var("AWS_PROFILE_LEAK_TEST");
        let removed = cmd
            .get_envs()
            .any(|(k, v)| k == "AWS_PROFILE_LEAK_TEST" && v.is_none());
        assert!(removed, "the caller's AWS_* must not reach restic");
        assert!(cmd.get_args().next().is_none(), "nothing in argv");
    }
}
