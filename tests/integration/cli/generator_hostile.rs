//! The generator and `enable` against hostile quadlet files: service names
//! that would leave the drop-in directory or read as options, and files that
//! never end (a symlink to `/dev/zero`), block (a FIFO) or are huge. Each
//! bad unit is refused naming its file, nothing is written outside the
//! output directory, and every other unit and deployment still gets its
//! drop-in, within a time and a memory bound.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{stderr, TestEnv};

/// Far above a healthy run (well under a second), far below "forever".
const TIMEOUT: Duration = Duration::from_secs(30);

/// Address space the binary gets, in KiB: enough for a normal run, far
/// too little for a file read whole from `/dev/zero`.
const MEMORY_KIB: u64 = 512 * 1024;

const QUADLETS: &str = ".config/containers/systemd";

/// A healthy deployment `solo` next to whatever the test adds.
fn with_solo() -> TestEnv {
    let env = TestEnv::new();
    env.write(&format!("{QUADLETS}/solo/solo.pod"), "[Pod]\n");
    env
}

/// Run the generator as systemd does (three output directories), under
/// the memory bound and the timeout; returns its stderr and the normal
/// output directory.
fn run_generator(env: &TestEnv) -> (String, PathBuf) {
    let normal = env.path("run/systemd/generator");
    let out = bounded(env)
        .arg("generator")
        .arg(&normal)
        .arg(env.path("run/systemd/generator.early"))
        .arg(env.path("run/systemd/generator.late"))
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    (err, normal)
}

/// The binary run through `sh` with `ulimit -v`; arguments follow.
fn bounded(env: &TestEnv) -> assert_cmd::Command {
    let mut cmd = env.command_for(Path::new("/bin/sh"));
    cmd.arg("-c")
        .arg(format!("ulimit -v {MEMORY_KIB} && exec \"$0\" \"$@\""))
        .arg(assert_cmd::cargo::cargo_bin("leger-backup"));
    assert_cmd::Command::from_std(cmd)
}

/// Every file named like our drop-in anywhere below `root`.
fn dropins_below(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if entry.file_name() == "50-leger-backup.conf" {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// The drop-ins expected in `dir`, for `services`, and nothing else
/// anywhere in HOME.
fn assert_only_dropins(env: &TestEnv, dir: &Path, services: &[&str]) {
    let expected: Vec<PathBuf> = services
        .iter()
        .map(|s| dir.join(format!("{s}.d/50-leger-backup.conf")))
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(dropins_below(env.home.path()), expected_sorted);
}

/// Deployment `evil`: one healthy unit and three whose service names
/// systemd refuses.
fn write_bad_service_names(env: &TestEnv) {
    env.write(
        &format!("{QUADLETS}/evil/ok.container"),
        "[Container]\nImage=x\n",
    );
    env.write(
        &format!("{QUADLETS}/evil/up.container"),
        "[Container]\nImage=x\nServiceName=../../x\n",
    );
    env.write(
        &format!("{QUADLETS}/evil/opt.container"),
        "[Container]\nImage=x\nServiceName=-x\n",
    );
    env.write(
        &format!("{QUADLETS}/evil/slash.container"),
        "[Container]\nImage=x\nServiceName=a/b\n",
    );
}

/// A hostile quadlet file, and the reason it is refused.
#[derive(Clone, Copy)]
enum BadFile {
    /// A symlink to `/dev/zero`: read whole, it never ends.
    DevZero,
    /// A FIFO: opened naively, it blocks until a writer comes.
    Fifo,
    /// A 10 MB (valid) file.
    Huge,
}

impl BadFile {
    const ALL: [BadFile; 3] = [BadFile::DevZero, BadFile::Fifo, BadFile::Huge];

    fn file_name(self) -> &'static str {
        match self {
            BadFile::DevZero => "zero.container",
            BadFile::Fifo => "fifo.container",
            BadFile::Huge => "big.container",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            BadFile::DevZero => "is a character device, not a regular file",
            BadFile::Fifo => "is a FIFO, not a regular file",
            BadFile::Huge => "is larger than 1048576 bytes",
        }
    }

    /// Put it into the deployment directory `dir`.
    fn create(self, dir: &Path) {
        let path = dir.join(self.file_name());
        match self {
            BadFile::DevZero => std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
            BadFile::Fifo => nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap(),
            BadFile::Huge => {
                let text = format!("[Container]\nImage=x\n{}", "#comment\n".repeat(10 << 17));
                assert!(text.len() > 10 << 20);
                std::fs::write(path, text).unwrap();
            }
        }
    }
}

/// Deployment `web`: one healthy unit and the hostile files `bad`.
fn write_bad_files(env: &TestEnv, bad: &[BadFile]) {
    env.write(
        &format!("{QUADLETS}/web/web.container"),
        "[Container]\nImage=x\n",
    );
    for file in bad {
        file.create(&env.path(&format!("{QUADLETS}/web")));
    }
}

/// The generator with one hostile file: within the time and memory bound,
/// the file is named and skipped, and every other unit is hooked.
fn generator_skips(bad: BadFile) {
    let env = with_solo();
    write_bad_files(&env, &[bad]);
    let (err, normal) = run_generator(&env);
    assert_only_dropins(&env, &normal, &["solo-pod.service", "web.service"]);
    let line = err
        .lines()
        .find(|l| l.contains(bad.file_name()))
        .unwrap_or_else(|| panic!("{} not named: {err}", bad.file_name()));
    assert!(line.contains(bad.reason()), "{line}");
    assert!(line.contains("skipped"), "{line}");
}

#[test]
fn generator_skips_a_quadlet_file_linked_to_dev_zero() {
    generator_skips(BadFile::DevZero);
}

#[test]
fn generator_skips_a_fifo_without_blocking() {
    generator_skips(BadFile::Fifo);
}

#[test]
fn generator_skips_a_10_mb_quadlet_file() {
    generator_skips(BadFile::Huge);
}

#[test]
fn generator_refuses_service_names_that_leave_its_directory_or_read_as_options() {
    let env = with_solo();
    write_bad_service_names(&env);
    let (err, normal) = run_generator(&env);
    assert_only_dropins(&env, &normal, &["ok.service", "solo-pod.service"]);
    for (file, value) in [
        ("up.container", "\"../../x.service\""),
        ("opt.container", "\"-x.service\""),
        ("slash.container", "\"a/b.service\""),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(file) && l.contains(value))
            .unwrap_or_else(|| panic!("no message naming {file} and {value}: {err}"));
        assert!(line.contains("not a valid systemd unit name"), "{line}");
    }
}

