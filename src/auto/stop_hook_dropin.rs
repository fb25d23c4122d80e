//! The systemd drop-in that makes a service call the stop hook, which
//! services of a deployment get one, and writing and removing drop-ins.
//!
//! The same text is written by the generator (into its output directory at
//! every reload) and by `enable` without a generator (into the user's unit
//! directory), so both paths behave identically.

use std::path::{Path, PathBuf};

use fs_err as fs;

use crate::config::Seconds;
use crate::deployment::Deployment;
use crate::error::Result;
use crate::layout::{Layout, Scope};
use crate::quadlet::{self, SourceFile, UnitKind};

/// File name of our drop-in in `<service>.d/`. The `50-` prefix leaves room
/// for the user's own drop-ins to override ours (a later name wins).
pub const DROPIN_FILE: &str = "50-leger-backup.conf";

/// First line of every drop-in we write, so we only ever remove our own.
pub const HEADER: &str = "# Written by leger-backup: automatic backup when this service stops.";

/// The drop-in text for a service of `deployment`: run the stop hook after
/// the service stopped (`-`: its failure never marks the unit failed) and
/// give the stop enough time for the backup (`TimeoutStopSec=` bounds
/// `ExecStop=` and `ExecStopPost=` together).
pub fn dropin_text(binary: &Path, deployment: &str, scope: Scope, stop_timeout: Seconds) -> String {
    let scope_arg = scope.cli_flag();
    format!(
        "{HEADER}\n\
         # Deployment: {deployment}. Turn off with `leger-backup{scope_arg} disable {deployment}`.\n\
         [Service]\n\
         ExecStopPost=-{binary}{scope_arg} stop-hook --deployment {deployment} --unit %n\n\
         TimeoutStopSec={timeout}\n",
        binary = exec_word(&binary.to_string_lossy()),
        timeout = stop_timeout.0,
    )
}

/// Quote one word for a systemd `Exec*=` line: `%` and `$` are doubled
/// (specifier and variable expansion), and a word with blanks, quotes or
/// backslashes is double-quoted with C escapes.
pub fn exec_word(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    let needs_quotes = escaped.is_empty()
        || escaped
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'));
    if needs_quotes {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

/// The deployment a drop-in written by us belongs to (from its
/// `--deployment` argument), or `None` when the text is not ours.
pub fn dropin_deployment(text: &str) -> Option<String> {
    if !text.starts_with(HEADER) {
        return None;
    }
    let line = text.lines().find(|l| l.starts_with("ExecStopPost="))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "--deployment")?;
    words.next().map(str::to_owned)
}

/// The service Quadlet generates from a unit file whose stop should trigger
/// a backup: `.container` and `.kube` give `NAME.service`, `.pod` gives
/// `NAME-pod.service` (facts file, "Quadlet naming"). `.volume`, `.network`,
/// `.image` and `.build` give oneshot services that stay "active (exited)"
/// and never mean the deployment went down, so they get no hook.
pub fn hooked_service_of_file(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let (stem, ext) = name.rsplit_once('.')?;
    if stem.is_empty() {
        return None;
    }
    match ext {
        "container" | "kube" => Some(format!("{stem}.service")),
        "pod" => Some(format!("{stem}-pod.service")),
        _ => None,
    }
}

/// The hooked services of a deployment and how they were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    /// Service names, sorted, without duplicates; all valid systemd
    /// service names.
    pub names: Vec<String>,
    /// Why the Quadlet resolver could not be used, when the names were
    /// derived from each file alone instead (drop-ins are then not seen).
    pub fallback: Option<String>,
    /// Units left without a hook because their service name is not one
    /// systemd accepts (`ServiceName=../../x`): one message per unit,
    /// naming the file and the name.
    pub refused: Vec<String>,
}

/// The hooked services of a deployment whose quadlet files are `own`,
/// resolved against every `installed` file. The resolver is authoritative
/// (it knows drop-ins); when it fails (a broken file, a service name
/// systemd refuses) each unit file is read on its own, so a broken
/// neighbour never loses the hooks of the others.
pub fn hooked_services(own: &[SourceFile], installed: &[SourceFile]) -> Services {
    match quadlet::resolve(own, installed) {
        Ok(resolution) => {
            let mut names: Vec<String> = resolution
                .units
                .iter()
                .filter(|u| matches!(u.kind, UnitKind::Container | UnitKind::Pod | UnitKind::Kube))
                .map(|u| u.service.clone())
                .collect();
            names.sort();
            names.dedup();
            Services {
                names,
                fallback: None,
                refused: Vec::new(),
            }
        }
        Err(err) => {
            let mut services = services_file_by_file(own);
            services.fallback = Some(err.message);
            services
        }
    }
}

