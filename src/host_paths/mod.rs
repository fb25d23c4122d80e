//! The host paths of a deployment: what its units mount or read from the
//! host, resolved as systemd resolves them and judged for a backup.
//!
//! Quadlet leaves `%h`, `${VAR}` and the like to systemd, so a source such
//! as `${UPLOAD_LOCATION}` only means something once the service's
//! environment is known ([`env`]). Each path is then classified
//! ([`classify`]) and the deployment's settings applied ([`policy`]).
//! Whatever cannot be known is `unresolved`, with the reason.

pub mod classify;
pub mod env;
pub mod policy;
pub mod size;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::layout::Scope;
use crate::quadlet::environment::expand_variables;
use crate::quadlet::specifiers::{expand, Manager};
use crate::quadlet::values::clean;
use crate::quadlet::{HostRef, HostRefKind, Resolution};
use classify::{FileKind, Kind, Place};
use env::Environment;
use policy::Policy;
use size::Budget;

/// One host path and what a backup does with it. Keys are stable
/// (`plan --json`).
#[derive(Debug, Clone, Serialize)]
pub struct HostPath {
    /// The source as Quadlet writes it into the service (`${UPLOAD}`,
    /// `%h/db`, `/q/album/config.yml` for `./config.yml`).
    pub source: String,
    /// The absolute host path, when it could be resolved.
    pub resolved: Option<String>,
    /// The path inside the container (mounts only).
    pub target: Option<String>,
    /// Relative path of the unit file.
    pub unit: String,
    /// The service that uses it.
    pub service: String,
    /// Relative path of the file (unit or drop-in) and 1-based line.
    pub file: String,
    /// See `file`.
    pub line: usize,
    /// `mount`, `service-env-file`, `container-env-file` or `service-exec`.
    pub reference: HostRefKind,
    /// The decision.
    pub kind: Kind,
    /// Why.
    pub reason: String,
    /// Whether something is at the resolved path.
    pub exists: bool,
    /// Bytes of the regular files there (a lower bound when
    /// `size_at_least`); `None` when nothing could be measured.
    pub size_bytes: Option<u64>,
    /// Whether `size_bytes` is only a lower bound.
    pub size_at_least: bool,
    /// Whether today's backups already hold it (a file inside the
    /// deployment's own directory).
    pub backed_up_today: bool,
}

/// Who and where the deployment runs, for specifiers and classification.
#[derive(Debug, Clone)]
pub struct Context {
    /// The service manager (`%h`, `%t`...).
    pub manager: Manager,
    /// Where the paths are judged from.
    pub place: Place,
    /// How far size walks go.
    pub budget: Budget,
}

impl Context {
    /// The running user's context for `scope`: the user manager's
    /// directories from `HOME` and `XDG_*` (systemd's defaults when unset),
    /// or the system manager's.
    pub fn current(scope: Scope, deployment_dirs: Vec<PathBuf>) -> Context {
        let manager = match scope {
            Scope::System => Manager::system(),
            Scope::User => current_user_manager(),
        };
        let place = Place {
            scope,
            home: manager.home.clone(),
            runtime_dir: manager.runtime_dir.clone(),
            deployment_dirs,
            own_dirs: classify::HOME_OWN
                .iter()
                .map(|d| manager.home.join(d))
                .collect(),
        };
        Context {
            manager,
            place,
            budget: Budget::default(),
        }
    }
}

