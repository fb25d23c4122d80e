//! What every command that touches backups needs, loaded once per run:
//! paths, settings, and the runners for podman and systemctl.

use std::path::Path;

use crate::config::Config;
use crate::error::Result;
use crate::layout::{Layout, Scope};
use crate::podman::Podman;
use crate::systemd::Systemctl;

/// Paths, settings and tool runners for one scope.
#[derive(Debug, Clone)]
pub struct Context {
    /// Where things live.
    pub layout: Layout,
    /// Effective settings.
    pub config: Config,
    /// Runs podman.
    pub podman: Podman,
    /// Runs systemctl for the scope.
    pub systemctl: Systemctl,
}

impl Context {
    /// Load layout and config for `scope`.
    pub fn load(scope: Scope) -> Result<Context> {
        let layout = Layout::for_scope(scope)?;
        let config = Config::load(&layout)?;
        Ok(Context {
            podman: Podman::new(),
            systemctl: Systemctl::new(scope),
            layout,
            config,
        })
    }

    /// The backup directory (`backup.dir`).
    pub fn backup_dir(&self) -> &Path {
        &self.config.backup.dir.value
    }
}
