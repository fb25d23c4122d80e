//! Host paths (issue 12) end to end, in the rootless testbed, on an
//! album-like deployment: its library path comes from a `${VAR}` of its
//! `[Service] EnvironmentFile=`, its database directory is a `%h/...` bind
//! holding files of a container user (a subordinate uid the test user
//! cannot read outside the user namespace), with a bind-mounted single
//! config file and `/etc/localtime`.
//!
//! `create` records the library, the database directory and the config
//! file, never `/etc/localtime`. `restore` puts every host path back
//! exactly (type, mode, numeric owner, link count, link target, sha256),
//! after the deployment and every host path were destroyed, and over
//! changed data (nothing stale); refuses a host path another deployment
//! binds unless `--force`, changing nothing; leaves what an `exclude:` glob
//! names out of the backup and untouched by the restore.
//!
//! Needs the direct reader's single-file roots (`--host`) for the config
//! file.
//!
//! Names (deployments `hp1`…`hp5`, `hp4b`, host paths under
//! `~/leger-e2e-hpN*`) are unique to this file; the exclude test writes
//! `~/.config/leger/config.yaml` (marked as its own) and removes it. Shell
//! helpers from [`super::hostile_restore`] and [`ALBUM_SH`].

use super::hostile_restore::{create, fails, succeeds};
use crate::support::deploy::assert_same;
use crate::support::testbed::Testbed;

/// Shell helpers for album-like deployments NAME, whose host paths are
/// `~/leger-e2e-NAME/library` (the `${LIBRARY}` of its env file),
/// `~/leger-e2e-NAME/db` and `~/leger-e2e-NAME-conf/app.conf`.
const ALBUM_SH: &str = r#"
# album NAME: the deployment, its host paths filled, its service running.
album() {
  n=$1; h=$HOME/leger-e2e-$1
  mkdir -p "$Q/$n" "$h/library/2024" "$h/db" "$h-conf"
  printf 'LIBRARY=%s\n' "$h/library" > "$Q/$n/$n.env"
  cat > "$Q/$n/$n.container" <<UNIT
[Container]
Image=localhost/busybox:latest
$EXEC
Volume=\${LIBRARY}:/data
Volume=%h/leger-e2e-$n/db:/var/lib/db
Volume=%h/leger-e2e-$n-conf/app.conf:/etc/app.conf:ro
Volume=/etc/localtime:/etc/localtime:ro

[Service]
EnvironmentFile=%h/.config/containers/systemd/$n/$n.env
UNIT
  printf 'a cat\n' > "$h/library/2024/cat.jpg"
  printf 'answer = 42\n' > "$h-conf/app.conf"
  head -c 100000 /dev/urandom > "$h/db/base.bin"
  chmod 700 "$h/db"
  podman unshare chown -R 100:100 "$h/db"
  systemctl --user daemon-reload
  systemctl --user start "$n.service"
  active "$n.service"
}
# album_extras NAME: what an exact copy must keep besides plain files: a
# symlink, a hardlink, an empty directory, a 0700 directory, a 0600 file,
# and in the database files of two container users.
album_extras() {
  h=$HOME/leger-e2e-$1
  ln -s 2024/cat.jpg "$h/library/latest.jpg"
  ln "$h/library/2024/cat.jpg" "$h/library/cat-again.jpg"
  chmod 644 "$h/library/2024/cat.jpg"
  mkdir -m 755 "$h/library/empty"
  mkdir -m 700 "$h/library/private"
  printf 'secret\n' > "$h/library/private/key"
  chmod 600 "$h/library/private/key"
  podman unshare sh -c 'printf "host all trust\n" > "$1/hba.conf" && chown 100:100 "$1/hba.conf" &&
    chmod 600 "$1/hba.conf" && printf "log\n" > "$1/log" && chown 101:102 "$1/log" && chmod 640 "$1/log"' sh "$h/db"
}
# album_paths NAME: its host paths, one a line (what host_manifest takes).
album_paths() {
  printf '%s\n' "$HOME/leger-e2e-$1/library" "$HOME/leger-e2e-$1/db" "$HOME/leger-e2e-$1-conf/app.conf"
}
# host_manifest PATH...: each path as the containers see it (inside the
# user namespace, numeric owners): path, type, mode, owner, group, link
# count and link target of it and everything below, then the sha256 of its
# regular files; `== PATH absent` when nothing is there.
host_manifest() {
  for p in "$@"; do
    if [ ! -e "$p" ] && [ ! -L "$p" ]; then echo "== $p absent"; continue; fi
    echo "== $p"
    podman unshare sh -c 'cd "$(dirname "$1")" && b=$(basename "$1") &&
      find "$b" -printf "%p %y %m %U %G %n %l\n" | LC_ALL=C sort &&
      find "$b" -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum' sh "$p"
  done
}
# album_manifest NAME: host_manifest of its host paths.
album_manifest() { host_manifest $(album_paths "$1"); }
# destroy_album NAME...: stop NAME, remove its quadlet files and every one
# of its host paths (with the missing parents' directories).
destroy_album() {
  for n in "$@"; do
    systemctl --user stop "$n.service" >/dev/null 2>&1 || true
    rm -rf "${Q:?}/$n"
    podman unshare rm -rf "$HOME/leger-e2e-$n" "$HOME/leger-e2e-$n-conf"
  done
  systemctl --user daemon-reload
}
# forget_album NAME...: destroy_album and its backups (what a previous,
# failed run may have left).
forget_album() {
  destroy_album "$@"
  for n in "$@"; do rm -rf "$BACKUPS/$n"-*; done
}
# localtime_state: what /etc/localtime is, to show it untouched.
localtime_state() { ls -ld --time-style=full-iso /etc/localtime; sha256sum /etc/localtime; }
"#;