fn current_user_manager() -> Manager {
    let uid = nix::unistd::getuid();
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let home = var("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    let runtime = var("XDG_RUNTIME_DIR")
        .map_or_else(|| PathBuf::from(format!("/run/user/{uid}")), PathBuf::from);
    let mut m = Manager::user(home, user, uid.as_raw(), runtime);
    if let Some(v) = var("XDG_STATE_HOME") {
        m.state_dir = PathBuf::from(v);
        m.log_dir = m.state_dir.join("log");
    }
    if let Some(v) = var("XDG_CACHE_HOME") {
        m.cache_dir = PathBuf::from(v);
    }
    if let Some(v) = var("XDG_CONFIG_HOME") {
        m.config_dir = PathBuf::from(v);
    }
    m
}

/// The host paths of `deployment` (resolved as `resolution`), judged from
/// the running user's place under the deployment's settings in `config`:
/// what `plan` shows and `create` backs up, decided in one place.
pub fn of_deployment(
    scope: Scope,
    deployment: &crate::deployment::Deployment,
    resolution: &Resolution,
    config: &crate::config::BackupConfig,
) -> crate::error::Result<(Context, Vec<HostPath>)> {
    let dirs = vec![deployment
        .active_dir
        .clone()
        .unwrap_or_else(|| deployment.installed_root.clone())];
    let mut ctx = Context::current(scope, dirs);
    ctx.place.own_dirs.extend(own_dirs(scope, config));
    let policy = Policy::new(config, &deployment.name, &ctx.manager.home)?;
    let paths = host_paths(resolution, &ctx, &policy);
    Ok((ctx, paths))
}

/// The directories of leger-backup and leger in `scope`: its backups
/// (`config`'s), its state and journal, leger's data and config.
pub fn own_dirs(scope: Scope, config: &crate::config::BackupConfig) -> Vec<PathBuf> {
    let mut dirs = vec![config.dir.value.clone()];
    if let Ok(layout) = crate::layout::Layout::for_scope(scope) {
        dirs.extend([
            layout.state_dir,
            layout.leger_data_dir,
            layout.leger_config_dir,
        ]);
    }
    dirs
}

/// Every host path of a resolved deployment, in the order of the unit
/// files' lines, judged under `policy`.
pub fn host_paths(resolution: &Resolution, ctx: &Context, policy: &Policy) -> Vec<HostPath> {
    let mut envs: BTreeMap<&str, Environment> = BTreeMap::new();
    for service_env in &resolution.service_envs {
        let loaded = env::load(service_env, &ctx.manager, ctx.place.scope);
        envs.insert(service_env.service.as_str(), loaded);
    }
    let mut paths: Vec<HostPath> = resolution
        .host_refs
        .iter()
        .filter_map(|r| host_path(r, envs.get(r.service.as_str()), ctx, policy))
        .collect();
    measure_all(&mut paths, ctx.budget);
    paths
}

/// Sizes of what exists, each path walked once however many units use
/// it. The operating system's paths are never measured: `/usr` alone would
/// use up the time budget.
fn measure_all(paths: &mut [HostPath], budget: Budget) {
    let mut cache: BTreeMap<String, Option<size::Size>> = BTreeMap::new();
    for h in paths.iter_mut() {
        let Some(path) = &h.resolved else {
            continue;
        };
        if h.kind == Kind::System || !h.exists {
            continue;
        }
        let size = cache.entry(path.clone()).or_insert_with(|| {
            let measurable = matches!(file_kind(Path::new(path)), FileKind::Dir | FileKind::File);
            measurable.then(|| size::measure(Path::new(path), budget))
        });
        if let Some(size) = size {
            h.size_bytes = Some(size.bytes);
            h.size_at_least = size.at_least;
        }
    }
}

/// What a source turns into once systemd has expanded it.
enum Expanded {
    /// An absolute, clean host path.
    Path(String),
    /// Not a host path after all (a volume name from a variable).
    NotAPath,
    /// Cannot be known: why.
    Unknown(String),
}

/// Expand a source as systemd does: specifiers when the unit is loaded,
/// then `${VAR}` at start (except `[Service] EnvironmentFile=`, which
/// systemd reads itself, specifiers only).
fn expand_source(r: &HostRef, env: Option<&Environment>, manager: &Manager) -> Expanded {
    let raw = match r.kind {
        HostRefKind::ServiceEnvFile => r.source.trim_start_matches('-'),
        _ => r.source.as_str(),
    };
    // systemd substitutes no variables in an env file's path or a program's.
    let no_variables = matches!(
        r.kind,
        HostRefKind::ServiceEnvFile | HostRefKind::ServiceExec
    );
    // A source that became a name through a substitution is a volume; a
    // literal relative one (`type=bind,source=data`) a bind podman resolves
    // against its working directory.
    let substituted = raw.contains(['$', '%']);
    let value = match expand(raw, manager, &r.service) {
        Ok(v) => v,
        Err(e) => return Expanded::Unknown(e.to_string()),
    };
    let value = if no_variables {
        value
    } else {
        let empty = Environment::default();
        let env = env.unwrap_or(&empty);
        match expand_variables(&value, &env.vars) {
            Ok(v) => v,
            Err(e) => return Expanded::Unknown(with_problems(e.to_string(), env)),
        }
    };
    if value.starts_with('/') {
        Expanded::Path(clean(&value))
    } else if r.kind == HostRefKind::ServiceEnvFile {
        Expanded::Unknown(format!(
            "{value:?} is not an absolute path, which systemd ignores for EnvironmentFile="
        ))
    } else if value.starts_with('.') || r.kind != HostRefKind::Mount || !substituted {
        Expanded::Unknown(format!(
            "expands to the relative path {value:?}, which podman resolves against its working \
             directory"
        ))
    } else {
        Expanded::NotAPath
    }
}

/// An undefined-variable reason, with the env files that could not be read.
fn with_problems(reason: String, env: &Environment) -> String {
    if env.problems.is_empty() {
        reason
    } else {
        format!("{reason}; {}", env.problems.join("; "))
    }
}

fn file_kind(path: &Path) -> FileKind {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Err(_) => FileKind::Missing,
        Ok(m) if m.is_dir() => FileKind::Dir,
        Ok(m) if m.is_file() => FileKind::File,
        Ok(m) if m.file_type().is_socket() => FileKind::Socket,
        Ok(m) if m.file_type().is_fifo() => FileKind::Fifo,
        Ok(_) => FileKind::Device,
    }
}