#[test]
fn enable_refuses_the_same_hostile_files_and_hooks_everything_else() {
    let env = with_solo();
    write_bad_service_names(&env);
    write_bad_files(&env, &BadFile::ALL);
    let out = bounded(&env)
        .args(["enable", "--all"])
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    let err = stderr(&out);
    // Everything it could do is done; the bad units make it exit 1.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("6 unit(s) got no automatic backups"), "{err}");
    let unit_dir = env.path(".config/systemd/user");
    assert_only_dropins(
        &env,
        &unit_dir,
        &["ok.service", "solo-pod.service", "web.service"],
    );
    let files = BadFile::ALL.map(|b| (b.file_name(), b.reason()));
    for (file, what) in [
        ("up.container", "\"../../x.service\""),
        ("opt.container", "\"-x.service\""),
        ("slash.container", "\"a/b.service\""),
    ]
    .into_iter()
    .chain(files)
    {
        assert!(
            err.lines().any(|l| l.contains(file) && l.contains(what)),
            "{file}: {what}: {err}"
        );
    }

    // `status` names them too, deployment by deployment.
    let out = env.run(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes = |name: &str| {
        let deployment = status["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap();
        deployment["notes"].to_string()
    };
    assert!(notes("evil").contains("up.container"), "{status}");
    assert!(notes("web").contains("zero.container"), "{status}");
}

#[test]
fn generator_takes_no_option_like_deployment_name_from_a_directory() {
    let env = with_solo();
    env.write(
        &format!("{QUADLETS}/-opt/opt.container"),
        "[Container]\nImage=x\n",
    );
    let (err, normal) = run_generator(&env);
    assert_only_dropins(&env, &normal, &["solo-pod.service"]);
    assert!(!err.contains("-opt"), "{err}");
}

#[test]
fn plan_refuses_a_service_name_systemd_would_not_accept() {
    let env = TestEnv::new();
    write_bad_service_names(&env);
    let out = env.run(&["plan", "evil"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ServiceName="), "{err}");
    assert!(err.contains("not a valid systemd unit name"), "{err}");
}
