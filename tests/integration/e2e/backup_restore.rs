//! The main job, end to end in the rootless testbed: back up a leger
//! deployment (two containers, a `.volume` with `VolumeName=`, one without,
//! a plain named volume), break it, restore it exactly; refuse a damaged
//! backup without touching anything; roll back a restore that fails half-way.
//!
//! "Exactly" is checked with a manifest of every volume (path, type, mode,
//! uid, gid, link target and sha256, the volume root included, seen inside
//! `podman unshare`) and of the deployment's files, taken before the backup
//! and compared after the restore.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::deploy::{assert_same, timed, MANIFEST_SH};
use crate::support::testbed::Testbed;

const SIM: &str = "/src/tests/support/leger-sim";
const FIXTURE: &str = "/src/tests/fixtures/deployments/notes";
const NAME: &str = "notes";
/// The port notes-web.container publishes (unique among the e2e tests).
const PORT: u16 = 28473;
const SERVICES: &str = "notes-web.service notes-worker.service";

/// Shell functions every step uses (run as the test user in the testbed),
/// after [`MANIFEST_SH`].
const PRELUDE: &str = r#"
set -eu
VOLS="leger-e2e-notes-pages systemd-notes-data leger-e2e-notes-plain"
BACKUPS=$HOME/.local/share/bluebuild-quadlets/backups
# Every entry of every volume, root included, as seen in the user namespace.
manifest() { volume_manifest $VOLS; }
# The deployment's files: leger's active directory and the installed quadlets.
files_manifest() { deployment_files_manifest notes; }
count_backups() { ls -1 "$BACKUPS" 2>/dev/null | grep -c '^notes-' || true; }
"#;

/// Remove everything a previous (failed) run may have left.
const CLEANUP: &str = r#"
podman rm -f -t 0 leger-e2e-outsider >/dev/null 2>&1 || true
/src/tests/support/leger-sim remove notes --no-backup >/dev/null 2>&1 || true
for v in $VOLS; do podman volume rm -f "$v" >/dev/null 2>&1 || true; done
podman untag localhost/busybox:latest localhost/leger-e2e-notes:v1 >/dev/null 2>&1 || true
podman untag localhost/busybox:latest localhost/leger-e2e-notes:v2 >/dev/null 2>&1 || true
rm -rf "$BACKUPS"/notes-* "$HOME/e2e-notes-v2"
"#;

/// Data of every kind a volume can hold: nested directories, symlinks
/// (one dangling), files of other owners, 0600 files, an empty directory and
/// file, and a volume root that is 0750 and owned by 999.
const POPULATE: &str = r#"
podman unshare sh -ec '
P=$1 D=$2 L=$3
printf "<h1>notes e2e</h1>\n" > "$P/index.html"
mkdir -p "$P/a/b/c"
echo deep > "$P/a/b/c/deep.txt"
ln -s a/b/c/deep.txt "$P/link.txt"
ln -s /does/not/exist "$P/dangling"
mkdir -p "$D/db/tables"
head -c 300000 /dev/urandom > "$D/db/tables/blob.bin"
printf "key\n" > "$D/db/secret.key"
echo old > "$D/db/to-change.txt"
echo gone > "$D/db/to-delete.txt"
chown -R 999:999 "$D"
chmod 600 "$D/db/secret.key"
chmod 750 "$D"
echo x > "$L/owned-by-1234"
chown 1234:5678 "$L/owned-by-1234"
mkdir "$L/empty-dir"
chmod 700 "$L/empty-dir"
: > "$L/empty-file"
chmod 640 "$L/empty-file"
' sh "$(mp leger-e2e-notes-pages)" "$(mp systemd-notes-data)" "$(mp leger-e2e-notes-plain)"
"#;

/// Changes after the backup: files changed, added and deleted, modes and
/// owners changed, a directory tree removed.
const BREAK: &str = r#"
podman unshare sh -ec '
P=$1 D=$2 L=$3
echo changed > "$P/index.html"
echo new > "$P/a/new.txt"
rm -r "$P/a/b"
rm "$D/db/to-delete.txt"
echo new-content > "$D/db/to-change.txt"
chmod 644 "$D/db/secret.key"
chmod 755 "$D"
chown 0:0 "$L/owned-by-1234"
echo stale > "$L/stale-file"
' sh "$(mp leger-e2e-notes-pages)" "$(mp systemd-notes-data)" "$(mp leger-e2e-notes-plain)"
"#;

