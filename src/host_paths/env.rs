//! A service's environment as systemd builds it for `ExecStart=`: read
//! from the unit's `[Service]` lines and the environment files they name.

use std::collections::BTreeMap;
use std::path::Path;

use crate::layout::Scope;
use crate::quadlet::environment::{parse_env_file, parse_environment_words};
use crate::quadlet::specifiers::{expand, Manager};
use crate::quadlet::{split_args, ServiceEnv};

/// The largest environment file read: a real one is a few KiB.
pub const ENV_FILE_MAX: u64 = 1 << 20;

/// What systemd would substitute, and what kept it from knowing more.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// The variables.
    pub vars: BTreeMap<String, String>,
    /// Lines that could not be read (a missing or oversized env file...).
    pub problems: Vec<String>,
}

/// The variables every service of `scope` has without asking: Quadlet sets
/// `PODMAN_SYSTEMD_UNIT=%n`; a user manager passes its `HOME`, `USER`,
/// `LOGNAME` and `XDG_RUNTIME_DIR` on. Variables imported into the manager
/// later (`systemctl --user import-environment`) cannot be known here.
fn base(manager: &Manager, scope: Scope, service: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    vars.insert("PODMAN_SYSTEMD_UNIT".to_owned(), service.to_owned());
    if scope == Scope::User {
        let home = manager.home.to_string_lossy().into_owned();
        let runtime = manager.runtime_dir.to_string_lossy().into_owned();
        vars.insert("HOME".to_owned(), home);
        vars.insert("USER".to_owned(), manager.user.clone());
        vars.insert("LOGNAME".to_owned(), manager.user.clone());
        vars.insert("XDG_RUNTIME_DIR".to_owned(), runtime);
    }
    vars
}

/// Build the environment of `env.service`: `Environment=` first, then the
/// environment files, whose assignments win (systemd.exec(5)), each later
/// assignment replacing an earlier one.
pub fn load(env: &ServiceEnv, manager: &Manager, scope: Scope) -> Environment {
    let mut out = Environment {
        vars: base(manager, scope, &env.service),
        problems: Vec::new(),
    };
    for line in &env.environment {
        let expanded = match expand(&line.value, manager, &env.service) {
            Ok(v) => v,
            Err(e) => {
                out.problems.push(format!(
                    "{}:{}: Environment={}: {e}",
                    line.file, line.line, line.value
                ));
                continue;
            }
        };
        let words = split_args(&expanded).unwrap_or_default();
        out.vars.extend(parse_environment_words(&words));
    }
    for line in &env.environment_files {
        match read_env_file(&line.value, manager, &env.service) {
            Ok(pairs) => out.vars.extend(pairs),
            Err(why) => out.problems.push(format!(
                "{}:{}: EnvironmentFile={}: {why}",
                line.file, line.line, line.value
            )),
        }
    }
    out
}

/// The assignments of one `EnvironmentFile=` value (`-` prefix: a missing
/// file is no error, as for systemd).
fn read_env_file(
    value: &str,
    manager: &Manager,
    service: &str,
) -> Result<Vec<(String, String)>, String> {
    let value = value.trim();
    let (optional, raw) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let path = expand(raw, manager, service).map_err(|e| e.to_string())?;
    if !path.starts_with('/') {
        return Err("not an absolute path, which systemd ignores".to_owned());
    }
    match crate::regular_file::read_capped(Path::new(&path), ENV_FILE_MAX) {
        Ok(bytes) => Ok(parse_env_file(&String::from_utf8_lossy(&bytes))),
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quadlet::ServiceEnvLine;
    use std::path::PathBuf;

    fn line(key: &str, value: &str) -> ServiceEnvLine {
        ServiceEnvLine {
            key: key.into(),
            value: value.into(),
            file: "a.container".into(),
            line: 7,
        }
    }

    fn manager(home: &Path) -> Manager {
        Manager::user(
            home.to_owned(),
            "ana".into(),
            1000,
            PathBuf::from("/run/user/1000"),
        )
    }

    #[test]
    fn env_files_override_environment_and_missing_ones_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("album.env"), "UP=/srv/up\nB=file\n").unwrap();
        fs_err::write(
            dir.path().join("big.env"),
            vec![b'x'; ENV_FILE_MAX as usize + 1],
        )
        .unwrap();
        let env = ServiceEnv {
            service: "a.service".into(),
            environment: vec![line("Environment", "B=env \"C=%h/c\"")],
            environment_files: vec![
                line("EnvironmentFile", "%h/album.env"),
                line("EnvironmentFile", "-%h/optional.env"),
                line("EnvironmentFile", "%h/gone.env"),
                line("EnvironmentFile", "%h/big.env"),
            ],
        };
        let m = manager(dir.path());
        let e = load(&env, &m, Scope::User);
        assert_eq!(e.vars["UP"], "/srv/up");
        assert_eq!(e.vars["B"], "file");
        assert_eq!(e.vars["C"], format!("{}/c", dir.path().display()));
        assert_eq!(e.vars["PODMAN_SYSTEMD_UNIT"], "a.service");
        assert_eq!(e.vars["HOME"], dir.path().to_string_lossy());
        assert_eq!(e.problems.len(), 2, "{:?}", e.problems);
        assert!(e.problems[0].contains("a.container:7: EnvironmentFile=%h/gone.env"));
        assert!(e.problems[1].contains("larger than"), "{:?}", e.problems);
    }

    #[test]
    fn system_services_have_no_home() {
        let env = ServiceEnv {
            service: "pg.service".into(),
            environment: vec![],
            environment_files: vec![line("EnvironmentFile", "relative.env")],
        };
        let e = load(&env, &Manager::system(), Scope::System);
        assert!(!e.vars.contains_key("HOME"));
        assert!(e.problems[0].contains("not an absolute path"));
    }
}
