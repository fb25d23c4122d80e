//! The Quadlet model: systemd unit syntax as Quadlet reads it, and the
//! resolution of units, services and Podman volume names exactly as the real
//! generator (`/usr/libexec/podman/quadlet`) computes them.
//!
//! Pure code: no podman, no systemd, no file system. Callers hand in the text
//! of the files ([`SourceFile`]) and get a [`Resolution`] back.
//!
//! The reference is podman 5.4.2 (Debian 13's, the testbed's): each rule was
//! checked against its `quadlet -dryrun -user` output, and
//! `tests/integration/e2e/quadlet_differential.rs` keeps checking it. Other
//! versions differ in places (podman 5.6 accepts `Mount=` without `type=`;
//! older ones may lack `ServiceName=` and type-wide drop-ins), which is why the
//! rules name the version. The submodules follow the generator's own split:
//! - [`unit_file`]: the unit-file syntax and the per-key lookups
//!   (`pkg/systemd/parser/unitfile.go`);
//! - [`split`]: word splitting of argument keys and CSV of `Mount=`
//!   (`pkg/systemd/parser/split.go`, `encoding/csv`);
//! - [`drop_ins`] and [`search_path`]: which files Quadlet reads, in which
//!   order, and how drop-ins merge (`cmd/quadlet/main.go`);
//! - [`values`]: what `Volume=`/`Mount=` sources mean;
//! - [`resolve`](mod@resolve) (the module): units, services, volumes and the rest
//!   (`pkg/systemd/quadlet/quadlet.go`).

use std::path::PathBuf;

use serde::Serialize;

use crate::error::Result;

pub mod drop_ins;
pub mod environment;
pub mod host_refs;
pub mod resolve;
pub mod search_path;
pub mod specifiers;
pub mod split;
pub mod unit_file;
pub mod values;

pub use split::{csv_record, split_args};
pub use unit_file::{parse, ParseError, UnitFile};

/// A quadlet file (or drop-in) handed to the resolver.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to its root (deployment directory or Quadlet search
    /// directory), e.g. `web.container` or `web.container.d/10-env.conf`.
    pub rel_path: PathBuf,
    /// Where the text was read from, for messages.
    pub origin: PathBuf,
    /// The file's text.
    pub text: String,
}

/// The kind of a quadlet unit file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    /// `.container`
    Container,
    /// `.volume`
    Volume,
    /// `.network`
    Network,
    /// `.pod`
    Pod,
    /// `.kube`
    Kube,
    /// `.image`
    Image,
    /// `.build`
    Build,
}

/// One quadlet unit of a deployment and the service Quadlet makes of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unit {
    /// Relative path of the unit file.
    pub file: String,
    /// Its kind.
    pub kind: UnitKind,
    /// The systemd service Quadlet generates (`web.service`, `data-volume.service`).
    pub service: String,
}

/// A Podman named volume the deployment uses or defines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeUse {
    /// The Podman volume name (`systemd-data`, or a `VolumeName=`).
    pub name: String,
    /// The `.volume` file defining it (relative path; may belong to another
    /// deployment), or `None` for a plain named volume.
    pub defined_by: Option<String>,
    /// Services that mount it, sorted.
    pub used_by: Vec<String>,
}

/// A setting pointing at something, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Located {
    /// The value as resolved (a host path, a port spec...).
    pub value: String,
    /// Relative path of the file that says it.
    pub file: String,
    /// 1-based line of the key in that file.
    pub line: usize,
}

/// A value Quadlet leaves to systemd to expand (`${UPLOAD_LOCATION}:/data`):
/// reported, never guessed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unresolved {
    /// The key (`Volume`, `Mount`).
    pub key: String,
    /// The raw value.
    pub value: String,
    /// The variables it depends on (`UPLOAD_LOCATION`).
    pub variables: Vec<String>,
    /// Relative path of the file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
}

