//! Modes of a deployment's files and directories through remove + restore,
//! end to end in the rootless testbed: a leger deployment whose active
//! directory holds a 0700 `secrets/` with a 0600 file, a 0750 `conf/`, an
//! empty 0710 directory and a 0750 root comes back exactly as it was, after
//! `leger remove` and over a tree whose modes were changed. "Exactly" is the
//! deployment files manifest (path, type, mode, link target, sha256) of
//! leger's active directory and the installed quadlet files.

use crate::support::deploy::{assert_same, MANIFEST_SH};
use crate::support::testbed::Testbed;

const SIM: &str = "/src/tests/support/leger-sim";
/// Unique among the e2e tests; its files all begin with it, so the
/// installed part of the manifest (`./NAME*`) sees them.
const NAME: &str = "leger-e2e-modes";
const SERVICE: &str = "leger-e2e-modes.service";

/// Shell prelude of every step (run as the test user in the testbed).
const PRELUDE: &str = r#"
set -eu
SRC=$HOME/e2e-modes-src
ACTIVE=$HOME/.local/share/bluebuild-quadlets/active/leger-e2e-modes
BACKUPS=$HOME/.local/share/bluebuild-quadlets/backups
"#;

/// Remove everything a previous (failed) run may have left.
const CLEANUP: &str = r#"
/src/tests/support/leger-sim remove leger-e2e-modes --no-backup >/dev/null 2>&1 || true
rm -rf "$BACKUPS"/leger-e2e-modes-* "$SRC"
"#;

/// The deployment's source: a container that sleeps, a drop-in, a 0700
/// `secrets/` with a 0600 token, a 0750 `conf/`, an empty 0710 directory,
/// all in a 0750 directory (`cp -a` keeps every mode in the active dir).
const SOURCE: &str = r#"
mkdir -p "$SRC/secrets" "$SRC/conf" "$SRC/empty" "$SRC/leger-e2e-modes.container.d"
printf '[Container]\nImage=localhost/busybox:latest\nPull=never\nExec=sleep 600\nRunInit=true\n\n[Install]\nWantedBy=default.target\n' \
  > "$SRC/leger-e2e-modes.container"
printf '[Container]\nEnvironment=MODE=e2e\n' > "$SRC/leger-e2e-modes.container.d/10-env.conf"
echo token > "$SRC/secrets/token"
echo a=1 > "$SRC/conf/app.conf"
chmod 600 "$SRC/secrets/token"
chmod 700 "$SRC/secrets"
chmod 640 "$SRC/conf/app.conf"
chmod 750 "$SRC/conf"
chmod 710 "$SRC/empty"
chmod 750 "$SRC"
"#;

/// Run `body` after the manifest functions and the prelude; panic with its
/// output unless it succeeds; return stdout.
fn ok(tb: &Testbed, body: &str) -> String {
    tb.ok(&format!("{MANIFEST_SH}\n{PRELUDE}\n{body}"))
}

fn files_manifest(tb: &Testbed) -> String {
    ok(tb, &format!("deployment_files_manifest {NAME}"))
}

#[test]
fn directory_and_file_modes_survive_remove_and_restore() {
    let tb = Testbed::get();
    ok(&tb, CLEANUP);
    ok(&tb, &format!("{SOURCE}\n{SIM} install {NAME} \"$SRC\""));
    ok(&tb, &format!("systemctl --user is-active {SERVICE}"));
    let before = files_manifest(&tb);
    for line in [
        ". d 750",
        "./secrets d 700",
        "./secrets/token f 600",
        "./conf d 750",
        "./conf/app.conf f 640",
        "./empty d 710",
        "./leger-e2e-modes.container.d/10-env.conf f",
    ] {
        assert!(
            before.lines().any(|l| l.starts_with(line)),
            "no `{line}` in the manifest:\n{before}"
        );
    }

    let json = ok(&tb, &format!("leger-backup create {NAME} --json"));
    let created: serde_json::Value = serde_json::from_str(&json).expect("create --json");
    let id = created["id"].as_str().expect("id").to_owned();
    let dirs = created["metadata"]["dirs"]
        .as_array()
        .expect("dirs")
        .clone();
    assert!(
        dirs.iter()
            .any(|d| d["path"] == "secrets" && d["mode"] == 0o700 && d["location"] == "active"),
        "{dirs:?}"
    );

    // `leger remove`, then restore: every mode as before.
    ok(&tb, &format!("{SIM} remove {NAME} --no-backup"));
    let removed = files_manifest(&tb);
    assert!(!removed.contains("./secrets"), "{removed}");
    ok(&tb, &format!("leger-backup restore {id} --yes"));
    assert_same(
        "deployment files after remove + restore",
        &before,
        &files_manifest(&tb),
    );
    ok(&tb, &format!("systemctl --user is-active {SERVICE}"));

    // Over the installed deployment with its modes changed: put back too.
    ok(
        &tb,
        "chmod 755 \"$ACTIVE/secrets\" \"$ACTIVE\"
         chmod 700 \"$ACTIVE/conf\"
         rmdir \"$ACTIVE/empty\"",
    );
    ok(&tb, &format!("leger-backup restore {id} --yes"));
    assert_same(
        "deployment files after restore over changed modes",
        &before,
        &files_manifest(&tb),
    );
    ok(&tb, &format!("systemctl --user is-active {SERVICE}"));

    ok(&tb, CLEANUP);
}