/// Run `body` after [`ALBUM_SH`]; panic unless it succeeds; (stdout, stderr).
fn ok(tb: &Testbed, body: &str) -> (String, String) {
    succeeds(tb, &format!("{ALBUM_SH}\n{body}"))
}

/// Run `body` after [`ALBUM_SH`]; panic unless it fails; (stdout, stderr).
fn refused(tb: &Testbed, body: &str) -> (String, String) {
    fails(tb, &format!("{ALBUM_SH}\n{body}"))
}

/// The `info --json` of backup `id`.
fn info(tb: &Testbed, id: &str) -> serde_json::Value {
    let (info, _) = succeeds(tb, &format!("leger-backup --json info {id}"));
    serde_json::from_str(&info).expect("info --json")
}

/// The sorted paths of the `host_paths` of `info`.
fn host_paths(info: &serde_json::Value) -> Vec<String> {
    let hosts = info["host_paths"].as_array().expect("host_paths");
    let mut paths: Vec<String> = hosts
        .iter()
        .map(|h| h["path"].as_str().expect("path").to_owned())
        .collect();
    paths.sort_unstable();
    paths
}

/// The test user's home in the testbed.
fn home(tb: &Testbed) -> String {
    succeeds(tb, "printf %s \"$HOME\"").0
}

#[test]
fn create_records_the_data_env_var_and_config_host_paths_not_localtime() {
    let tb = Testbed::get();
    ok(&tb, "forget_album hp1");
    ok(&tb, "album hp1");
    let home = home(&tb);

    let id = create(&tb, "hp1");
    let info = info(&tb, &id);
    let hosts = info["host_paths"].as_array().expect("host_paths");
    let paths = host_paths(&info);
    let expected = [
        format!("{home}/leger-e2e-hp1-conf/app.conf"),
        format!("{home}/leger-e2e-hp1/db"),
        format!("{home}/leger-e2e-hp1/library"),
    ];
    assert_eq!(paths, expected, "{info}");
    assert!(!paths.iter().any(|p| p == "/etc/localtime"), "{info}");
    let by_path = |p: &str| hosts.iter().find(|h| h["path"] == p).unwrap();
    let library = by_path(&expected[2]);
    assert_eq!(library["source"], "${LIBRARY}");
    assert_eq!(library["kind"], "dir");
    let db = by_path(&expected[1]);
    assert_eq!(db["root"]["uid"], 100, "{db}");
    assert_eq!(db["root"]["mode"], 0o700, "{db}");
    assert_eq!(by_path(&expected[0])["kind"], "file");

    // The database's files are archived with their container owner.
    let (listing, _) = succeeds(
        &tb,
        &format!(
            r#"b="$BACKUPS/{id}"
            a=$(jq -r --arg p "$HOME/leger-e2e-hp1/db" '.host_paths[] | select(.path == $p) | .archive_path' "$b/.backup-metadata.json")
            zstd -dc "$b/$a" | tar --numeric-owner -tvf -"#
        ),
    );
    assert!(listing.contains("100/100"), "{listing}");
    assert!(listing.contains("base.bin"), "{listing}");

    succeeds(&tb, &format!("leger-backup verify {id}"));
    succeeds(&tb, "active hp1.service");
    ok(&tb, "forget_album hp1");
}

