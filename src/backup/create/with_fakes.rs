//! `create` with the in-memory podman and systemd: the services that mount
//! the volumes are stopped for the export and started again, also when the
//! export fails.

use std::io::Read;

use super::{create, CreateOptions};
use crate::backup::archive;
use crate::backup::metadata::{Consistency, Metadata};
use crate::testing::fake_podman::{files_of, Files, FRESH_ROOT};
use crate::testing::machine::{Machine, WEB};

fn quiet() -> CreateOptions {
    CreateOptions {
        progress: false,
        ..CreateOptions::manual()
    }
}

/// `web` installed, its two volumes holding a file each, `web.service`
/// running.
fn running_web() -> (Machine, crate::deployment::Deployment) {
    let machine = Machine::new();
    let deployment = machine.install("web", WEB);
    machine
        .podman
        .put_volume("systemd-data", &[("db.sqlite", b"rows")], FRESH_ROOT);
    machine
        .podman
        .put_volume("systemd-logs", &[("app.log", b"lines")], FRESH_ROOT);
    machine.systemd.set_state("web.service", "active");
    (machine, deployment)
}

/// The files of the archive of `volume` in backup `metadata`.
fn archived_files(machine: &Machine, metadata: &Metadata, volume: &str) -> Files {
    let backup = machine.store().load(&metadata.id).unwrap();
    let entry = metadata.volumes.iter().find(|v| v.name == volume).unwrap();
    let path = backup.archive_path(entry).unwrap().unwrap();
    let compression = metadata.compression.unwrap();
    let mut tar = Vec::new();
    archive::open_archive(&path, compression)
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    files_of(&tar).unwrap()
}

#[test]
fn running_services_are_stopped_for_the_export_and_started_again() {
    let (machine, deployment) = running_web();
    let metadata = create(&machine.ctx, &deployment, &quiet()).unwrap();

    assert_eq!(metadata.consistency, Some(Consistency::Stopped));
    assert!(metadata.downtime_seconds.is_some());
    assert!(metadata
        .services
        .iter()
        .any(|s| s.name == "web.service" && s.was_running));
    assert_eq!(
        archived_files(&machine, &metadata, "systemd-data"),
        Files::from([("db.sqlite".to_owned(), b"rows".to_vec())])
    );
    assert_eq!(
        archived_files(&machine, &metadata, "systemd-logs"),
        Files::from([("app.log".to_owned(), b"lines".to_vec())])
    );
    assert_eq!(machine.systemd.state_of("web.service"), "active");
    let calls = machine.systemd.calls();
    let stop = calls.iter().position(|c| c == "stop web.service");
    let start = calls.iter().position(|c| c == "start web.service");
    assert!(stop.is_some() && start > stop, "{calls:?}");
}

#[test]
fn services_are_started_again_when_the_export_fails() {
    let (machine, deployment) = running_web();
    // Both readers fail: the direct one (by mountpoint) and podman's export.
    let logs = crate::podman::ContainerEngine::volume_inspect(&*machine.podman, "systemd-logs")
        .unwrap()
        .unwrap();
    machine.podman.fail(|f| {
        f.fail_on("volume_tar", &logs.mountpoint);
        f.fail_on("volume_export", "systemd-logs");
    });
    let err = create(&machine.ctx, &deployment, &quiet()).unwrap_err();

    assert!(err.message.contains("systemd-logs"), "{}", err.message);
    assert_eq!(machine.systemd.state_of("web.service"), "active");
    assert!(machine
        .systemd
        .calls()
        .contains(&"stop web.service".to_owned()));
    assert!(
        machine.store().list().unwrap().is_empty(),
        "no backup is kept"
    );
}

#[test]
fn services_that_do_not_run_are_neither_stopped_nor_started() {
    let (machine, deployment) = running_web();
    machine.systemd.set_state("web.service", "inactive");
    let metadata = create(&machine.ctx, &deployment, &quiet()).unwrap();

    assert_eq!(metadata.downtime_seconds, None);
    assert_eq!(machine.systemd.state_of("web.service"), "inactive");
    assert!(!machine
        .systemd
        .calls()
        .iter()
        .any(|c| c.starts_with("stop") || c.starts_with("start")));
}

mod to_a_repository {
    use std::sync::Arc;

    use super::*;
    use crate::backup::create::Destination;
    use crate::repository::{Repository, SnapshotTags};
    use crate::testing::fake_restic::FakeRestic;

    fn to(repo: &FakeRestic) -> CreateOptions {
        let repo: Arc<dyn Repository> = Arc::new(repo.clone());
        CreateOptions {
            destination: Destination::Repository(repo),
            ..quiet()
        }
    }

    #[test]
    fn a_backup_to_a_repository_is_one_tagged_snapshot_holding_its_metadata() {
        let machine = Machine::new();
        let deployment = machine.install("web", WEB);
        machine.systemd.set_state("web.service", "active");
        let repo = FakeRestic::new("offsite");
        let metadata = create(&machine.ctx, &deployment, &to(&repo)).unwrap();

        let found = repo.snapshots(&SnapshotTags::of_id(&metadata.id)).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        let tags = found[0].backup_tags().unwrap();
        assert_eq!(
            (tags.deployment.as_str(), tags.id.as_str()),
            ("web", metadata.id.as_str())
        );
        let stored = repo
            .dump(&found[0].id, "/.backup-metadata.json", 1 << 20)
            .unwrap();
        let stored = Metadata::parse(&stored, std::path::Path::new("m.json")).unwrap();
        assert_eq!(stored.id, metadata.id);
        assert!(!stored.files.is_empty());
        assert!(
            machine.store().list().unwrap().is_empty(),
            "a backup to a repository leaves no local backup behind"
        );
        assert_eq!(machine.systemd.state_of("web.service"), "active");
    }

    #[test]
    fn a_failing_repository_starts_the_services_again_and_keeps_nothing() {
        let (machine, deployment) = running_web();
        let repo = FakeRestic::new("offsite");
        repo.fail("backup");
        let err = create(&machine.ctx, &deployment, &to(&repo)).unwrap_err();

        assert!(err.to_string().contains("offsite"), "{err}");
        assert!(repo.ids().is_empty());
        assert!(machine.store().list().unwrap().is_empty());
        assert_eq!(machine.systemd.state_of("web.service"), "active");
    }
}