fn host_path(
    r: &HostRef,
    env: Option<&Environment>,
    ctx: &Context,
    policy: &Policy,
) -> Option<HostPath> {
    let mut out = HostPath {
        source: r.source.clone(),
        resolved: None,
        target: r.target.clone(),
        unit: r.unit.clone(),
        service: r.service.clone(),
        file: r.file.clone(),
        line: r.line,
        reference: r.kind,
        kind: Kind::Unresolved,
        reason: String::new(),
        exists: false,
        size_bytes: None,
        size_at_least: false,
        backed_up_today: false,
    };
    let path = match expand_source(r, env, &ctx.manager) {
        Expanded::Path(p) => p,
        Expanded::NotAPath => return None,
        Expanded::Unknown(why) => {
            out.reason = format!("unresolved: {why}");
            return Some(out);
        }
    };
    let file = file_kind(Path::new(&path));
    let always = r.kind != HostRefKind::Mount;
    let (kind, reason) = classify::classify(Path::new(&path), file, r.kind, &ctx.place);
    if r.kind == HostRefKind::ServiceExec && kind == Kind::System {
        // `/usr/bin/mkdir`: the system's program, not the deployment's.
        return None;
    }
    let in_deployment = ctx
        .place
        .deployment_dirs
        .iter()
        .any(|d| Path::new(&path).starts_with(d));
    // Files of the deployment's directory are in every backup already:
    // settings about host paths do not apply to them.
    (out.kind, out.reason) = if in_deployment {
        (kind, reason)
    } else {
        policy.apply(kind, reason, Path::new(&path), always)
    };
    out.backed_up_today = in_deployment && file == FileKind::File;
    out.exists = file != FileKind::Missing;
    out.resolved = Some(path);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(kind: HostRefKind, source: &str) -> HostRef {
        HostRef {
            kind,
            source: source.into(),
            target: Some("/t".into()),
            service: "tv@blue.service".into(),
            unit: "tv@.container".into(),
            file: "tv@.container".into(),
            line: 3,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment {
            vars: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            problems: vec!["x.container:2: EnvironmentFile=/gone: missing".into()],
        }
    }

    fn expanded(kind: HostRefKind, source: &str, e: &Environment) -> Result<String, String> {
        let m = Manager::user("/h".into(), "ana".into(), 1000, "/run/user/1000".into());
        match expand_source(&reference(kind, source), Some(e), &m) {
            Expanded::Path(p) => Ok(p),
            Expanded::NotAPath => Err("not a path".into()),
            Expanded::Unknown(why) => Err(why),
        }
    }

    #[test]
    fn specifiers_then_variables_then_a_clean_path() {
        let e = env(&[("ROOT", "/srv/tv/"), ("VOL", "tv-data"), ("REL", "./x")]);
        let m = HostRefKind::Mount;
        assert_eq!(
            expanded(m, "${ROOT}/%i/./db", &e),
            Ok("/srv/tv/blue/db".into())
        );
        assert_eq!(expanded(m, "%h/%p", &e), Ok("/h/tv".into()));
        assert_eq!(expanded(m, "${VOL}", &e), Err("not a path".into()));
        assert_eq!(expanded(m, "%p-data", &e), Err("not a path".into()));
        assert!(expanded(m, "data", &e)
            .unwrap_err()
            .contains("relative path"));
        assert!(expanded(m, "${REL}", &e)
            .unwrap_err()
            .contains("relative path"));
        let why = expanded(m, "${NOPE}/x", &e).unwrap_err();
        assert!(why.contains("${NOPE} not defined"), "{why}");
        assert!(why.contains("EnvironmentFile=/gone: missing"), "{why}");
        assert!(expanded(m, "%b/x", &e).unwrap_err().contains("%b"));
    }

    #[test]
    fn service_env_files_take_specifiers_and_no_variables() {
        let e = env(&[("A", "/a")]);
        let k = HostRefKind::ServiceEnvFile;
        assert_eq!(expanded(k, "-%h/tv.env", &e), Ok("/h/tv.env".into()));
        assert_eq!(expanded(k, "/e/${A}.env", &e), Ok("/e/${A}.env".into()));
        assert!(expanded(k, "tv.env", &e)
            .unwrap_err()
            .contains("not an absolute path"));
    }
}
