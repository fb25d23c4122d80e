//! The RPM, installed: its payload unpacked into the testbed's root
//! filesystem in place of the testbed's own install (/usr/local), the user
//! manager reloaded, and a deployment installed with leger-sim gets an
//! `on-stop` backup when its service stops, and a `before-remove` backup from
//! the packaged leger hook when leger-sim removes it. Nothing of leger-backup
//! is on the machine but what the package put there. Afterwards the package
//! files go and the testbed's own install comes back.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::support::packaging::{checked, without_cargo_env};
use crate::support::testbed::Testbed;
use crate::support::{repo_root, stderr, stdout};

const SIM: &str = "/src/tests/support/leger-sim";
/// Deployments of this test are named `rpmpkg-<unix time>`.
const PREFIX: &str = "rpmpkg-";
/// What the testbed installs itself (tests/testbed/testbed.sh install).
const TESTBED_BIN: &str = "/usr/local/bin/leger-backup";
const TESTBED_GENERATOR: &str =
    "/usr/local/lib/systemd/user-generators/leger-backup-user-generator";
const TESTBED_SYSTEM_GENERATOR: &str =
    "/usr/local/lib/systemd/system-generators/leger-backup-system-generator";

fn testbed_script() -> PathBuf {
    repo_root().join("tests/testbed/testbed.sh")
}

/// Builds the package with packaging/rpm/build.sh (what `make rpm` runs);
/// it prints the package's path last.
fn build_rpm() -> PathBuf {
    let mut build = Command::new(repo_root().join("packaging/rpm/build.sh"));
    build.current_dir(repo_root());
    without_cargo_env(&mut build);
    let out = checked(&mut build);
    let path = PathBuf::from(
        stdout(&out)
            .lines()
            .last()
            .expect("build.sh printed the package path"),
    );
    assert!(path.is_file(), "{} is not there", path.display());
    path
}

/// The package's files (not directories) and directories, as absolute paths.
fn payload(rpm: &Path) -> (Vec<String>, Vec<String>) {
    let out = checked(
        Command::new("rpm")
            .args(["-qp", "--qf", "[%{FILENAMES}\t%{FILEMODES:perms}\n]"])
            .arg(rpm),
    );
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for line in stdout(&out).lines() {
        let (path, perms) = line.split_once('\t').expect("path TAB perms");
        if perms.starts_with('d') {
            dirs.push(path.to_owned());
        } else {
            files.push(path.to_owned());
        }
    }
    (files, dirs)
}

/// `inside` (absolute, in the container) as a path on the host.
fn on_host(rootfs: &Path, inside: &str) -> PathBuf {
    rootfs.join(inside.trim_start_matches('/'))
}

