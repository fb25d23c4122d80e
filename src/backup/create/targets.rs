//! One backup, several places: `create --to A --to B` and the automatic
//! backups, which go to every name of `backup.targets`.
//!
//! Each target gets a backup of its own, one after the other, `local`
//! first (a repository that is slow or unreachable never delays the local
//! copy). A target that fails does not stop the others: an unreachable
//! repository during an automatic backup loses nothing when `local` is a
//! target too, and `sync` sends the local backup later.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{create, CreateOptions, Destination};
use crate::backup::metadata::Metadata;
use crate::context::Context;
use crate::deployment::Deployment;
use crate::error::Error;
use crate::repository::{self, Repository};

/// What a backup to several targets did, target by target.
#[derive(Debug, Default)]
pub struct TargetResults {
    /// The targets that got a backup, in order, with its metadata.
    pub done: Vec<(String, Metadata)>,
    /// The targets that did not, with why.
    pub failed: Vec<(String, Error)>,
}

impl TargetResults {
    /// The first backup made, if any.
    pub fn first(&self) -> Option<&Metadata> {
        self.done.first().map(|(_, m)| m)
    }
}

/// The targets of a backup: `to` when given, else `backup.targets`; each
/// name once, `local` first, the rest in the order given. A name that is
/// neither `local` nor a configured repository is refused before anything
/// runs.
pub fn targets(ctx: &Context, to: &[String]) -> crate::error::Result<Vec<String>> {
    let names = if to.is_empty() {
        ctx.config.backup.targets.value.clone()
    } else {
        to.to_vec()
    };
    let mut seen = BTreeSet::new();
    let mut unique: Vec<String> = names
        .into_iter()
        .filter(|n| seen.insert(n.clone()))
        .collect();
    unique.sort_by_key(|n| n != repository::LOCAL);
    for name in unique.iter().filter(|n| *n != repository::LOCAL) {
        repository::config_of(ctx, name)?;
    }
    Ok(unique)
}

/// Back `deployment` up to each of `targets` with `opts`.
pub fn create_to_targets(
    ctx: &Context,
    deployment: &Deployment,
    opts: &CreateOptions,
    targets: &[String],
) -> TargetResults {
    let mut results = TargetResults::default();
    for name in targets {
        let made = destination(ctx, name).and_then(|destination| {
            let opts = CreateOptions {
                destination,
                ..opts.clone()
            };
            create(ctx, deployment, &opts)
        });
        match made {
            Ok(metadata) => results.done.push((name.clone(), metadata)),
            Err(e) => results.failed.push((name.clone(), e)),
        }
    }
    results
}

/// Where the target `name` is.
fn destination(ctx: &Context, name: &str) -> crate::error::Result<Destination> {
    if name == repository::LOCAL {
        return Ok(Destination::Local);
    }
    let repo: Arc<dyn Repository> = repository::open(ctx, name)?.into();
    Ok(Destination::Repository(repo))
}
