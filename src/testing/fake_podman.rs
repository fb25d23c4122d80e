//! An in-memory container engine: volumes as maps of file name to bytes
//! (exported as a tar, imported from one), their info and root ownership,
//! containers per volume, secrets, a call log, and failures injected per
//! call.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read, Write};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::Calls;
use crate::error::{Error, Result};
use crate::podman::{ContainerEngine, ContainerRef, RootOwnership, VolumeInfo};
use crate::process::{Consumer, PipeReader, PipeWriter, Producer};

/// Files of a volume: path relative to its root → contents.
pub(crate) type Files = BTreeMap<String, Vec<u8>>;

/// One volume.
#[derive(Debug, Clone)]
struct Volume {
    info: VolumeInfo,
    files: Files,
    root: RootOwnership,
}

#[derive(Debug, Default)]
struct State {
    /// A real directory standing for Podman's storage: when set, each
    /// volume's `_data` exists there (empty: files stay in memory), so a
    /// restore can move it aside as it does with real volumes.
    storage: Option<PathBuf>,
    /// Data moved aside by [`ContainerEngine::move_dir`], by its new path.
    moved: BTreeMap<String, (Files, RootOwnership)>,
    volumes: BTreeMap<String, Volume>,
    containers: BTreeMap<String, Vec<ContainerRef>>,
    secrets: BTreeSet<String>,
    calls: Calls,
}

/// A [`ContainerEngine`] that keeps its volumes in memory.
#[derive(Debug, Default, Clone)]
pub(crate) struct FakePodman {
    state: Arc<Mutex<State>>,
}

/// The root a fresh volume gets (what `podman volume create` makes).
pub(crate) const FRESH_ROOT: RootOwnership = RootOwnership {
    mode: 0o755,
    uid: 0,
    gid: 0,
};

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    /// Where volume `name`'s data is; made on disk with a storage.
    fn mountpoint(&self, name: &str) -> String {
        match &self.storage {
            Some(storage) => {
                let data = storage.join("volumes").join(name).join("_data");
                std::fs::create_dir_all(&data).expect("the fake volume's directory");
                data.display().to_string()
            }
            None => format!("/fake/volumes/{name}/_data"),
        }
    }

    fn at_mountpoint(&mut self, path: &str) -> Result<&mut Volume> {
        self.volumes
            .values_mut()
            .find(|v| v.info.mountpoint == path)
            .ok_or_else(|| {
                Error::internal(format!("{path}: no such volume directory (fake podman)"))
            })
    }
}

fn real(result: std::io::Result<()>, what: &str) -> Result<()> {
    result.map_err(|e| Error::internal(format!("{what}: {e} (fake podman)")))
}

impl FakePodman {
    /// An engine with nothing in it.
    pub fn new() -> FakePodman {
        FakePodman::default()
    }

    /// An engine whose volumes have real (empty) data directories under
    /// `storage`, like Podman's `volumes/<name>/_data`.
    pub fn with_storage(storage: PathBuf) -> FakePodman {
        let podman = FakePodman::default();
        podman.state().storage = Some(storage);
        podman
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Put a local volume `name` holding `files`, its root owned as `root`.
    pub fn put_volume(&self, name: &str, files: &[(&str, &[u8])], root: RootOwnership) {
        let mountpoint = self.state().mountpoint(name);
        let volume = Volume {
            info: VolumeInfo {
                name: name.to_owned(),
                driver: "local".to_owned(),
                mountpoint,
                labels: BTreeMap::new(),
                options: BTreeMap::new(),
            },
            files: files
                .iter()
                .map(|(p, d)| ((*p).to_owned(), d.to_vec()))
                .collect(),
            root,
        };
        self.state().volumes.insert(name.to_owned(), volume);
    }

    /// The files of volume `name`, `None` when it does not exist.
    pub fn files(&self, name: &str) -> Option<Files> {
        self.state().volumes.get(name).map(|v| v.files.clone())
    }

    /// Every call so far, as `podman OP TARGET`.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.log()
    }

    /// Where data moved aside (and not moved back or removed) is.
    pub fn held_aside(&self) -> Vec<String> {
        self.state().moved.keys().cloned().collect()
    }

    /// The root ownership of volume `name`.
    pub fn root_of(&self, name: &str) -> Option<RootOwnership> {
        self.state().volumes.get(name).map(|v| v.root)
    }

    /// Say that `container` mounts volume `volume`.
    pub fn add_container(&self, volume: &str, container: ContainerRef) {
        let mut s = self.state();
        s.containers
            .entry(volume.to_owned())
            .or_default()
            .push(container);
    }

    /// Inject failures (see [`Calls`]); `f` gets the rules.
    pub fn fail(&self, f: impl FnOnce(&mut Calls)) {
        f(&mut self.state().calls)
    }

    fn record(&self, op: &str, target: &str) -> Result<MutexGuard<'_, State>> {
        let mut s = self.state();
        s.calls.record("podman", op, &[target])?;
        Ok(s)
    }
}

fn no_volume(name: &str) -> Error {
    Error::internal(format!("no such volume {name} (fake podman)"))
}

