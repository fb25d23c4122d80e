//! The journal file: written before each step, removed at the end, and
//! read as version 1 wrote it.

use super::*;

#[test]
fn written_before_each_step_and_removed_on_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let mut j =
        Journal::begin(tmp.path(), "web", Operation::Create, Path::new("/b"), true).unwrap();
    let r = read(tmp.path(), "web").unwrap().unwrap();
    assert_eq!(r.step, Step::Started);
    assert_eq!(r.pid, std::process::id());
    assert!(r.alive());
    assert_eq!(r.restore(), None);
    j.update(|r| {
        r.stopped = vec!["web.service".into()];
        r.step = Step::StoppingServices;
    })
    .unwrap();
    j.step(Step::Exporting {
        volume: "data".into(),
    })
    .unwrap();
    let r = read(tmp.path(), "web").unwrap().unwrap();
    assert_eq!(r.stopped, ["web.service"]);
    assert_eq!(r.step_text(), "exporting volume data");
    let text = std::fs::read_to_string(path(tmp.path(), "web")).unwrap();
    assert!(text.contains(r#""name": "exporting""#), "{text}");
    // Nothing else in the directory: the temporary file was renamed.
    assert_eq!(std::fs::read_dir(dir(tmp.path())).unwrap().count(), 1);
    drop(j);
    assert_eq!(read(tmp.path(), "web").unwrap(), None);
    assert!(list(tmp.path()).is_empty());
}

#[test]
fn an_unfinished_restore_holds_its_backups_a_create_none() {
    let tmp = tempfile::tempdir().unwrap();
    let mut restore =
        Journal::begin(tmp.path(), "web", Operation::Restore, Path::new("/b"), true).unwrap();
    restore
        .update_restore(|r, restore| {
            r.backup_id = Some("web-old".into());
            restore.safety = Safety::Taking { id: String::new() };
        })
        .unwrap();
    let _create =
        Journal::begin(tmp.path(), "db", Operation::Create, Path::new("/b"), true).unwrap();
    let held: Vec<String> = backups_in_use(tmp.path()).into_keys().collect();
    assert_eq!(
        held,
        ["web-old"],
        "a safety backup being written is not one yet"
    );
    restore
        .update_restore(|_, restore| {
            restore.safety = Safety::Taken {
                id: "web-safety".into(),
            }
        })
        .unwrap();
    let held = backups_in_use(tmp.path());
    assert_eq!(held.keys().collect::<Vec<_>>(), ["web-old", "web-safety"]);
    assert!(held["web-safety"].contains("safety backup"), "{held:?}");
    drop(restore);
    assert!(backups_in_use(tmp.path()).is_empty());
}

#[test]
fn kept_and_adopted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut j =
        Journal::begin(tmp.path(), "web", Operation::Restore, Path::new("/b"), true).unwrap();
    j.update_restore(|r, restore| {
        restore.safety = Safety::Taken { id: "web-1".into() };
        restore.touched = true;
        r.step = Step::ReplacingVolume {
            volume: "data".into(),
        };
    })
    .unwrap();
    j.keep();
    let mut r = read(tmp.path(), "web").unwrap().unwrap();
    assert_eq!(r.safety_id(), Some("web-1"));
    // Pretend it was another, dead process.
    r.pid = u32::MAX - 1;
    std::fs::write(path(tmp.path(), "web"), serde_json::to_vec(&r).unwrap()).unwrap();
    let listed = list(tmp.path());
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].1.as_ref().unwrap().alive());
    let adopted = Journal::adopt(tmp.path(), r).unwrap();
    assert_eq!(adopted.record().pid, std::process::id());
    assert!(read(tmp.path(), "web").unwrap().unwrap().alive());
    drop(adopted);
    assert_eq!(read(tmp.path(), "web").unwrap(), None);
}

#[test]
fn a_later_record_is_not_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let j = Journal::begin(tmp.path(), "web", Operation::Create, Path::new("/b"), true).unwrap();
    let mut other = j.record().clone();
    other.pid = u32::MAX - 1;
    std::fs::write(path(tmp.path(), "web"), serde_json::to_vec(&other).unwrap()).unwrap();
    drop(j);
    assert!(read(tmp.path(), "web").unwrap().is_some());
}

#[test]
fn step_texts() {
    let tmp = tempfile::tempdir().unwrap();
    let j = Journal::begin(tmp.path(), "web", Operation::Restore, Path::new("/b"), true).unwrap();
    let mut r = j.record().clone();
    r.step = Step::Exporting {
        volume: "data".into(),
    };
    assert_eq!(
        r.step_text(),
        "taking the safety backup (exporting volume data)"
    );
    r.step = Step::ReplacingFiles;
    let OperationRecord::Restore(restore) = &mut r.op else {
        panic!("not a restore: {r:?}")
    };
    restore.rolling_back = Some("boom".into());
    assert_eq!(
        r.step_text(),
        "rolling back after \"boom\": putting the deployment's files back"
    );
}

