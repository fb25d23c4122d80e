//! Restoring a backup that is a snapshot in a repository.
//!
//! The snapshot's small part (the metadata and the deployment's files) is
//! fetched first into a pending directory of the backup directory, where
//! it is checked exactly as a local backup is: from there on the restore
//! is the local one, with the same plan, safety backup, rollback and
//! journal. Only the data differs: each volume and host path is restored
//! by restic straight from the snapshot's tree into the fresh volume (or
//! path), inside the user namespace, so owners, modes, links, xattrs and
//! holes come back as they were read.

use std::sync::Arc;

use fs_err::os::unix::fs::OpenOptionsExt;

use super::*;
use crate::backup::metadata::HostPathEntry;
use crate::backup::store::{PendingBackup, StoredBackup};
use crate::layout::Scope;
use crate::repository::{snapshot::SnapshotTags, Repository, Snapshot};

/// Where the trees of a backup fetched from a repository are.
#[derive(Debug, Clone)]
pub(super) struct Trees {
    pub(super) repo: Arc<dyn Repository>,
    pub(super) snapshot: String,
}

/// A backup fetched from a repository: its checked metadata and files in
/// `pending` (removed when dropped), its data still in the snapshot.
pub struct Fetched {
    pub(super) pending: PendingBackup,
    pub(super) backup: StoredBackup,
    pub(super) trees: Trees,
}

impl Fetched {
    /// The backup as fetched: its metadata and files.
    pub fn backup(&self) -> &StoredBackup {
        &self.backup
    }
}

/// The snapshot of backup `id` in `repo`: the newest one tagged with it.
pub fn find_snapshot(repo: &dyn Repository, id: &str) -> Result<Snapshot> {
    let found = repo.snapshots(&SnapshotTags::of_id(id))?;
    found.into_iter().max_by_key(|s| s.time).ok_or_else(|| {
        Error::user(format!("no backup {id} in repository {}", repo.name())).with_hint(format!(
            "`leger-backup list --repo {}` shows its backups",
            repo.name()
        ))
    })
}

/// Fetch the metadata and files of backup `id` from `repo` into a pending
/// directory of `store`, and load them as a local backup is loaded.
pub fn fetch(
    store: &BackupStore,
    repo: Arc<dyn Repository>,
    id: &str,
    progress: &Progress,
) -> Result<Fetched> {
    validate_id(id)?;
    let snapshot = find_snapshot(&*repo, id)?;
    progress.step(format!(
        "fetching {id} (snapshot {}) from repository {}",
        snapshot.short_id(),
        repo.name()
    ));
    let pending = store.begin(id)?;
    let data: Vec<String> = ["/volumes", "/host-paths", "/.pid"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    repo.restore(&snapshot.id, "/", pending.path(), &data, false)?;
    let backup = StoredBackup::load_from(pending.path(), id)?;
    Ok(Fetched {
        pending,
        backup,
        trees: Trees {
            repo,
            snapshot: snapshot.id,
        },
    })
}

/// Whether restic runs inside podman's user namespace (rootless).
fn in_namespace(ctx: &Context) -> bool {
    ctx.layout.scope == Scope::User
}

/// Restore volume `volume`'s tree from the snapshot into its fresh, empty
/// mountpoint.
pub(super) fn restore_volume_tree(
    ctx: &Context,
    target: &Target,
    volume: &VolumeEntry,
    mountpoint: &str,
    progress: &Progress,
) -> Result<()> {
    let (trees, tree) = trees_of(
        target,
        volume.tree.as_deref(),
        &format!("volume {}", volume.name),
    )?;
    if mountpoint.is_empty() {
        return Err(Error::user(format!(
            "volume {} has no mountpoint: a repository's tree is restored into a local volume",
            volume.name
        )));
    }
    progress.step(format!(
        "volume {}: restoring from repository {}",
        volume.name,
        trees.repo.name()
    ));
    trees.repo.restore(
        &trees.snapshot,
        &format!("/{}", tree.display()),
        Path::new(mountpoint),
        &[],
        in_namespace(ctx),
    )
}

/// Restore host path `entry` from the snapshot: a directory's tree into
/// the (made, empty) directory; a file's content into the path, then its
/// recorded mode and owner.
pub(super) fn restore_host_path_tree(
    ctx: &Context,
    target: &Target,
    entry: &HostPathEntry,
    file: bool,
    progress: &Progress,
) -> Result<()> {
    let what = format!("host path {}", entry.path);
    let (trees, tree) = trees_of(target, entry.tree.as_deref(), &what)?;
    progress.step(format!(
        "{what}: restoring from repository {}",
        trees.repo.name()
    ));
    let inside = format!("/{}", tree.display());
    if !file {
        return trees.repo.restore(
            &trees.snapshot,
            &inside,
            Path::new(&entry.path),
            &[],
            in_namespace(ctx),
        );
    }
    let bytes = trees.repo.dump(&trees.snapshot, &inside, HOST_FILE_LIMIT)?;
    let mut out = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&entry.path)?;
    out.write_all(&bytes)?;
    out.sync_all()?;
    match entry.root {
        Some(root) => ctx.podman.set_root_ownership(&entry.path, root),
        None => Ok(()),
    }
}

