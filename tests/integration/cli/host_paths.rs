//! `create` backs up a deployment's host paths (bind-mounted directories
//! from `${VAR}` sources): through the real binary in a private HOME with
//! `podman` and `systemctl` stand-ins; the host paths are directories of
//! the test, read by the binary's own reader (as root, no `podman
//! unshare` is needed; rootless, the stand-in runs the command itself).

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use serde_json::Value;

use crate::support::{stderr, stdout, TestEnv, SYSTEMCTL_ALL_INACTIVE};

const BACKUPS: &str = ".local/share/bluebuild-quadlets/backups";

/// `podman` that runs `unshare` commands itself and answers nothing else;
/// `systemctl` for which every unit is inactive. Returns the PATH to use.
fn fake_tools(env: &TestEnv) -> String {
    let podman = r#"#!/bin/sh
case "$1" in
  unshare) shift; exec "$@" ;;
  ps) echo '[]' ;;
  *) exit 0 ;;
esac
"#;
    env.fake_tools(&[("podman", podman), ("systemctl", SYSTEMCTL_ALL_INACTIVE)])
}

/// The album fixture with its library and database under HOME (from the
/// `EnvironmentFile=` systemd reads), each holding a file.
fn album(env: &TestEnv) {
    let dir = env.copy_fixture("deployments/album", ".config/containers/systemd/album");
    std::fs::write(
        dir.join("album.env"),
        format!(
            "UPLOAD_LOCATION={}\nDB_DATA_LOCATION=\"{}\"\n",
            env.path("album/library").display(),
            env.path("album/postgres").display()
        ),
    )
    .unwrap();
    env.write("album/library/2024/cat.jpg", "a cat\n");
    env.write("album/postgres/PG_VERSION", "16\n");
    std::fs::set_permissions(
        env.path("album/postgres"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
}

fn run(env: &TestEnv, path: &str, args: &[&str]) -> Output {
    env.command().env("PATH", path).args(args).output().unwrap()
}

/// The metadata of the only backup, as `info --json` shows it.
fn only_backup(env: &TestEnv, path: &str) -> Value {
    let out = run(env, path, &["--json", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let out = run(env, path, &["--json", "info", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// The album deployed and backed up: (PATH, the backup's `info --json`).
fn album_backed_up(env: &TestEnv) -> (String, Value) {
    album(env);
    let path = fake_tools(env);
    let out = run(env, &path, &["create", "album"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = only_backup(env, &path);
    (path, info)
}

#[test]
fn create_stores_the_album_host_paths() {
    let env = TestEnv::new();
    let (path, info) = album_backed_up(&env);
    let hosts = info["host_paths"].as_array().expect("host_paths recorded");
    let library = env.path("album/library").display().to_string();
    let postgres = env.path("album/postgres").display().to_string();
    let recorded: Vec<&str> = hosts.iter().map(|h| h["path"].as_str().unwrap()).collect();
    // Sorted by path; /etc/localtime and the deployment's own files are not
    // host paths of the backup.
    assert_eq!(recorded, [library.as_str(), postgres.as_str()], "{info}");
    assert_eq!(hosts[0]["source"], "${UPLOAD_LOCATION}");
    assert_eq!(hosts[0]["kind"], "dir");
    assert_eq!(hosts[0]["existed"], true);
    assert_eq!(hosts[0]["archive_path"], "host-paths/0.tar.zst");
    assert_eq!(
        hosts[0]["used_by"],
        serde_json::json!(["album-server.service"])
    );
    assert_eq!(hosts[1]["archive_path"], "host-paths/1.tar.zst");
    assert_eq!(hosts[1]["root"]["mode"], 0o700);
    // The archive holds the directory's contents.
    let backup = env.path(BACKUPS).join(info["id"].as_str().unwrap());
    let tar = std::process::Command::new("sh")
        .arg("-c")
        .arg("zstd -dc host-paths/0.tar.zst | tar -tf -")
        .current_dir(&backup)
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&tar.stdout);
    assert!(names.contains("2024/cat.jpg"), "{names}");
    // `info` and `list` show them; `verify` reads them.
    let id = info["id"].as_str().unwrap();
    let text = stdout(&run(&env, &path, &["info", id]));
    assert!(text.contains("Host paths (2):"), "{text}");
    assert!(text.contains(&format!("  {library} (directory)")), "{text}");
    let text = stdout(&run(&env, &path, &["list"]));
    assert!(text.contains("+2 host paths"), "{text}");
    let out = run(&env, &path, &["verify", id]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn verify_catches_a_corrupted_host_path_archive() {
    let env = TestEnv::new();
    let (path, info) = album_backed_up(&env);
    let id = info["id"].as_str().unwrap();
    let archive = env.path(BACKUPS).join(id).join("host-paths/1.tar.zst");
    let mut bytes = std::fs::read(&archive).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x20;
    std::fs::write(&archive, bytes).unwrap();
    let out = run(&env, &path, &["verify", id]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("host-paths/1.tar.zst: checksum mismatch"),
        "{text}"
    );
}

#[test]
fn a_host_path_that_cannot_be_read_fails_the_backup_naming_it() {
    let env = TestEnv::new();
    album(&env);
    // The library is a symlink to the real directory: not read through.
    std::fs::rename(env.path("album/library"), env.path("album/real")).unwrap();
    std::os::unix::fs::symlink(env.path("album/real"), env.path("album/library")).unwrap();
    let path = fake_tools(&env);
    let out = run(&env, &path, &["create", "album"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let library = env.path("album/library").display().to_string();
    assert!(
        err.contains(&format!("reading host path {library}")),
        "{err}"
    );
    assert!(err.contains("is a symlink"), "{err}");
    assert!(err.contains("backup.deployments.album"), "{err}");
    assert!(
        !env.path(BACKUPS).exists() || only_none(&env, &path),
        "{err}"
    );
}

/// Whether the store holds no backup.
fn only_none(env: &TestEnv, path: &str) -> bool {
    let out = run(env, path, &["--json", "list"]);
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    list.as_array().unwrap().is_empty()
}

/// `systemctl` whose units in `active` are active until stopped (state in
/// files of `systemctl/`), logging every call to `systemctl/log`.
fn systemctl_with_running(env: &TestEnv, active: &[&str]) -> String {
    let dir = env.path("systemctl");
    std::fs::create_dir_all(&dir).unwrap();
    for unit in active {
        std::fs::write(dir.join(format!("{unit}.active")), "").unwrap();
    }
    let script = format!(
        r#"#!/bin/sh
S='{dir}'
echo "$*" >> "$S/log"
case " $* " in
  *" show --property=ActiveState "*)
    seen=
    for a; do
      if [ -n "$seen" ]; then
        if [ -e "$S/$a.active" ]; then echo active; else echo inactive; fi
      fi
      [ "$a" = -- ] && seen=1
    done ;;
  *" stop "*) for a; do rm -f "$S/$a.active"; done ;;
  *" start "*) for a; do : > "$S/$a.active"; done ;;
esac
exit 0
"#,
        dir = dir.display()
    );
    fake_tools(env);
    env.fake_tools(&[("systemctl", &script)])
}

#[test]
fn the_services_using_a_host_path_are_stopped_while_it_is_read_unless_live() {
    let env = TestEnv::new();
    album(&env);
    let running = [
        "album-db.service",
        "album-server.service",
        "album-ml.service",
    ];
    let path = systemctl_with_running(&env, &running);
    let out = run(&env, &path, &["create", "album"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = std::fs::read_to_string(env.path("systemctl/log")).unwrap();
    let stop = log
        .lines()
        .position(|l| l.contains("stop -- album-db.service album-server.service"))
        .unwrap_or_else(|| panic!("no stop of the host paths' users:\n{log}"));
    let start = log
        .lines()
        .position(|l| l.contains("start -- album-db.service album-server.service"));
    assert!(start > Some(stop), "{log}");
    // album-ml uses no host path the backup reads: it keeps running.
    assert!(
        !log.lines()
            .any(|l| l.contains("stop") && l.contains("album-ml.service")),
        "{log}"
    );
    let info = only_backup(&env, &path);
    assert_eq!(info["consistency"], "stopped", "{info}");

    std::fs::remove_file(env.path("systemctl/log")).unwrap();
    let out = run(&env, &path, &["create", "album", "--live"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = std::fs::read_to_string(env.path("systemctl/log")).unwrap();
    assert!(!log.lines().any(|l| l.contains("stop")), "{log}");
}

#[test]
fn delete_removes_the_host_path_archives() {
    let env = TestEnv::new();
    let (path, info) = album_backed_up(&env);
    let id = info["id"].as_str().unwrap();
    let backup = env.path(BACKUPS).join(id);
    assert!(backup.join("host-paths/0.tar.zst").is_file());
    let out = run(&env, &path, &["delete", id, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!backup.exists());
    let leftovers: Vec<_> = std::fs::read_dir(env.path(BACKUPS))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A tree's entries as `find` shows them (type, mode, path; contents of
/// regular files), to compare before and after.
fn manifest(dir: &std::path::Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"cd "$1" && find . -printf '%y %m %U:%G %p %l\n' | sort && find . -type f -print0 | sort -z | xargs -0r sha256sum"#)
        .arg("sh")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn restore_puts_the_host_paths_back_exactly_and_nothing_stale() {
    let env = TestEnv::new();
    album(&env);
    env.write("album/library/2024/empty-dir/.keep", "");
    std::fs::remove_file(env.path("album/library/2024/empty-dir/.keep")).unwrap();
    std::os::unix::fs::symlink("2024/cat.jpg", env.path("album/library/latest")).unwrap();
    let (library, postgres) = (env.path("album/library"), env.path("album/postgres"));
    let before = (manifest(&library), manifest(&postgres));
    let path = fake_tools(&env);
    let out = run(&env, &path, &["--json", "create", "album"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = serde_json::from_str::<Value>(&stdout(&out)).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Changed since: a stale file added, a file changed, the database gone.
    env.write("album/library/stale.jpg", "stale\n");
    env.write("album/library/2024/cat.jpg", "another cat\n");
    std::fs::remove_dir_all(&postgres).unwrap();
    let out = run(&env, &path, &["restore", &id, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((manifest(&library), manifest(&postgres)), before);
    let mode = std::fs::metadata(&postgres).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o700);
}

#[test]
fn a_host_path_another_deployment_uses_is_refused_without_force() {
    let env = TestEnv::new();
    let (path, info) = album_backed_up(&env);
    let id = info["id"].as_str().unwrap();
    let postgres = env.path("album/postgres");
    env.write(
        ".config/containers/systemd/other/other.container",
        &format!(
            "[Container]\nImage=localhost/busybox:latest\nVolume={}:/data\n",
            postgres.display()
        ),
    );
    env.write("album/postgres/newer", "kept\n");
    let out = run(&env, &path, &["restore", id, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "host path {} is used by deployment other",
            postgres.display()
        )),
        "{err}"
    );
    assert!(postgres.join("newer").exists(), "nothing changed");
    let out = run(&env, &path, &["restore", id, "--yes", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!postgres.join("newer").exists());
}

#[test]
fn a_backup_naming_a_path_its_deployment_would_not_take_is_refused() {
    let env = TestEnv::new();
    let (path, info) = album_backed_up(&env);
    let id = info["id"].as_str().unwrap();
    let file = env.path(BACKUPS).join(id).join(".backup-metadata.json");
    let original = std::fs::read_to_string(&file).unwrap();
    let postgres = env.path("album/postgres").display().to_string();
    // The system's, a rootless deployment's /etc/<app> no include: names,
    // the user's own setup, and a directory holding the backups themselves.
    let ssh = env.path(".ssh/leger-e2e-evil").display().to_string();
    let holding_backups = env.path(".local/share").display().to_string();
    for hostile in [
        "/usr/local/lib/leger-e2e-evil",
        "/etc/leger-e2e-evil",
        &ssh,
        &holding_backups,
    ] {
        std::fs::write(&file, original.replace(&postgres, hostile)).unwrap();
        let out = run(&env, &path, &["restore", id, "--yes"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "would write the host path {hostile}, which a backup of album does not take"
            )),
            "{err}"
        );
        assert!(hostile == holding_backups || !std::path::Path::new(hostile).exists());
    }
    assert!(env.path(BACKUPS).join(id).is_dir());
}

#[test]
fn data_at_a_host_path_of_an_uninstalled_deployment_survives_a_failed_restore() {
    let env = TestEnv::new();
    let (_, info) = album_backed_up(&env);
    let id = info["id"].as_str().unwrap();
    // The deployment removed, its data left behind and changed since.
    std::fs::remove_dir_all(env.path(".config/containers/systemd/album")).unwrap();
    env.write("album/library/newer.jpg", "taken after the backup\n");
    let library = env.path("album/library");
    let before = manifest(&library);
    // Its services never start: the restore rolls back.
    let failing_start = SYSTEMCTL_ALL_INACTIVE.replace(
        "case \" $* \" in",
        "case \" $* \" in\n  *\" start \"*) echo 'start failed' >&2; exit 1 ;;",
    );
    fake_tools(&env);
    let path = env.fake_tools(&[("systemctl", &failing_start)]);
    let out = run(&env, &path, &["restore", id, "--yes"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("rolled back"), "{}", stderr(&out));
    assert_eq!(manifest(&library), before, "{}", stderr(&out));
}

#[test]
fn a_host_path_reached_through_a_symlink_to_the_users_own_setup_is_not_written() {
    let env = TestEnv::new();
    let (path, info) = album_backed_up(&env);
    let id = info["id"].as_str().unwrap();
    // Since the backup, album/ became a symlink into ~/.ssh.
    let ssh = env.path(".ssh/album");
    std::fs::create_dir_all(ssh.parent().unwrap()).unwrap();
    std::fs::rename(env.path("album"), &ssh).unwrap();
    std::os::unix::fs::symlink(&ssh, env.path("album")).unwrap();
    env.write(".ssh/album/library/authorized_keys", "ssh-ed25519 AAAA\n");
    let before = manifest(&ssh);
    let out = run(&env, &path, &["restore", id, "--yes"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("leads through the symlink"), "{err}");
    assert_eq!(manifest(&ssh), before, "nothing written there");
}

#[test]
fn a_host_path_excluded_since_the_backup_is_left_as_it_is() {
    let env = TestEnv::new();
    let (path, info) = album_backed_up(&env);
    let id = info["id"].as_str().unwrap();
    let library = env.path("album/library");
    env.write(
        ".config/leger/config.yaml",
        &format!(
            "backup:\n  deployments:\n    album:\n      exclude: [\"{}\"]\n",
            library.display()
        ),
    );
    env.write("album/library/newer.jpg", "taken after the backup\n");
    env.write("album/postgres/newer", "stale\n");
    let before = manifest(&library);
    let out = run(&env, &path, &["restore", id, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "host path {} is excluded by the configuration now: left as it is",
            library.display()
        )),
        "{err}"
    );
    assert_eq!(manifest(&library), before);
    assert!(
        !env.path("album/postgres/newer").exists(),
        "the rest is restored"
    );
}

#[test]
fn an_unchanged_host_path_shares_the_previous_archive_a_changed_one_is_read() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new();
    let (path, first) = album_backed_up(&env);
    let first = env.path(BACKUPS).join(first["id"].as_str().unwrap());
    let create = || {
        let out = run(&env, &path, &["--json", "create", "album"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let id = serde_json::from_str::<Value>(&stdout(&out)).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        (env.path(BACKUPS).join(id), stderr(&out))
    };
    let links = |backup: &std::path::Path, n: usize| {
        std::fs::metadata(backup.join(format!("host-paths/{n}.tar.zst")))
            .unwrap()
            .nlink()
    };
    let (second, err) = create();
    assert!(err.contains("unchanged since backup"), "{err}");
    assert_eq!((links(&second, 0), links(&second, 1)), (2, 2), "{err}");
    let out = run(
        &env,
        &path,
        &["verify", second.file_name().unwrap().to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // A file added to the library: read again; the database still shared.
    env.write("album/library/2024/dog.jpg", "a dog\n");
    let (third, err) = create();
    assert_eq!((links(&third, 0), links(&third, 1)), (1, 3), "{err}");
    let names = std::process::Command::new("sh")
        .arg("-c")
        .arg("zstd -dc host-paths/0.tar.zst | tar -tf -")
        .current_dir(&third)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&names.stdout).contains("2024/dog.jpg"));
    assert!(first.is_dir());
}