/// A create's journal as version 1 (`main` before the records were
/// split by operation) wrote it.
const CREATE_V1: &str = r#"{
  "version": 1,
  "operation": "create",
  "deployment": "web",
  "pid": 4294967294,
  "start_time": 12345,
  "started_at": "2026-11-27T10:00:00Z",
  "updated_at": "2026-11-27T10:00:01Z",
  "owns_stops": true,
  "reason": "on-stop:web.service",
  "backup_dir": "/b",
  "backup_id": "web-20261127T100000Z",
  "writing": "web-20261127T100000Z",
  "stopped": ["web.service"],
  "touched": false,
  "step": { "name": "exporting", "volume": "data" }
}"#;

/// A restore's journal as version 1 wrote it, with data moved aside.
const RESTORE_V1: &str = r#"{
  "version": 1,
  "operation": "restore",
  "deployment": "web",
  "pid": 4294967294,
  "start_time": null,
  "started_at": "2026-11-27T10:00:00Z",
  "updated_at": "2026-11-27T10:00:05Z",
  "owns_stops": true,
  "backup_dir": "/b",
  "backup_id": "web-old",
  "writing": null,
  "safety": { "state": "taken", "id": "web-safety" },
  "stopped": ["web.service"],
  "touched": true,
  "aside": { "data": "/v/.leger-backup-aside/web-20261127T100000.000Z/data" },
  "step": { "name": "replacing-volume", "volume": "data" }
}"#;

#[test]
fn version_1_journals_are_read_and_written_alike() {
    let create: Record = serde_json::from_str(CREATE_V1).unwrap();
    let OperationRecord::Create(own) = &create.op else {
        panic!("not a create: {create:?}")
    };
    assert_eq!(own.reason.as_deref(), Some("on-stop:web.service"));
    assert_eq!(create.stopped, ["web.service"]);
    assert_eq!(create.safety_id(), None);
    assert!(create.aside().is_empty());
    assert_eq!(create.step_text(), "exporting volume data");

    let restore: Record = serde_json::from_str(RESTORE_V1).unwrap();
    let own = restore.restore().expect("a restore");
    assert_eq!(restore.safety_id(), Some("web-safety"));
    assert!(own.touched);
    assert_eq!(own.rolling_back, None);
    assert_eq!(
        restore.aside()["data"],
        Path::new("/v/.leger-backup-aside/web-20261127T100000.000Z/data")
    );
    assert_eq!(restore.backup_id.as_deref(), Some("web-old"));
    assert_eq!(restore.step_text(), "replacing volume data");
    assert!(!restore.alive());

    // Written back, a restore's record is the same JSON; a create's
    // drops only the restore field it never used.
    let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    let written = |r: &Record| serde_json::to_value(r).unwrap();
    assert_eq!(written(&restore), json(RESTORE_V1));
    let mut create_v1 = json(CREATE_V1);
    create_v1.as_object_mut().unwrap().remove("touched");
    assert_eq!(written(&create), create_v1);
}

#[test]
fn unreadable_journals_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir(tmp.path())).unwrap();
    std::fs::write(path(tmp.path(), "web"), b"{").unwrap();
    std::fs::write(dir(tmp.path()).join(".web.json.1.tmp"), b"{").unwrap();
    let listed = list(tmp.path());
    assert_eq!(listed.len(), 1);
    let err = listed[0].1.as_ref().unwrap_err();
    assert!(err.message.contains("malformed journal"), "{}", err.message);
    assert!(read(tmp.path(), "web").is_err());
}

#[test]
fn a_restore_is_completed_untouched_or_half_done() {
    let mut restore = RestoreRecord::default();
    let importing = Step::ReplacingVolume {
        volume: "data".into(),
    };
    assert_eq!(restore.stage(&importing), RestoreStage::NothingReplaced);
    restore.touched = true;
    assert_eq!(restore.stage(&importing), RestoreStage::HalfDone);
    assert_eq!(restore.stage(&Step::DroppingAside), RestoreStage::Completed);
    // Dropping what a rollback had put back is no completed restore.
    restore.rolling_back = Some("boom".into());
    assert_eq!(restore.stage(&Step::DroppingAside), RestoreStage::HalfDone);
    // A failed rollback has changed things, whatever `touched` says.
    let failed = RestoreRecord {
        rollback_failed: Some("boom".into()),
        ..RestoreRecord::default()
    };
    assert_eq!(
        failed.stage(&Step::StartingRestored),
        RestoreStage::HalfDone
    );
}
