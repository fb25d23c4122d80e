//! systemd's `%` specifiers (systemd.unit(5), "Specifiers") as the service
//! manager expands them in the generated service: Quadlet copies `Volume=`,
//! `Mount=` and `EnvironmentFile=` values into the service unchanged, and
//! systemd replaces the specifiers when it loads the unit. Only the
//! specifiers whose value can be known from the outside are expanded; any
//! other one makes the value unresolved (reported, never guessed).

use std::path::PathBuf;

/// The service manager's point of view: the directories and user it expands
/// `%h`, `%t`, `%S`... to. A user manager (`systemctl --user`) uses the
/// user's XDG directories, the system manager the FHS ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    /// `%h`: the user's home (root's for the system manager).
    pub home: PathBuf,
    /// `%u`: the user name.
    pub user: String,
    /// `%U`: the numeric uid.
    pub uid: u32,
    /// `%t`: `$XDG_RUNTIME_DIR` or `/run`.
    pub runtime_dir: PathBuf,
    /// `%S`: `$XDG_STATE_HOME` or `/var/lib`.
    pub state_dir: PathBuf,
    /// `%C`: `$XDG_CACHE_HOME` or `/var/cache`.
    pub cache_dir: PathBuf,
    /// `%E`: `$XDG_CONFIG_HOME` or `/etc`.
    pub config_dir: PathBuf,
    /// `%L`: `<state>/log` or `/var/log`.
    pub log_dir: PathBuf,
}

impl Manager {
    /// The system manager (`--system`): root, FHS directories.
    pub fn system() -> Manager {
        Manager {
            home: PathBuf::from("/root"),
            user: "root".to_owned(),
            uid: 0,
            runtime_dir: PathBuf::from("/run"),
            state_dir: PathBuf::from("/var/lib"),
            cache_dir: PathBuf::from("/var/cache"),
            config_dir: PathBuf::from("/etc"),
            log_dir: PathBuf::from("/var/log"),
        }
    }

    /// A user manager for `user`/`uid` with the XDG defaults under `home`
    /// (systemd's defaults when the variables are unset), and `runtime_dir`
    /// (`/run/user/<uid>` when pam_systemd set it up).
    pub fn user(home: PathBuf, user: String, uid: u32, runtime_dir: PathBuf) -> Manager {
        Manager {
            state_dir: home.join(".local/state"),
            cache_dir: home.join(".cache"),
            config_dir: home.join(".config"),
            log_dir: home.join(".local/state/log"),
            home,
            user,
            uid,
            runtime_dir,
        }
    }
}

/// Why a value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecifierError {
    /// A specifier whose value depends on the running system (`%H`, `%b`,
    /// `%d`...) or that systemd does not know.
    Unknown(char),
    /// A `%` at the very end.
    Trailing,
}

impl std::fmt::Display for SpecifierError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpecifierError::Unknown(c) => write!(
                f,
                "the specifier %{c} depends on the running system and is not expanded here"
            ),
            SpecifierError::Trailing => write!(f, "a lone % at the end is not a specifier"),
        }
    }
}

/// The parts of a unit name the name specifiers use: `web@blue.service` has
/// prefix `web`, instance `blue`.
fn name_parts(service: &str) -> (&str, &str, &str) {
    let without_suffix = service.rsplit_once('.').map_or(service, |(n, _)| n);
    match without_suffix.split_once('@') {
        Some((prefix, instance)) => (without_suffix, prefix, instance),
        None => (without_suffix, without_suffix, ""),
    }
}

/// The value of one specifier for `service` under `manager`.
fn value_of(c: char, manager: &Manager, service: &str) -> Option<String> {
    let path = |p: &PathBuf| p.to_string_lossy().into_owned();
    let (name, prefix, instance) = name_parts(service);
    Some(match c {
        'h' => path(&manager.home),
        't' => path(&manager.runtime_dir),
        'S' => path(&manager.state_dir),
        'C' => path(&manager.cache_dir),
        'E' => path(&manager.config_dir),
        'L' => path(&manager.log_dir),
        'u' => manager.user.clone(),
        'U' => manager.uid.to_string(),
        'T' => "/tmp".to_owned(),
        'V' => "/var/tmp".to_owned(),
        'n' => service.to_owned(),
        'N' => name.to_owned(),
        'p' => prefix.to_owned(),
        'i' => instance.to_owned(),
        _ => return None,
    })
}

/// `value` with every specifier expanded as systemd expands it in the unit
/// `service` (`web.service`); `%%` is a literal `%`.
///
/// `%T` and `%V` are `/tmp` and `/var/tmp`: systemd takes them from
/// `$TMPDIR` of the manager, which is unset on the systems we target.
pub fn expand(value: &str, manager: &Manager, service: &str) -> Result<String, SpecifierError> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            None => return Err(SpecifierError::Trailing),
            Some('%') => out.push('%'),
            Some(s) => {
                out.push_str(&value_of(s, manager, service).ok_or(SpecifierError::Unknown(s))?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Manager {
        Manager::user(
            PathBuf::from("/home/ana"),
            "ana".into(),
            1000,
            PathBuf::from("/run/user/1000"),
        )
    }

    #[test]
    fn user_manager_directories() {
        let m = user();
        let e = |v: &str| expand(v, &m, "db.service").unwrap();
        assert_eq!(e("%h/pg:/var/lib/pg"), "/home/ana/pg:/var/lib/pg");
        assert_eq!(
            e("%t/podman/podman.sock"),
            "/run/user/1000/podman/podman.sock"
        );
        assert_eq!(e("%S/db"), "/home/ana/.local/state/db");
        assert_eq!(e("%C/x"), "/home/ana/.cache/x");
        assert_eq!(e("%E/app"), "/home/ana/.config/app");
        assert_eq!(e("%L"), "/home/ana/.local/state/log");
        assert_eq!(e("/u/%u/%U"), "/u/ana/1000");
        assert_eq!(e("%T/a %V/b"), "/tmp/a /var/tmp/b");
        assert_eq!(e("100%%"), "100%");
    }

    #[test]
    fn system_manager_directories() {
        let m = Manager::system();
        let e = |v: &str| expand(v, &m, "pg.service").unwrap();
        assert_eq!(e("%h"), "/root");
        assert_eq!(e("%S/pg"), "/var/lib/pg");
        assert_eq!(e("%E/quadlets/pg"), "/etc/quadlets/pg");
        assert_eq!(e("%t/x"), "/run/x");
        assert_eq!(e("%C %L"), "/var/cache /var/log");
        assert_eq!(e("%U:%u"), "0:root");
    }

    #[test]
    fn name_specifiers_come_from_the_generated_service() {
        let m = user();
        let e = |v: &str, s: &str| expand(v, &m, s).unwrap();
        assert_eq!(e("%n|%N|%p|%i", "web.service"), "web.service|web|web|");
        assert_eq!(
            e("%n|%N|%p|%i", "tv@blue.service"),
            "tv@blue.service|tv@blue|tv|blue"
        );
    }

    #[test]
    fn unknown_specifiers_are_errors_not_guesses() {
        let m = user();
        assert_eq!(
            expand("%H/x", &m, "a.service"),
            Err(SpecifierError::Unknown('H'))
        );
        assert_eq!(expand("x%", &m, "a.service"), Err(SpecifierError::Trailing));
        assert_eq!(expand("plain", &m, "a.service").unwrap(), "plain");
    }
}
