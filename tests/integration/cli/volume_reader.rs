//! `create` reads local volumes itself (the hidden `volume-tar` command),
//! through the real binary in a private HOME with `podman` and `systemctl`
//! stand-ins that log their calls (the volume is a directory of the test;
//! `podman volume export` is `tar`; as root, no `podman unshare` is needed).
//! `LEGER_BACKUP_VOLUME_READER` forces one reader; podman's export takes
//! over when the direct read cannot start.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use crate::support::{stderr, TestEnv, SYSTEMCTL_ALL_INACTIVE};

const BACKUPS: &str = ".local/share/bluebuild-quadlets/backups";

/// `podman` answering for volumes under `volumes/` of HOME, logging every
/// call to `podman.log`; a volume's mountpoint is `volumes/NAME`, or what
/// `volumes/NAME.mountpoint` says; its export fails half-way when
/// `volumes/NAME.broken` exists. Returns the PATH to use.
fn fake_tools(env: &TestEnv) -> String {
    let podman = format!(
        r#"#!/bin/sh
V='{volumes}'
echo "$*" >> '{log}'
last() {{ for a; do :; done; printf '%s' "$a"; }}
case "$1 $2" in
  "volume inspect")
    n=$(last "$@")
    [ -d "$V/$n" ] || exit 125
    mp=$(cat "$V/$n.mountpoint" 2>/dev/null || printf '%s/%s' "$V" "$n")
    printf '[{{"Name":"%s","Driver":"local","Mountpoint":"%s","Labels":{{}},"Options":{{}}}}]\n' "$n" "$mp" ;;
  "volume exists") [ -d "$V/$(last "$@")" ] ;;
  "volume export")
    n=$(last "$@")
    if [ -e "$V/$n.broken" ]; then
      tar -cf - -C "$V/$n" . | head -c 1536
      echo "cannot read $V/$n/sub/f: Input/output error" >&2
      exit 125
    fi
    cd "$V/$n" && exec tar --numeric-owner -cf - -- * ;;
  "ps -a") echo '[]' ;;
  unshare*) shift; exec "$@" ;;
  *) exit 0 ;;
esac
"#,
        volumes = env.path("volumes").display(),
        log = env.path("podman.log").display()
    );
    env.fake_tools(&[("podman", &podman), ("systemctl", SYSTEMCTL_ALL_INACTIVE)])
}

/// Deployment `dr`: one container mounting volume `dr-data`, holding a
/// file of another owner and a symlink.
fn deploy(env: &TestEnv) {
    env.write(
        ".config/containers/systemd/dr/dr.container",
        "[Container]\nImage=localhost/busybox:latest\nVolume=dr-data:/data\n",
    );
    let f = env.write("volumes/dr-data/sub/f", "data\n");
    std::os::unix::fs::lchown(&f, Some(1234), Some(4321)).unwrap();
    std::os::unix::fs::symlink("sub/f", env.path("volumes/dr-data/link")).unwrap();
}

/// Make podman report `dr-data`'s mountpoint as a symlink to its
/// directory: the direct reader does not follow it, so it cannot start.
/// Returns that path.
fn symlinked_mountpoint(env: &TestEnv) -> String {
    let link = env.path("mountpoint-link");
    std::os::unix::fs::symlink(env.path("volumes/dr-data"), &link).unwrap();
    let link = link.display().to_string();
    env.write("volumes/dr-data.mountpoint", &link);
    link
}

fn create(env: &TestEnv, path: &str, reader: Option<&str>) -> Output {
    let mut cmd = env.command();
    cmd.env("PATH", path).args(["create", "dr"]);
    if let Some(reader) = reader {
        cmd.env("LEGER_BACKUP_VOLUME_READER", reader);
    }
    cmd.output().unwrap()
}

