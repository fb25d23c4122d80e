//! Round trips of a deployment's files and directory modes through a
//! backup, and what copying in and putting back refuse.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::copy_in::copy_hashing;
use super::test_support::*;
use super::*;
use crate::backup::metadata::{FileEntry, Installation, METADATA_FILE};
use crate::deployment::{Deployment, DeploymentFile, Location, MAX_FILE_SIZE};
use std::os::unix::fs::symlink;

/// The tree of [`round_trip_is_exact`]: a drop-in, a secret, a file whose
/// name collides with `volumes/`, a symlink, and an installed copy that
/// differs from the active one.
fn round_trip_tree(active: &Path, installed: &Path) {
    write(&active.join("web.container"), "[Container]\n", 0o644);
    write(
        &active.join("web.container.d/10-env.conf"),
        "[Container]\nEnvironment=A=1\n",
        0o640,
    );
    write(&active.join("secret.env"), "TOKEN=x\n", 0o600);
    write(
        &active.join("volumes/odd.txt"),
        "collides with volumes/\n",
        0o644,
    );
    symlink("web.container", active.join("link.container")).unwrap();
    write(&installed.join("web.container"), "[Container]\n", 0o644);
    write(
        &installed.join("web.container.d/10-env.conf"),
        "locally edited\n",
        0o644,
    );
}

/// What [`round_trip_tree`] is stored as: a shared copy for identical
/// files, prefixed names for differing and colliding ones, 0600 files.
fn assert_stored_as_expected(entries: &[FileEntry], backup: &Path) {
    assert_eq!(entries.len(), 7);
    let by = |location: Location, rel: &str| {
        entries
            .iter()
            .find(|e| e.location == location && e.path == Path::new(rel))
            .unwrap()
    };
    // Identical installed copy shares the stored file.
    let a = by(Location::Active, "web.container");
    let i = by(Location::Installed, "web.container");
    assert_eq!(a.stored_as, i.stored_as);
    // A differing one does not.
    let i2 = by(Location::Installed, "web.container.d/10-env.conf");
    assert_eq!(
        i2.stored_as,
        PathBuf::from(".installed/web.container.d/10-env.conf")
    );
    let odd = by(Location::Active, "volumes/odd.txt");
    assert_eq!(odd.stored_as, PathBuf::from(".active/volumes/odd.txt"));
    let link = by(Location::Active, "link.container");
    assert_eq!(link.symlink.as_deref(), Some(Path::new("web.container")));
    assert_eq!(by(Location::Active, "secret.env").mode, 0o600);
    let mode = std::fs::metadata(backup.join("secret.env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        quadlet_files(entries),
        vec![
            "link.container",
            "web.container",
            "web.container.d/10-env.conf"
        ]
    );
}

/// Change, add and delete files of [`round_trip_tree`].
fn change_round_trip_tree(active: &Path, installed: &Path) {
    write(
        &active.join("web.container"),
        "[Container]\nImage=changed\n",
        0o600,
    );
    write(&active.join("new/extra.env"), "NEW=1\n", 0o644);
    std::fs::remove_file(active.join("secret.env")).unwrap();
    std::fs::remove_file(active.join("link.container")).unwrap();
    write(&installed.join("stale.container"), "[Container]\n", 0o644);
}

/// What a backup records of each file, without where it is stored.
fn recorded_files(v: &[FileEntry]) -> Vec<(Location, PathBuf, u32, String, Option<PathBuf>)> {
    v.iter()
        .map(|e| {
            (
                e.location,
                e.path.clone(),
                e.mode,
                e.sha256.clone(),
                e.symlink.clone(),
            )
        })
        .collect::<Vec<_>>()
}

#[test]
fn round_trip_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let active = tmp.path().join("active/web");
    let installed = tmp.path().join("systemd");
    round_trip_tree(&active, &installed);

    let backup = tmp.path().join("backup");
    std::fs::create_dir(&backup).unwrap();
    let entries = copy_into_backup(&deployment_files(&active, &installed), &backup).unwrap();
    assert_stored_as_expected(&entries, &backup);

    // Change, add and delete files, then restore.
    change_round_trip_tree(&active, &installed);

    let roots = Roots {
        active: Some(active.clone()),
        installed: installed.clone(),
    };
    let deployment = Deployment {
        name: "web".into(),
        active_dir: Some(active.clone()),
        installed_root: installed.clone(),
        installed_from_active: false,
    };
    let current = current_files(&deployment).unwrap();
    let plan = plan_restore(&entries, &roots, &current).unwrap();
    assert_eq!(plan.remove.len(), 2, "{:?}", plan.remove);
    apply(&plan, &backup, &roots).unwrap();

    let again = deployment_files(&active, &installed);
    let check = tmp.path().join("check");
    std::fs::create_dir(&check).unwrap();
    let entries2 = copy_into_backup(&again, &check).unwrap();
    assert_eq!(recorded_files(&entries), recorded_files(&entries2));
    assert!(!active.join("new").exists(), "empty dir left behind");
}

