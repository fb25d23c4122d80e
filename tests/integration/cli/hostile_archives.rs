//! Hostile volume archives, crafted by hand into a backup whose checksums
//! all match, so only the tar guard and the resource bounds stand between
//! them and `podman volume import`: `verify` names what is wrong, and
//! `restore` refuses before it runs any podman or systemctl command.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::tar_craft::{data, finish_tar, header, pax};
use crate::support::{stderr, stdout, TestEnv};

const ID: &str = "web-2025-03-01-100000";
const UNIT: &str = "[Container]\nImage=localhost/busybox\nVolume=web-data:/data\n";

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn private_dir(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::DirBuilder::new().mode(0o700).create(path).unwrap();
}

/// Write backup `ID` of deployment `web` holding `zst` as the archive of
/// volume `web-data`, whose decompressed length the metadata records as
/// `uncompressed`; every checksum matches. Returns the backup directory.
fn craft(env: &TestEnv, zst: &[u8], uncompressed: u64) -> PathBuf {
    let root = env.path(".local/share/bluebuild-quadlets/backups");
    private_dir(&root);
    let dir = root.join(ID);
    private_dir(&dir);
    private_dir(&dir.join("volumes"));
    private_dir(&dir.join(".active"));
    std::fs::write(dir.join(".active/web.container"), UNIT).unwrap();
    std::fs::write(dir.join("volumes/web-data.tar.zst"), zst).unwrap();
    let metadata = serde_json::json!({
        "id": ID,
        "deployment_name": "web",
        "created_at": "2025-03-01T10:00:00Z",
        "type": "manual",
        "reason": "manual",
        "size": zst.len(),
        "quadlet_files": ["web.container"],
        "volumes": [{
            "name": "web-data",
            "archive_path": "volumes/web-data.tar.zst",
            "size": zst.len(),
            "existed": true,
            "uncompressed_size": uncompressed,
            "sha256": sha256(zst),
            "root": {"mode": 0o755, "uid": 0, "gid": 0},
            "driver": "local",
            "used_by": ["web.service"],
        }],
        "format_version": 1,
        "scope": "user",
        "compression": "zstd",
        "files": [{
            "location": "active",
            "path": "web.container",
            "stored_as": ".active/web.container",
            "size": UNIT.len(),
            "mode": 0o644,
            "sha256": sha256(UNIT.as_bytes()),
        }],
        "installation": {
            "active_dir": env.path(".local/share/bluebuild-quadlets/active/web"),
            "installed_root": env.path(".config/containers/systemd"),
            "installed_from_active": true,
        },
        "services": [{"name": "web.service", "was_running": true}],
    });
    std::fs::write(
        dir.join(".backup-metadata.json"),
        serde_json::to_vec_pretty(&metadata).unwrap(),
    )
    .unwrap();
    dir
}

fn craft_tar(env: &TestEnv, tar: &[u8]) -> PathBuf {
    craft(
        env,
        &zstd::stream::encode_all(tar, 3).unwrap(),
        tar.len() as u64,
    )
}

/// `podman` and `systemctl` stand-ins first in PATH that log every call.
fn logging_tools(env: &TestEnv) -> (String, PathBuf) {
    let log = env.path("calls.log");
    let script = |tool: &str| {
        format!(
            "#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexit 0\n",
            log.display()
        )
    };
    let path = env.fake_tools(&[
        ("podman", &script("podman")),
        ("systemctl", &script("systemctl")),
    ]);
    (path, log)
}

