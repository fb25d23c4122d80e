//! `info`: everything a backup's metadata records, for a person deciding
//! whether to restore it (or `--json` for a program).

use std::fmt::Write as _;

use super::args::InfoArgs;
use super::list::{listed_json, open_store, reason_text, type_name};
use super::GlobalArgs;
use crate::backup::metadata::{Consistency, HostPathKind, Metadata};
use crate::backup::store::{validate_id, Listed};
use crate::deployment::Location;
use crate::error::Result;
use crate::layout::Scope;
use crate::ui;

/// Run `info`.
pub fn run(global: &GlobalArgs, args: InfoArgs) -> Result<()> {
    // Before anything touches the disk.
    validate_id(&args.id)?;
    if let Some(repo) = &args.repo {
        return super::repo::info(global, repo, &args.id);
    }
    let (_ctx, store) = open_store(global)?;
    let backup = store.load(&args.id)?;
    if global.json {
        let entry = Listed {
            id: backup.metadata.id.clone(),
            path: backup.path.clone(),
            metadata: Ok(backup.metadata),
        };
        return ui::print_json(&listed_json(&entry)?);
    }
    ui::print_text(&render(&backup.metadata, &backup.path))
}

/// One `key  value` line, keys aligned.
fn kv(out: &mut String, indent: usize, key: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{:indent$}{key:<13} {value}", "");
}

fn or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// Append `table` indented by two spaces.
fn indent_table(out: &mut String, table: &comfy_table::Table) {
    for line in table.to_string().lines() {
        let _ = writeln!(out, "  {}", line.trim_end());
    }
}