/// Review finding: a crafted `dirs` entry for `.` of the shared Quadlet
/// directory (mode 0777) would have made it world-writable.
#[test]
fn a_leger_backup_gives_modes_only_to_directories_of_its_own_files() {
    use crate::backup::metadata::DirEntry;
    let tmp = tempfile::tempdir().unwrap();
    let roots = Roots {
        active: Some(tmp.path().join("active/web")),
        installed: tmp.path().join("systemd"),
    };
    let entry = |path: &str| FileEntry {
        location: Location::Installed,
        path: path.into(),
        stored_as: path.into(),
        size: 0,
        mode: 0o644,
        sha256: String::new(),
        symlink: None,
    };
    let plan = || {
        plan_restore(
            &[entry("web.container"), entry("sub/x.container")],
            &roots,
            &[],
        )
        .unwrap()
    };
    let dir = |path: &str| DirEntry {
        location: Location::Installed,
        path: path.into(),
        mode: 0o777,
    };
    assert!(plan().with_dirs(&[dir("sub")], &roots).is_ok());
    for hostile in [".", "other", "sub/x.container/.."] {
        let err = plan().with_dirs(&[dir(hostile)], &roots);
        assert!(err.is_err(), "{hostile}: {:?}", err.map(|p| p.dirs));
    }
}

/// The tree of [`directory_modes_round_trip`]: directories of many modes,
/// an empty one, a 0500 one holding a file.
fn dir_modes_tree(active: &Path, installed: &Path) {
    write(&active.join("web.container"), "[Container]\n", 0o644);
    write(&active.join("web.container.d/10.conf"), "[Unit]\n", 0o644);
    write(&active.join("secrets/token"), "t\n", 0o600);
    write(&active.join("conf/app.ini"), "a=1\n", 0o640);
    write(&active.join("ro/fixed.txt"), "fixed\n", 0o444);
    mkdir(&active.join("empty/deeper"), 0o710);
    mkdir(&active.join("secrets"), 0o700);
    mkdir(&active.join("conf"), 0o750);
    mkdir(&active.join("web.container.d"), 0o750);
    mkdir(&active.join("ro"), 0o500);
    mkdir(active, 0o750);
    write(&installed.join("web.container"), "[Container]\n", 0o644);
    write(
        &installed.join("web.container.d/10.conf"),
        "[Unit]\n",
        0o644,
    );
    mkdir(&installed.join("web.container.d"), 0o700);
    mkdir(&active.join("empty"), 0o755);
}

/// Each path of [`dir_modes_tree`] with the mode it must have.
fn dir_modes_expected(active: &Path, installed: &Path) -> [(PathBuf, u32); 10] {
    [
        (active.to_owned(), 0o750),
        (active.join("secrets"), 0o700),
        (active.join("secrets/token"), 0o600),
        (active.join("conf"), 0o750),
        (active.join("conf/app.ini"), 0o640),
        (active.join("ro"), 0o500),
        (active.join("ro/fixed.txt"), 0o444),
        (active.join("empty"), 0o755),
        (active.join("empty/deeper"), 0o710),
        (installed.join("web.container.d"), 0o700),
    ]
}

