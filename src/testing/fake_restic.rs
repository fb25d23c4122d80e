//! An in-memory restic repository: snapshots with tags and files by path,
//! so the logic over repositories (list, info, delete, prune, create,
//! restore) is unit-tested without restic. Test code only.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::Calls;
use crate::error::{Error, Result};
use crate::repository::{
    BackupRequest, BackupSummary, Repository, RepositoryConfig, RepositoryOpener, Snapshot,
};

/// One snapshot and its files (absolute paths inside the snapshot).
#[derive(Debug, Clone)]
struct Stored {
    snapshot: Snapshot,
    files: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Default)]
struct State {
    initialized: bool,
    snapshots: Vec<Stored>,
    next: u64,
    calls: Calls,
}

/// A fake repository; clones share the same contents.
#[derive(Debug, Clone)]
pub(crate) struct FakeRestic {
    name: String,
    state: Arc<Mutex<State>>,
}

impl FakeRestic {
    /// An initialized, empty repository called `name`.
    pub fn new(name: &str) -> FakeRestic {
        FakeRestic {
            name: name.to_owned(),
            state: Arc::new(Mutex::new(State {
                initialized: true,
                ..State::default()
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("the fake's lock")
    }

    /// Add a snapshot with `tags`, taken at `time`, holding `files`; its ID.
    pub fn add(&self, tags: &[String], time: DateTime<Utc>, files: &[(&str, &[u8])]) -> String {
        let mut state = self.state();
        state.next += 1;
        let id = format!("{:064x}", state.next);
        state.snapshots.push(Stored {
            snapshot: Snapshot {
                id: id.clone(),
                time,
                hostname: "fake".into(),
                tags: tags.to_vec(),
            },
            files: files
                .iter()
                .map(|(p, b)| ((*p).to_owned(), b.to_vec()))
                .collect(),
        });
        id
    }

    /// The IDs of the snapshots left, oldest first.
    pub fn ids(&self) -> Vec<String> {
        self.state()
            .snapshots
            .iter()
            .map(|s| s.snapshot.id.clone())
            .collect()
    }

    /// Every call so far (`op args...`).
    pub fn log(&self) -> Vec<String> {
        self.state().calls.log()
    }

    /// Make every call of `op` fail.
    pub fn fail(&self, op: &str) {
        self.state().calls.fail_on(op, &self.name);
    }

    fn record(&self, op: &str, args: &[&str]) -> Result<()> {
        let mut targets = vec![self.name.as_str()];
        targets.extend_from_slice(args);
        let mut state = self.state();
        state.calls.record("restic", op, &targets)?;
        if !state.initialized && op != "init" {
            return Err(Error::user(format!(
                "repository {} does not exist",
                self.name
            )));
        }
        Ok(())
    }

    fn find(&self, id: &str) -> Result<Stored> {
        self.state()
            .snapshots
            .iter()
            .find(|s| s.snapshot.id == id)
            .cloned()
            .ok_or_else(|| Error::internal(format!("no snapshot {id}")))
    }
}

/// Read every file under `dir` into `files`, at `prefix/...`.
fn read_tree(dir: &Path, prefix: &str, files: &mut BTreeMap<String, Vec<u8>>) -> Result<()> {
    if dir.is_file() {
        files.insert(prefix.to_owned(), fs_err::read(dir)?);
        return Ok(());
    }
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let name = format!("{prefix}/{}", entry.file_name().to_string_lossy());
        read_tree(&entry.path(), &name, files)?;
    }
    Ok(())
}

impl Repository for FakeRestic {
    fn name(&self) -> &str {
        &self.name
    }

    fn init(&self) -> Result<()> {
        self.record("init", &[])?;
        let mut state = self.state();
        if state.initialized {
            return Err(Error::user(format!(
                "repository {} already exists",
                self.name
            )));
        }
        state.initialized = true;
        Ok(())
    }

    fn check(&self, read_data: bool) -> Result<String> {
        self.record("check", &[if read_data { "--read-data" } else { "" }])?;
        Ok("no errors were found".into())
    }

    fn snapshots(&self, tags: &[String]) -> Result<Vec<Snapshot>> {
        let joined = tags.join(",");
        self.record("snapshots", &[&joined])?;
        Ok(self
            .state()
            .snapshots
            .iter()
            .filter(|s| tags.iter().all(|t| s.snapshot.tags.contains(t)))
            .map(|s| s.snapshot.clone())
            .collect())
    }

    fn backup(&self, request: &BackupRequest) -> Result<BackupSummary> {
        self.record("backup", &[&request.tags.join(",")])?;
        let mut files = BTreeMap::new();
        read_tree(&request.root, "", &mut files)?;
        for bind in &request.binds {
            read_tree(
                &bind.source,
                &format!("/{}", bind.rel.display()),
                &mut files,
            )?;
        }
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        let total = files.values().map(|b| b.len() as u64).sum();
        let snapshot_id = self.add(&request.tags, Utc::now(), &refs);
        Ok(BackupSummary {
            snapshot_id,
            files_new: files.len() as u64,
            total_bytes_processed: total,
            data_added: total,
            ..BackupSummary::default()
        })
    }

    fn dump(&self, snapshot: &str, path: &str, limit: u64) -> Result<Vec<u8>> {
        self.record("dump", &[snapshot, path])?;
        let stored = self.find(snapshot)?;
        let bytes = stored
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| Error::internal(format!("{path} is not in snapshot {snapshot}")))?;
        if bytes.len() as u64 > limit {
            return Err(Error::user(format!("{path} is larger than {limit} bytes")));
        }
        Ok(bytes)
    }

    fn restore(
        &self,
        snapshot: &str,
        subpath: &str,
        target: &Path,
        excludes: &[String],
        _in_namespace: bool,
    ) -> Result<()> {
        self.record("restore", &[snapshot, subpath])?;
        let stored = self.find(snapshot)?;
        let prefix = format!("/{}", subpath.trim_matches('/'));
        for (path, bytes) in &stored.files {
            if excludes.iter().any(|e| path.starts_with(e.as_str())) {
                continue;
            }
            let rel = match path.strip_prefix(prefix.trim_end_matches('/')) {
                Some(rel) if rel.starts_with('/') => rel.trim_start_matches('/'),
                _ => continue,
            };
            let dest = target.join(rel);
            if let Some(parent) = dest.parent() {
                fs_err::create_dir_all(parent)?;
            }
            fs_err::write(dest, bytes)?;
        }
        Ok(())
    }

    fn forget(&self, snapshots: &[String]) -> Result<()> {
        let ids: Vec<&str> = snapshots.iter().map(String::as_str).collect();
        self.record("forget", &ids)?;
        self.state()
            .snapshots
            .retain(|s| !snapshots.contains(&s.snapshot.id));
        Ok(())
    }

    fn prune(&self) -> Result<()> {
        self.record("prune", &[])
    }

    fn unlock(&self) -> Result<()> {
        self.record("unlock", &[])
    }
}

/// Opens fake repositories by name (a new empty one for a name not seen).
#[derive(Debug, Default)]
pub(crate) struct FakeRepositories {
    repos: Mutex<BTreeMap<String, FakeRestic>>,
}

impl FakeRepositories {
    /// The repository called `name` (made on first use).
    pub fn get(&self, name: &str) -> FakeRestic {
        self.repos
            .lock()
            .expect("the fakes' lock")
            .entry(name.to_owned())
            .or_insert_with(|| FakeRestic::new(name))
            .clone()
    }
}

impl RepositoryOpener for FakeRepositories {
    fn open(&self, config: &RepositoryConfig) -> Result<Box<dyn Repository>> {
        Ok(Box::new(self.get(&config.name)))
    }
}
