//! The RPM: `make rpm` builds it into target/rpm/, and its file list is
//! exactly the payload packaging/README.md describes (directories aside).
//! Needs rpmbuild (the build script installs Debian's `rpm` and `cpio` when
//! run as root); takes about a minute unless a release build is already there.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::packaging::{checked, without_cargo_env};
use crate::support::{repo_root, stdout};

/// Every file (and symlink) the package installs.
const PAYLOAD: &[&str] = &[
    "/usr/bin/leger-backup",
    "/usr/lib/systemd/user-generators/leger-backup-user-generator",
    "/usr/lib/systemd/system-generators/leger-backup-system-generator",
    "/usr/lib/leger/hooks/pre-remove.d/50-leger-backup",
    "/usr/lib/leger/hooks/pre-apply.d/50-leger-backup",
    "/usr/share/man/man1/leger-backup.1.gz",
    "/usr/share/bash-completion/completions/leger-backup",
    "/usr/share/zsh/site-functions/_leger-backup",
    "/usr/share/fish/vendor_completions.d/leger-backup.fish",
    "/usr/share/doc/leger-backup/README.md",
    "/usr/share/licenses/leger-backup/LICENSE",
];

const GENERATORS: &[&str] = &[
    "/usr/lib/systemd/user-generators/leger-backup-user-generator",
    "/usr/lib/systemd/system-generators/leger-backup-system-generator",
];

const EXECUTABLES: &[&str] = &[
    "/usr/bin/leger-backup",
    "/usr/lib/leger/hooks/pre-remove.d/50-leger-backup",
    "/usr/lib/leger/hooks/pre-apply.d/50-leger-backup",
];

/// Runs `make rpm` and returns the one package it left in target/rpm/.
fn make_rpm() -> PathBuf {
    let mut make = Command::new("make");
    make.args(["--no-print-directory", "rpm"])
        .current_dir(repo_root());
    // The variables cargo sets for this test binary are not the build's.
    without_cargo_env(&mut make);
    checked(&mut make);
    let dir = repo_root().join("target/rpm");
    let prefix = format!("leger-backup-{}-", env!("CARGO_PKG_VERSION"));
    let rpms: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".rpm") && !name.starts_with('.')
        })
        .collect();
    assert_eq!(
        rpms.len(),
        1,
        "exactly one package in {}: {rpms:?}",
        dir.display()
    );
    let name = rpms[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&prefix),
        "{name} is not version {}",
        env!("CARGO_PKG_VERSION")
    );
    rpms.into_iter().next().unwrap()
}

/// One entry of the package's file list.
struct Entry {
    perms: String,
    link: String,
}

/// path -> (permissions as `ls -l` shows them, symlink target).
fn entries(rpm: &Path) -> std::collections::BTreeMap<String, Entry> {
    let out = checked(
        Command::new("rpm")
            .args([
                "-qp",
                "--qf",
                "[%{FILENAMES}\t%{FILEMODES:perms}\t%{FILELINKTOS}\n]",
            ])
            .arg(rpm),
    );
    stdout(&out)
        .lines()
        .map(|line| {
            let mut f = line.split('\t');
            let path = f.next().unwrap().to_owned();
            let perms = f.next().unwrap_or_default().to_owned();
            let link = f.next().unwrap_or_default().to_owned();
            (path, Entry { perms, link })
        })
        .collect()
}

/// Every ancestor directory of the payload's files, below `/`.
fn payload_ancestors() -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    for path in PAYLOAD {
        let mut p = Path::new(path).parent();
        while let Some(dir) = p {
            if dir != Path::new("/") {
                dirs.insert(dir.to_string_lossy().into_owned());
            }
            p = dir.parent();
        }
    }
    dirs
}

#[test]
fn make_rpm_builds_the_package_with_exactly_the_payload() {
    let rpm = make_rpm();

    // `rpm -qlp`: every payload path, and beyond them only directories on
    // the way to them (owned by the package, like /usr/lib/leger/hooks).
    let listed: BTreeSet<String> = stdout(&checked(Command::new("rpm").arg("-qlp").arg(&rpm)))
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = PAYLOAD.iter().map(|p| p.to_string()).collect();
    let missing: Vec<_> = expected.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "missing from the package: {missing:?}\nrpm -qlp:\n{listed:#?}"
    );

    let entries = entries(&rpm);
    let ancestors = payload_ancestors();
    for path in listed.difference(&expected) {
        let entry = &entries[path];
        assert!(
            entry.perms.starts_with('d') && ancestors.contains(path),
            "unexpected in the package: {path} ({})",
            entry.perms
        );
    }

    for path in GENERATORS {
        let entry = &entries[*path];
        assert!(
            entry.perms.starts_with('l'),
            "{path} is not a symlink: {}",
            entry.perms
        );
        assert_eq!(entry.link, "../../../bin/leger-backup", "{path}");
    }
    for path in EXECUTABLES {
        assert_eq!(entries[*path].perms, "-rwxr-xr-x", "{path}");
    }

    // Image builds have no running systemd: no scriptlets at all.
    let scripts = stdout(&checked(
        Command::new("rpm").args(["-qp", "--scripts"]).arg(&rpm),
    ));
    assert!(
        scripts.trim().is_empty(),
        "the package has scriptlets:\n{scripts}"
    );
    let license = stdout(&checked(
        Command::new("rpm")
            .args(["-qp", "--qf", "%{LICENSE}"])
            .arg(&rpm),
    ));
    assert_eq!(license, "Apache-2.0");
}