/// The largest single host file restored from a repository (files a unit
/// refers to: env files, configs, keys).
const HOST_FILE_LIMIT: u64 = 256 << 20;

/// The repository trees of `target` and the entry's tree in it; an error
/// when the entry is a tree but the backup did not come from a repository.
fn trees_of<'a>(
    target: &'a Target,
    tree: Option<&'a Path>,
    what: &str,
) -> Result<(&'a Trees, &'a Path)> {
    match (&target.trees, tree) {
        (Some(trees), Some(tree)) => Ok((trees, tree)),
        _ => Err(Error::user(format!(
            "backup {} records {what} as a repository's tree, but it is not restored from one",
            target.metadata().id
        ))
        .with_hint("the backup is damaged or hostile; restore another one")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::create::{create, CreateOptions, Destination};
    use crate::backup::progress::Terminal;
    use crate::testing::fake_restic::FakeRestic;
    use crate::testing::machine::{Machine, WEB};

    /// `web` backed up into a fake repository, its unit file then broken.
    fn backed_up_then_broken() -> (Machine, FakeRestic, String, PathBuf) {
        let machine = Machine::new();
        let deployment = machine.install("web", WEB);
        machine.systemd.set_state("web.service", "active");
        let repo = FakeRestic::new("offsite");
        let opts = CreateOptions {
            progress: false,
            destination: Destination::Repository(Arc::new(repo.clone())),
            ..CreateOptions::manual()
        };
        let id = create(&machine.ctx, &deployment, &opts).unwrap().id;
        let unit = machine.ctx.layout.quadlet_dir.join("web/web.container");
        std::fs::write(&unit, "[Container]\nImage=broken\n").unwrap();
        (machine, repo, id, unit)
    }

    #[test]
    fn a_snapshot_is_restored_through_the_local_restore_and_leaves_nothing_behind() {
        let (machine, repo, id, unit) = backed_up_then_broken();
        let store = machine.store();
        let progress = Terminal::new(false);
        let opts = RestoreOptions::default();
        let plan = prepare_from(
            &machine.ctx,
            &store,
            Arc::new(repo.clone()),
            &id,
            &opts,
            &progress,
        )
        .unwrap();
        execute(&machine.ctx, &store, plan, &opts, &progress).unwrap();

        assert_eq!(std::fs::read_to_string(&unit).unwrap(), WEB[0].1);
        assert_eq!(machine.systemd.state_of("web.service"), "active");
        let left: Vec<String> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(left.is_empty(), "the fetched copy stays: {left:?}");
        let fetched = repo.log();
        assert!(fetched.iter().any(|c| c.contains("restore")), "{fetched:?}");
    }

    #[test]
    fn an_unknown_id_or_a_damaged_snapshot_changes_nothing() {
        let (machine, repo, id, unit) = backed_up_then_broken();
        let store = machine.store();
        let progress = Terminal::new(false);
        let opts = RestoreOptions::default();
        let repo: Arc<dyn Repository> = Arc::new(repo);
        let calls_before = machine.systemd.calls().len();
        let err = prepare_from(
            &machine.ctx,
            &store,
            repo.clone(),
            "web-2000-01-01-000000",
            &opts,
            &progress,
        )
        .err()
        .expect("refused");
        assert!(
            err.message
                .contains("no backup web-2000-01-01-000000 in repository offsite"),
            "{}",
            err.message
        );
        // A snapshot whose metadata is not what its tags say.
        let snapshot = find_snapshot(&*repo, &id).unwrap();
        let damaged = repo
            .dump(&snapshot.id, "/.backup-metadata.json", 1 << 20)
            .unwrap();
        let damaged = String::from_utf8(damaged)
            .unwrap()
            .replace(&id, "web-1999-01-01-000000");
        let tags = snapshot.tags.clone();
        let fake = FakeRestic::new("other");
        fake.add(
            &tags,
            snapshot.time,
            &[("/.backup-metadata.json", damaged.as_bytes())],
        );
        let err = prepare_from(&machine.ctx, &store, Arc::new(fake), &id, &opts, &progress)
            .err()
            .expect("refused");
        assert!(err.message.contains("invalid"), "{}", err.message);
        assert_eq!(
            std::fs::read_to_string(&unit).unwrap(),
            "[Container]\nImage=broken\n"
        );
        assert_eq!(machine.systemd.calls().len(), calls_before, "nothing ran");
    }
}
