//! The restore's rollback paths, with the in-memory podman and systemd and
//! a real layout and store in a temporary home. Only the public API is
//! driven ([`restore`], [`create`]) and only outcomes are asserted — what
//! the volumes hold, which units run, whether the journal is kept, what the
//! error says — never the order of the steps inside.

use super::{restore, RestoreOptions};
use crate::backup::create::{create, CreateOptions};
use crate::backup::journal;
use crate::backup::progress::Terminal;
use crate::error::Error;
use crate::podman::RootOwnership;
use crate::testing::fake_podman::{Files, FRESH_ROOT};
use crate::testing::machine::{Machine, WEB};

/// What the volumes hold now, changed since the backup.
const LIVE_ROOT: RootOwnership = RootOwnership {
    mode: 0o700,
    uid: 999,
    gid: 999,
};

fn files(entries: &[(&str, &str)]) -> Files {
    entries
        .iter()
        .map(|(p, d)| ((*p).to_owned(), d.as_bytes().to_vec()))
        .collect()
}

/// `web` running, backed up with its volumes at "v1", then changed to
/// "v2" (contents and root owner): the state a restore of the backup
/// replaces, and a rollback must give back. Returns the backup's id.
fn backed_up_then_changed() -> (Machine, String) {
    let machine = Machine::new();
    let deployment = machine.install("web", WEB);
    let podman = &machine.podman;
    podman.put_volume("systemd-data", &[("db", b"data v1")], FRESH_ROOT);
    podman.put_volume("systemd-logs", &[("log", b"logs v1")], FRESH_ROOT);
    machine.systemd.set_state("web.service", "active");
    let opts = CreateOptions {
        progress: false,
        ..CreateOptions::manual()
    };
    let id = create(&machine.ctx, &deployment, &opts).unwrap().id;
    podman.put_volume("systemd-data", &[("db", b"data v2")], LIVE_ROOT);
    podman.put_volume("systemd-logs", &[("log", b"logs v2")], LIVE_ROOT);
    (machine, id)
}

fn restore_it(machine: &Machine, id: &str) -> Result<super::RestoreOutcome, Error> {
    restore(
        &machine.ctx,
        &machine.store(),
        id,
        &RestoreOptions::default(),
        &Terminal::new(false),
    )
}

/// The live state of `backed_up_then_changed` is all there: both volumes
/// at "v2" with their root owner, and `web.service` running.
fn assert_live_state_back(machine: &Machine) {
    let podman = &machine.podman;
    assert_eq!(
        podman.files("systemd-data"),
        Some(files(&[("db", "data v2")]))
    );
    assert_eq!(
        podman.files("systemd-logs"),
        Some(files(&[("log", "logs v2")]))
    );
    assert_eq!(podman.root_of("systemd-data"), Some(LIVE_ROOT));
    assert_eq!(podman.root_of("systemd-logs"), Some(LIVE_ROOT));
    assert_eq!(machine.systemd.active(), ["web.service"]);
}

/// The backups in the store.
fn backups(machine: &Machine) -> Vec<String> {
    let listed = machine.store().list().unwrap();
    listed.into_iter().map(|b| b.id).collect()
}

/// Nothing the restore moved aside is left, in the engine or on disk, and
/// its safety backup (which held the rest) is gone: only `id` is stored.
fn assert_nothing_held_aside(machine: &Machine, id: &str) {
    assert_eq!(machine.podman.held_aside(), Vec::<String>::new());
    let home = machine.ctx.layout.quadlet_dir.ancestors().nth(3).unwrap();
    let aside = home.join(".local/share/containers/storage/volumes/.leger-backup-aside");
    assert!(aside.parent().unwrap().is_dir(), "{}", aside.display());
    let left: Vec<_> = std::fs::read_dir(&aside)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", aside.display());
    assert_eq!(backups(machine), [id]);
}

fn journal_kept(machine: &Machine) -> bool {
    journal::read(&machine.ctx.layout.state_dir, "web")
        .unwrap()
        .is_some()
}