/// Back up, destroy the deployment and every host path (and their parent
/// directories), restore: every host path is byte-identical to the backup
/// (modes, numeric owners of container users, a symlink, a hardlink, an
/// empty and a 0700 directory, a 0600 file, the bind-mounted config file),
/// the service runs, and `/etc/localtime` was neither backed up nor touched.
#[test]
fn restore_after_destroying_every_host_path_brings_each_back_exactly() {
    let tb = Testbed::get();
    ok(&tb, "forget_album hp2");
    ok(&tb, "album hp2 && album_extras hp2");
    let (localtime, _) = ok(&tb, "localtime_state");
    let id = create(&tb, "hp2");
    let (before, _) = ok(&tb, "album_manifest hp2");
    // The manifest sees what it must compare.
    for needle in [
        "library/latest.jpg l 777",
        "library/empty d 755",
        "library/private d 700",
        "library/private/key f 600",
        "library/cat-again.jpg f 644 0 0 2 ",
        "db d 700 100 100",
        "db/hba.conf f 600 100 100",
        "db/log f 640 101 102",
        "app.conf f ",
    ] {
        assert!(
            before.contains(needle),
            "manifest lacks {needle:?}:\n{before}"
        );
    }
    let paths = host_paths(&info(&tb, &id));
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(!paths.iter().any(|p| p == "/etc/localtime"), "{paths:?}");

    ok(&tb, "destroy_album hp2");
    let (gone, _) = ok(&tb, "album_manifest hp2");
    assert_eq!(gone.matches("absent").count(), 3, "{gone}");
    ok(
        &tb,
        "[ ! -e \"$HOME/leger-e2e-hp2\" ] && [ ! -e \"$HOME/leger-e2e-hp2-conf\" ]",
    );

    ok(&tb, &format!("leger-backup restore {id} --yes"));
    assert_same(
        "host paths after restore",
        &before,
        &ok(&tb, "album_manifest hp2").0,
    );
    ok(&tb, "active hp2.service");
    assert_same("/etc/localtime", &localtime, &ok(&tb, "localtime_state").0);
    ok(&tb, "forget_album hp2");
}

/// A restore over changed host paths leaves nothing of the change: a file
/// added to the library (and to the database, as a container user) is
/// gone, the edited config file is back.
#[test]
fn restore_leaves_nothing_stale_in_host_paths() {
    let tb = Testbed::get();
    ok(&tb, "forget_album hp3");
    ok(&tb, "album hp3");
    let id = create(&tb, "hp3");
    let (before, _) = ok(&tb, "album_manifest hp3");
    ok(
        &tb,
        r#"h=$HOME/leger-e2e-hp3
        printf 'a dog\n' > "$h/library/2024/dog.jpg"
        mkdir "$h/library/2025"
        printf 'answer = 43\n' > "$h-conf/app.conf"
        podman unshare sh -c 'printf "x\n" > "$1/stale" && chown 100:100 "$1/stale"' sh "$h/db""#,
    );
    let (changed, _) = ok(&tb, "album_manifest hp3");
    assert_ne!(before, changed);

    ok(&tb, &format!("leger-backup restore {id} --yes"));
    assert_same(
        "host paths after restore",
        &before,
        &ok(&tb, "album_manifest hp3").0,
    );
    ok(
        &tb,
        r#"h=$HOME/leger-e2e-hp3
        [ ! -e "$h/library/2024/dog.jpg" ] && [ ! -e "$h/library/2025" ]
        [ "$(cat "$h-conf/app.conf")" = "answer = 42" ]
        podman unshare sh -c '[ ! -e "$1/stale" ]' sh "$h/db"
        active hp3.service"#,
    );
    ok(&tb, "forget_album hp3");
}