/// Backups of `deployment` in `leger-backup list --json`: (id, reason).
/// Accepts a list of metadata objects or of entries that nest them.
fn backups_of(list: &Value, deployment: &str) -> Vec<(String, String)> {
    fn walk(v: &Value, deployment: &str, found: &mut Vec<(String, String)>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| walk(i, deployment, found)),
            Value::Object(map) => {
                let id = map.get("id").and_then(Value::as_str).unwrap_or_default();
                let of = map
                    .get("deployment_name")
                    .or_else(|| map.get("deployment"))
                    .and_then(Value::as_str);
                let ours = of == Some(deployment)
                    || (of.is_none() && id.starts_with(&format!("{deployment}-")));
                if let (true, Some(reason)) = (ours, map.get("reason").and_then(Value::as_str)) {
                    if !found.iter().any(|(i, _)| i == id) {
                        found.push((id.to_owned(), reason.to_owned()));
                    }
                }
                map.values().for_each(|i| walk(i, deployment, found));
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(list, deployment, &mut found);
    found
}

fn list_backups(tb: &Testbed, deployment: &str) -> Vec<(String, String)> {
    let list: Value =
        serde_json::from_str(&tb.ok("leger-backup list --json")).expect("list --json is JSON");
    backups_of(&list, deployment)
}

/// Waits until a backup of `deployment` with `reason` is listed; returns its ID.
fn wait_for_backup(tb: &Testbed, deployment: &str, reason: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let backups = list_backups(tb, deployment);
        if let Some((id, _)) = backups.iter().find(|(_, r)| r == reason) {
            return id.clone();
        }
        if Instant::now() >= deadline {
            let status = tb.sh(
                "leger-backup status 2>&1; journalctl --user -n 50 --no-pager 2>&1 | tail -n 50",
            );
            panic!(
                "no `{reason}` backup of {deployment} after {timeout:?}; backups: {backups:?}\n{}",
                stdout(&status)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The package's payload unpacked into the testbed's root filesystem in
/// place of the testbed's own install (/usr/local): nothing of leger-backup
/// is on the machine but what the package put there. Dropping it (or
/// [`Package::remove`]) removes the package's files and puts the testbed's
/// own install back. `e2e::system_scope` installs it too.
pub(super) struct Package {
    /// The package's files (not directories), absolute paths inside.
    pub(super) files: Vec<String>,
    /// The package's directories, absolute paths inside.
    pub(super) dirs: Vec<String>,
    rootfs: PathBuf,
    /// Directories the package created (host paths), deepest first.
    new_dirs: Vec<PathBuf>,
    removed: bool,
}

impl Package {
    /// Build the RPM and unpack it into the testbed in place of its own install.
    pub(super) fn install(tb: &Testbed) -> Package {
        let rpm = build_rpm();
        let (files, dirs) = payload(&rpm);
        let rootfs =
            PathBuf::from(stdout(&checked(Command::new(testbed_script()).arg("rootfs"))).trim());
        assert!(
            rootfs.join("usr").is_dir(),
            "no root filesystem at {}",
            rootfs.display()
        );
        // Directories that the package will create (removed again afterwards).
        let mut candidates: BTreeSet<PathBuf> = dirs.iter().map(PathBuf::from).collect();
        for path in files.iter().chain(&dirs) {
            candidates.extend(
                Path::new(path)
                    .ancestors()
                    .skip(1)
                    .filter(|d| *d != Path::new("/"))
                    .map(Path::to_path_buf),
            );
        }
        let mut new_dirs: Vec<PathBuf> = candidates
            .iter()
            .map(|d| on_host(&rootfs, &d.to_string_lossy()))
            .filter(|d| !d.exists())
            .collect();
        new_dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        let package = Package {
            files,
            dirs,
            rootfs,
            new_dirs,
            removed: false,
        };

        // Out with the testbed's own install, in with the package's payload.
        let out = tb.exec_root(&[
            "rm",
            "-f",
            TESTBED_BIN,
            TESTBED_GENERATOR,
            TESTBED_SYSTEM_GENERATOR,
        ]);
        assert!(
            out.status.success(),
            "removing the testbed's install: {}",
            stderr(&out)
        );
        checked(
            Command::new("sh")
                .arg("-c")
                .arg(r#"rpm2cpio "$1" | (cd "$2" && cpio -idmu --quiet --no-absolute-filenames)"#)
                .arg("sh")
                .arg(&rpm)
                .arg(&package.rootfs),
        );
        for file in &package.files {
            let path = on_host(&package.rootfs, file);
            assert!(path.symlink_metadata().is_ok(), "{file} not unpacked");
        }
        package
    }

    /// Remove the package's files and put the testbed's own install back
    /// (once); returns what went wrong.
    pub(super) fn remove(&mut self) -> Vec<String> {
        if std::mem::replace(&mut self.removed, true) {
            return Vec::new();
        }
        let mut problems = Vec::new();
        for file in &self.files {
            let path = on_host(&self.rootfs, file);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    problems.push(format!("removing {}: {e}", path.display()));
                }
            }
        }
        for dir in &self.new_dirs {
            // Only if empty: something else may have put files there since.
            let _ = std::fs::remove_dir(dir);
        }
        match Command::new(testbed_script()).arg("install").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => problems.push(format!("testbed.sh install failed: {}", stderr(&out))),
            Err(e) => problems.push(format!("testbed.sh install: {e}")),
        }
        problems
    }
}

impl Drop for Package {
    fn drop(&mut self) {
        for problem in self.remove() {
            eprintln!("rpm e2e cleanup: {problem}");
        }
    }
}

/// The package installed for one test's deployment. Dropping it (or
/// [`Installed::finish`]) removes the package and the test's deployment,
/// its backups and its volume.
struct Installed<'a> {
    tb: &'a Testbed,
    package: Package,
    deployment: String,
    finished: bool,
}

impl Installed<'_> {
    /// Undo everything; returns what went wrong.
    fn cleanup(&mut self) -> Vec<String> {
        let mut problems = self.package.remove();
        let name = &self.deployment;
        let out = self.tb.sh(&format!(
            "if {SIM} list | grep -qx '{name}'; then {SIM} remove '{name}' --no-backup; fi"
        ));
        if !out.status.success() {
            problems.push(format!("removing deployment {name}: {}", stderr(&out)));
        }
        if let Ok(list) = serde_json::from_slice::<Value>(
            &self.tb.exec(&["leger-backup", "list", "--json"]).stdout,
        ) {
            for (id, _) in backups_of(&list, name) {
                self.tb.exec(&["leger-backup", "delete", &id, "--yes"]);
            }
        }
        // Whatever `delete` left (and the volume and sources of the test).
        self.tb.sh(&format!(
            "rm -rf ~/.local/share/bluebuild-quadlets/backups/{name}-* \
                    ~/.local/share/bluebuild-quadlets/backups/.tmp-{name}-* ~/rpm-e2e/{name}; \
             podman volume rm -f systemd-{name}-data >/dev/null 2>&1; true"
        ));
        problems
    }

    fn finish(mut self) {
        self.finished = true;
        let problems = self.cleanup();
        assert!(problems.is_empty(), "cleanup: {problems:#?}");
    }
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        if !self.finished {
            for problem in self.cleanup() {
                eprintln!("rpm e2e cleanup: {problem}");
            }
        }
    }
}

