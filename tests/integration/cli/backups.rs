//! `list`, `info`, `verify`, `delete` and `prune` on backups fabricated on
//! disk by the test (metadata JSON plus archives built with the `tar` and
//! `zstd` crates), so they need neither podman nor systemd. IDs and dates
//! come from the fabricated metadata, which keeps the output stable.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::support::{stderr, stdout, TestEnv};

/// The default backup directory inside the test HOME.
pub(super) const BACKUPS: &str = ".local/share/bluebuild-quadlets/backups";

pub(super) fn backups(env: &TestEnv) -> PathBuf {
    env.path(BACKUPS)
}

pub(super) fn private_dir(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::DirBuilder::new().mode(0o700).create(path).unwrap();
}

/// A small tar of a volume: a directory, a file and a symlink, with fixed
/// times so its bytes are the same every run, in the order `podman volume
/// export` writes (a depth-first walk, names sorted bytewise): the tar
/// guard refuses any other order.
pub(super) fn volume_tar(seed: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mtime(1_700_000_000);
    b.append_link(&mut h, "current", "db/data.sql").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_size(0);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, "db/", std::io::empty()).unwrap();
    let body = format!("{seed}\n").repeat(2000);
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o600);
    h.set_size(body.len() as u64);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, "db/data.sql", body.as_bytes())
        .unwrap();
    b.into_inner().unwrap()
}

pub(super) fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A backup written the way leger-backup writes one.
pub(super) struct Fabricated {
    id: String,
    dir: PathBuf,
    /// sha256 of each archive, by volume name.
    archive_sha: Vec<(String, String)>,
}

/// Fabricate a backup `id` of `deployment` created at `created` (RFC 3339)
/// with one zstd archive per volume and one deployment file.
pub(super) fn fabricate(
    env: &TestEnv,
    id: &str,
    deployment: &str,
    created: &str,
    reason: &str,
    volumes: &[&str],
) -> Fabricated {
    let root = backups(env);
    if !root.exists() {
        private_dir(&root);
    }
    let dir = root.join(id);
    private_dir(&dir);
    private_dir(&dir.join("volumes"));
    private_dir(&dir.join(".active"));
    let unit = format!("[Container]\nImage=localhost/busybox\nVolume={deployment}-data:/data\n");
    std::fs::write(dir.join(".active/web.container"), &unit).unwrap();
    let mut volume_json = Vec::new();
    let mut archive_sha = Vec::new();
    for name in volumes {
        let tar = volume_tar(name);
        let zst = zstd::stream::encode_all(&tar[..], 3).unwrap();
        let rel = format!("volumes/{name}.tar.zst");
        std::fs::write(dir.join(&rel), &zst).unwrap();
        archive_sha.push((name.to_string(), sha256(&zst)));
        volume_json.push(serde_json::json!({
            "name": name,
            "archive_path": rel,
            "size": zst.len(),
            "existed": true,
            "uncompressed_size": tar.len(),
            "sha256": sha256(&zst),
            "root": {"mode": 0o750, "uid": 999, "gid": 999},
            "driver": "local",
            "labels": {"app": deployment},
            "options": {},
            "defined_by": "data.volume",
            "volume_service": "data-volume.service",
            "used_by": ["web.service"],
        }));
    }
    volume_json.push(serde_json::json!({
        "name": "cache", "archive_path": null, "size": 0, "existed": false,
    }));
    let kind = if ["before-", "pre-", "on-"]
        .iter()
        .any(|p| reason.starts_with(p))
    {
        "automatic"
    } else {
        "manual"
    };
    let metadata = serde_json::json!({
        "id": id,
        "deployment_name": deployment,
        "created_at": created,
        "type": kind,
        "reason": reason,
        "size": 1_572_864,
        "quadlet_files": ["web.container"],
        "volumes": volume_json,
        "format_version": 1,
        "leger_backup_version": "0.1.0",
        "scope": "user",
        "compression": "zstd",
        "files": [{
            "location": "active",
            "path": "web.container",
            "stored_as": ".active/web.container",
            "size": unit.len(),
            "mode": 0o644,
            "sha256": sha256(unit.as_bytes()),
        }],
        "installation": {
            "active_dir": "/home/u/.local/share/bluebuild-quadlets/active/web",
            "installed_root": "/home/u/.config/containers/systemd",
            "installed_from_active": true,
        },
        "services": [
            {"name": "web.service", "was_running": true},
            {"name": "worker.service", "was_running": false},
        ],
        "secrets": ["db-password"],
        "consistency": "stopped",
        "downtime_seconds": 2.5,
    });
    let mut f = std::fs::File::create(dir.join(".backup-metadata.json")).unwrap();
    f.write_all(serde_json::to_string_pretty(&metadata).unwrap().as_bytes())
        .unwrap();
    Fabricated {
        id: id.to_owned(),
        dir,
        archive_sha,
    }
}

