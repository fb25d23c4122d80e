//! `plan`: what a backup of a deployment would capture, touching nothing.
//! Needs neither podman nor systemd: it reads files only.

use std::path::PathBuf;

use serde::Serialize;

use super::args::PlanArgs;
use super::GlobalArgs;
use crate::config::Config;
use crate::deployment::{self, Deployment, Location};
use crate::error::{Error, Result};
use crate::host_paths::classify::Kind;
use crate::host_paths::{self, HostPath};
use crate::layout::Layout;
use crate::quadlet::{self, Resolution};
use crate::ui;

/// The JSON document `plan --json` prints; keys are stable.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// Deployment name.
    pub name: String,
    /// `leger`, `quadlet` or `directory` (from --quadlet-dir).
    pub kind: &'static str,
    /// leger's active directory, when there is one.
    pub active_dir: Option<PathBuf>,
    /// Where its quadlet files are installed.
    pub installed_root: PathBuf,
    /// Every file of the deployment, relative paths, sorted, deduplicated.
    pub files: Vec<String>,
    /// Units and the services Quadlet makes of them.
    pub units: Vec<UnitEntry>,
    /// Podman volumes whose data is backed up.
    pub volumes: Vec<quadlet::VolumeUse>,
    /// Every host path the units mount or read, with its decision.
    pub host_paths: Vec<HostPath>,
    /// Anonymous volumes: NOT backed up.
    pub anonymous_volumes: Vec<String>,
    /// Secret names the units require (values are never backed up).
    pub secrets: Vec<String>,
    /// Published ports.
    pub ports: Vec<String>,
    /// Images.
    pub images: Vec<String>,
    /// Networks.
    pub networks: Vec<String>,
    /// Values left to systemd to expand, not guessed.
    pub unresolved: Vec<quadlet::Unresolved>,
    /// Non-fatal problems.
    pub warnings: Vec<quadlet::Diagnostic>,
}

/// A unit in the plan.
#[derive(Debug, Serialize)]
pub struct UnitEntry {
    /// Relative path of the unit file.
    pub file: String,
    /// Generated service.
    pub service: String,
}

/// Run `plan`.
pub fn run(global: &GlobalArgs, args: PlanArgs) -> Result<()> {
    let layout = super::layout(global)?;
    let (deployment, kind) = match &args.quadlet_dir {
        Some(dir) => {
            let name = match &args.name {
                Some(name) => name.clone(),
                None => dir_name(dir)?,
            };
            (Deployment::from_dir(&name, dir)?, "directory")
        }
        None => {
            let d = deployment::find_or_only(&layout, args.name.as_deref())?;
            let kind = if d.active_dir.is_some() {
                "leger"
            } else {
                "quadlet"
            };
            (d, kind)
        }
    };
    let resolution = deployment.resolve(&layout)?;
    let host_paths = judge_host_paths(&layout, &deployment, &resolution)?;
    let plan = build(&deployment, kind, resolution, host_paths)?;
    if global.json {
        ui::print_json(&plan)
    } else {
        ui::print_text(&render_human(&plan))
    }
}

fn dir_name(dir: &std::path::Path) -> Result<String> {
    let canonical = fs_err::canonicalize(dir)?;
    canonical
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::user("cannot name the deployment after this directory").with_hint("give NAME")
        })
}

/// The deployment's host paths under its settings in the config file.
fn judge_host_paths(layout: &Layout, d: &Deployment, r: &Resolution) -> Result<Vec<HostPath>> {
    let config = Config::load(layout)?;
    Ok(host_paths::of_deployment(layout.scope, d, r, &config.backup)?.1)
}

fn build(
    d: &Deployment,
    kind: &'static str,
    r: Resolution,
    host_paths: Vec<HostPath>,
) -> Result<Plan> {
    // A `${VAR}` source is shown once, as a host path, resolved or not.
    let mut unresolved = r.unresolved;
    unresolved.retain(|u| {
        !host_paths
            .iter()
            .any(|h| h.file == u.file && h.line == u.line)
    });
    let mut files: Vec<String> = d
        .files()?
        .into_iter()
        .filter(|f| f.location == Location::Active || d.active_dir.is_none())
        .map(|f| f.rel_path.display().to_string())
        .collect();
    files.sort();
    files.dedup();
    Ok(Plan {
        name: d.name.clone(),
        kind,
        active_dir: d.active_dir.clone(),
        installed_root: d.installed_root.clone(),
        files,
        units: r
            .units
            .into_iter()
            .map(|u| UnitEntry {
                file: u.file,
                service: u.service,
            })
            .collect(),
        volumes: r.volumes,
        host_paths,
        anonymous_volumes: r.anonymous_volumes.into_iter().map(|b| b.value).collect(),
        secrets: r.secrets,
        ports: r.ports,
        images: r.images,
        networks: r.networks,
        unresolved,
        warnings: r.warnings,
    })
}

