//! What a host path is to a backup, from the path and its file type alone.
//!
//! The rule of thumb: a deployment owns what it keeps where data lives
//! (the user's home, `/srv`, `/var/lib`, `/opt`, `/mnt`, `/media`, its own
//! directory); the operating system owns `/usr`, `/run`, `/etc/localtime`
//! and the like, which a restore must never overwrite; a bind of a whole
//! home (or `/`) is too broad to take without being asked.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::layout::Scope;
use crate::quadlet::HostRefKind;

/// The decision for a host path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// What the deployment owns: backed up by default.
    Data,
    /// The operating system's: never backed up.
    System,
    /// A single host file a unit refers to (environment file, bind-mounted
    /// config or script): always backed up.
    Referenced,
    /// Left out by configuration.
    Excluded,
    /// Cannot be known without guessing.
    Unresolved,
    /// Too broad or outside the usual places: backed up only when an
    /// `include:` glob names it.
    NeedsInclude,
}

/// What is at the path, as far as a backup cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A socket (the podman socket...).
    Socket,
    /// A character or block device.
    Device,
    /// A FIFO.
    Fifo,
    /// Nothing there (yet).
    Missing,
}

/// Where a deployment's host paths are judged from.
#[derive(Debug, Clone)]
pub struct Place {
    /// User or system deployment.
    pub scope: Scope,
    /// The home of the deployment's user (`/root` for system ones).
    pub home: PathBuf,
    /// The manager's runtime directory (`/run/user/1000`, `/run`).
    pub runtime_dir: PathBuf,
    /// The deployment's own directories (whose files every backup holds).
    pub deployment_dirs: Vec<PathBuf>,
    /// Where leger-backup, leger, Podman and the service manager keep their
    /// own state (the backups, the journal, quadlet files, containers'
    /// storage, `~/.ssh`...): a host path inside one is never a
    /// deployment's. (One holding one, a whole home, needs an `include:`
    /// glob; a restore refuses to replace it.)
    pub own_dirs: Vec<PathBuf>,
}

/// Below a home, what belongs to the user's own setup, not a deployment.
pub const HOME_OWN: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".config/systemd",
    ".config/containers",
    ".local/share/containers",
];

/// Paths of the operating system, never backed up (with what is below them).
const SYSTEM: &[&str] = &[
    "/etc/localtime",
    "/etc/timezone",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/machine-id",
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/systemd",
    "/etc/pam.d",
    "/etc/security",
    "/etc/crontab",
    "/etc/cron.d",
    "/etc/containers",
    "/var/spool",
    "/var/lib/containers",
    "/var/lib/systemd",
    "/etc/nsswitch.conf",
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/boot",
    "/run",
    "/var/run",
    "/dev",
    "/proc",
    "/sys",
    "/tmp",
    "/var/tmp",
];

/// Where deployments keep their data (what is strictly below them).
const DATA_ROOTS: &[&str] = &["/srv", "/var/lib", "/opt", "/mnt", "/media"];