/// Change the metadata of a fabricated backup (it carries no checksum of
/// itself, so the backup stays valid).
pub(super) fn patch_metadata(env: &TestEnv, id: &str, patch: impl FnOnce(&mut serde_json::Value)) {
    let path = backups(env).join(id).join(".backup-metadata.json");
    let mut metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    patch(&mut metadata);
    std::fs::write(&path, serde_json::to_vec(&metadata).unwrap()).unwrap();
}

/// A backup as leger's Go implementation writes it: no format version, an
/// uncompressed `.tar`, no checksums.
fn fabricate_legacy(env: &TestEnv, id: &str) -> PathBuf {
    let root = backups(env);
    if !root.exists() {
        private_dir(&root);
    }
    let dir = root.join(id);
    private_dir(&dir);
    private_dir(&dir.join("volumes"));
    let tar = volume_tar("legacy");
    std::fs::write(dir.join("volumes/systemd-data.tar"), &tar).unwrap();
    let metadata = serde_json::json!({
        "id": id, "deployment_name": "legacy", "created_at": "2024-12-01T08:00:00Z",
        "type": "manual", "reason": "manual", "size": tar.len(),
        "quadlet_files": ["legacy.container"],
        "volumes": [{"name": "systemd-data", "archive_path": "volumes/systemd-data.tar", "size": tar.len()}],
    });
    std::fs::write(
        dir.join(".backup-metadata.json"),
        serde_json::to_string(&metadata).unwrap(),
    )
    .unwrap();
    dir
}

/// A directory that looks like a backup but whose metadata is broken.
fn fabricate_invalid(env: &TestEnv, id: &str) {
    let dir = backups(env).join(id);
    private_dir(&dir);
    std::fs::write(dir.join(".backup-metadata.json"), "{\"id\": ").unwrap();
}

/// The usual set: two web backups, one db backup, one invalid.
fn standard_set(env: &TestEnv) -> Vec<Fabricated> {
    let set = vec![
        fabricate(
            env,
            "web-2025-01-02-030405",
            "web",
            "2025-01-02T03:04:05Z",
            "manual",
            &["web-data"],
        ),
        fabricate(
            env,
            "web-2025-01-03-100000",
            "web",
            "2025-01-03T10:00:00Z",
            "before-update",
            &["web-data"],
        ),
        fabricate(
            env,
            "db-2025-01-02-120000",
            "db",
            "2025-01-02T12:00:00Z",
            "weekly",
            &["db-data", "db-logs"],
        ),
    ];
    fabricate_invalid(env, "web-2025-01-01-000000");
    set
}

fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn list_shows_valid_and_invalid_newest_first() {
    let env = TestEnv::new();
    standard_set(&env);
    let out = env.run(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out), @r"
    ID                     CREATED              TYPE       SIZE     REASON                                                                                   VOLUMES
    web-2025-01-03-100000  2025-01-03 10:00:00  automatic  1.5 MiB  before-update                                                                            web-data,cache(absent)
    db-2025-01-02-120000   2025-01-02 12:00:00  manual     1.5 MiB  weekly                                                                                   db-data,db-logs,cache(absent)
    web-2025-01-02-030405  2025-01-02 03:04:05  manual     1.5 MiB  manual                                                                                   web-data,cache(absent)
    web-2025-01-01-000000  -                    invalid    -        .backup-metadata.json: malformed metadata: EOF while parsing a value at line 1 column 7  -
    ");
    assert!(
        stderr(&out).contains("1 invalid backup(s)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn list_filters_by_deployment_and_prints_json() {
    let env = TestEnv::new();
    standard_set(&env);
    let out = env.run(&["list", "--deployment", "web", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = json.as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "web-2025-01-03-100000",
            "web-2025-01-02-030405",
            "web-2025-01-01-000000"
        ]
    );
    assert_eq!(items[0]["valid"], true);
    assert_eq!(items[0]["error"], serde_json::Value::Null);
    assert_eq!(items[0]["type"], "automatic");
    assert_eq!(items[0]["deployment_name"], "web");
    assert_eq!(items[0]["volumes"][0]["name"], "web-data");
    assert_eq!(items[2]["valid"], false);
    assert!(items[2]["error"].as_str().unwrap().contains("malformed"));
}

#[test]
fn list_of_an_empty_store() {
    let env = TestEnv::new();
    let out = env.run(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("no backups in"));
    let out = env.run(&["list", "--json"]);
    assert_eq!(stdout(&out), "[]\n");
    let mode = std::fs::metadata(backups(&env))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "created private");
}

#[test]
fn info_shows_everything_in_the_metadata() {
    let env = TestEnv::new();
    let set = standard_set(&env);
    let b = &set[0];
    let out = env.run(&["info", &b.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out)
        .replace(&b.dir.display().to_string(), "[BACKUP]")
        .replace(&b.archive_sha[0].1, "[ARCHIVE-SHA256]");
    insta::assert_snapshot!(text, @r"
    ID            web-2025-01-02-030405
    Deployment    web
    Created       2025-01-02 03:04:05 UTC
    Type          manual
    Reason        manual
    Size          1.5 MiB
    Path          [BACKUP]
    Format        1 (leger-backup 0.1.0)
    Scope         user
    Compression   tar.zst
    Consistency   stopped (services stopped during export), services down 2.5 s
    Active dir    /home/u/.local/share/bluebuild-quadlets/active/web
    Installed in  /home/u/.config/containers/systemd (installed by leger from the active dir)
    Secrets       db-password

    Services (2):
      SERVICE         AT BACKUP TIME
      web.service     running
      worker.service  stopped

    Files (1):
      LOCATION  PATH           SIZE  MODE  SHA256
      active    web.container  58 B  0644  60d7b7bb798644ad7a8598f283c80d84d10295137c729e78b7f4c2ad81b93c36

    Volumes (2):
      web-data
        archive       volumes/web-data.tar.zst (139 B, 20.5 KiB of data)
        sha256        [ARCHIVE-SHA256]
        root          mode 0750, owner 999:999
        driver        local
        labels        app=web
        options       -
        defined by    data.volume (data-volume.service)
        used by       web.service
      cache (did not exist at backup time)
    ");
    let out = env.run(&["info", &b.id, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["id"], b.id.as_str());
    assert_eq!(json["valid"], true);
    assert_eq!(json["volumes"][0]["root"]["uid"], 999);
    assert_eq!(json["services"][0]["was_running"], true);
    assert_eq!(json["secrets"][0], "db-password");
    assert_eq!(json["downtime_seconds"], 2.5);
}

#[test]
fn info_of_a_missing_or_invalid_backup_fails_with_a_hint() {
    let env = TestEnv::new();
    standard_set(&env);
    let out = env.run(&["info", "web-2030-01-01-000000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no backup web-2030-01-01-000000"));
    assert!(stderr(&out).contains("hint: `leger-backup list`"));
    let out = env.run(&["info", "web-2025-01-01-000000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is invalid"), "{}", stderr(&out));
}

#[test]
fn verify_passes_a_sound_backup() {
    let env = TestEnv::new();
    let set = standard_set(&env);
    let out = env.run(&["verify", &set[2].id]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out), @"OK      db-2025-01-02-120000");
}

#[test]
fn verify_names_a_flipped_byte_and_exits_1() {
    let env = TestEnv::new();
    let set = standard_set(&env);
    let b = &set[2];
    flip_a_byte(&b.dir.join("volumes/db-logs.tar.zst"));
    let out = env.run(&["verify", &b.id]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("FAILED  db-2025-01-02-120000\n"), "{text}");
    assert!(
        text.contains("  volumes/db-logs.tar.zst: checksum mismatch"),
        "{text}"
    );
    assert!(
        !text.contains("db-data"),
        "only the bad file is named: {text}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("error: verification failed: db-2025-01-02-120000/volumes/db-logs.tar.zst"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn verify_detects_truncation_and_changed_files() {
    let env = TestEnv::new();
    let set = standard_set(&env);
    let b = &set[0];
    let archive = b.dir.join("volumes/web-data.tar.zst");
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() - 10]).unwrap();
    std::fs::write(
        b.dir.join(".active/web.container"),
        "[Container]\nImage=evil\n",
    )
    .unwrap();
    let out = env.run(&["verify", &b.id]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("volumes/web-data.tar.zst: length"), "{text}");
    assert!(text.contains(".active/web.container: size"), "{text}");
}

#[test]
fn verify_all_covers_every_backup_and_fails_on_invalid_ones() {
    let env = TestEnv::new();
    standard_set(&env);
    let out = env.run(&["verify", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(stdout(&out), @r"
    OK      web-2025-01-03-100000
    OK      db-2025-01-02-120000
    OK      web-2025-01-02-030405
    FAILED  web-2025-01-01-000000
      .backup-metadata.json: malformed metadata: EOF while parsing a value at line 1 column 7
    ");
}

#[test]
fn legacy_backups_read_but_cannot_be_verified() {
    let env = TestEnv::new();
    let dir = fabricate_legacy(&env, "legacy-2024-12-01-080000");
    let out = env.run(&["verify", "legacy-2024-12-01-080000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "OK      legacy-2024-12-01-080000\n");
    assert!(
        stderr(&out)
            .contains("warning: legacy-2024-12-01-080000: written by leger's Go implementation"),
        "{}",
        stderr(&out)
    );
    // Still read as a tar: garbage is caught.
    std::fs::write(dir.join("volumes/systemd-data.tar"), vec![b'x'; 4096]).unwrap();
    let out = env.run(&["verify", "legacy-2024-12-01-080000"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("volumes/systemd-data.tar"));
    let out = env.run(&["list"]);
    assert!(stdout(&out).contains("legacy-2024-12-01-080000"));
}

#[test]
fn hostile_metadata_is_refused() {
    let env = TestEnv::new();
    let set = standard_set(&env);
    let b = &set[0];
    // An archive that is a symlink out of the backup.
    let outside = env.write("secret.tar.zst", "not yours");
    let archive = b.dir.join("volumes/web-data.tar.zst");
    std::fs::remove_file(&archive).unwrap();
    std::os::unix::fs::symlink(&outside, &archive).unwrap();
    let out = env.run(&["verify", &b.id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("points outside the backup"),
        "{}",
        stdout(&out)
    );
    // A `..` path in the metadata makes the backup invalid.
    let meta = b.dir.join(".backup-metadata.json");
    let text = std::fs::read_to_string(&meta)
        .unwrap()
        .replace("volumes/web-data.tar.zst", "../../secret.tar.zst");
    std::fs::write(&meta, text).unwrap();
    let out = env.run(&["verify", &b.id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("contains '..'"), "{}", stderr(&out));
}

#[test]
fn delete_needs_yes_without_a_terminal() {
    let env = TestEnv::new();
    let set = standard_set(&env);
    let out = env.run(&["delete", &set[0].id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("hint: pass --yes"),
        "{}",
        stderr(&out)
    );
    assert!(set[0].dir.exists());
    let out = env.run(&["delete", &set[0].id, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!set[0].dir.exists());
    assert!(stderr(&out).contains("deleted web-2025-01-02-030405"));
    // Invalid backups can be deleted too.
    let out = env.run(&["delete", "web-2025-01-01-000000", "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["delete", "web-2025-01-01-000000", "-y"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no backup"));
}

#[test]
fn prune_dry_run_then_prune() {
    let env = TestEnv::new();
    standard_set(&env);
    for day in 4..=7 {
        fabricate(
            &env,
            &format!("web-2025-01-0{day}-000000"),
            "web",
            &format!("2025-01-0{day}T00:00:00Z"),
            "manual",
            &["web-data"],
        );
    }
    let out = env.run(&["prune", "--keep-manual", "2", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out), @r"
    would delete web-2025-01-05-000000
    would delete web-2025-01-04-000000
    would delete web-2025-01-02-030405
    kept invalid web-2025-01-01-000000 (not pruned automatically: .backup-metadata.json: malformed metadata: EOF while parsing a value at line 1 column 7)
    ");
    assert!(backups(&env).join("web-2025-01-04-000000").exists());

    let out = env.run(&["prune", "--keep-manual", "2", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["dry_run"], false);
    assert_eq!(
        json["deleted"],
        serde_json::json!([
            "web-2025-01-05-000000",
            "web-2025-01-04-000000",
            "web-2025-01-02-030405"
        ])
    );
    assert_eq!(
        json["kept"],
        serde_json::json!([
            "web-2025-01-07-000000",
            "web-2025-01-06-000000",
            "web-2025-01-03-100000",
            "db-2025-01-02-120000"
        ])
    );
    assert_eq!(json["invalid"][0]["id"], "web-2025-01-01-000000");
    let out = env.run(&["list", "--json"]);
    let ids: Vec<String> = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        [
            "web-2025-01-07-000000",
            "web-2025-01-06-000000",
            "web-2025-01-03-100000",
            "db-2025-01-02-120000",
            "web-2025-01-01-000000"
        ]
    );
}

#[test]
fn prune_uses_the_configured_policy_per_deployment() {
    let env = TestEnv::new();
    env.write(
        ".config/leger/config.yaml",
        "backup:\n  keep_manual: 1\n  keep_automatic: 0\n",
    );
    standard_set(&env);
    fabricate(
        &env,
        "db-2025-01-05-000000",
        "db",
        "2025-01-05T00:00:00Z",
        "manual",
        &["db-data"],
    );
    let out = env.run(&["prune", "--deployment", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "kept web-2025-01-03-100000 (the newest good backup of its deployment is never pruned)\n\
         kept invalid web-2025-01-01-000000 (not pruned automatically: .backup-metadata.json: malformed metadata: EOF while parsing a value at line 1 column 7)\n"
    );
    // db untouched although it has two manual backups.
    assert!(backups(&env).join("db-2025-01-02-120000").exists());
}

#[test]
fn bad_ids_are_refused_before_touching_the_disk() {
    let env = TestEnv::new();
    for args in [
        vec!["info", "../../etc"],
        vec!["verify", "a/b"],
        vec!["delete", ".tmp-x", "--yes"],
        vec!["info", "-"],
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("invalid backup ID"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("hint:"));
    }
    assert!(
        !env.path(".local").exists(),
        "nothing was created before the ID was checked"
    );
}

#[test]
fn a_backup_dir_others_can_write_is_refused() {
    let env = TestEnv::new();
    standard_set(&env);
    std::fs::set_permissions(backups(&env), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = env.run(&["list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("writable by group or others (mode 777)"),
        "{err}"
    );
    assert!(
        err.contains("hint: backups hold secrets: run `chmod 700"),
        "{err}"
    );
}

#[test]
fn leftovers_are_not_listed_and_prune_cleans_them() {
    let env = TestEnv::new();
    standard_set(&env);
    let tmp = backups(&env).join(".tmp-web-2025-01-09-000000");
    private_dir(&tmp);
    // A pid that cannot exist (above pid_max).
    std::fs::write(tmp.join(".pid"), "2147483647\n").unwrap();
    let out = env.run(&["list", "--json"]);
    assert!(!stdout(&out).contains(".tmp-"));
    let out = env.run(&["prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("removed .tmp-web-2025-01-09-000000"),
        "{}",
        stderr(&out)
    );
    assert!(!tmp.exists());
}
