//! Where a restore puts files, which services it starts, and what
//! "nothing" removes.

use super::*;
use crate::backup::progress::Terminal;
use crate::config::Config;
use crate::layout::{Layout, Scope};

fn ctx() -> Context {
    let layout = Layout {
        scope: Scope::User,
        quadlet_dir: "/h/.config/containers/systemd".into(),
        quadlet_search_path: vec![],
        leger_data_dir: "/h/.local/share/bluebuild-quadlets".into(),
        leger_config_dir: "/h/.config/leger".into(),
        state_dir: "/h/.local/state/leger-backup".into(),
        systemd_unit_dir: "/h/.config/systemd/user".into(),
    };
    let config = Config::parse("", Path::new("/h/.config/leger/config.yaml"), &layout).unwrap();
    Context::new(layout, config)
}

fn metadata(installation: Option<Installation>) -> Metadata {
    let json = r#"{"id":"web-2025-01-01-000000","deployment_name":"web",
        "created_at":"2025-01-01T00:00:00Z","type":"manual","reason":"manual","size":0,
        "quadlet_files":[],"volumes":[{"name":"v","archive_path":"volumes/v.tar","size":1}]}"#;
    let mut m = Metadata::parse(json.as_bytes(), Path::new("m.json")).unwrap();
    m.installation = installation;
    m
}

#[test]
fn files_go_where_this_layout_keeps_them() {
    let ctx = ctx();
    // leger's own backups record nothing: a leger deployment.
    let roots = roots_for(&ctx, &metadata(None));
    assert_eq!(
        roots.active.as_deref(),
        Some(Path::new("/h/.local/share/bluebuild-quadlets/active/web"))
    );
    assert_eq!(roots.installed, Path::new("/h/.config/containers/systemd"));
    // A plain Quadlet deployment recorded under another HOME.
    let plain = metadata(Some(Installation {
        active_dir: None,
        installed_root: "/old/home/.config/containers/systemd/web".into(),
        installed_from_active: false,
    }));
    let roots = roots_for(&ctx, &plain);
    assert_eq!(roots.active, None);
    assert_eq!(
        roots.installed,
        Path::new("/h/.config/containers/systemd/web")
    );
}

/// Only services the restored quadlet files produce are started, even
/// when the metadata names others (defence in depth behind
/// [`check_trusted`]).
#[test]
fn only_services_the_placed_files_produce_are_started() {
    let mut m = metadata(None);
    m.format_version = Some(crate::backup::metadata::FORMAT_VERSION);
    m.services = ["web.service", "sshd.service", "idle.service"]
        .iter()
        .map(|name| crate::backup::metadata::ServiceEntry {
            name: (*name).to_owned(),
            was_running: *name != "idle.service",
        })
        .collect();
    let files = [crate::quadlet::SourceFile {
        rel_path: "web.container".into(),
        origin: "/q/web.container".into(),
        text: "[Container]\nImage=busybox\n".to_owned(),
    }];
    let placed = crate::quadlet::resolve(&files, &[]).unwrap();
    assert_eq!(
        services_to_start(&m, Start::WasRunning, Some(&placed), &Terminal::new(false)),
        ["web.service"]
    );
    assert_eq!(
        services_to_start(&m, Start::All, Some(&placed), &Terminal::new(false)),
        ["web.service"]
    );
    assert!(services_to_start(&m, Start::Nothing, Some(&placed), &Terminal::new(false)).is_empty());
}

#[test]
fn nothing_removes_every_volume_and_file() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = BackupStore::open(store_dir.path()).unwrap();
    let failed = metadata(None);
    let nothing = Target::nothing(&store, &failed);
    assert!(nothing.entries.is_empty());
    assert!(nothing.metadata().services.is_empty());
    assert!(!nothing.metadata().is_legacy());
    assert!(nothing
        .metadata()
        .volumes
        .iter()
        .all(|v| !v.existed && v.archive_path.is_none()));
}
