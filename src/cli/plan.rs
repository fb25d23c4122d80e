//! `plan`: what a backup of a deployment would capture, touching nothing.
//! Needs neither podman nor systemd: it reads files only.

use std::path::PathBuf;

use serde::Serialize;

use super::args::PlanArgs;
use super::GlobalArgs;
use crate::deployment::{self, Deployment, Location};
use crate::error::{Error, Result};
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
    /// Host paths mounted into containers: NOT backed up.
    pub bind_mounts: Vec<String>,
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
    let plan = build(&deployment, kind, resolution)?;
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

fn build(d: &Deployment, kind: &'static str, r: Resolution) -> Result<Plan> {
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
        bind_mounts: r.bind_mounts.into_iter().map(|b| b.value).collect(),
        anonymous_volumes: r.anonymous_volumes.into_iter().map(|b| b.value).collect(),
        secrets: r.secrets,
        ports: r.ports,
        images: r.images,
        networks: r.networks,
        unresolved: r.unresolved,
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
    let mut section = |title: &str, items: &mut dyn Iterator<Item = String>| {
        let items: Vec<String> = items.collect();
        if !items.is_empty() {
            let _ = writeln!(out, "{title}:");
            for item in items {
                let _ = writeln!(out, "  {item}");
            }
        }
    };
    section("Files", &mut p.files.iter().cloned());
    section(
        "Units",
        &mut p
            .units
            .iter()
            .map(|u| format!("{}  ->  {}", u.file, u.service)),
    );
    section(
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
    section(
        "Bind mounts (NOT backed up: host paths)",
        &mut p.bind_mounts.iter().cloned(),
    );
    section(
        "Anonymous volumes (NOT backed up)",
        &mut p.anonymous_volumes.iter().cloned(),
    );
    section(
        "Secrets (names only; values are never backed up)",
        &mut p.secrets.iter().cloned(),
    );
    section("Published ports", &mut p.ports.iter().cloned());
    section(
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