/// A tar of `files` as `podman volume export` writes one: entries sorted by
/// name, then the end marker.
pub(crate) fn tar_of(files: &Files) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        builder
            .append_data(&mut header, path, &data[..])
            .expect("a tar in memory");
    }
    builder.into_inner().expect("a tar in memory")
}

/// The regular files of tar `bytes`, `./` prefixes dropped.
pub(crate) fn files_of(bytes: &[u8]) -> std::io::Result<Files> {
    let mut files = Files::new();
    for entry in tar::Archive::new(bytes).entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        files.insert(path.trim_start_matches("./").to_owned(), data);
    }
    Ok(files)
}

impl ContainerEngine for FakePodman {
    fn volume_exists(&self, name: &str) -> Result<bool> {
        Ok(self
            .record("volume_exists", name)?
            .volumes
            .contains_key(name))
    }

    fn volume_inspect(&self, name: &str) -> Result<Option<VolumeInfo>> {
        let s = self.record("volume_inspect", name)?;
        Ok(s.volumes.get(name).map(|v| v.info.clone()))
    }

    fn volume_export(&self, name: &str) -> Result<Box<dyn Producer>> {
        let s = self.record("volume_export", name)?;
        let volume = s.volumes.get(name).ok_or_else(|| no_volume(name))?;
        Ok(Box::new(MemoryProducer::new(tar_of(&volume.files))))
    }

    fn volume_import(&self, name: &str) -> Result<Box<dyn Consumer>> {
        let s = self.record("volume_import", name)?;
        if !s.volumes.contains_key(name) {
            return Err(no_volume(name));
        }
        Ok(Box::new(MemoryConsumer {
            state: Arc::clone(&self.state),
            volume: name.to_owned(),
            written: Buffer::default(),
            input_taken: false,
        }))
    }

    fn volume_rm(&self, name: &str) -> Result<()> {
        let mut s = self.record("volume_rm", name)?;
        let volume = s.volumes.remove(name).ok_or_else(|| no_volume(name))?;
        if s.storage.is_some() {
            let dir = std::path::Path::new(&volume.info.mountpoint);
            let dir = dir.parent().expect("the volume's directory");
            real(std::fs::remove_dir_all(dir), "volume rm")?;
        }
        Ok(())
    }

    fn volume_create(&self, info: &VolumeInfo) -> Result<()> {
        let mut s = self.record("volume_create", &info.name)?;
        if s.volumes.contains_key(&info.name) {
            return Err(Error::internal(format!(
                "volume {} already exists (fake podman)",
                info.name
            )));
        }
        let mut info = info.clone();
        info.mountpoint = s.mountpoint(&info.name);
        if info.driver.is_empty() {
            info.driver = "local".to_owned();
        }
        let volume = Volume {
            info,
            files: Files::new(),
            root: FRESH_ROOT,
        };
        s.volumes.insert(volume.info.name.clone(), volume);
        Ok(())
    }

    fn root_ownership(&self, path: &str) -> Result<RootOwnership> {
        let s = self.record("root_ownership", path)?;
        s.volumes
            .values()
            .find(|v| v.info.mountpoint == path)
            .map(|v| v.root)
            .ok_or_else(|| Error::internal(format!("stat {path}: no such file (fake podman)")))
    }

    /// One record per file: its size and the digest of its contents, so the
    /// listing changes whenever a file does.
    fn list_tree(&self, dir: &str, _format: &str) -> Result<Box<dyn Producer>> {
        let s = self.record("list_tree", dir)?;
        let volume = s
            .volumes
            .values()
            .find(|v| v.info.mountpoint == dir)
            .ok_or_else(|| Error::internal(format!("find {dir}: no such directory")))?;
        let mut listing = b"d 0 \0".to_vec();
        for (path, data) in &volume.files {
            let digest = hex::encode(Sha256::digest(data));
            listing.extend(format!("f {} {digest} {path}\0", data.len()).bytes());
        }
        Ok(Box::new(MemoryProducer::new(listing)))
    }

    fn set_root_ownership(&self, path: &str, own: RootOwnership) -> Result<()> {
        let mut s = self.record("set_root_ownership", path)?;
        let volume = s
            .volumes
            .values_mut()
            .find(|v| v.info.mountpoint == path)
            .ok_or_else(|| Error::internal(format!("chown {path}: no such file (fake podman)")))?;
        volume.root = own;
        Ok(())
    }

    fn containers_using_volume(&self, name: &str) -> Result<Vec<ContainerRef>> {
        let s = self.record("containers_using_volume", name)?;
        Ok(s.containers.get(name).cloned().unwrap_or_default())
    }

    fn volume_tar(&self, _exe: &std::path::Path, dir: &str) -> Result<Box<dyn Producer>> {
        let mut s = self.record("volume_tar", dir)?;
        let volume = s.at_mountpoint(dir)?;
        Ok(Box::new(MemoryProducer::new(tar_of(&volume.files))))
    }