/// Open up the modes of [`dir_modes_tree`], leave a stale file in its
/// empty directory (its removal keeps the directory) and change a file
/// below the 0500 directory.
fn change_dir_modes_tree(active: &Path) {
    for dir in ["secrets", "conf", "empty", "ro", "."] {
        mkdir(&active.join(dir), 0o755);
    }
    write(&active.join("empty/stale.txt"), "stale\n", 0o644);
    std::fs::remove_file(active.join("ro/fixed.txt")).unwrap();
    write(&active.join("ro/fixed.txt"), "changed\n", 0o644);
    mkdir(&active.join("ro"), 0o500);
}

/// A 0700 `secrets/`, a 0750 dir, an empty dir and a 0500 dir holding a
/// file come back with their modes, after removal and over a changed
/// tree.
#[test]
fn directory_modes_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let active = tmp.path().join("active/web");
    let installed = tmp.path().join("systemd");
    dir_modes_tree(&active, &installed);
    let expected = dir_modes_expected(&active, &installed);
    let backup = tmp.path().join("backup");
    let (entries, dirs) = back_up(&active, &installed, &backup);
    let recorded = |location, rel: &str| {
        dirs.iter()
            .find(|d| d.location == location && d.path == Path::new(rel))
            .map(|d| d.mode)
    };
    assert_eq!(recorded(Location::Active, "."), Some(0o750));
    assert_eq!(recorded(Location::Active, "secrets"), Some(0o700));
    assert_eq!(recorded(Location::Active, "empty/deeper"), Some(0o710));
    assert_eq!(
        recorded(Location::Installed, "web.container.d"),
        Some(0o700)
    );
    // The shared Quadlet directory is not the deployment's.
    assert_eq!(recorded(Location::Installed, "."), None);

    // Removed (as `leger remove` does), then restored.
    std::fs::set_permissions(active.join("ro"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::remove_dir_all(&active).unwrap();
    std::fs::remove_dir_all(installed.join("web.container.d")).unwrap();
    std::fs::remove_file(installed.join("web.container")).unwrap();
    put_back(&entries, &dirs, &backup, &active, &installed).unwrap();
    for (path, mode) in &expected {
        assert_eq!(mode_of(path), *mode, "{} after removal", path.display());
    }

    // Over a changed tree.
    change_dir_modes_tree(&active);
    put_back(&entries, &dirs, &backup, &active, &installed).unwrap();
    for (path, mode) in &expected {
        assert_eq!(
            mode_of(path),
            *mode,
            "{} over a changed tree",
            path.display()
        );
    }
    assert!(!active.join("empty/stale.txt").exists());
    assert_eq!(
        std::fs::read_to_string(active.join("ro/fixed.txt")).unwrap(),
        "fixed\n"
    );
    std::fs::set_permissions(active.join("ro"), std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// setuid, setgid and sticky bits in the deployment are not recorded.
#[test]
fn special_bits_are_never_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let active = tmp.path().join("active/web");
    let installed = tmp.path().join("systemd");
    write(&active.join("suid.sh"), "#!/bin/sh\n", 0o4755);
    write(&active.join("shared/sgid.sh"), "#!/bin/sh\n", 0o2750);
    mkdir(&active.join("shared"), 0o2770);
    mkdir(&active.join("tmp"), 0o1777);
    std::fs::create_dir_all(&installed).unwrap();
    // The bits are really there (the owner may set them).
    assert_eq!(mode_of(&active.join("suid.sh")), 0o4755);
    assert_eq!(mode_of(&active.join("tmp")), 0o1777);
    let (entries, dirs) = back_up(&active, &installed, &tmp.path().join("backup"));
    let file_mode = |rel: &str| {
        entries
            .iter()
            .find(|e| e.path == Path::new(rel))
            .unwrap()
            .mode
    };
    let dir_mode = |rel: &str| dirs.iter().find(|d| d.path == Path::new(rel)).unwrap().mode;
    assert_eq!(file_mode("suid.sh"), 0o755);
    assert_eq!(file_mode("shared/sgid.sh"), 0o750);
    assert_eq!(dir_mode("tmp"), 0o777);
    if mode_of(&active.join("shared")) == 0o2770 {
        assert_eq!(dir_mode("shared"), 0o770);
    }
}

/// A plain Quadlet deployment's own directory is recorded, with those
/// below it.
#[test]
fn a_plain_deployment_records_its_own_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("systemd/web");
    write(&dir.join("web.container.d/10.conf"), "[Unit]\n", 0o644);
    mkdir(&dir.join("web.container.d"), 0o700);
    mkdir(&dir, 0o750);
    let deployment = Deployment::from_dir("web", &dir).unwrap();
    let installation = Installation {
        active_dir: None,
        installed_root: dir.clone(),
        installed_from_active: false,
    };
    let dirs = record_dirs(&deployment.files().unwrap(), &installation).unwrap();
    let got: Vec<_> = dirs
        .iter()
        .map(|d| (d.location, d.path.to_string_lossy().into_owned(), d.mode))
        .collect();
    assert_eq!(
        got,
        vec![
            (Location::Installed, ".".to_owned(), 0o750),
            (Location::Installed, "web.container.d".to_owned(), 0o700),
        ]
    );
}

/// A crafted backup asking for setuid/setgid gets permission bits only.
#[test]
fn crafted_special_bits_restore_as_permission_bits() {
    let tmp = tempfile::tempdir().unwrap();
    let active = tmp.path().join("active/web");
    let installed = tmp.path().join("systemd");
    write(&active.join("bin/tool"), "#!/bin/sh\n", 0o755);
    std::fs::create_dir_all(&installed).unwrap();
    let backup = tmp.path().join("backup");
    let (mut entries, mut dirs) = back_up(&active, &installed, &backup);
    std::fs::remove_dir_all(&active).unwrap();
    entries[0].mode = 0o4755;
    for dir in &mut dirs {
        dir.mode = 0o2750;
    }
    put_back(&entries, &dirs, &backup, &active, &installed).unwrap();
    assert_eq!(mode_of(&active.join("bin/tool")), 0o755);
    assert_eq!(mode_of(&active.join("bin")), 0o750);
    assert_eq!(mode_of(&active), 0o750);
}

/// A mode with bits above 0o7777 (a file type, garbage) is hostile.
#[test]
fn modes_above_permission_bits_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let active = tmp.path().join("active/web");
    let installed = tmp.path().join("systemd");
    write(&active.join("conf/a.env"), "A=1\n", 0o644);
    std::fs::create_dir_all(&installed).unwrap();
    let backup = tmp.path().join("backup");
    let (entries, dirs) = back_up(&active, &installed, &backup);
    let before = mode_of(&active.join("conf/a.env"));

    let mut bad_file = entries.clone();
    bad_file[0].mode = 0o100644;
    let err = put_back(&bad_file, &dirs, &backup, &active, &installed).unwrap_err();
    assert!(err.message.contains("0o100644"), "{}", err.message);
    assert!(err.message.contains("conf/a.env"), "{}", err.message);

    let mut bad_dir = dirs.clone();
    bad_dir[1].mode = 0o40755;
    let err = put_back(&entries, &bad_dir, &backup, &active, &installed).unwrap_err();
    assert!(err.message.contains("0o40755"), "{}", err.message);
    assert_eq!(mode_of(&active.join("conf/a.env")), before);

    // Refused when the metadata is loaded, too.
    let json = serde_json::json!({
        "id": "web-2025-01-01-000000", "deployment_name": "web",
        "created_at": "2025-01-01T00:00:00Z", "type": "manual", "reason": "m",
        "size": 0, "quadlet_files": [], "volumes": [], "format_version": 1,
        "dirs": [{"location": "active", "path": "conf", "mode": 0o40755}],
    });
    let err =
        crate::backup::metadata::Metadata::parse(json.to_string().as_bytes(), Path::new("m.json"))
            .unwrap_err();
    assert!(err.message.contains("above 0o7777"), "{}", err.message);
}

