//! The hidden `stage` command a backup to a repository runs restic in,
//! through the real binary: sources bound into the stage are seen there
//! (and nowhere else, the mounts go with the process), and the command is
//! interrupted when the leger-backup that asked for it is gone, so a killed
//! backup leaves no snapshot of a directory being cleaned up. These tests
//! make a mount namespace: they run as root.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{stderr, stdout, TestEnv};

fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test makes a mount namespace: run it as root"
    );
}

/// "PID START" of a process, as `--watch` takes it.
fn identity(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let start = rest.split_whitespace().nth(19).unwrap();
    format!("{pid} {start}")
}

#[test]
fn sources_are_bound_into_the_stage_for_the_command_only() {
    assert_root();
    let env = TestEnv::new();
    let source = env.write("data/sub/file", "contents");
    let stage = env.path("stage");
    std::fs::create_dir(&stage).unwrap();
    let out = env.run(&[
        "stage",
        "--stage",
        stage.to_str().unwrap(),
        "--bind",
        &format!(
            "{}=volumes/db",
            source.parent().unwrap().parent().unwrap().display()
        ),
        "--",
        "cat",
        "volumes/db/sub/file",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "contents");
    // The mount point is left, empty: the mount went with the process.
    let left = stage.join("volumes/db");
    assert!(left.is_dir());
    assert_eq!(std::fs::read_dir(&left).unwrap().count(), 0);
}

#[test]
fn a_bind_escaping_the_stage_is_refused() {
    let env = TestEnv::new();
    let stage = env.path("stage");
    std::fs::create_dir(&stage).unwrap();
    let out = env.run(&[
        "stage",
        "--stage",
        stage.to_str().unwrap(),
        "--bind",
        "/etc=../x",
        "--",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bad --bind"), "{}", stderr(&out));
}

#[test]
fn the_command_is_interrupted_when_the_watched_process_is_gone() {
    assert_root();
    let env = TestEnv::new();
    let stage = env.path("stage");
    std::fs::create_dir(&stage).unwrap();
    // Stands for the leger-backup that asked for the snapshot.
    let mut watched = Command::new("sleep").arg("600").spawn().unwrap();
    let exe = assert_cmd::cargo::cargo_bin("leger-backup");
    let mut staged = env
        .command_for(&exe)
        .args([
            "stage",
            "--stage",
            stage.to_str().unwrap(),
            "--watch",
            &identity(watched.id()),
            "--",
        ])
        .args(["sleep", "600"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        staged.try_wait().unwrap().is_none(),
        "the command ended on its own"
    );
    watched.kill().unwrap();
    watched.wait().unwrap();
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = staged.try_wait().unwrap() {
            break status;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "the command outlived its watcher"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "{status:?}");
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "took {:?}",
        killed.elapsed()
    );
}
