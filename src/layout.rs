//! Where things live on disk, for user scope (rootless, the default) and
//! system scope (root). Everything is derived from the environment each run,
//! so tests point a whole run elsewhere by setting `HOME`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Which systemd manager and Quadlet search path a command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The calling user's rootless Podman and `systemctl --user` (default).
    User,
    /// Root's Podman and the system manager.
    System,
}

impl Scope {
    /// `user` or `system`, as written in metadata and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::System => "system",
        }
    }

    /// `systemctl --user` or `systemctl`: the command a message suggests
    /// for this scope's manager, so a `--system` run never tells root to
    /// reach for a user manager.
    pub fn systemctl_words(self) -> &'static str {
        match self {
            Scope::User => "systemctl --user",
            Scope::System => "systemctl",
        }
    }

    /// ` --system` or nothing: repeats the scope in a suggested
    /// `leger-backup` command (user scope is the default).
    pub fn cli_flag(self) -> &'static str {
        match self {
            Scope::User => "",
            Scope::System => " --system",
        }
    }

    /// `leger-backup ARGS` as a command to suggest in this scope
    /// (`leger-backup --system ARGS` for root's deployments): without the
    /// flag, root would look at its own user scope, where nothing is pending.
    pub fn command(self, args: &str) -> String {
        format!("leger-backup{} {args}", self.cli_flag())
    }
}

/// The directories leger-backup reads and writes for one scope.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The scope these paths belong to.
    pub scope: Scope,
    /// The directory where installed quadlet files of deployments live and
    /// where plain Quadlet users keep one subdirectory per deployment.
    pub quadlet_dir: PathBuf,
    /// Every directory Quadlet searches, in priority order (first wins);
    /// references across deployments are resolved over all of them.
    pub quadlet_search_path: Vec<PathBuf>,
    /// leger's data root (`~/.local/share/bluebuild-quadlets`).
    pub leger_data_dir: PathBuf,
    /// `~/.config/leger`: config.yaml and hooks.
    pub leger_config_dir: PathBuf,
    /// leger-backup's own state (locks, journal, automatic-backup records).
    pub state_dir: PathBuf,
    /// Where unprivileged systemd drop-ins go (`~/.config/systemd/user`).
    pub systemd_unit_dir: PathBuf,
}

impl Layout {
    /// The layout for `scope`, read from `HOME` / `XDG_*` for user scope.
    pub fn for_scope(scope: Scope) -> Result<Layout> {
        match scope {
            Scope::User => Self::user(),
            Scope::System => Ok(Self::system()),
        }
    }

    fn user() -> Result<Layout> {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| {
                Error::user("HOME is not set").with_hint("run leger-backup from a login session")
            })?;
        let xdg = |var: &str, default: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| home.join(default))
        };
        let config_home = xdg("XDG_CONFIG_HOME", ".config");
        let data_home = xdg("XDG_DATA_HOME", ".local/share");
        let state_home = xdg("XDG_STATE_HOME", ".local/state");
        let quadlet_dir = config_home.join("containers/systemd");
        let uid = nix::unistd::getuid();
        // Quadlet's rootless search path starts with the runtime directory.
        let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|p| p.join("containers/systemd"));
        Ok(Layout {
            scope: Scope::User,
            quadlet_search_path: runtime_dir
                .into_iter()
                .chain([
                    quadlet_dir.clone(),
                    PathBuf::from(format!("/etc/containers/systemd/users/{uid}")),
                    PathBuf::from("/etc/containers/systemd/users"),
                ])
                .collect(),
            quadlet_dir,
            leger_data_dir: data_home.join("bluebuild-quadlets"),
            leger_config_dir: config_home.join("leger"),
            state_dir: state_home.join("leger-backup"),
            systemd_unit_dir: config_home.join("systemd/user"),
        })
    }

    fn system() -> Layout {
        let quadlet_dir = PathBuf::from("/etc/containers/systemd");
        Layout {
            scope: Scope::System,
            quadlet_search_path: vec![
                PathBuf::from("/run/containers/systemd"),
                quadlet_dir.clone(),
                PathBuf::from("/usr/share/containers/systemd"),
            ],
            quadlet_dir,
            leger_data_dir: PathBuf::from("/var/lib/bluebuild-quadlets"),
            leger_config_dir: PathBuf::from("/etc/leger"),
            state_dir: PathBuf::from("/var/lib/leger-backup"),
            systemd_unit_dir: PathBuf::from("/etc/systemd/system"),
        }
    }

    /// The user layout under `home` with the XDG defaults and only
    /// `~/.config/containers/systemd` on the search path, whatever the
    /// environment says: for tests, which must not depend on the caller's
    /// `XDG_*` variables.
    pub fn user_at(home: &Path) -> Layout {
        let quadlet_dir = home.join(".config/containers/systemd");
        Layout {
            scope: Scope::User,
            quadlet_search_path: vec![quadlet_dir.clone()],
            quadlet_dir,
            leger_data_dir: home.join(".local/share/bluebuild-quadlets"),
            leger_config_dir: home.join(".config/leger"),
            state_dir: home.join(".local/state/leger-backup"),
            systemd_unit_dir: home.join(".config/systemd/user"),
        }
    }

    /// leger's directory of installed deployments, one subdirectory each.
    pub fn active_dir(&self) -> PathBuf {
        self.leger_data_dir.join("active")
    }

    /// The active directory of one leger deployment.
    pub fn active_dir_of(&self, name: &str) -> PathBuf {
        self.active_dir().join(name)
    }

    /// The default backup directory (config `backup.dir` overrides it).
    pub fn default_backup_dir(&self) -> PathBuf {
        self.leger_data_dir.join("backups")
    }

    /// `config.yaml` as leger documents it.
    pub fn config_file(&self) -> PathBuf {
        self.leger_config_dir.join("config.yaml")
    }

    /// Relative form of `path` under `base`, for messages and metadata.
    pub fn relative<'a>(path: &'a Path, base: &Path) -> &'a Path {
        path.strip_prefix(base).unwrap_or(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_words_follow_the_scope() {
        assert_eq!(Scope::User.systemctl_words(), "systemctl --user");
        assert_eq!(Scope::System.systemctl_words(), "systemctl");
        assert_eq!(Scope::User.cli_flag(), "");
        assert_eq!(Scope::System.cli_flag(), " --system");
        assert_eq!(Scope::User.command("recover"), "leger-backup recover");
        assert_eq!(
            Scope::System.command("recover"),
            "leger-backup --system recover"
        );
    }
}
