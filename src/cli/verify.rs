//! `verify`: recompute every checksum and read every archive to its end;
//! exits 1 naming each bad file, so it can run from a timer or a script.

use serde::Serialize;

use super::args::VerifyArgs;
use super::list::open_store;
use super::GlobalArgs;
use crate::backup::metadata::METADATA_FILE;
use crate::backup::store::validate_id;
use crate::backup::verify::{verify, Problem, VerifyReport};
use crate::error::{Error, Result};
use crate::ui;

/// One backup's result in `verify --json`.
#[derive(Debug, Serialize)]
struct Outcome {
    id: String,
    ok: bool,
    legacy: bool,
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

impl From<VerifyReport> for Outcome {
    fn from(r: VerifyReport) -> Outcome {
        Outcome {
            ok: r.is_ok(),
            id: r.id,
            legacy: r.legacy,
            problems: r.problems,
            warnings: r.warnings,
        }
    }
}

/// Verify backup `id` in repository `name`: its metadata and files are
/// fetched (restic authenticates every byte it decrypts) and checked as a
/// local backup's are, then the repository's structure (`restic check`:
/// every tree and the packs they name are there).
fn verify_in_repository(
    ctx: &crate::context::Context,
    store: &crate::backup::store::BackupStore,
    name: &str,
    id: &str,
) -> Result<Outcome> {
    let repo: std::sync::Arc<dyn crate::repository::Repository> =
        crate::repository::open(ctx, name)?.into();
    let progress = crate::backup::progress::Terminal::new(true);
    let fetched = crate::backup::restore::fetch(store, repo.clone(), id, &progress)?;
    let mut outcome = Outcome::from(verify(fetched.backup())?);
    if let Err(e) = repo.check(false) {
        outcome.ok = false;
        outcome.problems.push(Problem {
            file: format!("repository {name}").into(),
            reason: e.to_string(),
        });
    }
    Ok(outcome)
}

/// Run `verify`.
pub fn run(global: &GlobalArgs, args: VerifyArgs) -> Result<()> {
    if let Some(id) = &args.id {
        // Before anything touches the disk.
        validate_id(id)?;
    }
    let (ctx, store) = open_store(global)?;
    let mut outcomes = Vec::new();
    if let (Some(id), Some(name)) = (&args.id, &args.repo) {
        outcomes.push(verify_in_repository(&ctx, &store, name, id)?);
    } else if args.repo.is_some() {
        return Err(Error::user("`verify --all --repo` is not supported")
            .with_hint("give one backup ID, or check the whole repository with `leger-backup repo check NAME --read-data`"));
    } else if let Some(id) = &args.id {
        let backup = store.load(id)?;
        outcomes.push(Outcome::from(verify(&backup)?));
    } else {
        for entry in store.list()? {
            match entry.metadata {
                Ok(metadata) => {
                    let backup = crate::backup::store::StoredBackup {
                        path: entry.path,
                        metadata,
                    };
                    outcomes.push(Outcome::from(verify(&backup)?));
                }
                Err(error) => outcomes.push(Outcome {
                    id: entry.id,
                    ok: false,
                    legacy: false,
                    problems: vec![Problem {
                        file: METADATA_FILE.into(),
                        reason: error
                            .strip_prefix(&format!("{METADATA_FILE}: "))
                            .map(str::to_owned)
                            .unwrap_or(error),
                    }],
                    warnings: vec![],
                }),
            }
        }
        if outcomes.is_empty() {
            ui::note(format!("no backups in {}", store.dir().display()));
        }
    }
    if global.json {
        ui::print_json(&outcomes)?;
    } else {
        let mut text = String::new();
        for o in &outcomes {
            for w in &o.warnings {
                ui::warn(format!("{}: {w}", o.id));
            }
            if o.ok {
                text.push_str(&format!("OK      {}\n", o.id));
            } else {
                text.push_str(&format!("FAILED  {}\n", o.id));
                for p in &o.problems {
                    text.push_str(&format!("  {p}\n"));
                }
            }
        }
        ui::print_text(&text)?;
    }
    let bad: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .flat_map(|o| {
            o.problems
                .iter()
                .map(move |p| format!("{}/{}", o.id, p.file.display()))
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(
        Error::user(format!("verification failed: {}", bad.join(", "))).with_hint(format!(
            "damaged backups cannot be restored; delete them with `{}`",
            global.scope().command("delete <ID>")
        )),
    )
}