fn render_human(p: &Plan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "Deployment {} ({})", p.name, p.kind);
    if let Some(active) = &p.active_dir {
        let _ = writeln!(out, "  active directory: {}", active.display());
    }
    let _ = writeln!(out, "  installed in:     {}", p.installed_root.display());
    section(&mut out, "Files", &mut p.files.iter().cloned());
    section(
        &mut out,
        "Units",
        &mut p
            .units
            .iter()
            .map(|u| format!("{}  ->  {}", u.file, u.service)),
    );
    section(
        &mut out,
        "Volumes (data backed up)",
        &mut p.volumes.iter().map(|v| {
            let by = v
                .defined_by
                .as_deref()
                .map(|f| format!(" [{f}]"))
                .unwrap_or_default();
            let used = if v.used_by.is_empty() {
                "not mounted".to_owned()
            } else {
                v.used_by.join(", ")
            };
            format!("{}{by}  used by: {used}", v.name)
        }),
    );
    out.push_str(&render_host_paths(&p.host_paths, &p.name));
    section(
        &mut out,
        "Anonymous volumes (NOT backed up)",
        &mut p.anonymous_volumes.iter().cloned(),
    );
    section(
        &mut out,
        "Secrets (names only; values are never backed up)",
        &mut p.secrets.iter().cloned(),
    );
    section(&mut out, "Published ports", &mut p.ports.iter().cloned());
    section(
        &mut out,
        "Unresolved (left to systemd; not guessed)",
        &mut p.unresolved.iter().map(|u| {
            format!(
                "{}={} ({}:{}; depends on {})",
                u.key,
                u.value,
                u.file,
                u.line,
                u.variables.join(", ")
            )
        }),
    );
    for w in &p.warnings {
        let line = w.line.map(|l| format!(":{l}")).unwrap_or_default();
        ui::warn(format!("{}{line}: {}", w.file, w.message));
    }
    out
}

/// A titled list, left out when empty.
fn section(out: &mut String, title: &str, items: &mut dyn Iterator<Item = String>) {
    use std::fmt::Write;
    let items: Vec<String> = items.collect();
    if !items.is_empty() {
        let _ = writeln!(out, "{title}:");
        for item in items {
            let _ = writeln!(out, "  {item}");
        }
    }
}

/// The label a decision is shown with.
fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Data => "data",
        Kind::System => "system",
        Kind::Referenced => "referenced",
        Kind::Excluded => "excluded",
        Kind::Unresolved => "unresolved",
        Kind::NeedsInclude => "needs-include",
    }
}

/// What the plan says a backup does with a host path: data and referenced
/// paths are archived by `create` (a file inside the deployment's
/// directory is one of its files already).
fn today(h: &HostPath, deployment: &str) -> String {
    match h.kind {
        _ if h.backed_up_today => "in today's backups (a deployment file)".to_owned(),
        Kind::Data | Kind::Referenced if !h.exists => {
            "backed up once it exists (nothing there to back up yet)".to_owned()
        }
        Kind::Data | Kind::Referenced => "backed up (its data is in every backup)".to_owned(),
        Kind::NeedsInclude => format!(
            "not backed up unless a glob in backup.deployments.{deployment}.include names it"
        ),
        Kind::System | Kind::Excluded => "never backed up".to_owned(),
        Kind::Unresolved => "not backed up: cannot be known".to_owned(),
    }
}

fn size_text(h: &HostPath) -> String {
    match (h.exists, h.size_bytes) {
        (false, _) => "missing".to_owned(),
        (true, None) => "exists".to_owned(),
        (true, Some(bytes)) if h.size_at_least => format!("at least {}", ui::human_size(bytes)),
        (true, Some(bytes)) => ui::human_size(bytes),
    }
}

/// Host paths grouped by path and decision (an env file several units read
/// is shown once), each with the lines that refer to it.
fn render_host_paths(paths: &[HostPath], deployment: &str) -> String {
    use std::fmt::Write;
    let mut groups: Vec<Vec<&HostPath>> = Vec::new();
    for h in paths {
        let same = |g: &Vec<&HostPath>| {
            let first = g[0];
            first.resolved.is_some()
                && first.resolved == h.resolved
                && first.kind == h.kind
                && first.reason == h.reason
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(group) => group.push(h),
            None => groups.push(vec![h]),
        }
    }
    let mut out = String::new();
    if !groups.is_empty() {
        let _ = writeln!(out, "Host paths:");
    }
    let pad = " ".repeat(16);
    for group in groups {
        let h = group[0];
        let size = h
            .resolved
            .as_ref()
            .map(|_| format!("  ({})", size_text(h)))
            .unwrap_or_default();
        let shown = h.resolved.as_deref().unwrap_or(&h.source);
        let _ = writeln!(out, "  {:<13} {shown}{size}", kind_label(h.kind));
        let _ = writeln!(out, "{pad}{}", h.reason);
        let _ = writeln!(out, "{pad}{}", today(h, deployment));
        for r in group {
            let target = r
                .target
                .as_deref()
                .map(|t| format!(" -> {t}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{pad}{}{target}  {}:{} ({})",
                r.source, r.file, r.line, r.service
            );
        }
    }
    out
}
