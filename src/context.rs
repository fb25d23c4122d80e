//! What every command that touches backups needs, loaded once per run:
//! paths, settings, and the runners for podman and systemctl.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::{Layout, Scope};
use crate::podman::{ContainerEngine, Podman};
use crate::systemd::{ServiceManager, Systemctl};

/// Paths, settings and tool runners for one scope.
#[derive(Debug, Clone)]
pub struct Context {
    /// Where things live.
    pub layout: Layout,
    /// Effective settings.
    pub config: Config,
    /// Runs podman (an in-memory engine in unit tests).
    pub podman: Arc<dyn ContainerEngine>,
    /// Runs systemctl for the scope (an in-memory manager in unit tests).
    pub systemctl: Arc<dyn ServiceManager>,
    /// Opens restic repositories (a fake in unit tests).
    pub repositories: Arc<dyn crate::repository::RepositoryOpener>,
}

impl Context {
    /// Load layout and config for `scope`.
    pub fn load(scope: Scope) -> Result<Context> {
        check_scope_allowed(scope, nix::unistd::geteuid().as_raw())?;
        let layout = Layout::for_scope(scope)?;
        let config = Config::load(&layout)?;
        Ok(Context::new(layout, config))
    }

    /// The context for `layout` and `config`, with the real podman and
    /// systemctl of the layout's scope.
    pub fn new(layout: Layout, config: Config) -> Context {
        Context {
            podman: Arc::new(Podman::new()),
            systemctl: Arc::new(Systemctl::new(layout.scope)),
            repositories: Arc::new(crate::repository::ResticOpener),
            layout,
            config,
        }
    }

    /// The backup directory (`backup.dir`).
    pub fn backup_dir(&self) -> &Path {
        &self.config.backup.dir.value
    }
}

/// Refuse `--system` to anyone but root: root's deployments, backups and
/// state are root's alone, and what would fail next (the backup directory
/// belonging to root) would suggest a `chown` that hands them over.
fn check_scope_allowed(scope: Scope, euid: u32) -> Result<()> {
    if scope == Scope::System && euid != 0 {
        return Err(Error::user(format!(
            "--system works on root's deployments, and you are uid {euid}"
        ))
        .with_hint("run it as root (`sudo leger-backup --system ...`), or without --system for your own deployments"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_scope_is_for_root_only() {
        assert!(check_scope_allowed(Scope::System, 0).is_ok());
        assert!(check_scope_allowed(Scope::User, 1000).is_ok());
        assert!(check_scope_allowed(Scope::User, 0).is_ok());
        let err = check_scope_allowed(Scope::System, 1000).unwrap_err();
        assert!(err.message.contains("uid 1000"), "{}", err.message);
        let hint = err.hint.unwrap();
        assert!(hint.contains("sudo leger-backup --system"), "{hint}");
        assert!(!hint.contains("chown"), "{hint}");
    }
}