#[test]
fn rpm_payload_is_what_the_repository_generates() {
    let rpm = make_rpm();
    let root = tempfile::tempdir().unwrap();
    checked(
        Command::new("sh")
            .arg("-c")
            .arg(r#"rpm2cpio "$1" | cpio -idm --quiet --no-absolute-filenames"#)
            .arg("sh")
            .arg(&rpm)
            .current_dir(root.path()),
    );
    let file = |p: &str| root.path().join(p.trim_start_matches('/'));
    let read = |p: &str| std::fs::read(file(p)).unwrap_or_else(|e| panic!("{p}: {e}"));

    // The binary runs, and the generator links resolve to it.
    let version = checked(Command::new(file("/usr/bin/leger-backup")).arg("--version"));
    assert!(
        stdout(&version).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        stdout(&version)
    );
    for path in GENERATORS {
        let resolved = std::fs::canonicalize(file(path)).unwrap();
        assert_eq!(
            resolved,
            std::fs::canonicalize(file("/usr/bin/leger-backup")).unwrap()
        );
    }

    // Generated at build time from the clap definitions.
    let man = checked(
        Command::new("gzip")
            .arg("-dc")
            .arg(file("/usr/share/man/man1/leger-backup.1.gz")),
    );
    assert!(
        stdout(&man).contains(".TH leger-backup 1"),
        "man page:\n{}",
        stdout(&man)
    );
    let bash =
        String::from_utf8(read("/usr/share/bash-completion/completions/leger-backup")).unwrap();
    assert!(
        bash.lines()
            .any(|l| l.trim_start().starts_with("complete -F ")
                && l.trim_end().ends_with(" leger-backup")),
        "{bash}"
    );
    let zsh = String::from_utf8(read("/usr/share/zsh/site-functions/_leger-backup")).unwrap();
    assert!(zsh.starts_with("#compdef leger-backup"), "{zsh}");
    let fish = String::from_utf8(read(
        "/usr/share/fish/vendor_completions.d/leger-backup.fish",
    ))
    .unwrap();
    assert!(fish.contains("complete -c leger-backup"), "{fish}");

    // Copied from the repository as they are.
    let repo = repo_root();
    for (packaged, source) in [
        (
            "/usr/lib/leger/hooks/pre-remove.d/50-leger-backup",
            "hooks/pre-remove.d/50-leger-backup",
        ),
        (
            "/usr/lib/leger/hooks/pre-apply.d/50-leger-backup",
            "hooks/pre-apply.d/50-leger-backup",
        ),
        ("/usr/share/doc/leger-backup/README.md", "README.md"),
        ("/usr/share/licenses/leger-backup/LICENSE", "LICENSE"),
    ] {
        assert!(
            read(packaged) == std::fs::read(repo.join(source)).unwrap(),
            "{packaged} differs from {source}"
        );
    }
}

#[test]
fn spec_matches_the_crate_and_builds_from_make() {
    let repo = repo_root();
    let spec = std::fs::read_to_string(repo.join("packaging/rpm/leger-backup.spec")).unwrap();
    let tag = |name: &str| -> Vec<String> {
        spec.lines()
            .filter_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
            .collect()
    };
    assert_eq!(tag("Version"), [env!("CARGO_PKG_VERSION")]);
    assert_eq!(tag("License"), ["Apache-2.0"]);
    let build_requires = tag("BuildRequires").join(" ");
    for dep in ["cargo", "rust"] {
        assert!(
            build_requires.split_whitespace().any(|w| w == dep),
            "BuildRequires {dep}: {build_requires}"
        );
    }
    // Repositories need restic >= 0.17; local backups do not.
    assert_eq!(tag("Recommends"), ["restic >= 0.17"]);
    assert!(spec.lines().any(|l| l == "%changelog"), "no %changelog");
    for scriptlet in [
        "%pre",
        "%post",
        "%preun",
        "%postun",
        "%posttrans",
        "%pretrans",
    ] {
        assert!(
            !spec
                .lines()
                .any(|l| l.split_whitespace().next() == Some(scriptlet)),
            "{scriptlet} in the spec"
        );
    }

    let license = std::fs::read_to_string(repo.join("LICENSE")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"));

    let makefile = std::fs::read_to_string(repo.join("Makefile")).unwrap();
    let rule = makefile
        .split("\nrpm:")
        .nth(1)
        .expect("a `rpm:` target in the Makefile");
    assert!(
        rule.lines()
            .nth(1)
            .unwrap_or_default()
            .contains("packaging/rpm/build.sh"),
        "{rule}"
    );
}

#[test]
fn bluebuild_snippet_is_a_dnf_module_installing_the_rpm() {
    let path = repo_root().join("packaging/bluebuild/leger-backup.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let module: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(module["type"].as_str(), Some("dnf"), "{text}");
    let packages: Vec<&str> = module["install"]["packages"]
        .as_sequence()
        .expect("install.packages is a list")
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(packages, ["leger-backup.rpm"]);
}