/// Whether `path` is `root` or below it.
fn within(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

/// Whether `path` is strictly below `root`.
fn below(path: &Path, root: &Path) -> bool {
    path != root && path.starts_with(root)
}

/// `(kind, reason)` for a resolved, absolute, clean `path` that a unit
/// refers to as `reference`. The deployment's
/// own directory and the user's home come before the operating system's
/// paths: a home may well be below `/tmp` or `/var`.
pub fn classify(
    path: &Path,
    file: FileKind,
    reference: HostRefKind,
    place: &Place,
) -> (Kind, String) {
    match file {
        FileKind::Socket => return (Kind::System, "a socket".to_owned()),
        FileKind::Device => return (Kind::System, "a device node".to_owned()),
        FileKind::Fifo => return (Kind::System, "a FIFO".to_owned()),
        _ => {}
    }
    if place.deployment_dirs.iter().any(|d| within(path, d)) {
        return (
            Kind::Data,
            "inside the deployment's directory, whose files every backup already holds".to_owned(),
        );
    }
    if let Some(own) = place.own_dirs.iter().find(|d| within(path, d)) {
        return (
            Kind::System,
            format!(
                "inside {}, where leger-backup, leger, Podman or the user's own setup keep their \
                 state: never a deployment's",
                own.display()
            ),
        );
    }
    if within(&place.home, path) || path == Path::new("/home") {
        return (
            Kind::NeedsInclude,
            "holds a whole home directory: backed up only when an include: glob names it"
                .to_owned(),
        );
    }
    if within(path, &place.runtime_dir) {
        return (
            Kind::System,
            "the service manager's runtime directory".to_owned(),
        );
    }
    let in_home = below(path, &place.home);
    if !in_home {
        if let Some(root) = SYSTEM.iter().map(Path::new).find(|r| within(path, r)) {
            return (
                Kind::System,
                format!(
                    "the operating system's ({} is never backed up)",
                    root.display()
                ),
            );
        }
        if path == Path::new("/etc") {
            return (Kind::System, "the operating system's".to_owned());
        }
    }
    match reference {
        HostRefKind::ServiceEnvFile | HostRefKind::ContainerEnvFile => {
            let why = "an environment file the unit reads: always backed up";
            return (Kind::Referenced, why.to_owned());
        }
        HostRefKind::ServiceExec => {
            let why = "a program the service runs (a script): always backed up";
            return (Kind::Referenced, why.to_owned());
        }
        HostRefKind::Mount => {}
    }
    if file == FileKind::File {
        return (
            Kind::Referenced,
            "a single file the unit mounts (a config or script): always backed up".to_owned(),
        );
    }
    classify_by_place(path, place)
}

/// The data roots, `/etc/<app>` and the rest.
fn classify_by_place(path: &Path, place: &Place) -> (Kind, String) {
    if below(path, &place.home) {
        return (Kind::Data, "under the user's home".to_owned());
    }
    if let Some(root) = DATA_ROOTS.iter().map(Path::new).find(|r| below(path, r)) {
        return (Kind::Data, format!("under {}", root.display()));
    }
    if below(path, Path::new("/etc")) {
        return match place.scope {
            Scope::System => (
                Kind::Data,
                "under /etc/<app>: a system deployment's own configuration and scripts".to_owned(),
            ),
            Scope::User => (
                Kind::NeedsInclude,
                "under /etc, which the administrator owns and a rootless restore cannot write: \
                 backed up only when an include: glob names it"
                    .to_owned(),
            ),
        };
    }
    (
        Kind::NeedsInclude,
        "outside the places deployment data lives (home, /srv, /var/lib, /opt, /mnt, /media): \
         backed up only when an include: glob names it"
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(scope: Scope, home: &str) -> Place {
        Place {
            scope,
            home: PathBuf::from(home),
            runtime_dir: PathBuf::from(if scope == Scope::User {
                "/run/user/1000"
            } else {
                "/run"
            }),
            deployment_dirs: vec![PathBuf::from(home).join(".config/containers/systemd/album")],
            own_dirs: Vec::new(),
        }
    }

    fn kind(path: &str, file: FileKind, scope: Scope) -> Kind {
        let mount = HostRefKind::Mount;
        classify(Path::new(path), file, mount, &place(scope, "/var/home/ana")).0
    }

    #[test]
    fn data_lives_in_home_srv_var_lib_opt_mnt_media() {
        for p in [
            "/var/home/ana/db",
            "/srv/photos",
            "/var/lib/quadlets/postgresql",
            "/opt/app/data",
            "/mnt/disk/lib",
            "/media/usb/x",
        ] {
            assert_eq!(kind(p, FileKind::Dir, Scope::User), Kind::Data, "{p}");
            assert_eq!(kind(p, FileKind::Missing, Scope::System), Kind::Data, "{p}");
        }
    }

    #[test]
    fn the_operating_system_is_never_backed_up() {
        for p in [
            "/etc/localtime",
            "/etc/resolv.conf",
            "/etc/hosts",
            "/etc/ssl/certs",
            "/etc/pki/tls",
            "/usr/share/zoneinfo",
            "/run/podman/podman.sock",
            "/run/user/1000/podman/podman.sock",
            "/var/run/docker.sock",
            "/dev/dri",
            "/proc",
            "/sys/fs/cgroup",
            "/tmp/x",
            "/etc",
        ] {
            assert_eq!(kind(p, FileKind::File, Scope::User), Kind::System, "{p}");
        }
        assert_eq!(
            kind("/srv/app.sock", FileKind::Socket, Scope::User),
            Kind::System
        );
        assert_eq!(
            kind("/srv/ttyUSB0", FileKind::Device, Scope::User),
            Kind::System
        );
    }

    #[test]
    fn whole_homes_and_root_need_an_include() {
        for p in ["/var/home/ana", "/var/home", "/var", "/", "/home"] {
            assert_eq!(
                kind(p, FileKind::Dir, Scope::User),
                Kind::NeedsInclude,
                "{p}"
            );
        }
        assert_eq!(kind("/srv", FileKind::Dir, Scope::User), Kind::NeedsInclude);
        assert_eq!(
            kind("/data/photos", FileKind::Dir, Scope::User),
            Kind::NeedsInclude
        );
    }

    #[test]
    fn etc_app_is_data_for_root_and_needs_an_include_for_users() {
        let p = "/etc/quadlets/postgresql";
        assert_eq!(kind(p, FileKind::Dir, Scope::System), Kind::Data);
        assert_eq!(kind(p, FileKind::Dir, Scope::User), Kind::NeedsInclude);
    }

    #[test]
    fn single_files_and_env_files_are_referenced() {
        assert_eq!(
            kind("/srv/app/init.sh", FileKind::File, Scope::User),
            Kind::Referenced
        );
        let p = place(Scope::User, "/var/home/ana");
        let env = HostRefKind::ServiceEnvFile;
        let (k, _) = classify(Path::new("/srv/album.env"), FileKind::Missing, env, &p);
        assert_eq!(k, Kind::Referenced);
        let exec = HostRefKind::ServiceExec;
        let (k, _) = classify(Path::new("/etc/pg/init.sh"), FileKind::File, exec, &p);
        assert_eq!(k, Kind::Referenced);
        let (k, _) = classify(Path::new("/usr/bin/mkdir"), FileKind::File, exec, &p);
        assert_eq!(k, Kind::System);
    }

    #[test]
    fn a_home_below_tmp_is_still_the_users() {
        let p = place(Scope::User, "/tmp/t1");
        let m = HostRefKind::Mount;
        let (k, _) = classify(Path::new("/tmp/t1/db"), FileKind::Dir, m, &p);
        assert_eq!(k, Kind::Data);
        let (k, _) = classify(Path::new("/tmp/other"), FileKind::Dir, m, &p);
        assert_eq!(k, Kind::System);
    }

    #[test]
    fn the_deployment_directory_is_already_backed_up() {
        let p = "/var/home/ana/.config/containers/systemd/album/config.yml";
        assert_eq!(kind(p, FileKind::File, Scope::User), Kind::Data);
    }

    #[test]
    fn credentials_containers_and_own_state_are_the_systems_even_for_root() {
        for p in [
            "/etc/shadow",
            "/etc/sudoers.d/x",
            "/etc/ssh",
            "/etc/systemd/system",
            "/etc/containers/systemd/other",
            "/var/lib/containers/storage/volumes/v/_data/l",
            "/var/spool/cron/root",
        ] {
            for file in [FileKind::Dir, FileKind::File] {
                assert_eq!(kind(p, file, Scope::System), Kind::System, "{p}");
            }
        }
        let mut at = place(Scope::User, "/var/home/ana");
        at.own_dirs = HOME_OWN
            .iter()
            .map(|d| at.home.join(d))
            .chain([PathBuf::from("/var/home/ana/backups")])
            .collect();
        for p in [
            "/var/home/ana/.ssh",
            "/var/home/ana/.local/share/containers/storage",
            "/var/home/ana/backups/web-1",
        ] {
            let (k, why) = classify(Path::new(p), FileKind::Dir, HostRefKind::Mount, &at);
            assert_eq!(k, Kind::System, "{p}: {why}");
        }
        // The deployment's own directory, under ~/.config/containers, stays data.
        let own = "/var/home/ana/.config/containers/systemd/album/album.env";
        let (k, _) = classify(Path::new(own), FileKind::File, HostRefKind::Mount, &at);
        assert_eq!(k, Kind::Data);
    }
}