/// How a unit refers to a host path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostRefKind {
    /// A `Volume=`/`Mount=`/`PodmanArgs=` source mounted into a container.
    Mount,
    /// `[Service] EnvironmentFile=`: read by systemd, defines the variables
    /// `Volume=` sources are expanded with.
    ServiceEnvFile,
    /// `[Container] EnvironmentFile=`: read by podman for the container.
    ContainerEnvFile,
    /// The program of a `[Service]` `ExecStartPre=`, `ExecStartPost=`,
    /// `ExecStop=`, `ExecStopPost=`, `ExecReload=` or `ExecCondition=` (a
    /// script under `/etc/<app>`...).
    ServiceExec,
}

/// A host path a unit refers to, as Quadlet leaves it: `./x` already made
/// absolute against the unit file's directory, `%` specifiers and `${VAR}`
/// still to be expanded by systemd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostRef {
    /// What kind of reference.
    pub kind: HostRefKind,
    /// The source as Quadlet writes it into the service.
    pub source: String,
    /// The path inside the container, for mounts.
    pub target: Option<String>,
    /// The service that uses it.
    pub service: String,
    /// Relative path of the unit file.
    pub unit: String,
    /// Relative path of the file (unit or drop-in) of the line.
    pub file: String,
    /// 1-based line.
    pub line: usize,
}

/// One `[Service]` assignment that makes up a service's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceEnvLine {
    /// `Environment` or `EnvironmentFile`.
    pub key: String,
    /// The raw value.
    pub value: String,
    /// Relative path of the file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
}

/// The `[Service]` environment of a generated service (drop-ins merged,
/// resets applied), which systemd expands `${VAR}` in `ExecStart=` from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceEnv {
    /// The service.
    pub service: String,
    /// `Environment=` lines, in order.
    pub environment: Vec<ServiceEnvLine>,
    /// `EnvironmentFile=` lines, in order.
    pub environment_files: Vec<ServiceEnvLine>,
}

/// A non-fatal problem (a `.network` referenced but found nowhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// What is wrong.
    pub message: String,
    /// Relative path of the file.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
}

/// Everything a backup of a deployment needs to know about its quadlets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// Unit files of the deployment (drop-ins excluded), sorted by file.
    pub units: Vec<Unit>,
    /// Named volumes used or defined, sorted by name.
    pub volumes: Vec<VolumeUse>,
    /// Host paths mounted into containers: not backed up.
    pub bind_mounts: Vec<Located>,
    /// Anonymous volumes (`Volume=/path`): not backed up.
    pub anonymous_volumes: Vec<Located>,
    /// `Secret=` names, sorted, deduplicated.
    pub secrets: Vec<String>,
    /// `PublishPort=` values.
    pub ports: Vec<String>,
    /// `Image=` values.
    pub images: Vec<String>,
    /// Networks joined (`Network=`), resolved to Podman network names where a
    /// `.network` file is referenced.
    pub networks: Vec<String>,
    /// Values left to systemd to expand.
    pub unresolved: Vec<Unresolved>,
    /// Non-fatal problems.
    pub warnings: Vec<Diagnostic>,
    /// Host paths the units refer to (bind mounts, sources depending on
    /// substitutions, environment files), sorted by file and line.
    pub host_refs: Vec<HostRef>,
    /// The `[Service]` environment of each service with host references.
    pub service_envs: Vec<ServiceEnv>,
}

/// Resolve the quadlet files of one deployment. `installed` is every quadlet
/// file on the Quadlet search path (other deployments included), consulted
/// for references the deployment does not define itself.
///
/// `installed` must list the search directories in Quadlet's priority order
/// (first wins); a file's search directory is its `origin` minus its
/// `rel_path`. Deployment files whose `origin` appears in `installed` take
/// that place in the search; the others (a deployment not installed yet)
/// are searched before everything else. Include the type-wide and prefix
/// drop-in directories (`container.d/`, `foo-.container.d/`) in `installed`:
/// Quadlet applies them to the deployment's units.
///
/// Errors when a deployment file does not parse, or when a `.volume`
/// reference exists nowhere (the volume's name cannot be known). Everything
/// else Quadlet would trip on is a warning in the result.
pub fn resolve(deployment: &[SourceFile], installed: &[SourceFile]) -> Result<Resolution> {
    resolve::resolve(deployment, installed)
}