    /// Host paths are real: the reader runs in-process on them.
    fn host_path_tar(&self, _exe: &std::path::Path, path: &str) -> Result<Box<dyn Producer>> {
        drop(self.record("host_path_tar", path)?);
        let mut tar = Vec::new();
        crate::backup::volume_reader::write_host_path(std::path::Path::new(path), &mut tar)?;
        Ok(Box::new(MemoryProducer::new(tar)))
    }

    /// The writer runs in-process on the real `dest` when the input ends.
    fn tree_write(
        &self,
        _exe: &std::path::Path,
        dest: &str,
        file: bool,
    ) -> Result<Box<dyn Consumer>> {
        drop(self.record("tree_write", dest)?);
        Ok(Box::new(TreeWriteConsumer {
            dest: PathBuf::from(dest),
            file,
            written: Buffer::default(),
            input_taken: false,
        }))
    }

    fn move_dir(&self, from: &str, to: &str) -> Result<()> {
        let mut s = self.record("move_dir", from)?;
        let volume = s.at_mountpoint(from)?;
        let data = (std::mem::take(&mut volume.files), volume.root);
        real(std::fs::rename(from, to), "mv")?;
        s.moved.insert(to.to_owned(), data);
        Ok(())
    }

    fn replace_empty_dir(&self, dir: &str, from: &str) -> Result<()> {
        let mut s = self.record("replace_empty_dir", dir)?;
        let (files, root) = s.moved.remove(from).ok_or_else(|| {
            Error::internal(format!("{from}: nothing was moved there (fake podman)"))
        })?;
        real(std::fs::remove_dir(dir), "rmdir")?;
        real(std::fs::rename(from, dir), "mv")?;
        let volume = s.at_mountpoint(dir)?;
        volume.files = files;
        volume.root = root;
        Ok(())
    }

    fn remove_tree(&self, path: &str) -> Result<()> {
        let mut s = self.record("remove_tree", path)?;
        s.moved.retain(|moved, _| !moved.starts_with(path));
        real(std::fs::remove_dir_all(path), "rm -rf")
    }

    fn secret_exists(&self, name: &str) -> Result<bool> {
        Ok(self.record("secret_exists", name)?.secrets.contains(name))
    }
}

/// An export or a listing held in memory.
struct MemoryProducer {
    output: Option<Cursor<Vec<u8>>>,
}

impl MemoryProducer {
    fn new(bytes: Vec<u8>) -> MemoryProducer {
        MemoryProducer {
            output: Some(Cursor::new(bytes)),
        }
    }
}

impl PipeReader for Cursor<Vec<u8>> {
    fn pipe_fd(&self) -> Option<RawFd> {
        None
    }
}

impl Producer for MemoryProducer {
    fn output(&mut self) -> Option<Box<dyn PipeReader>> {
        self.output
            .take()
            .map(|c| Box::new(c) as Box<dyn PipeReader>)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        Ok(())
    }

    fn abort(self: Box<Self>) {}
}

/// What an import was fed, shared between its writer and the import.
#[derive(Debug, Default, Clone)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    /// A writer into it, the first time only (a pipe has one input end).
    fn hand_out(&self, taken: &mut bool) -> Option<Box<dyn PipeWriter>> {
        (!std::mem::replace(taken, true)).then(|| Box::new(self.clone()) as Box<dyn PipeWriter>)
    }

    /// The bytes written so far, taken out.
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl PipeWriter for Buffer {
    fn pipe_fd(&self) -> Option<RawFd> {
        None
    }
}

/// An import: the bytes written are unpacked into the volume (merged with
/// what it holds, as podman does) when it finishes.
struct MemoryConsumer {
    state: Arc<Mutex<State>>,
    volume: String,
    written: Buffer,
    input_taken: bool,
}

impl Consumer for MemoryConsumer {
    fn input(&mut self) -> Option<Box<dyn PipeWriter>> {
        self.written.hand_out(&mut self.input_taken)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let bytes = self.written.take();
        let files = files_of(&bytes).map_err(|e| {
            Error::internal(format!("importing into {}: not a tar: {e}", self.volume))
        })?;
        let mut s = lock(&self.state);
        let volume = s
            .volumes
            .get_mut(&self.volume)
            .ok_or_else(|| no_volume(&self.volume))?;
        volume.files.extend(files);
        Ok(())
    }

    fn abort(self: Box<Self>) {}
}

/// A `tree-write`: the bytes written are written out to `dest` by the
/// real writer when it finishes.
struct TreeWriteConsumer {
    dest: PathBuf,
    file: bool,
    written: Buffer,
    input_taken: bool,
}

impl Consumer for TreeWriteConsumer {
    fn input(&mut self) -> Option<Box<dyn PipeWriter>> {
        self.written.hand_out(&mut self.input_taken)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let bytes = self.written.take();
        let target = if self.file {
            crate::backup::tree_writer::Target::File(&self.dest)
        } else {
            crate::backup::tree_writer::Target::Dir(&self.dest)
        };
        crate::backup::tree_writer::write(&bytes[..], target)
    }

    fn abort(self: Box<Self>) {}
}