/// hp4's database directory is also bound by hp4b (installed, stopped): the
/// restore is refused, naming the path and hp4b, and changes nothing;
/// with `--force` it restores.
#[test]
fn a_host_path_another_deployment_binds_is_restored_only_with_force() {
    let tb = Testbed::get();
    ok(&tb, "forget_album hp4 hp4b");
    ok(&tb, "album hp4");
    let home = home(&tb);
    let id = create(&tb, "hp4");
    let (backed_up, _) = ok(&tb, "album_manifest hp4");
    // Installed after the backup: what decides is who binds it when the
    // restore runs.
    ok(
        &tb,
        r#"plain hp4b "%h/leger-e2e-hp4/db"
        systemctl --user daemon-reload
        if systemctl --user is-active --quiet hp4b.service; then exit 1; fi
        podman unshare sh -c 'printf "v2\n" > "$1/marker" && chown 100:100 "$1/marker"' sh "$HOME/leger-e2e-hp4/db"
        printf 'answer = 43\n' > "$HOME/leger-e2e-hp4-conf/app.conf""#,
    );
    let (changed, _) = ok(&tb, "album_manifest hp4");

    let (_, stderr) = refused(&tb, &format!("leger-backup restore {id} --yes"));
    eprintln!("shared host path refused:\n{stderr}");
    assert!(
        stderr.contains(&format!("{home}/leger-e2e-hp4/db")),
        "{stderr}"
    );
    assert!(stderr.contains("hp4b"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_same(
        "host paths after the refusal",
        &changed,
        &ok(&tb, "album_manifest hp4").0,
    );
    ok(&tb, "active hp4.service");

    ok(&tb, &format!("leger-backup restore {id} --yes --force"));
    assert_same(
        "host paths after --force",
        &backed_up,
        &ok(&tb, "album_manifest hp4").0,
    );
    ok(
        &tb,
        "active hp4.service && ! systemctl --user is-active hp4b.service",
    );
    ok(&tb, "forget_album hp4 hp4b");
}

/// This test's config file: hp5's library left out by an `exclude:` glob.
const CONFIG_HP5: &str = r#"
c=$HOME/.config/leger/config.yaml
# forget_config: remove the config file if it is this test's.
forget_config() { if [ -e "$c" ] && grep -qx '# leger-e2e-hp5' "$c"; then rm -f "$c"; fi; }
"#;

/// An `exclude:` glob leaves hp5's library out of the backup (`info` has
/// no entry for it) and the restore leaves what is there untouched, while
/// it restores the other host paths.
#[test]
fn an_excluded_host_path_is_neither_backed_up_nor_restored() {
    let tb = Testbed::get();
    let cleanup = format!("{CONFIG_HP5}\nforget_config\nforget_album hp5");
    ok(&tb, &cleanup);
    ok(
        &tb,
        &format!(
            r#"{CONFIG_HP5}
            [ ! -e "$c" ] || {{ echo "$c is not this test's: move it away" >&2; exit 1; }}
            mkdir -p "$(dirname "$c")"
            printf '# leger-e2e-hp5\nbackup:\n  deployments:\n    hp5:\n      exclude: ["~/leger-e2e-hp5/lib*"]\n' > "$c"
            album hp5"#
        ),
    );
    let home = home(&tb);
    let id = create(&tb, "hp5");
    let info = info(&tb, &id);
    assert_eq!(
        host_paths(&info),
        [
            format!("{home}/leger-e2e-hp5-conf/app.conf"),
            format!("{home}/leger-e2e-hp5/db"),
        ],
        "{info}"
    );
    ok(
        &tb,
        r#"h=$HOME/leger-e2e-hp5
        printf 'a dog\n' > "$h/library/2024/dog.jpg"
        printf 'a cat, edited\n' > "$h/library/2024/cat.jpg"
        printf 'answer = 43\n' > "$h-conf/app.conf""#,
    );
    let (library, _) = ok(&tb, "host_manifest \"$HOME/leger-e2e-hp5/library\"");
    assert!(library.contains("dog.jpg"), "{library}");

    ok(&tb, &format!("leger-backup restore {id} --yes"));
    assert_same(
        "the excluded library after restore",
        &library,
        &ok(&tb, "host_manifest \"$HOME/leger-e2e-hp5/library\"").0,
    );
    ok(
        &tb,
        r#"[ "$(cat "$HOME/leger-e2e-hp5-conf/app.conf")" = "answer = 42" ]
        active hp5.service"#,
    );
    ok(&tb, &cleanup);
}

/// A restore killed (SIGKILL) after it removed a host path, before writing
/// it back: `recover` puts back the state from just before the restore —
/// the changed data, from the safety backup — and starts the service.
#[test]
fn a_restore_killed_inside_a_host_path_is_recovered_to_the_state_before() {
    let tb = Testbed::get();
    // A failed earlier run may have left its restore to recover.
    ok(
        &tb,
        "leger-backup recover --yes >/dev/null 2>&1 || true; forget_album hp6",
    );
    ok(&tb, "album hp6");
    let id = create(&tb, "hp6");
    ok(
        &tb,
        r#"h=$HOME/leger-e2e-hp6
        printf 'a dog\n' > "$h/library/2024/dog.jpg"
        printf 'answer = 43\n' > "$h-conf/app.conf""#,
    );
    let (changed, _) = ok(&tb, "album_manifest hp6");
    let (_, err) = refused(
        &tb,
        &format!(
            "LEGER_BACKUP_FAULT=restore:during-host-path leger-backup restore {id} --yes \
             || {{ echo \"rc=$?\" >&2; false; }}"
        ),
    );
    assert!(err.contains("rc=137"), "killed by SIGKILL:\n{err}");
    // `status` names the step the restore died in.
    ok(&tb, "leger-backup status 2>&1 | grep 'replacing host path'");
    ok(&tb, "leger-backup recover --yes");
    assert_same(
        "host paths after recover",
        &changed,
        &ok(&tb, "album_manifest hp6").0,
    );
    ok(&tb, "active hp6.service");
    ok(&tb, "forget_album hp6");
}

/// A deployment shaped like podman-quadlet-cookbook's postgresql, rootless:
/// its data directory a bind with an SELinux option (`:Z`) owned by the
/// database's container user, its init scripts a bind-mounted directory
/// and a single bind-mounted file (`:ro,z`). Destroyed with every host
/// path and restored: identical, running.
const PG_SH: &str = r#"
pg() {
  h=$HOME/leger-e2e-pg7
  mkdir -p "$Q/pg7" "$h/data/base/1" "$h-etc/scripts"
  cat > "$Q/pg7/pg7.container" <<UNIT
[Container]
Image=localhost/busybox:latest
$EXEC
Volume=%h/leger-e2e-pg7/data:/var/lib/postgresql/data:Z
Volume=%h/leger-e2e-pg7-etc/init.sql:/docker-entrypoint-initdb.d/init.sql:ro,z
Volume=%h/leger-e2e-pg7-etc/scripts:/scripts:ro
UNIT
  printf 'CREATE TABLE t (id int);\n' > "$h-etc/init.sql"
  printf '#!/bin/sh\necho backup\n' > "$h-etc/scripts/backup.sh"
  chmod 755 "$h-etc/scripts/backup.sh"
  printf '16\n' > "$h/data/PG_VERSION"
  head -c 200000 /dev/urandom > "$h/data/base/1/16384"
  chmod -R go= "$h/data"
  podman unshare chown -R 999:999 "$h/data"
  systemctl --user daemon-reload
  systemctl --user start pg7.service
  active pg7.service
}
pg_manifest() {
  h=$HOME/leger-e2e-pg7
  host_manifest "$h/data" "$h-etc/init.sql" "$h-etc/scripts"
}
forget_pg() {
  systemctl --user stop pg7.service >/dev/null 2>&1 || true
  rm -rf "${Q:?}/pg7" "$BACKUPS"/pg7-*
  podman unshare rm -rf "$HOME/leger-e2e-pg7" "$HOME/leger-e2e-pg7-etc"
  systemctl --user daemon-reload
}
"#;

#[test]
fn a_postgresql_shaped_deployment_comes_back_from_its_host_paths_alone() {
    let tb = Testbed::get();
    let pg = |body: &str| ok(&tb, &format!("{PG_SH}\n{body}"));
    pg("forget_pg");
    pg("pg");
    let id = create(&tb, "pg7");
    let paths = host_paths(&info(&tb, &id));
    assert_eq!(paths.len(), 3, "{paths:?}");
    let (before, _) = pg("pg_manifest");
    assert!(before.contains("data d 700 999 999"), "{before}");
    // Nothing left: the unit, its data, its scripts (their parents too).
    pg("systemctl --user stop pg7.service; rm -rf \"${Q:?}/pg7\"; \
        podman unshare rm -rf \"$HOME/leger-e2e-pg7\" \"$HOME/leger-e2e-pg7-etc\"; \
        systemctl --user daemon-reload");
    pg(&format!("leger-backup restore {id} --yes"));
    assert_same("host paths after restore", &before, &pg("pg_manifest").0);
    pg("active pg7.service; forget_pg");
}