/// The hooked services of `own` read file by file: `ServiceName=` of the
/// file itself when it parses, else the file name. Names systemd would
/// refuse are left out, each with a message naming its file.
fn services_file_by_file(own: &[SourceFile]) -> Services {
    let mut names = Vec::new();
    let mut refused = Vec::new();
    for source in own {
        let Some(by_file_name) = hooked_service_of_file(&source.rel_path) else {
            continue;
        };
        let file_name = source.rel_path.file_name().unwrap_or_default();
        let file_name = file_name.to_string_lossy();
        let service = match (
            quadlet::parse(&file_name, &source.text),
            quadlet::search_path::kind_of(&file_name),
        ) {
            (Ok(unit), Some(kind)) => quadlet::resolve::service_name(&unit, &file_name, kind),
            _ => by_file_name,
        };
        match crate::systemd::service_name_problem(&service) {
            None => names.push(service),
            Some(why) => refused.push(format!(
                "{}: not hooked: its service name {service:?} is not a valid systemd unit name \
                 (it {why})",
                source.origin.display()
            )),
        }
    }
    names.sort();
    names.dedup();
    Services {
        names,
        fallback: None,
        refused,
    }
}

/// The hooked services of `deployment`, reading its files and the Quadlet
/// search path. A file that cannot be read (a FIFO, a symlink to a device, a huge file)
/// is left out and named in [`Services::refused`].
pub fn deployment_services(deployment: &Deployment, layout: &Layout) -> Result<Services> {
    let (own, unread) = deployment.quadlet_sources_skipping()?;
    let installed = crate::deployment::installed_quadlet_files(layout)?;
    let mut services = hooked_services(&own, &installed);
    services.refused.extend(
        unread
            .into_iter()
            .map(|err| format!("skipped: {}", err.message)),
    );
    Ok(services)
}

/// Path of our drop-in for `service` under the unit directory `dir`. The
/// one place a service name becomes a path: a name systemd would refuse
/// (`../../x.service`, `-x.service`) is an error, so no drop-in is ever
/// read, written or removed outside `dir`.
pub fn dropin_path(dir: &Path, service: &str) -> Result<PathBuf> {
    crate::systemd::validate_service_name(service)?;
    Ok(dir.join(format!("{service}.d")).join(DROPIN_FILE))
}

/// The largest drop-in read back to see whether it is ours (ours are a few
/// hundred bytes), so a unit directory holding a symlink to `/dev/zero`
/// never hangs the generator.
pub const DROPIN_MAX: u64 = 64 * 1024;