/// The fixture itself: without a failure the restore gives back "v1".
#[test]
fn restore_without_failure_puts_the_backup_back() {
    let (machine, id) = backed_up_then_changed();
    let outcome = restore_it(&machine, &id).unwrap();
    assert_eq!(outcome.started, ["web.service"]);
    assert_eq!(
        machine.podman.files("systemd-data"),
        Some(files(&[("db", "data v1")]))
    );
    assert_eq!(
        machine.podman.files("systemd-logs"),
        Some(files(&[("log", "logs v1")]))
    );
    assert_eq!(machine.systemd.active(), ["web.service"]);
    assert!(!journal_kept(&machine));
    // The volumes' previous data was moved aside, not archived, and is
    // dropped now the services run.
    let log = machine.podman.calls().join("\n");
    assert!(log.contains("move_dir"), "{log}");
    assert_eq!(outcome.safety_backup, None);
    assert_nothing_held_aside(&machine, &id);
}

/// `err` says the restore was rolled back, and why (`cause`); the live
/// state is back and no journal is left.
fn assert_rolled_back(machine: &Machine, id: &str, err: &Error, cause: &str) {
    for expected in ["rolled back to the previous state", cause] {
        assert!(err.message.contains(expected), "{}", err.message);
    }
    assert_live_state_back(machine);
    assert!(!journal_kept(machine));
    assert_nothing_held_aside(machine, id);
}

#[test]
fn failed_move_aside_of_the_second_volume_rolls_back() {
    let (machine, id) = backed_up_then_changed();
    machine.podman.fail(|f| f.fail_nth("move_dir", 2));
    let err = restore_it(&machine, &id).unwrap_err();
    assert_rolled_back(
        &machine,
        &id,
        &err,
        "moving volume systemd-logs's data aside",
    );
}

#[test]
fn failed_import_of_the_second_volume_rolls_back() {
    let (machine, id) = backed_up_then_changed();
    machine.podman.fail(|f| f.fail_nth("volume_import", 2));
    let err = restore_it(&machine, &id).unwrap_err();
    assert_rolled_back(&machine, &id, &err, "volume_import systemd-logs");
}

#[test]
fn failed_start_of_a_restored_service_rolls_back() {
    let (machine, id) = backed_up_then_changed();
    machine.systemd.fail(|f| f.fail_nth("start", 1));
    let err = restore_it(&machine, &id).unwrap_err();
    assert_rolled_back(&machine, &id, &err, "start web.service");
}

#[test]
fn restored_service_not_active_in_time_rolls_back() {
    let (machine, id) = backed_up_then_changed();
    machine.systemd.fail(|f| f.fail_nth("wait_active", 1));
    let err = restore_it(&machine, &id).unwrap_err();
    assert_rolled_back(&machine, &id, &err, "did not become active: web.service");
}

#[test]
fn failed_rollback_says_so_and_keeps_the_journal() {
    let (machine, id) = backed_up_then_changed();
    machine.podman.fail(|f| f.fail_nth("volume_import", 2));
    // The services that ran cannot be started again: the rollback fails.
    machine.systemd.fail(|f| f.fail_on("start", "web.service"));
    let err = restore_it(&machine, &id).unwrap_err();

    assert!(err.message.contains("rolling back"), "{}", err.message);
    assert!(err.message.contains("failed too"), "{}", err.message);
    assert!(
        err.hint
            .as_deref()
            .is_some_and(|h| h.contains("leger-backup recover")),
        "{:?}",
        err.hint
    );
    assert!(journal_kept(&machine), "`recover` needs the journal");
    assert!(machine.systemd.active().is_empty());
}

/// A restore onto nothing (deployment removed, volumes gone) that fails
/// leaves nothing behind: no files, no volumes, nothing started.
#[test]
fn failed_restore_onto_nothing_removes_what_it_put_in_place() {
    use crate::podman::ContainerEngine;
    let (machine, id) = backed_up_then_changed();
    let dir = machine.ctx.layout.quadlet_dir.join("web");
    std::fs::remove_dir_all(&dir).unwrap();
    for volume in ["systemd-data", "systemd-logs"] {
        machine.podman.volume_rm(volume).unwrap();
    }
    machine.systemd.set_state("web.service", "inactive");
    machine.podman.fail(|f| f.fail_nth("volume_import", 2));
    let err = restore_it(&machine, &id).unwrap_err();

    assert!(
        err.message.contains("rolled back to the previous state"),
        "{}",
        err.message
    );
    assert!(!dir.exists(), "the restored files are removed again");
    assert_eq!(machine.podman.files("systemd-data"), None);
    assert_eq!(machine.podman.files("systemd-logs"), None);
    assert!(machine.systemd.active().is_empty());
    assert!(!journal_kept(&machine));
}