/// A file larger than the cap is refused, naming it; nothing is read.
#[test]
fn oversized_deployment_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("big.db"), "", 0o644);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(src.join("big.db"))
        .unwrap();
    file.set_len(MAX_FILE_SIZE + 1).unwrap();
    let backup = tmp.path().join("b");
    std::fs::create_dir(&backup).unwrap();
    let files = vec![DeploymentFile {
        rel_path: "big.db".into(),
        location: Location::Active,
        path: src.join("big.db"),
    }];
    let err = copy_into_backup(&files, &backup).unwrap_err();
    assert!(err.message.contains("big.db"), "{}", err.message);
    assert!(err.message.contains("more than"), "{}", err.message);
    assert!(
        err.hint.as_deref().unwrap_or("").contains("volume"),
        "{err:?}"
    );
    assert!(!backup.join("big.db").exists());
}

/// A FIFO in a deployment directory is skipped, never opened (a read
/// would block forever); opened anyway (a race), it is refused at once.
#[test]
fn a_fifo_is_skipped_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("a.container"), "[Container]\n", 0o644);
    nix::unistd::mkfifo(&src.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let backup = tmp.path().join("b");
    std::fs::create_dir(&backup).unwrap();
    let files: Vec<DeploymentFile> = ["a.container", "pipe"]
        .iter()
        .map(|rel| DeploymentFile {
            rel_path: rel.into(),
            location: Location::Installed,
            path: src.join(rel),
        })
        .collect();
    let entries = copy_into_backup(&files, &backup).unwrap();
    assert_eq!(entries.len(), 1);
    let err = copy_hashing(&src.join("pipe"), &backup.join("pipe")).unwrap_err();
    assert!(
        err.message.contains("not a regular file"),
        "{}",
        err.message
    );
}