/// The text `info` prints.
pub fn render(m: &Metadata, path: &std::path::Path) -> String {
    let mut out = String::new();
    kv(&mut out, 0, "ID", &m.id);
    kv(&mut out, 0, "Deployment", &m.deployment_name);
    kv(
        &mut out,
        0,
        "Created",
        m.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
    );
    kv(&mut out, 0, "Type", type_name(m.backup_type));
    kv(&mut out, 0, "Reason", reason_text(m));
    kv(&mut out, 0, "Size", ui::human_size(m.size));
    kv(&mut out, 0, "Path", path.display());
    match m.format_version {
        Some(v) => kv(
            &mut out,
            0,
            "Format",
            format!(
                "{v} (leger-backup {})",
                m.leger_backup_version.as_deref().unwrap_or("unknown")
            ),
        ),
        None => kv(
            &mut out,
            0,
            "Format",
            "leger (Go): no checksums, cannot be verified",
        ),
    }
    if let Some(scope) = m.scope {
        kv(&mut out, 0, "Scope", scope.as_str());
    }
    if let Some(c) = m.compression {
        kv(&mut out, 0, "Compression", c.extension());
    }
    let downtime = m
        .downtime_seconds
        .map(|s| format!(", services down {s:.1} s"))
        .unwrap_or_default();
    match m.consistency {
        Some(Consistency::Stopped) => kv(
            &mut out,
            0,
            "Consistency",
            format!("stopped (services stopped during export){downtime}"),
        ),
        Some(Consistency::Live) => kv(
            &mut out,
            0,
            "Consistency",
            format!("live (exported while running: not crash-consistent){downtime}"),
        ),
        None => kv(&mut out, 0, "Consistency", "unknown"),
    }
    if let Some(inst) = &m.installation {
        if let Some(active) = &inst.active_dir {
            kv(&mut out, 0, "Active dir", active.display());
        }
        let from = if inst.installed_from_active {
            " (installed by leger from the active dir)"
        } else {
            ""
        };
        kv(
            &mut out,
            0,
            "Installed in",
            format!("{}{from}", inst.installed_root.display()),
        );
    }
    kv(&mut out, 0, "Secrets", or_dash(&m.secrets));

    let _ = writeln!(out, "\nServices ({}):", m.services.len());
    if !m.services.is_empty() {
        let mut table = ui::table(&["SERVICE", "AT BACKUP TIME"]);
        for s in &m.services {
            let state = if s.was_running { "running" } else { "stopped" };
            table.add_row(vec![s.name.clone(), state.to_owned()]);
        }
        indent_table(&mut out, &table);
    }

    let _ = writeln!(
        out,
        "\nFiles ({}):",
        m.files.len().max(m.quadlet_files.len())
    );
    if m.files.is_empty() {
        for f in &m.quadlet_files {
            let _ = writeln!(out, "  {f}");
        }
    } else {
        let mut table = ui::table(&["LOCATION", "PATH", "SIZE", "MODE", "SHA256"]);
        for f in &m.files {
            let location = match f.location {
                Location::Active => "active",
                Location::Installed => "installed",
            };
            let path = match &f.symlink {
                Some(target) => format!("{} -> {}", f.path.display(), target.display()),
                None => f.path.display().to_string(),
            };
            table.add_row(vec![
                location.to_owned(),
                path,
                ui::human_size(f.size),
                format!("{:04o}", f.mode),
                f.sha256.clone(),
            ]);
        }
        indent_table(&mut out, &table);
    }

    let _ = writeln!(out, "\nVolumes ({}):", m.volumes.len());
    for v in &m.volumes {
        if !v.existed {
            let _ = writeln!(out, "  {} (did not exist at backup time)", v.name);
            continue;
        }
        let _ = writeln!(out, "  {}", v.name);
        if v.held_aside {
            let recover = m.scope.unwrap_or(Scope::User).command("recover");
            let _ = writeln!(
                out,
                "    data moved aside by an unfinished restore, not in this backup \
                 (`{recover}` puts it back)"
            );
        }
        if let Some(archive) = &v.archive_path {
            let data = if v.uncompressed_size > 0 {
                format!(", {} of data", ui::human_size(v.uncompressed_size))
            } else {
                String::new()
            };
            kv(
                &mut out,
                4,
                "archive",
                format!("{} ({}{data})", archive.display(), ui::human_size(v.size)),
            );
        }
        kv(
            &mut out,
            4,
            "sha256",
            v.sha256.as_deref().unwrap_or("- (not recorded)"),
        );
        if let Some(root) = &v.root {
            kv(
                &mut out,
                4,
                "root",
                format!("mode {:04o}, owner {}:{}", root.mode, root.uid, root.gid),
            );
        }
        if let Some(driver) = &v.driver {
            kv(&mut out, 4, "driver", driver);
        }
        let pairs = |map: &std::collections::BTreeMap<String, String>| {
            or_dash(
                &map.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>(),
            )
        };
        kv(&mut out, 4, "labels", pairs(&v.labels));
        kv(&mut out, 4, "options", pairs(&v.options));
        if let Some(def) = &v.defined_by {
            let service = v
                .volume_service
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            kv(&mut out, 4, "defined by", format!("{def}{service}"));
        }
        kv(&mut out, 4, "used by", or_dash(&v.used_by));
    }
    render_host_paths(&mut out, m);
    out
}

/// The host paths section, left out when the backup holds none.
fn render_host_paths(out: &mut String, m: &Metadata) {
    if m.host_paths.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nHost paths ({}):", m.host_paths.len());
    for h in &m.host_paths {
        let kind = match h.kind {
            Some(HostPathKind::Dir) => "directory",
            Some(HostPathKind::File) => "file",
            None => "did not exist at backup time",
        };
        let _ = writeln!(out, "  {} ({kind})", h.path);
        kv(out, 4, "source", &h.source);
        if let Some(archive) = &h.archive_path {
            kv(
                out,
                4,
                "archive",
                format!(
                    "{} ({}, {} of data)",
                    archive.display(),
                    ui::human_size(h.size),
                    ui::human_size(h.uncompressed_size)
                ),
            );
            kv(out, 4, "sha256", h.sha256.as_deref().unwrap_or("-"));
        }
        if let Some(root) = &h.root {
            kv(
                out,
                4,
                "root",
                format!("mode {:04o}, owner {}:{}", root.mode, root.uid, root.gid),
            );
        }
        kv(out, 4, "used by", or_dash(&h.used_by));
    }
}
