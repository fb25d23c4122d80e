//! A temporary machine for tests: a home directory with the user layout,
//! default settings, and a [`Context`] whose podman and systemctl are the
//! in-memory fakes.

use std::sync::Arc;

use super::fake_podman::FakePodman;
use super::fake_systemd::FakeSystemd;
use crate::backup::store::BackupStore;
use crate::config::Config;
use crate::context::Context;
use crate::deployment::Deployment;
use crate::layout::{Layout, Scope};

/// A home directory, a context on it, and the fakes behind the context.
pub(crate) struct Machine {
    /// The context commands get.
    pub ctx: Context,
    /// The engine behind `ctx.podman`.
    pub podman: Arc<FakePodman>,
    /// The manager behind `ctx.systemctl`.
    pub systemd: Arc<FakeSystemd>,
    /// Removed with the machine.
    _home: tempfile::TempDir,
}

impl Machine {
    /// An empty home with default settings (`start_timeout` short).
    pub fn new() -> Machine {
        let home = tempfile::tempdir().expect("a temporary home");
        let layout = Layout::user_at(home.path());
        let config_file = layout.config_file();
        let config = Config::parse("backup:\n  start_timeout: 1\n", &config_file, &layout)
            .expect("the test settings parse");
        let podman = Arc::new(FakePodman::with_storage(
            home.path().join(".local/share/containers/storage"),
        ));
        let systemd = Arc::new(FakeSystemd::new(Scope::User));
        let ctx = Context {
            layout,
            config,
            podman: podman.clone(),
            systemctl: systemd.clone(),
            repositories: Arc::new(crate::repository::ResticOpener),
        };
        Machine {
            ctx,
            podman,
            systemd,
            _home: home,
        }
    }

    /// Install a plain Quadlet deployment `name`: `files` (relative path,
    /// text) under `~/.config/containers/systemd/<name>/`.
    pub fn install(&self, name: &str, files: &[(&str, &str)]) -> Deployment {
        let dir = self.ctx.layout.quadlet_dir.join(name);
        for (rel, text) in files {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, text).expect("write a quadlet file");
        }
        crate::deployment::find(&self.ctx.layout, name).expect("the deployment is found")
    }

    /// The backup store (`backup.dir`).
    pub fn store(&self) -> BackupStore {
        BackupStore::open(self.ctx.backup_dir()).expect("the store opens")
    }
}

/// The quadlet files of deployment `web`: `web.service` mounting volumes
/// `systemd-data` and `systemd-logs` (from `data.volume`, `logs.volume`).
pub(crate) const WEB: &[(&str, &str)] = &[
    (
        "web.container",
        "[Container]\nImage=localhost/busybox:latest\nVolume=data.volume:/data\nVolume=logs.volume:/logs\n",
    ),
    ("data.volume", "[Volume]\n"),
    ("logs.volume", "[Volume]\n"),
];