/// `tar -tv --numeric-owner` of the only backup's archive of `dr-data`.
fn listing(env: &TestEnv) -> String {
    let backups: Vec<_> = std::fs::read_dir(env.path(BACKUPS))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let archive = backups[0].join("volumes/dr-data.tar.zst");
    let out = Command::new("sh")
        .args([
            "-c",
            r#"zstd -dc -- "$1" | tar -tv --numeric-owner -f -"#,
            "sh",
        ])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn podman_log(env: &TestEnv) -> String {
    std::fs::read_to_string(env.path("podman.log")).unwrap_or_default()
}

fn assert_contents(listing: &str) {
    assert!(listing.contains(" 1234/4321 "), "{listing}");
    assert!(listing.contains("sub/f"), "{listing}");
    assert!(listing.contains("link -> sub/f"), "{listing}");
}

#[test]
fn create_reads_a_local_volume_itself_without_podman_export() {
    let env = TestEnv::new();
    let path = fake_tools(&env);
    deploy(&env);
    let out = create(&env, &path, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("(read directly)"), "{}", stderr(&out));
    assert!(
        !podman_log(&env).contains("volume export"),
        "{}",
        podman_log(&env)
    );
    assert_contents(&listing(&env));
}

#[test]
fn the_reader_variable_forces_podman_export() {
    let env = TestEnv::new();
    let path = fake_tools(&env);
    deploy(&env);
    let out = create(&env, &path, Some("podman"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("(podman volume export)"),
        "{}",
        stderr(&out)
    );
    assert!(
        podman_log(&env).contains("volume export -- dr-data"),
        "{}",
        podman_log(&env)
    );
    assert_contents(&listing(&env));
}

#[test]
fn podman_export_takes_over_when_the_direct_read_cannot_start() {
    let env = TestEnv::new();
    let path = fake_tools(&env);
    deploy(&env);
    let mountpoint = symlinked_mountpoint(&env);
    let out = create(&env, &path, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("the direct read did not start"), "{err}");
    assert!(err.contains(&mountpoint), "{err}");
    assert!(podman_log(&env).contains("volume export -- dr-data"));
    assert_contents(&listing(&env));
}

#[test]
fn a_reader_failing_half_way_is_reported_with_its_own_error() {
    let env = TestEnv::new();
    let path = fake_tools(&env);
    deploy(&env);
    env.write("volumes/dr-data.broken", "");
    let out = create(&env, &path, Some("podman"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("exporting volume dr-data"), "{err}");
    assert!(err.contains("sub/f: Input/output error"), "{err}");
    assert!(err.contains("exit status 125"), "{err}");
}

#[test]
fn a_forced_direct_read_that_cannot_start_fails_the_backup() {
    let env = TestEnv::new();
    let path = fake_tools(&env);
    deploy(&env);
    symlinked_mountpoint(&env);
    let out = create(&env, &path, Some("direct"));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("exporting volume dr-data"), "{err}");
    assert!(err.contains("LEGER_BACKUP_VOLUME_READER"), "{err}");
    assert!(!podman_log(&env).contains("volume export"));
}

#[test]
fn an_unknown_reader_is_refused_before_anything_is_read() {
    let env = TestEnv::new();
    let path = fake_tools(&env);
    deploy(&env);
    let out = create(&env, &path, Some("fast"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("LEGER_BACKUP_VOLUME_READER=fast"),
        "{}",
        stderr(&out)
    );
    assert!(!podman_log(&env).contains("volume export"));
}

#[test]
fn a_directory_the_reader_cannot_read_fails_naming_it() {
    let env = TestEnv::new();
    let volume = env.path("volumes/locked-volume");
    env.write("volumes/locked-volume/secret/f", "x");
    std::fs::set_permissions(
        volume.join("secret"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::set_permissions(env.home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // As root everything is readable: the reader runs as nobody here.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(assert_cmd::cargo::cargo_bin("leger-backup"))
        .arg("volume-tar")
        .arg(&volume)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot open {}", volume.join("secret").display())),
        "{err}"
    );
}
