//! What every command that touches backups needs, loaded once per run:
//! paths, settings, and the runners for podman and systemctl.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::error::Result;
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