fn script(body: &str) -> String {
    format!("{MANIFEST_SH}\n{PRELUDE}\n{body}")
}

/// GET `path` from the host, retrying while the server starts.
fn http_get(path: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = TcpStream::connect(("127.0.0.1", PORT)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        });
        match attempt {
            Ok(body) if body.contains(" 200 ") => return body,
            other if Instant::now() >= deadline => {
                panic!("no page {path} on 127.0.0.1:{PORT}: {other:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// Run a script that must fail; return (stdout, stderr).
fn fails(tb: &Testbed, body: &str) -> (String, String) {
    let out = tb.sh(&script(body));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected failure of `{body}`\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

/// Run a script that must succeed; return (stdout, stderr).
fn succeeds(tb: &Testbed, body: &str) -> (String, String) {
    let out = tb.sh(&script(body));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "`{body}` failed with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

#[test]
fn backup_break_restore_refuse_damage_and_roll_back() {
    let tb = Testbed::get();
    succeeds(&tb, CLEANUP);

    // Install v1 and fill its volumes.
    timed("install", || {
        succeeds(
            &tb,
            &format!(
                "podman tag localhost/busybox:latest localhost/leger-e2e-notes:v1\n\
                 {SIM} install {NAME} {FIXTURE} --no-backup || {{ \
                   echo 'install: a service failed its first start (podman 125, seen once \
                   in a fresh testbed); starting once more' >&2; sleep 2; \
                   systemctl --user reset-failed {SERVICES}; systemctl --user start {SERVICES}; }}\n\
                 {POPULATE}"
            ),
        )
    });
    let original = http_get("/index.html", Duration::from_secs(30));
    assert!(original.contains("<h1>notes e2e</h1>"), "{original}");
    let (m0, _) = succeeds(&tb, "manifest");
    let (f0, _) = succeeds(&tb, "files_manifest");
    assert!(m0.contains("./link.txt l 777 0 0 a/b/c/deep.txt"), "{m0}");
    assert!(m0.contains(". d 750 999 999"), "{m0}");
    assert!(m0.contains("./owned-by-1234 f 644 1234 5678"), "{m0}");
    assert!(f0.contains("./config/notes.conf"), "{f0}");

    // Back up.
    let (json, create_err) = timed("create", || {
        succeeds(&tb, "leger-backup create notes --reason before-test --json")
    });
    eprintln!("create said:\n{create_err}");
    let created: serde_json::Value = serde_json::from_str(&json).expect("create --json");
    let id1 = created["id"].as_str().expect("id").to_owned();
    let meta = &created["metadata"];
    assert_eq!(meta["type"], "automatic");
    assert_eq!(meta["reason"], "before-test");
    assert_eq!(meta["consistency"], "stopped");
    let volumes = meta["volumes"].as_array().unwrap();
    let names: Vec<&str> = volumes
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "leger-e2e-notes-pages",
            "leger-e2e-notes-plain",
            "systemd-notes-data"
        ]
    );
    for v in volumes {
        assert_eq!(v["existed"], true, "{v}");
        assert!(v["sha256"].as_str().is_some_and(|s| s.len() == 64), "{v}");
    }
    let data = volumes
        .iter()
        .find(|v| v["name"] == "systemd-notes-data")
        .unwrap();
    assert_eq!(data["root"]["mode"], 0o750);
    assert_eq!(data["root"]["uid"], 999);
    assert_eq!(data["volume_service"], "notes-data-volume.service");
    let services = meta["services"].as_array().unwrap();
    for s in SERVICES.split(' ') {
        assert!(
            services
                .iter()
                .any(|e| e["name"] == s && e["was_running"] == true),
            "{s} not recorded as running: {services:?}"
        );
    }
    // Services are back after the backup.
    succeeds(&tb, &format!("systemctl --user is-active {SERVICES}"));

    // list and info show it.
    let (list, _) = succeeds(&tb, "leger-backup list --deployment notes");
    assert!(
        list.contains(&id1) && list.contains("before-test"),
        "{list}"
    );
    let (info, _) = succeeds(&tb, &format!("leger-backup info {id1}"));
    for needle in ["systemd-notes-data", "leger-e2e-notes-plain", "before-test"] {
        assert!(info.contains(needle), "info lacks {needle}:\n{info}");
    }

    // Break it: change, add and delete data; remove the deployment.
    succeeds(&tb, BREAK);
    succeeds(&tb, &format!("{SIM} remove {NAME} --no-backup"));
    let (broken, _) = succeeds(&tb, "manifest");
    assert_ne!(broken, m0);

    // Restore: everything back exactly, services running, page served.
    let (_, restore_err) = timed("restore after remove", || {
        succeeds(&tb, &format!("leger-backup restore {id1} --yes"))
    });
    eprintln!("restore said:\n{restore_err}");
    // The volumes' previous data was moved aside, not archived, and is
    // dropped now that the services run: no safety backup, no undo.
    assert!(
        restore_err.contains("dropped the previous state moved aside"),
        "{restore_err}"
    );
    assert!(!restore_err.contains("undo with"), "{restore_err}");
    succeeds(&tb, &format!("systemctl --user is-active {SERVICES}"));
    let page = http_get("/index.html", Duration::from_secs(30));
    assert!(page.contains("<h1>notes e2e</h1>"), "{page}");
    assert_same("volumes after restore", &m0, &succeeds(&tb, "manifest").0);
    assert_same(
        "files after restore",
        &f0,
        &succeeds(&tb, "files_manifest").0,
    );

    // Nothing is left aside.
    succeeds(
        &tb,
        "test -z \"$(ls -A ~/.local/share/containers/storage/volumes/.leger-backup-aside 2>/dev/null)\"",
    );
    timed("restore again", || {
        succeeds(&tb, &format!("leger-backup restore {id1} --yes"))
    });
    assert_same(
        "volumes after restore again",
        &m0,
        &succeeds(&tb, "manifest").0,
    );
    succeeds(&tb, &format!("systemctl --user is-active {SERVICES}"));

    // Restore over the running deployment: files of the deployment that are
    // not in the backup go, in the active directory and installed alike.
    succeeds(
        &tb,
        "a=$HOME/.local/share/bluebuild-quadlets/active/notes
         printf '[Volume]\\n' > $a/notes-stale.volume
         cp $a/notes-stale.volume $HOME/.config/containers/systemd/
         echo stale > $a/config/stale.conf
         systemctl --user daemon-reload",
    );
    succeeds(&tb, BREAK);
    timed("restore over running deployment", || {
        succeeds(&tb, &format!("leger-backup restore {id1} --yes"))
    });
    assert_same(
        "volumes after 2nd restore",
        &m0,
        &succeeds(&tb, "manifest").0,
    );
    assert_same(
        "files after 2nd restore",
        &f0,
        &succeeds(&tb, "files_manifest").0,
    );
    succeeds(&tb, &format!("systemctl --user is-active {SERVICES}"));

    // A backup with one flipped byte is refused; nothing live changes.
    let bad = format!("{id1}-flipped");
    succeeds(
        &tb,
        &format!(
            "cp -a \"$BACKUPS/{id1}\" \"$BACKUPS/{bad}\"
             sed -i 's/\"id\": \"{id1}\"/\"id\": \"{bad}\"/' \"$BACKUPS/{bad}/.backup-metadata.json\"
             f=\"$BACKUPS/{bad}/volumes/systemd-notes-data.tar.zst\"
             off=$(( $(stat -c %s \"$f\") / 2 ))
             byte=$(dd if=\"$f\" bs=1 skip=$off count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
             printf \"$(printf '\\\\%03o' $(( byte ^ 1 )))\" | dd of=\"$f\" bs=1 seek=$off count=1 conv=notrunc 2>/dev/null"
        ),
    );
    let (before_bad, _) = succeeds(&tb, "manifest; count_backups");
    let (_, refused) = fails(&tb, &format!("leger-backup restore {bad} --yes"));
    eprintln!("damaged backup refused:\n{refused}");
    assert!(refused.contains("systemd-notes-data"), "{refused}");
    assert!(!refused.contains("rolled back"), "{refused}");
    assert_same(
        "state after refused restore",
        &before_bad,
        &succeeds(&tb, "manifest; count_backups").0,
    );
    succeeds(&tb, &format!("systemctl --user is-active {SERVICES}"));
    succeeds(&tb, &format!("rm -rf \"$BACKUPS/{bad}\""));

    let (before_refusals, _) = succeeds(&tb, "manifest; count_backups");
    // Without a terminal and without --yes: refused, nothing touched.
    let (_, refused) = fails(&tb, &format!("leger-backup restore {id1} </dev/null"));
    assert!(refused.contains("--yes"), "{refused}");
    // A volume used by a container outside the deployment: refused, naming it.
    succeeds(
        &tb,
        "podman run -d --name leger-e2e-outsider -v leger-e2e-notes-plain:/x \
         localhost/leger-e2e-notes:v1 sleep 600 >/dev/null",
    );
    let (_, refused) = fails(&tb, &format!("leger-backup restore {id1} --yes"));
    eprintln!("volume in use refused:\n{refused}");
    assert!(refused.contains("leger-e2e-outsider"), "{refused}");
    assert_same(
        "state after refused restores",
        &before_refusals,
        &succeeds(&tb, "manifest; count_backups").0,
    );
    succeeds(&tb, "podman rm -f -t 0 leger-e2e-outsider >/dev/null");
    succeeds(&tb, &format!("systemctl --user is-active {SERVICES}"));

    // A restore that fails half-way rolls back. v2 of the deployment uses
    // another image tag; the backup's (v1) image is then removed, so the
    // restored services cannot start.
    succeeds(
        &tb,
        &format!(
            "podman tag localhost/busybox:latest localhost/leger-e2e-notes:v2
             rm -rf ~/e2e-notes-v2 && cp -a {FIXTURE} ~/e2e-notes-v2
             sed -i 's/leger-e2e-notes:v1/leger-e2e-notes:v2/' ~/e2e-notes-v2/*.container
             echo 'version = 2' > ~/e2e-notes-v2/config/v2.conf
             {SIM} apply {NAME} ~/e2e-notes-v2 --no-backup
             podman unshare sh -c 'echo v2 > \"$1/v2.html\"' sh \"$(mp leger-e2e-notes-pages)\"
             podman untag localhost/busybox:latest localhost/leger-e2e-notes:v1"
        ),
    );
    http_get("/v2.html", Duration::from_secs(30));
    let (m1, _) = succeeds(&tb, "manifest");
    let (f1, _) = succeeds(&tb, "files_manifest");
    assert!(f1.contains("./config/v2.conf"), "{f1}");
    let (count_before, _) = succeeds(&tb, "count_backups");
    let (_, failed) = timed("failing restore with rollback", || {
        fails(&tb, &format!("leger-backup restore {id1} --yes"))
    });
    eprintln!("failed restore said:\n{failed}");
    assert!(
        failed.contains("restore failed, rolled back to the previous state"),
        "{failed}"
    );
    assert!(failed.contains("notes-web.service"), "{failed}");
    assert_same("volumes after rollback", &m1, &succeeds(&tb, "manifest").0);
    assert_same(
        "files after rollback",
        &f1,
        &succeeds(&tb, "files_manifest").0,
    );
    succeeds(&tb, &format!("systemctl --user is-active {SERVICES}"));
    let page = http_get("/v2.html", Duration::from_secs(30));
    assert!(page.contains("v2"), "{page}");
    // The volumes' data came back from where it was moved aside; the
    // safety backup that held the rest is gone with it.
    let (count_after, _) = succeeds(&tb, "count_backups");
    assert_eq!(
        count_after.trim().parse::<u32>().unwrap(),
        count_before.trim().parse::<u32>().unwrap()
    );

    succeeds(&tb, CLEANUP);
}