/// Hashing a stored file reads at most one byte past the recorded size.
#[test]
fn hashing_stops_past_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    write(&path, &"x".repeat(1000), 0o600);
    assert_eq!(hash_file(&path, 10).unwrap().1, 11);
    assert_eq!(hash_file(&path, 5000).unwrap().1, 1000);
}

#[test]
fn tampered_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("a.container"), "[Container]\n", 0o644);
    let backup = tmp.path().join("b");
    std::fs::create_dir(&backup).unwrap();
    let files = vec![DeploymentFile {
        rel_path: "a.container".into(),
        location: Location::Installed,
        path: src.join("a.container"),
    }];
    let entries = copy_into_backup(&files, &backup).unwrap();
    std::fs::write(backup.join("a.container"), "[Container]\nX\n").unwrap();
    let dest = tmp.path().join("dest");
    let roots = Roots {
        active: None,
        installed: dest.clone(),
    };
    let plan = plan_restore(&entries, &roots, &[]).unwrap();
    let err = apply(&plan, &backup, &roots).unwrap_err();
    assert!(err.message.contains("checksum"), "{}", err.message);
    assert!(!dest.join("a.container").exists());
    assert_eq!(
        std::fs::read_dir(&dest).unwrap().count(),
        0,
        "temp file left"
    );
}

#[test]
fn legacy_backup_files() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("web.container"), "x", 0o600);
    write(&tmp.path().join("web.env"), "y", 0o600);
    write(&tmp.path().join(METADATA_FILE), "{}", 0o600);
    write(&tmp.path().join("volumes/v.tar"), "", 0o600);
    let entries = legacy_entries(tmp.path(), true).unwrap();
    let names: Vec<_> = entries
        .iter()
        .map(|e| (e.location, e.path.to_string_lossy().into_owned(), e.mode))
        .collect();
    assert_eq!(
        names,
        vec![
            (Location::Active, "web.container".to_owned(), 0o644),
            (Location::Installed, "web.container".to_owned(), 0o644),
            (Location::Active, "web.env".to_owned(), 0o644),
        ]
    );
}
