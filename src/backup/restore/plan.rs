//! Step 2: the plan a restore (or `recover`) shows before it asks.

use super::*;

/// Step 2: what will happen, on stderr. `safety`: a safety backup is taken
/// first (a restore; not `recover`, which puts a safety backup back).
pub(super) fn show_plan(
    ctx: &Context,
    target: &Target,
    current: Option<&Deployment>,
    safety: bool,
    progress: &Progress,
) -> Result<()> {
    for line in plan_lines(ctx, target, current, safety)? {
        progress.step(line);
    }
    Ok(())
}

/// The lines [`show_plan`] prints; only reads (files, podman, systemd).
pub(super) fn plan_lines(
    ctx: &Context,
    target: &Target,
    current: Option<&Deployment>,
    safety: bool,
) -> Result<Vec<String>> {
    let m = target.metadata();
    let mut lines = vec![format!(
        "restore {} ({}, reason {:?}, taken {})",
        m.id,
        match m.backup_type {
            crate::backup::metadata::BackupType::Manual => "manual",
            crate::backup::metadata::BackupType::Automatic => "automatic",
        },
        m.reason,
        m.created_at.format("%Y-%m-%d %H:%M:%S UTC")
    )];
    lines.push(format!(
        "  deployment {}: {}",
        m.deployment_name,
        if current.is_some() && safety {
            "installed; its current state is kept until the restored services run (for a rollback)"
        } else if current.is_some() {
            "installed; replaced"
        } else {
            "not installed; it is installed from the backup"
        }
    ));
    let roots = roots_for(ctx, m);
    let current_files = match current {
        Some(d) => files::current_files(d)?,
        None => Vec::new(),
    };
    let plan =
        files::plan_restore(&target.entries, &roots, &current_files)?.with_dirs(&m.dirs, &roots)?;
    lines.push(format!(
        "  files: {} written{}",
        plan.write.len(),
        if plan.remove.is_empty() {
            String::new()
        } else {
            format!(
                ", {} removed ({})",
                plan.remove.len(),
                plan.remove
                    .iter()
                    .map(|(p, _)| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    ));
    for volume in &m.volumes {
        lines.push(volume_line(ctx, volume)?);
    }
    lines.extend(host_path_lines(m));
    let mut names: BTreeSet<String> = m.services.iter().map(|s| s.name.clone()).collect();
    if let Some(resolution) = current.and_then(|d| d.resolve(&ctx.layout).ok()) {
        names.extend(resolution.units.iter().map(|u| u.service.clone()));
        for volume in &resolution.volumes {
            names.extend(volume.used_by.iter().cloned());
        }
    }
    let names: Vec<String> = names.into_iter().collect();
    let running = services::running_services(&*ctx.systemctl, &names)?;
    if !running.is_empty() {
        lines.push(format!(
            "  services stopped: {}",
            running.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(lines)
}

/// The plan's line for one volume: what happens to it.
fn volume_line(ctx: &Context, volume: &VolumeEntry) -> Result<String> {
    let exists = ctx.podman.volume_exists(&volume.name)?;
    let what = if volume.existed {
        let size = if volume.uncompressed_size > 0 {
            volume.uncompressed_size
        } else {
            volume.size
        };
        format!(
            "{} from the backup{}",
            if volume.tree.is_some() {
                "its tree".to_owned()
            } else {
                ui::human_size(size)
            },
            if exists {
                ", replacing the current data"
            } else {
                ""
            }
        )
    } else if exists {
        "did not exist at backup time: removed".to_owned()
    } else {
        "did not exist at backup time: stays absent".to_owned()
    };
    Ok(format!("  volume {}: {what}", volume.name))
}
