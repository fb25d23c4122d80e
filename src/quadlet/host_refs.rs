//! The host files a unit refers to besides its mounts: environment files,
//! and the `[Service]` environment systemd expands `${VAR}` from.

use super::unit_file::{Entry, UnitFile};
use super::values::join_clean;
use super::{HostRef, HostRefKind, ServiceEnv, ServiceEnvLine};

/// The unit being looked at.
pub struct UnitRef<'a> {
    /// Its parsed text, drop-ins merged.
    pub unit: &'a UnitFile,
    /// The service Quadlet generates.
    pub service: &'a str,
    /// Relative path of the unit file.
    pub label: &'a str,
    /// Absolute directory of the unit file.
    pub unit_dir: &'a str,
}

fn env_line(entry: &Entry) -> ServiceEnvLine {
    ServiceEnvLine {
        key: entry.key.clone(),
        value: entry.value.clone(),
        file: entry.file.clone(),
        line: entry.line,
    }
}

/// A host reference at `entry`.
pub fn host_ref(
    u: &UnitRef<'_>,
    kind: HostRefKind,
    source: String,
    target: Option<String>,
    entry: &Entry,
) -> HostRef {
    HostRef {
        kind,
        source,
        target,
        service: u.service.to_owned(),
        unit: u.label.to_owned(),
        file: entry.file.clone(),
        line: entry.line,
    }
}

/// `[Service] Environment=`/`EnvironmentFile=` of the generated service:
/// Quadlet copies the `[Service]` section as it is, so these are the lines
/// systemd reads.
pub fn service_env(u: &UnitRef<'_>) -> ServiceEnv {
    ServiceEnv {
        service: u.service.to_owned(),
        environment: u
            .unit
            .lookup_all("Service", "Environment")
            .into_iter()
            .map(env_line)
            .collect(),
        environment_files: u
            .unit
            .lookup_all("Service", "EnvironmentFile")
            .into_iter()
            .map(env_line)
            .collect(),
    }
}

/// The `[Service]` keys whose program may be a script of the deployment
/// (Quadlet writes `ExecStart=` itself: podman).
const EXEC_KEYS: &[&str] = &[
    "ExecCondition",
    "ExecStartPre",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
];

/// The programs of a unit's `[Service]` `Exec*=` lines given by path
/// (systemd.service(5): the first word, after the `@-:+!` prefixes; a
/// name without `/` is looked up in systemd's own path, never a file of
/// the deployment).
pub fn exec_files(u: &UnitRef<'_>) -> Vec<HostRef> {
    let mut out = Vec::new();
    for key in EXEC_KEYS {
        for entry in u.unit.lookup_all("Service", key) {
            let Ok(words) = super::split::split_args(&entry.value) else {
                continue;
            };
            let Some(first) = words.first() else {
                continue;
            };
            let program = first.trim_start_matches(['@', '-', ':', '+', '!']);
            if program.starts_with('/') || program.starts_with('%') {
                let kind = HostRefKind::ServiceExec;
                out.push(host_ref(u, kind, program.to_owned(), None, entry));
            }
        }
    }
    out
}

/// The environment files of a unit: `[Service] EnvironmentFile=` as systemd
/// reads it (one path per line, `-` prefix kept for the reader), and
/// `[Container] EnvironmentFile=` as Quadlet passes it to `--env-file`
/// (words; a relative path made absolute against the unit file's directory,
/// Quadlet's `getAbsolutePath`, which leaves a path starting with a
/// specifier alone).
pub fn env_files(u: &UnitRef<'_>, container: bool) -> Vec<HostRef> {
    let mut out: Vec<HostRef> = u
        .unit
        .lookup_all("Service", "EnvironmentFile")
        .into_iter()
        .map(|e| {
            let source = e.value.trim().to_owned();
            host_ref(u, HostRefKind::ServiceEnvFile, source, None, e)
        })
        .collect();
    if container {
        for (word, entry) in u.unit.lookup_all_args("Container", "EnvironmentFile") {
            let source = if word.starts_with('/') || word.starts_with('%') {
                word
            } else {
                join_clean(u.unit_dir, &word)
            };
            out.push(host_ref(
                u,
                HostRefKind::ContainerEnvFile,
                source,
                None,
                entry,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quadlet::{resolve, SourceFile};
    use std::path::PathBuf;

    fn source(rel: &str, text: &str) -> SourceFile {
        SourceFile {
            rel_path: PathBuf::from(rel),
            origin: PathBuf::from("/q/album").join(rel),
            text: text.to_owned(),
        }
    }

    fn refs(files: &[(&str, &str)]) -> crate::quadlet::Resolution {
        let own: Vec<SourceFile> = files.iter().map(|(r, t)| source(r, t)).collect();
        resolve(&own, &[]).unwrap()
    }

    #[test]
    fn mounts_env_files_and_service_environment_are_collected() {
        let r = refs(&[
            (
                "album.container",
                "[Container]\nImage=x\nVolume=${UPLOAD}:/data:z\nVolume=%h/db:/db\n\
                 Volume=./config.yml:/etc/app.yml:ro\nVolume=named:/n\nVolume=v.volume:/v\n\
                 Mount=type=bind,source=/srv/a,destination=/a\nEnvironmentFile=app.env\n\
                 [Service]\nEnvironment=A=1 \"B=two words\"\nEnvironmentFile=-%h/album.env\n\
                 ExecStartPre=-/etc/album/init.sh --now\nExecStartPost=echo hi\n\
                 ExecStop=\"%h/bin/stop album\"\n",
            ),
            ("v.volume", "[Volume]\n"),
        ]);
        let got: Vec<(HostRefKind, &str, Option<&str>)> = r
            .host_refs
            .iter()
            .map(|h| (h.kind, h.source.as_str(), h.target.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (HostRefKind::Mount, "${UPLOAD}", Some("/data")),
                (HostRefKind::Mount, "%h/db", Some("/db")),
                (
                    HostRefKind::Mount,
                    "/q/album/config.yml",
                    Some("/etc/app.yml")
                ),
                (HostRefKind::Mount, "/srv/a", Some("/a")),
                (HostRefKind::ContainerEnvFile, "/q/album/app.env", None),
                (HostRefKind::ServiceEnvFile, "-%h/album.env", None),
                (HostRefKind::ServiceExec, "/etc/album/init.sh", None),
                (HostRefKind::ServiceExec, "%h/bin/stop album", None),
            ]
        );
        assert!(r.host_refs.iter().all(|h| h.service == "album.service"));
        let env = &r.service_envs[0];
        assert_eq!(env.service, "album.service");
        assert_eq!(env.environment[0].value, "A=1 \"B=two words\"");
        assert_eq!(env.environment_files[0].value, "-%h/album.env");
    }

    #[test]
    fn drop_ins_reset_the_service_environment() {
        let r = refs(&[
            (
                "a.container",
                "[Container]\nImage=x\n[Service]\nEnvironmentFile=/etc/old.env\n",
            ),
            (
                "a.container.d/10.conf",
                "[Service]\nEnvironmentFile=\nEnvironmentFile=/etc/new.env\n",
            ),
        ]);
        let files: Vec<&str> = r.service_envs[0]
            .environment_files
            .iter()
            .map(|l| l.value.as_str())
            .collect();
        assert_eq!(files, ["/etc/new.env"]);
        assert_eq!(r.host_refs.len(), 1);
        assert_eq!(r.host_refs[0].file, "a.container.d/10.conf");
    }
}