/// `verify` and `restore --yes` both refuse, saying `why`; restore runs no
/// podman or systemctl command at all.
fn refused_everywhere(env: &TestEnv, why: &str) {
    let out = env.run(&["verify", ID]);
    assert_eq!(out.status.code(), Some(1), "verify: {}", stdout(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains(why), "verify does not say {why:?}:\n{text}");
    assert!(text.contains("volumes/web-data.tar.zst"), "{text}");

    let (path, log) = logging_tools(env);
    let out = env
        .command()
        .env("PATH", path)
        .args(["restore", ID, "--yes"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "restore: {}", stderr(&out));
    assert!(
        stderr(&out).contains(why),
        "restore does not say {why:?}:\n{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("nothing was changed"),
        "{}",
        stderr(&out)
    );
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(calls, "", "restore ran commands for a hostile backup");
}

#[test]
fn a_file_written_through_a_symlink_is_refused() {
    let env = TestEnv::new();
    let mut tar = header("a", b'2', 0, "/home/tester/x");
    tar.extend(header("a/file", b'0', 5, ""));
    tar.extend(data(b"pwned"));
    craft_tar(&env, &finish_tar(tar));
    refused_everywhere(
        &env,
        "entry \"a/file\" passes through \"a\", which is not a directory",
    );
}

#[test]
fn a_hard_link_through_a_symlink_is_refused() {
    let env = TestEnv::new();
    let mut tar = header("l", b'2', 0, "/");
    tar.extend(header("z", b'1', 0, "l/home/tester/.bashrc"));
    craft_tar(&env, &finish_tar(tar));
    refused_everywhere(&env, "the target passes through a symlink");
}

#[test]
fn a_renaming_pax_record_is_refused() {
    let env = TestEnv::new();
    let mut tar = pax("GNU.sparse.name", "../../../.bashrc");
    tar.extend(header("innocent", b'0', 3, ""));
    tar.extend(data(b"abc"));
    craft_tar(&env, &finish_tar(tar));
    refused_everywhere(&env, "GNU.sparse.name");
}

#[test]
fn a_device_node_the_backup_did_not_record_is_refused() {
    let env = TestEnv::new();
    craft_tar(&env, &finish_tar(header("sda", b'4', 0, "")));
    refused_everywhere(&env, "the backup did not record when it was created");
}

/// Peak RSS of the finished child processes of this test process (nextest
/// runs every test in a process of its own), in MiB.
fn children_peak_rss_mib() -> i64 {
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    usage.max_rss() / 1024
}

#[test]
fn a_2_gib_zstd_window_is_refused_without_allocating_it() {
    let env = TestEnv::new();
    let tar = finish_tar(header("f", b'0', 0, ""));
    // A zstd frame written by hand (RFC 8878), so this test process never
    // holds a 2 GiB window itself (a child's peak RSS counts its parent's
    // pages up to exec): no content size, a window descriptor of 2^31, the
    // tar as one raw last block.
    let mut zst = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, (31 - 10) << 3];
    let block = 1 | (tar.len() as u32) << 3;
    zst.extend_from_slice(&block.to_le_bytes()[..3]);
    zst.extend_from_slice(&tar);
    craft(&env, &zst, tar.len() as u64);
    refused_everywhere(&env, "window larger than 2^24");
    let peak = children_peak_rss_mib();
    assert!(peak < 64, "peak RSS {peak} MiB");
}

#[test]
fn a_decompression_bomb_stops_at_the_recorded_size() {
    let env = TestEnv::new();
    // 1 GiB of zeros that the metadata says are 10 KiB of tar.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.write_all(&header("zeros", b'0', 1 << 30, "")).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        enc.write_all(&zeros).unwrap();
    }
    let zst = enc.finish().unwrap();
    assert!(zst.len() < 1 << 20, "{} bytes", zst.len());
    craft(&env, &zst, 10 << 10);
    let started = std::time::Instant::now();
    refused_everywhere(&env, "more than the 10240 bytes the metadata records");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let peak = children_peak_rss_mib();
    assert!(peak < 64, "peak RSS {peak} MiB");
}

#[test]
fn a_1_gib_metadata_file_is_refused_without_reading_it() {
    let env = TestEnv::new();
    let dir = craft_tar(&env, &finish_tar(Vec::new()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(".backup-metadata.json"))
        .unwrap();
    file.set_len(1 << 30).unwrap(); // sparse: cheap on disk
    let out = env.run(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("invalid"), "{}", stdout(&out));
    let out = env.run(&["info", ID]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("larger than 2 MiB"),
        "{}",
        stderr(&out)
    );
    let peak = children_peak_rss_mib();
    assert!(peak < 64, "peak RSS {peak} MiB");
}

#[test]
fn a_sound_crafted_backup_passes_so_the_refusals_above_mean_something() {
    let env = TestEnv::new();
    let mut tar = header("a", b'5', 0, "");
    tar.extend(header("a/file", b'0', 2, ""));
    tar.extend(data(b"ok"));
    tar.extend(header("link", b'2', 0, "/etc/hostname"));
    craft_tar(&env, &finish_tar(tar));
    let out = env.run(&["verify", ID]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn a_fifo_in_place_of_a_stored_quadlet_file_never_blocks_a_restore() {
    let env = TestEnv::new();
    let dir = craft_tar(&env, &finish_tar(Vec::new()));
    let stored = dir.join(".active/web.container");
    std::fs::remove_file(&stored).unwrap();
    nix::unistd::mkfifo(&stored, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let (path, log) = logging_tools(&env);
    let out = env
        .command()
        .env("PATH", path)
        .args(["restore", ID, "--yes"])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "");
}