/// Deployments, volumes and sources left by an earlier run that was killed.
fn remove_leftovers(tb: &Testbed) {
    tb.sh(&format!(
        "for d in $({SIM} list | grep '^{PREFIX}'); do {SIM} remove \"$d\" --no-backup; done; \
         for v in $(podman volume ls -q | grep '^systemd-{PREFIX}'); do podman volume rm -f \"$v\"; done; \
         rm -rf ~/rpm-e2e ~/.local/share/bluebuild-quadlets/backups/{PREFIX}* \
                ~/.local/share/bluebuild-quadlets/backups/.tmp-{PREFIX}*; true"
    ));
}

#[test]
fn installed_rpm_backs_up_a_deployment_when_it_stops() {
    let tb = Testbed::get();
    remove_leftovers(&tb);

    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let name = format!("{PREFIX}{stamp}");
    let service = format!("{name}-app.service");

    let installed = Installed {
        tb: &tb,
        package: Package::install(&tb),
        deployment: name.clone(),
        finished: false,
    };
    let (files, dirs) = (&installed.package.files, &installed.package.dirs);

    // Only the package's leger-backup is there.
    tb.ok(&format!(
        "test ! -e {TESTBED_BIN} && test ! -e {TESTBED_GENERATOR}"
    ));
    assert_eq!(
        tb.ok("command -v leger-backup").trim(),
        "/usr/bin/leger-backup"
    );
    // (Searched as root: everywhere but the checkout, home, state and API file systems.)
    let found = tb.exec_root(&[
        "sh",
        "-c",
        "find / -xdev \\( -path /src -o -path /home -o -path /root -o -path /var -o -path /tmp \
           -o -path /run -o -path /proc -o -path /sys -o -path /dev \\) -prune \
           -o -name '*leger-backup*' -print | sort",
    ]);
    assert!(found.status.success(), "find: {}", stderr(&found));
    let found = stdout(&found);
    let expected: BTreeSet<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|f| f.contains("leger-backup"))
        .collect();
    let found: BTreeSet<&str> = found.lines().filter(|l| !expected.contains(l)).collect();
    // Directories named after the package (/usr/share/doc/leger-backup, ...).
    let stray: Vec<&str> = found
        .into_iter()
        .filter(|f| !dirs.iter().any(|d| d == f))
        .collect();
    assert!(
        stray.is_empty(),
        "leger-backup files not from the package: {stray:?}"
    );
    assert_eq!(
        tb.ok("readlink /usr/lib/systemd/user-generators/leger-backup-user-generator")
            .trim(),
        "../../../bin/leger-backup"
    );

    // The system generator, entered through its packaged symlink, runs by
    // hand too (e2e::system_scope sees the system manager run it).
    let out = tb.exec_root(&[
        "sh",
        "-c",
        "d=$(mktemp -d) && mkdir $d/n $d/e $d/l && \
         /usr/lib/systemd/system-generators/leger-backup-system-generator $d/n $d/e $d/l; \
         rc=$?; rm -rf $d; exit $rc",
    ]);
    assert!(out.status.success(), "system generator: {}", stderr(&out));

    tb.ok("systemctl --user daemon-reload");

    // A deployment, installed the way leger installs it.
    tb.ok(&format!(
        "mkdir -p ~/rpm-e2e/{name} && cd ~/rpm-e2e/{name} && \
         printf '%s\\n' '[Unit]' 'Description=leger-backup RPM end-to-end test' '' \
           '[Container]' 'Image=localhost/busybox:latest' 'Exec=sleep 100000' \
           'Volume={name}-data.volume:/data' 'RunInit=true' > {name}-app.container && \
         printf '%s\\n' '[Volume]' 'Label=app={name}' > {name}-data.volume"
    ));
    tb.ok(&format!("{SIM} install {name} ~/rpm-e2e/{name}"));
    tb.ok(&format!("systemctl --user is-active {service}"));
    tb.ok(&format!(
        "d=$(mktemp -d) && echo packaged > $d/marker && \
         tar -C $d -cf - . | podman volume import systemd-{name}-data - && rm -r $d"
    ));

    // The packaged user generator added the stop hook, and nothing points
    // at the testbed's own binary.
    let hooked = tb.ok(&format!(
        "for f in $(systemctl --user show -P DropInPaths {service}); do \
           case $f in /run/user/*/systemd/generator*) grep -l '^ExecStopPost=.*leger-backup' \"$f\";; esac; \
         done; true"
    ));
    assert!(
        !hooked.trim().is_empty(),
        "no generated drop-in with a leger-backup ExecStopPost= for {service}:\n{}",
        tb.ok(&format!("systemctl --user cat {service}"))
    );
    let unit = tb.ok(&format!("systemctl --user cat {service}"));
    assert!(
        !unit.contains("/usr/local/"),
        "{service} refers to /usr/local:\n{unit}"
    );

    // Stopping the service takes the backup.
    tb.ok(&format!("systemctl --user stop {service}"));
    let on_stop = wait_for_backup(&tb, &name, "on-stop", Duration::from_secs(90));
    let listed = list_backups(&tb, &name);
    assert_eq!(
        listed.iter().filter(|(_, r)| r == "on-stop").count(),
        1,
        "one on-stop backup ({on_stop}): {listed:?}"
    );

    // The packaged pre-remove hook backs up before leger removes it.
    tb.ok(&format!("{SIM} remove {name}"));
    wait_for_backup(&tb, &name, "before-remove", Duration::from_secs(30));

    installed.finish();
    // The testbed's own install is back.
    tb.ok(&format!(
        "test -x {TESTBED_BIN} && test -L {TESTBED_GENERATOR}"
    ));
    tb.ok("test ! -e /usr/bin/leger-backup && test ! -e /usr/lib/systemd/user-generators/leger-backup-user-generator");
}
