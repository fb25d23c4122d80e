//! `list`: every backup, newest first; invalid ones are listed with the
//! reason, never hidden, so a damaged backup is noticed before it is needed.

use serde_json::{Map, Value};

use super::args::ListArgs;
use super::GlobalArgs;
use crate::backup::interrupted;
use crate::backup::metadata::Metadata;
use crate::backup::prune::Class;
use crate::backup::store::{resolve_inside, BackupStore, Listed};
use crate::context::Context;
use crate::error::Result;
use crate::ui;

/// Load the context and open the backup directory (created 0700 if absent,
/// refused if others could write to it), after dealing with operations that
/// died half-way ([`interrupted::startup`]).
pub(super) fn open_store(global: &GlobalArgs) -> Result<(Context, BackupStore)> {
    let ctx = Context::load(global.scope())?;
    interrupted::startup(&ctx, interrupted::Mode::Command);
    let store = BackupStore::open(ctx.backup_dir())?;
    Ok((ctx, store))
}

/// Whether a listed backup belongs to `deployment`: by its metadata, or for
/// an invalid one by its ID's prefix (the best we know).
pub(super) fn belongs_to(entry: &Listed, deployment: &str) -> bool {
    match &entry.metadata {
        Ok(m) => m.deployment_name == deployment,
        Err(_) => entry
            .id
            .strip_prefix(deployment)
            .is_some_and(|rest| rest.starts_with('-')),
    }
}

/// The JSON object for one listed backup: `id`, `path`, `valid`, `error`,
/// for a valid one its `retention` class and `after_failed_stop`, then
/// every metadata field.
pub(super) fn listed_json(entry: &Listed) -> Result<Value> {
    let mut object = Map::new();
    object.insert("id".into(), Value::from(entry.id.clone()));
    object.insert("path".into(), Value::from(entry.path.display().to_string()));
    object.insert("valid".into(), Value::from(entry.metadata.is_ok()));
    object.insert(
        "error".into(),
        entry
            .metadata
            .as_ref()
            .err()
            .map_or(Value::Null, |e| Value::from(e.clone())),
    );
    if let Ok(m) = &entry.metadata {
        object.insert("retention".into(), Value::from(Class::of(m).name()));
        object.insert(
            "after_failed_stop".into(),
            Value::from(m.after_failed_stop()),
        );
        if let Value::Object(fields) = serde_json::to_value(m)? {
            for (k, v) in fields {
                object.entry(k).or_insert(v);
            }
        }
    }
    Ok(Value::Object(object))
}

/// Run `list`.
pub fn run(global: &GlobalArgs, args: ListArgs) -> Result<()> {
    if let Some(d) = &args.deployment {
        crate::deployment::validate_name(d)?;
    }
    if let Some(repo) = &args.repo {
        return super::repo::list(global, repo, args.deployment.as_deref());
    }
    let (_ctx, store) = open_store(global)?;
    let listed: Vec<Listed> = store
        .list()?
        .into_iter()
        .filter(|e| args.deployment.as_deref().is_none_or(|d| belongs_to(e, d)))
        .map(check_archives)
        .collect();
    if global.json {
        let items = listed.iter().map(listed_json).collect::<Result<Vec<_>>>()?;
        return ui::print_json(&items);
    }
    if listed.is_empty() {
        ui::note(format!("no backups in {}", store.dir().display()));
        return Ok(());
    }
    let mut table = ui::table(&["ID", "CREATED", "TYPE", "SIZE", "REASON", "VOLUMES"]);
    for entry in &listed {
        match &entry.metadata {
            Ok(m) => {
                let mut volumes: Vec<String> = m
                    .volumes
                    .iter()
                    .map(|v| {
                        if v.held_aside {
                            format!("{}(held aside)", v.name)
                        } else if v.existed {
                            v.name.clone()
                        } else {
                            format!("{}(absent)", v.name)
                        }
                    })
                    .collect();
                volumes.extend(host_paths_text(m));
                table.add_row(vec![
                    entry.id.clone(),
                    m.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    type_name(m.backup_type).to_owned(),
                    ui::human_size(m.size),
                    reason_text(m),
                    if volumes.is_empty() {
                        "-".to_owned()
                    } else {
                        volumes.join(",")
                    },
                ]);
            }
            Err(reason) => {
                table.add_row(vec![
                    entry.id.clone(),
                    "-".to_owned(),
                    "invalid".to_owned(),
                    "-".to_owned(),
                    reason.clone(),
                    "-".to_owned(),
                ]);
            }
        }
    }
    ui::print_table(&table)?;
    let invalid = listed.iter().filter(|e| e.metadata.is_err()).count();
    if invalid > 0 {
        ui::warn(format!(
            "{invalid} invalid backup(s): they cannot be restored; inspect them in {} \
             and remove them with `{}`",
            store.dir().display(),
            global.scope().command("delete <ID>")
        ));
    }
    Ok(())
}

/// A backup whose metadata is sound but one of whose archives is missing,
/// leaves the backup directory, or is not the recorded length (truncated,
/// or grown) is listed as invalid: cheap checks (one `stat` per archive),
/// so `list` never shows as valid a backup that cannot be restored for
/// these reasons. Reading every byte is `verify`'s job.
fn check_archives(mut entry: Listed) -> Listed {
    let Ok(m) = &entry.metadata else {
        return entry;
    };
    let prefix = format!("{}: ", entry.path.display());
    let mut problem = None;
    let archives = m
        .volumes
        .iter()
        .map(|v| (&v.archive_path, v.size))
        .chain(m.host_paths.iter().map(|h| (&h.archive_path, h.size)));
    for (rel, size) in archives {
        let Some(rel) = rel else {
            continue;
        };
        let found = resolve_inside(&entry.path, rel).and_then(|path| {
            std::fs::metadata(&path)
                .map_err(|e| crate::Error::user(format!("{}: {e}", rel.display())))
        });
        problem = match found {
            Err(e) => Some(
                e.message
                    .strip_prefix(&prefix)
                    .unwrap_or(&e.message)
                    .to_owned(),
            ),
            Ok(meta) if !meta.is_file() => Some(format!("{} is not a file", rel.display())),
            // leger's own backups record no exact length.
            Ok(meta) if !m.is_legacy() && meta.len() != size => Some(format!(
                "{} is {} bytes, the metadata says {} (truncated or changed)",
                rel.display(),
                meta.len(),
                size
            )),
            Ok(_) => None,
        };
        if problem.is_some() {
            break;
        }
    }
    if let Some(p) = problem {
        entry.metadata = Err(p);
    }
    entry
}

/// How many host paths the backup holds, for the table: `+2 host paths`
/// (`info` lists them); nothing when it holds none.
fn host_paths_text(m: &Metadata) -> Option<String> {
    match m.host_paths.len() {
        0 => None,
        1 => Some("+1 host path".to_owned()),
        n => Some(format!("+{n} host paths")),
    }
}

/// The reason, and the failure of the stop an on-stop backup followed.
pub(super) fn reason_text(m: &Metadata) -> String {
    match &m.stop_result {
        Some(stop) => format!("{} (after a failed stop: {})", m.reason, stop.describe()),
        None => m.reason.clone(),
    }
}

/// `manual` / `automatic`.
pub(super) fn type_name(t: crate::backup::metadata::BackupType) -> &'static str {
    match t {
        crate::backup::metadata::BackupType::Manual => "manual",
        crate::backup::metadata::BackupType::Automatic => "automatic",
    }
}