/// The text of the drop-in at `path`, when it is a regular file of at most
/// [`DROPIN_MAX`] bytes; never blocks.
pub fn read_dropin(path: &Path) -> std::io::Result<String> {
    let bytes = crate::regular_file::read_capped(path, DROPIN_MAX)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Write `text` as our drop-in for `service` under `dir`, unless it is
/// already there with that text. Returns whether the file changed.
pub fn write_dropin(dir: &Path, service: &str, text: &str) -> Result<bool> {
    let path = dropin_path(dir, service)?;
    if read_dropin(&path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("conf.tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, &path)?;
    Ok(true)
}

/// Remove our drop-in for `service` under `dir` (and the `.d` directory if
/// it is left empty). A file of that name we did not write is left alone.
/// Returns whether a file was removed.
pub fn remove_dropin(dir: &Path, service: &str) -> Result<bool> {
    let path = dropin_path(dir, service)?;
    match read_dropin(&path) {
        Ok(text) if text.starts_with(HEADER) => {
            fs::remove_file(&path)?;
            if let Some(parent) = path.parent() {
                // Fails (and that is fine) when the user keeps drop-ins there.
                let _ = std::fs::remove_dir(parent);
            }
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if crate::regular_file::is_refusal(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// One drop-in of ours found in a unit directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundDropin {
    /// The service it applies to.
    pub service: String,
    /// The deployment it backs up.
    pub deployment: String,
    /// The file.
    pub path: PathBuf,
}

/// Every drop-in of ours under the unit directory `dir` (for `status` and
/// for `disable --all`, which also removes those of deployments that are
/// gone). A missing directory holds none.
pub fn find_dropins(dir: &Path) -> Result<Vec<FoundDropin>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(service) = name.to_str().and_then(|n| n.strip_suffix(".d")) else {
            continue;
        };
        if crate::systemd::service_name_problem(service).is_some() {
            continue;
        }
        let path = entry.path().join(DROPIN_FILE);
        let Ok(text) = read_dropin(&path) else {
            continue;
        };
        if let Some(deployment) = dropin_deployment(&text) {
            found.push(FoundDropin {
                service: service.to_owned(),
                deployment,
                path,
            });
        }
    }
    found.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(found)
}

/// The absolute path of this binary, for the drop-in's `ExecStopPost=`.
/// systemd runs the generator through its symlink; `/proc/self/exe` names
/// the real file, which is what the hook must call.
pub fn current_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // A binary replaced while running shows as "path (deleted)"; the new
    // file at the same path is the one to call.
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(stripped) => PathBuf::from(stripped),
        None => exe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(rel: &str) -> SourceFile {
        SourceFile {
            rel_path: rel.into(),
            origin: rel.into(),
            text: String::new(),
        }
    }

    #[test]
    fn dropin_text_user_scope() {
        let text = dropin_text(
            Path::new("/usr/local/bin/leger-backup"),
            "web",
            Scope::User,
            Seconds(900),
        );
        assert_eq!(
            text,
            "# Written by leger-backup: automatic backup when this service stops.\n\
             # Deployment: web. Turn off with `leger-backup disable web`.\n\
             [Service]\n\
             ExecStopPost=-/usr/local/bin/leger-backup stop-hook --deployment web --unit %n\n\
             TimeoutStopSec=900\n"
        );
        assert_eq!(dropin_deployment(&text).as_deref(), Some("web"));
    }

    #[test]
    fn dropin_text_system_scope_and_odd_binary_path() {
        let text = dropin_text(
            Path::new("/opt/my tools/100%/leger-backup"),
            "db",
            Scope::System,
            Seconds(60),
        );
        assert!(text.contains(
            "ExecStopPost=-\"/opt/my tools/100%%/leger-backup\" --system stop-hook --deployment db --unit %n\n"
        ));
        assert!(text.contains("TimeoutStopSec=60\n"));
        assert!(text.contains("`leger-backup --system disable db`"));
    }

    #[test]
    fn exec_words() {
        assert_eq!(exec_word("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(exec_word("/a$b"), "/a$$b");
        assert_eq!(exec_word("a\"b c"), "\"a\\\"b c\"");
        assert_eq!(exec_word(""), "\"\"");
    }

    #[test]
    fn foreign_text_is_not_ours() {
        assert_eq!(
            dropin_deployment("[Service]\nExecStopPost=x --deployment a\n"),
            None
        );
    }

    #[test]
    fn service_names_follow_quadlet() {
        let s = |p: &str| hooked_service_of_file(Path::new(p));
        assert_eq!(s("web.container").as_deref(), Some("web.service"));
        assert_eq!(s("sub/web.container").as_deref(), Some("web.service"));
        assert_eq!(s("app.pod").as_deref(), Some("app-pod.service"));
        assert_eq!(s("k.kube").as_deref(), Some("k.service"));
        assert_eq!(s("data.volume"), None);
        assert_eq!(s("net.network"), None);
        assert_eq!(s("web.container.d/10-x.conf"), None);
        assert_eq!(s(".container"), None);
    }

    #[test]
    fn fallback_when_resolver_fails_uses_each_file_alone() {
        // A broken drop-in makes the resolver fail; the two hooked services
        // still come from their files, and nothing for the volume.
        let own = [
            source("web.container"),
            source("db.container"),
            source("data.volume"),
            SourceFile {
                text: "oops\n".to_owned(),
                ..source("web.container.d/10-env.conf")
            },
        ];
        let services = hooked_services(&own, &[]);
        assert!(services.fallback.is_some());
        assert_eq!(services.names, ["db.service", "web.service"]);
        assert!(services.refused.is_empty());
    }

    fn source_text(rel: &str, text: &str) -> SourceFile {
        SourceFile {
            text: text.to_owned(),
            ..source(rel)
        }
    }

    #[test]
    fn a_service_name_systemd_refuses_is_never_hooked() {
        let own = [
            source_text(
                "web.container",
                "[Container]\nImage=x\nServiceName=../../x\n",
            ),
            source_text("db.container", "[Container]\nImage=x\nServiceName=custom\n"),
            source_text("-opt.container", "[Container]\nImage=x\n"),
            source_text("broken.container", "[Container\n"),
        ];
        let services = hooked_services(&own, &[]);
        assert!(services.fallback.is_some());
        assert_eq!(services.names, ["broken.service", "custom.service"]);
        assert_eq!(services.refused.len(), 2, "{:?}", services.refused);
        assert!(services.refused[0].starts_with("web.container: "));
        assert!(services.refused[0].contains("\"../../x.service\""));
        assert!(services.refused[1].starts_with("-opt.container: "));

        let tmp = tempfile::tempdir().unwrap();
        for bad in ["../../x.service", "-x.service", "a/b.service", "web"] {
            assert!(dropin_path(tmp.path(), bad).is_err(), "{bad}");
            assert!(write_dropin(tmp.path(), bad, "x").is_err(), "{bad}");
            assert!(remove_dropin(tmp.path(), bad).is_err(), "{bad}");
        }
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn write_is_idempotent_and_remove_only_touches_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let text = dropin_text(Path::new("/b"), "web", Scope::User, Seconds(9));
        assert!(write_dropin(dir, "web.service", &text).unwrap());
        assert!(!write_dropin(dir, "web.service", &text).unwrap());
        let found = find_dropins(dir).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].service, "web.service");
        assert_eq!(found[0].deployment, "web");
        assert!(remove_dropin(dir, "web.service").unwrap());
        assert!(!dir.join("web.service.d").exists());
        assert!(!remove_dropin(dir, "web.service").unwrap());

        std::fs::create_dir_all(dir.join("db.service.d")).unwrap();
        std::fs::write(dropin_path(dir, "db.service").unwrap(), "[Service]\n").unwrap();
        assert!(!remove_dropin(dir, "db.service").unwrap());
        assert!(dropin_path(dir, "db.service").unwrap().exists());
        assert!(find_dropins(dir).unwrap().is_empty());
    }
}
