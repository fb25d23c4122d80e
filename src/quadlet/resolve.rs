//! From quadlet files to what a backup needs: units, services, Podman volume
//! names and who mounts them, following podman 5.4.2's generator
//! (`pkg/systemd/quadlet/quadlet.go`) key by key:
//!
//! | key | read as | where |
//! | --- | --- | --- |
//! | `Volume=` | `LookupAll` (raw, quotes kept) | `.container`, `.pod`, `.build` |
//! | `Mount=` | `LookupAllArgs` then CSV | `.container` |
//! | `Secret=` | `LookupAllArgs`, name before `,` | `.container`, `.build` |
//! | `PublishPort=` | `LookupAll` | `.container`, `.pod`, `.kube` |
//! | `Network=` | `LookupAll`, `x.network`/`x.container` resolved | `.container`, `.pod`, `.kube`, `.build` |
//! | `Image=`, `Pod=`, `VolumeName=`, `NetworkName=`, `ServiceName=`... | `Lookup` (last, quotes trimmed) | |
//! | `PodmanArgs=` | `LookupAllArgs`; `-v`/`--volume`/`--mount` read as podman reads them | |
//!
//! A `.volume` reference that exists nowhere is an error (the volume's name
//! cannot be known); other dangling references are warnings (Quadlet then
//! refuses to generate the referring unit, which a backup can still plan).

use std::collections::{BTreeMap, BTreeSet};

use super::drop_ins::remove_extension;
use super::host_refs::{self, UnitRef};
use super::search_path::{LoadedUnit, SearchPath};
use super::unit_file::{Entry, UnitFile};
use super::values::{
    is_valid_volume_name, join_clean, parse_mount, split_volume, starts_with_path_specifier,
    substitutions, MountSpec,
};
use super::{
    Diagnostic, HostRef, HostRefKind, Located, Resolution, ServiceEnv, SourceFile, Unit, UnitKind,
    Unresolved, VolumeUse,
};
use crate::error::{Error, Result};

/// The `[Section]` Quadlet reads for a kind of unit.
pub fn group_of(kind: UnitKind) -> &'static str {
    match kind {
        UnitKind::Container => "Container",
        UnitKind::Volume => "Volume",
        UnitKind::Network => "Network",
        UnitKind::Pod => "Pod",
        UnitKind::Kube => "Kube",
        UnitKind::Image => "Image",
        UnitKind::Build => "Build",
    }
}

fn service_suffix(kind: UnitKind) -> &'static str {
    match kind {
        UnitKind::Container | UnitKind::Kube => "",
        UnitKind::Volume => "-volume",
        UnitKind::Network => "-network",
        UnitKind::Pod => "-pod",
        UnitKind::Image => "-image",
        UnitKind::Build => "-build",
    }
}

/// The service Quadlet generates for a unit file: `ServiceName=` of its
/// section when set (podman ≥ 5.3, every kind), else the file name without
/// extension plus `-volume`, `-network`, `-pod`, `-image`, `-build` (none
/// for `.container` and `.kube`), plus `.service`.
pub fn service_name(unit: &UnitFile, file_name: &str, kind: UnitKind) -> String {
    match unit.lookup(group_of(kind), "ServiceName") {
        Some((name, _)) => format!("{name}.service"),
        None => format!(
            "{}{}.service",
            remove_extension(file_name),
            service_suffix(kind)
        ),
    }
}

/// A resource name set by a key (`VolumeName=`), or `systemd-<file name
/// without extension>` when the key is missing or empty.
fn resource_name(
    unit: &UnitFile,
    file_name: &str,
    group: &str,
    key: &str,
) -> (String, Option<Entry>) {
    match unit.lookup(group, key) {
        Some((name, entry)) if !name.is_empty() => (name, Some(entry.clone())),
        _ => (format!("systemd-{}", remove_extension(file_name)), None),
    }
}

/// The Podman volume a `.volume` unit creates (`VolumeName=` or
/// `systemd-<name>`), with the entry that set it.
pub fn volume_name(unit: &UnitFile, file_name: &str) -> (String, Option<Entry>) {
    resource_name(unit, file_name, "Volume", "VolumeName")
}

/// The Podman network a `.network` unit creates.
pub fn network_name(unit: &UnitFile, file_name: &str) -> String {
    resource_name(unit, file_name, "Network", "NetworkName").0
}

/// The container name of a `.container` unit, when it contains no specifier
/// (Quadlet resolves only `%N`; `Network=x.container` needs the name).
fn container_name(unit: &UnitFile, file_name: &str) -> Option<String> {
    let name = match unit.lookup("Container", "ContainerName") {
        Some((n, _)) if !n.is_empty() => n,
        _ if file_name.contains('@') => "systemd-%p_%i".to_owned(),
        _ => "systemd-%N".to_owned(),
    };
    let service = service_name(unit, file_name, UnitKind::Container);
    let resolved = name.replace("%N", service.trim_end_matches(".service"));
    (!resolved.contains('%')).then_some(resolved)
}

/// The image an `.image` (`ImageTag=` or `Image=`) or `.build` (first
/// `ImageTag=`) unit provides.
fn provided_image(unit: &LoadedUnit<'_>) -> Option<String> {
    match unit.kind {
        UnitKind::Image => {
            let image = unit.unit.lookup("Image", "Image").map(|(v, _)| v)?;
            if image.is_empty() {
                return None;
            }
            match unit.unit.lookup("Image", "ImageTag") {
                Some((tag, _)) if !tag.is_empty() => Some(tag),
                _ => Some(image),
            }
        }
        UnitKind::Build => unit
            .unit
            .lookup_all("Build", "ImageTag")
            .first()
            .map(|e| e.value.clone()),
        _ => None,
    }
}

/// Refuse a unit whose service name systemd would not accept: it becomes a
/// path (`<unit dir>/<service>.d/`) and a `systemctl` argument, and Quadlet
/// copies `ServiceName=` into it unchecked (`ServiceName=../../x`).
fn check_service_name(loaded: &LoadedUnit<'_>, service: &str) -> Result<()> {
    let Some(why) = crate::systemd::service_name_problem(service) else {
        return Ok(());
    };
    let origin = match loaded.unit.lookup(group_of(loaded.kind), "ServiceName") {
        Some((value, entry)) => format!("{}:{}: ServiceName={value}", entry.file, entry.line),
        None => format!("{}: the file name", loaded.file.label),
    };
    Err(Error::user(format!(
        "{origin} gives the service name {service:?}, which is not a valid systemd unit name: it {why}"
    ))
    .with_hint(
        "service names use letters, digits, ':', '_', '.', '\\', '@' and '-' and do not start \
         with '-'; fix the name, then run the command again",
    ))
}

/// Resolve a deployment; see [`super::resolve()`].
pub fn resolve(deployment: &[SourceFile], installed: &[SourceFile]) -> Result<Resolution> {
    let search = SearchPath::new(deployment, installed).map_err(|e| {
        Error::user(e.to_string()).with_hint(
            "fix that line: Quadlet cannot read the file and then skips every unit of its directory",
        )
    })?;
    let mut r = Resolver {
        search: &search,
        out: Acc::default(),
    };
    for notice in &search.notices {
        r.warn(notice.message.clone(), &notice.file, notice.line);
    }
    for placed in search.deployment_units() {
        if let Some(unit) = search.load(&placed.name) {
            r.unit(&unit)?;
        }
    }
    Ok(r.out.finish())
}

#[derive(Default)]
struct Acc {
    units: Vec<Unit>,
    volumes: BTreeMap<String, (Option<String>, BTreeSet<String>)>,
    bind_mounts: Vec<Located>,
    anonymous_volumes: Vec<Located>,
    secrets: BTreeSet<String>,
    ports: BTreeSet<String>,
    images: BTreeSet<String>,
    networks: BTreeSet<String>,
    unresolved: Vec<Unresolved>,
    warnings: Vec<Diagnostic>,
    host_refs: Vec<HostRef>,
    service_envs: Vec<ServiceEnv>,
}

impl Acc {
    fn finish(self) -> Resolution {
        let mut units = self.units;
        units.sort_by(|a, b| a.file.cmp(&b.file));
        let mut unresolved = self.unresolved;
        unresolved.sort_by(|a, b| {
            (&a.file, a.line, &a.key, &a.value).cmp(&(&b.file, b.line, &b.key, &b.value))
        });
        unresolved.dedup();
        let mut warnings = self.warnings;
        warnings.sort_by(|a, b| (&a.file, a.line, &a.message).cmp(&(&b.file, b.line, &b.message)));
        warnings.dedup();
        let mut host_refs = self.host_refs;
        host_refs.sort_by(|a, b| (&a.file, a.line, &a.source).cmp(&(&b.file, b.line, &b.source)));
        host_refs.dedup();
        Resolution {
            units,
            volumes: self
                .volumes
                .into_iter()
                .map(|(name, (defined_by, used_by))| VolumeUse {
                    name,
                    defined_by,
                    used_by: used_by.into_iter().collect(),
                })
                .collect(),
            bind_mounts: sorted_located(self.bind_mounts),
            anonymous_volumes: sorted_located(self.anonymous_volumes),
            secrets: self.secrets.into_iter().collect(),
            ports: self.ports.into_iter().collect(),
            images: self.images.into_iter().collect(),
            networks: self.networks.into_iter().collect(),
            unresolved,
            warnings,
            host_refs,
            service_envs: self.service_envs,
        }
    }
}

fn sorted_located(mut v: Vec<Located>) -> Vec<Located> {
    v.sort_by(|a, b| (&a.value, &a.file, a.line).cmp(&(&b.value, &b.file, b.line)));
    v.dedup();
    v
}

/// What a volume source turns into once Quadlet has rewritten it.
enum Source {
    /// A host path (bind mount).
    Host(String),
    /// A Podman named volume, and the `.volume` file defining it.
    Named(String, Option<String>),
    /// Depends on systemd substitutions.
    Unresolved(Vec<String>),
    /// An image (`type=image` mounts).
    Image(String),
    /// A name Podman refuses.
    Invalid(String),
    /// Nothing usable (a dangling reference, already warned about).
    Nothing,
}

/// A mount source as written, for host references.
struct MountRef<'m> {
    /// The source before Quadlet's rewriting.
    source: &'m str,
    /// The path in the container.
    target: Option<&'m str>,
    /// A bind mount whatever the source looks like (`type=bind`).
    as_bind: bool,
}

struct Resolver<'s, 'a> {
    search: &'s SearchPath<'a>,
    out: Acc,
}

/// The unit being resolved, for messages and `used_by`.
struct Ctx<'u> {
    service: String,
    unit_dir: String,
    unit: &'u UnitFile,
    label: String,
}

impl Ctx<'_> {
    fn unit_ref(&self) -> UnitRef<'_> {
        UnitRef {
            unit: self.unit,
            service: &self.service,
            label: &self.label,
            unit_dir: &self.unit_dir,
        }
    }
}

impl Resolver<'_, '_> {
    fn warn(&mut self, message: String, file: &str, line: Option<usize>) {
        self.out.warnings.push(Diagnostic {
            message,
            file: file.to_owned(),
            line,
        });
    }

    fn warn_at(&mut self, message: String, entry: &Entry) {
        self.warn(message, &entry.file, Some(entry.line));
    }

    fn located(value: String, entry: &Entry) -> Located {
        Located {
            value,
            file: entry.file.clone(),
            line: entry.line,
        }
    }

    fn unresolved(&mut self, entry: &Entry, variables: Vec<String>) {
        self.out.unresolved.push(Unresolved {
            key: entry.key.clone(),
            value: entry.value.clone(),
            variables,
            file: entry.file.clone(),
            line: entry.line,
        });
    }

    fn add_volume(&mut self, name: String, defined_by: Option<String>, user: Option<&str>) {
        let slot = self.out.volumes.entry(name).or_default();
        if let Some(def) = defined_by {
            match &slot.0 {
                Some(existing) if *existing <= def => {}
                _ => slot.0 = Some(def),
            }
        }
        if let Some(user) = user {
            slot.1.insert(user.to_owned());
        }
    }

    fn unit(&mut self, loaded: &LoadedUnit<'_>) -> Result<()> {
        let unit = &loaded.unit;
        let service = service_name(unit, &loaded.file.name, loaded.kind);
        check_service_name(loaded, &service)?;
        self.out.units.push(Unit {
            file: loaded.file.label.clone(),
            kind: loaded.kind,
            service: service.clone(),
        });
        let ctx = Ctx {
            service,
            unit_dir: loaded.file.unit_dir().to_string_lossy().into_owned(),
            unit,
            label: loaded.file.label.clone(),
        };
        if matches!(
            loaded.kind,
            UnitKind::Container | UnitKind::Pod | UnitKind::Build
        ) {
            self.environment(&ctx, loaded.kind == UnitKind::Container);
        }
        let group = group_of(loaded.kind);
        match loaded.kind {
            UnitKind::Container => {
                if let Some((image, entry)) = unit.lookup(group, "Image") {
                    if !image.is_empty() {
                        self.image_ref(&image, entry, &ctx);
                    }
                }
                self.networks(&ctx, group);
                self.volumes(&ctx, group)?;
                self.mounts(&ctx)?;
                self.podman_args(&ctx, group);
                self.secrets(&ctx, group);
                self.ports(&ctx, group);
                self.pod(&ctx);
            }
            UnitKind::Pod => {
                self.networks(&ctx, group);
                self.volumes(&ctx, group)?;
                self.podman_args(&ctx, group);
                self.ports(&ctx, group);
            }
            UnitKind::Kube => {
                // Volumes come from the YAML, which Quadlet does not read.
                self.networks(&ctx, group);
                self.ports(&ctx, group);
            }
            UnitKind::Build => {
                self.networks(&ctx, group);
                self.volumes(&ctx, group)?;
                self.podman_args(&ctx, group);
                self.secrets(&ctx, group);
            }
            UnitKind::Volume => self.volume_unit(loaded, &ctx),
            UnitKind::Image => {
                if let Some((image, _)) = unit.lookup(group, "Image") {
                    if !image.is_empty() {
                        self.out.images.insert(image);
                    }
                }
            }
            UnitKind::Network => {}
        }
        Ok(())
    }

    /// A `.volume` of the deployment defines its volume, used or not.
    fn volume_unit(&mut self, loaded: &LoadedUnit<'_>, ctx: &Ctx<'_>) {
        let (name, entry) = volume_name(ctx.unit, &loaded.file.name);
        let vars = substitutions(&name);
        if !vars.is_empty() {
            let entry = entry.unwrap_or_else(|| Entry {
                key: "VolumeName".into(),
                value: name.clone(),
                file: loaded.file.label.clone(),
                line: 1,
            });
            self.unresolved(&entry, vars);
        } else if !is_valid_volume_name(&name) {
            self.warn(
                format!(
                    "Podman refuses the volume name {name:?}: {} will fail",
                    ctx.service
                ),
                &loaded.file.label,
                entry.map(|e| e.line),
            );
        } else {
            self.add_volume(name, Some(loaded.file.label.clone()), None);
        }
        if ctx
            .unit
            .lookup("Volume", "Driver")
            .is_some_and(|(d, _)| d == "image")
        {
            if let Some((image, entry)) = ctx.unit.lookup("Volume", "Image") {
                self.image_ref(&image, entry, ctx);
            }
        }
    }

    /// Resolve `x.volume` as Quadlet does: by file name, over the whole
    /// search path.
    fn volume_ref(&mut self, reference: &str, entry: &Entry) -> Result<Source> {
        let Some(target) = self.search.load(reference) else {
            return Err(self.missing_volume(reference, entry));
        };
        let (name, _) = volume_name(&target.unit, &target.file.name);
        let vars = substitutions(&name);
        if !vars.is_empty() {
            return Ok(Source::Unresolved(vars));
        }
        Ok(Source::Named(name, Some(target.file.label.clone())))
    }

    fn missing_volume(&self, reference: &str, entry: &Entry) -> Error {
        let message = format!(
            "{}:{}: {}={} refers to {reference}, which is neither in the deployment nor anywhere \
             on the Quadlet search path, so the name of its Podman volume cannot be known",
            entry.file, entry.line, entry.key, entry.value
        );
        let hint = if let Some((_, base)) = reference.rsplit_once('/') {
            format!(
                "Quadlet looks units up by file name only: write `{base}` (the file may be in any \
                 subdirectory)"
            )
        } else if let Some(reason) = self.search.broken_reason(reference) {
            format!("{reference} exists but Quadlet cannot read it: {reason}")
        } else {
            format!(
                "add {reference} to the deployment, or install the deployment that defines it \
                 (Quadlet will not generate the unit until it exists)"
            )
        };
        Error::user(message).with_hint(hint)
    }

    /// Quadlet's `handleStorageSource` followed by what podman and systemd
    /// make of the result.
    fn storage_source(
        &mut self,
        source: &str,
        entry: &Entry,
        ctx: &Ctx<'_>,
        check_image: bool,
    ) -> Result<Source> {
        let mut source = source.to_owned();
        if source.starts_with('.') {
            source = join_clean(&ctx.unit_dir, &source);
        }
        if source.starts_with('/') {
            return Ok(Source::Host(source));
        }
        if source.ends_with(".volume") {
            return self.volume_ref(&source, entry);
        }
        if check_image && source.ends_with(".image") {
            return Ok(match self.provided_image_of(&source, entry, ctx) {
                Some(image) => Source::Image(image),
                None => Source::Nothing,
            });
        }
        Ok(plain_source(&source))
    }

    /// The service environment and environment files of a unit.
    fn environment(&mut self, ctx: &Ctx<'_>, container: bool) {
        let u = ctx.unit_ref();
        self.out.service_envs.push(host_refs::service_env(&u));
        self.out
            .host_refs
            .extend(host_refs::env_files(&u, container));
        self.out.host_refs.extend(host_refs::exec_files(&u));
    }

    /// A mount source that is, or may expand to, a host path.
    fn host_mount(&mut self, ctx: &Ctx<'_>, source: &str, target: Option<&str>, entry: &Entry) {
        let r = host_refs::host_ref(
            &ctx.unit_ref(),
            HostRefKind::Mount,
            source.to_owned(),
            target.map(str::to_owned),
            entry,
        );
        self.out.host_refs.push(r);
    }

    fn record(&mut self, source: Source, entry: &Entry, ctx: &Ctx<'_>, mount: MountRef<'_>) {
        let user = ctx.service.as_str();
        let as_bind = mount.as_bind;
        let is_host = match &source {
            Source::Host(_) => true,
            Source::Named(..) | Source::Invalid(_) => as_bind,
            Source::Unresolved(_) => !mount.source.ends_with(".volume"),
            _ => false,
        };
        if is_host {
            let path = match &source {
                Source::Host(path) => path.as_str(),
                _ => mount.source,
            };
            self.host_mount(ctx, path, mount.target, entry);
        }
        match source {
            Source::Host(path) => {
                let vars: Vec<String> = substitutions(&path)
                    .into_iter()
                    .skip(usize::from(starts_with_path_specifier(&path)))
                    .collect();
                if !vars.is_empty() {
                    self.unresolved(entry, vars);
                }
                self.out.bind_mounts.push(Self::located(path, entry));
            }
            Source::Named(name, _) | Source::Invalid(name) if as_bind => {
                // A bind mount of a relative path, as podman reads it.
                self.out.bind_mounts.push(Self::located(name, entry));
            }
            Source::Named(name, defined_by) => self.add_volume(name, defined_by, Some(user)),
            Source::Unresolved(vars) => self.unresolved(entry, vars),
            Source::Image(image) => {
                self.out.images.insert(image);
            }
            Source::Invalid(name) => {
                let why = if name.contains('"') || name.contains('\'') {
                    " (Quadlet passes this key verbatim, quotes included: remove them)"
                } else {
                    ""
                };
                self.warn_at(
                    format!(
                        "Podman refuses the volume name {name:?} in {}={}{why}: {user} will fail",
                        entry.key, entry.value
                    ),
                    entry,
                );
            }
            Source::Nothing => {}
        }
    }

    /// `Volume=` lines (`addVolumes`).
    fn volumes(&mut self, ctx: &Ctx<'_>, group: &str) -> Result<()> {
        for entry in ctx.unit.lookup_all(group, "Volume") {
            let spec = split_volume(&entry.value);
            if spec.source.is_empty() {
                let vars = substitutions(spec.dest);
                if !vars.is_empty() && !entry.value.contains(':') {
                    // `Volume=${SPEC}`: the expansion may well be `name:/path`.
                    self.unresolved(entry, vars);
                } else {
                    self.out
                        .anonymous_volumes
                        .push(Self::located(spec.dest.to_owned(), entry));
                }
                continue;
            }
            let source = self.storage_source(spec.source, entry, ctx, false)?;
            let mount = MountRef {
                source: spec.source,
                target: Some(spec.dest),
                as_bind: false,
            };
            self.record(source, entry, ctx, mount);
        }
        Ok(())
    }

    /// `Mount=` lines (`resolveContainerMountParams`).
    fn mounts(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        for (word, entry) in ctx.unit.lookup_all_args("Container", "Mount") {
            match parse_mount(&word) {
                MountSpec::BadSyntax => self.warn_at(
                    format!(
                        "Mount={word} is not a valid comma-separated list: Quadlet will not \
                         generate {}",
                        ctx.service
                    ),
                    entry,
                ),
                MountSpec::NoType => self.warn_at(
                    format!(
                        "Mount={word} has no type=: Quadlet refuses it before Podman 5.6 and will \
                         not generate {} (add type=volume or type=bind)",
                        ctx.service
                    ),
                    entry,
                ),
                MountSpec::Other => {}
                MountSpec::WithSource {
                    source_without_value: true,
                    ..
                } => self.warn_at(
                    format!(
                        "Mount={word} has a source without a value: Quadlet will not generate {}",
                        ctx.service
                    ),
                    entry,
                ),
                MountSpec::WithSource {
                    kind,
                    source: None,
                    dest,
                    ..
                } => {
                    self.warn_at(
                        format!(
                            "Mount={word} has no source=: the Quadlet generator of Podman 5.4 \
                             crashes on it and then generates no unit at all (name a volume)"
                        ),
                        entry,
                    );
                    if kind == "volume" {
                        let value = dest.unwrap_or_else(|| word.clone());
                        self.out.anonymous_volumes.push(Self::located(value, entry));
                    }
                }
                MountSpec::WithSource {
                    kind,
                    source: Some(source),
                    dest,
                    ..
                } => {
                    let resolved = self.storage_source(&source, entry, ctx, true)?;
                    let as_bind = kind == "bind" || kind == "glob";
                    let resolved = match (kind.as_str(), resolved) {
                        ("image", Source::Named(name, _) | Source::Invalid(name)) => {
                            Source::Image(name)
                        }
                        (_, other) => other,
                    };
                    let mount = MountRef {
                        source: &source,
                        target: dest.as_deref(),
                        as_bind,
                    };
                    self.record(resolved, entry, ctx, mount);
                }
            }
        }
        Ok(())
    }

    /// `-v`, `--volume` and `--mount` given through `PodmanArgs=`: Quadlet
    /// passes them on untouched (no `x.volume` or `./` resolution), podman
    /// reads them.
    fn podman_args(&mut self, ctx: &Ctx<'_>, group: &str) {
        let words = ctx.unit.lookup_all_args(group, "PodmanArgs");
        let mut i = 0;
        while i < words.len() {
            let (word, entry) = &words[i];
            let (flag, value) = match word.as_str() {
                "-v" | "--volume" | "--mount" => {
                    i += 1;
                    match words.get(i) {
                        Some((v, _)) => (word.as_str(), v.clone()),
                        None => break,
                    }
                }
                w => {
                    if let Some(v) = w.strip_prefix("--volume=") {
                        ("-v", v.to_owned())
                    } else if let Some(v) = w.strip_prefix("--mount=") {
                        ("--mount", v.to_owned())
                    } else if let Some(v) = w.strip_prefix("-v").filter(|v| !v.is_empty()) {
                        ("-v", v.strip_prefix('=').unwrap_or(v).to_owned())
                    } else {
                        i += 1;
                        continue;
                    }
                }
            };
            i += 1;
            if flag == "--mount" {
                if let MountSpec::WithSource {
                    kind,
                    source: Some(source),
                    dest,
                    ..
                } = parse_mount(&value)
                {
                    let resolved = podman_source(&source);
                    let mount = MountRef {
                        source: &source,
                        target: dest.as_deref(),
                        as_bind: kind != "volume",
                    };
                    self.record(resolved, entry, ctx, mount);
                }
                continue;
            }
            let spec = split_volume(&value);
            if spec.source.is_empty() {
                self.out
                    .anonymous_volumes
                    .push(Self::located(spec.dest.to_owned(), entry));
            } else {
                let resolved = podman_source(spec.source);
                let mount = MountRef {
                    source: spec.source,
                    target: Some(spec.dest),
                    as_bind: false,
                };
                self.record(resolved, entry, ctx, mount);
            }
        }
    }

    fn secrets(&mut self, ctx: &Ctx<'_>, group: &str) {
        for (word, _) in ctx.unit.lookup_all_args(group, "Secret") {
            let name = word.split(',').next().unwrap_or_default();
            if !name.is_empty() {
                self.out.secrets.insert(name.to_owned());
            }
        }
    }

    fn ports(&mut self, ctx: &Ctx<'_>, group: &str) {
        for entry in ctx.unit.lookup_all(group, "PublishPort") {
            self.out.ports.insert(entry.value.clone());
        }
    }

    /// `Network=` (`addNetworks`).
    fn networks(&mut self, ctx: &Ctx<'_>, group: &str) {
        for entry in ctx.unit.lookup_all(group, "Network") {
            let (name, options) = match entry.value.split_once(':') {
                Some((n, o)) => (n, Some(o)),
                None => (entry.value.as_str(), None),
            };
            let is_network = name.ends_with(".network");
            let is_container = name.ends_with(".container");
            if !is_network && !is_container {
                let joined = if name == "container" || name == "ns" {
                    entry.value.clone()
                } else {
                    name.to_owned()
                };
                if !joined.is_empty() {
                    self.out.networks.insert(joined);
                }
                continue;
            }
            let Some(target) = self.search.load(name) else {
                self.warn_at(
                    format!(
                        "Network={}: {name} is neither in the deployment nor on the Quadlet search \
                         path; Quadlet will not generate {} until it is",
                        entry.value, ctx.service
                    ),
                    entry,
                );
                continue;
            };
            if is_network {
                self.out
                    .networks
                    .insert(network_name(&target.unit, &target.file.name));
            } else if options.is_some() {
                self.warn_at(
                    format!(
                        "Network={}: options are not allowed when joining another container's \
                         network; Quadlet will not generate {}",
                        entry.value, ctx.service
                    ),
                    entry,
                );
            } else if let Some(container) = container_name(&target.unit, &target.file.name) {
                self.out.networks.insert(format!("container:{container}"));
            } else {
                self.warn_at(
                    format!(
                        "Network={}: the container name of {name} depends on systemd specifiers; \
                         Quadlet will not generate {}",
                        entry.value, ctx.service
                    ),
                    entry,
                );
            }
        }
    }

    /// `Pod=` (`handlePod`): only checked; the pod's own `Volume=` lines are
    /// mounted by the pod's service.
    fn pod(&mut self, ctx: &Ctx<'_>) {
        let Some((pod, entry)) = ctx.unit.lookup("Container", "Pod") else {
            return;
        };
        if pod.is_empty() {
            return;
        }
        if !pod.ends_with(".pod") {
            self.warn_at(
                format!(
                    "Pod={pod} is not a Quadlet .pod unit; Quadlet will not generate {}",
                    ctx.service
                ),
                entry,
            );
        } else if self.search.load(&pod).is_none() {
            self.warn_at(
                format!(
                    "Pod={pod}: {pod} is neither in the deployment nor on the Quadlet search path; \
                     Quadlet will not generate {} until it is",
                    ctx.service
                ),
                entry,
            );
        }
    }

    /// `Image=` (`handleImageSource`): `x.image` and `x.build` resolved.
    fn image_ref(&mut self, image: &str, entry: &Entry, ctx: &Ctx<'_>) {
        if image.ends_with(".image") || image.ends_with(".build") {
            if let Some(resolved) = self.provided_image_of(image, entry, ctx) {
                self.out.images.insert(resolved);
            }
        } else {
            self.out.images.insert(image.to_owned());
        }
    }

    fn provided_image_of(
        &mut self,
        reference: &str,
        entry: &Entry,
        ctx: &Ctx<'_>,
    ) -> Option<String> {
        let Some(target) = self.search.load(reference) else {
            self.warn_at(
                format!(
                    "{}={}: {reference} is neither in the deployment nor on the Quadlet search \
                     path; Quadlet will not generate {} until it is",
                    entry.key, entry.value, ctx.service
                ),
                entry,
            );
            return None;
        };
        let image = provided_image(&target);
        if image.is_none() {
            self.warn_at(
                format!(
                    "{reference} names no image (Image= or ImageTag= missing); Quadlet will not \
                     generate {}",
                    ctx.service
                ),
                entry,
            );
        }
        image
    }
}

/// A source Quadlet passes through unchanged, as podman and systemd read
/// it: a path when it starts with `/` or `.`... (after systemd: a path
/// specifier), a name otherwise.
fn plain_source(source: &str) -> Source {
    if starts_with_path_specifier(source) {
        return Source::Host(source.to_owned());
    }
    let vars = substitutions(source);
    if !vars.is_empty() {
        return Source::Unresolved(vars);
    }
    let literal = source.replace("$$", "$").replace("%%", "%");
    if is_valid_volume_name(&literal) {
        Source::Named(literal, None)
    } else {
        Source::Invalid(literal)
    }
}

/// A `PodmanArgs=` volume source: podman's own rule (`/` or `.` is a path).
fn podman_source(source: &str) -> Source {
    if source.starts_with('/') || source.starts_with('.') {
        Source::Host(source.to_owned())
    } else {
        plain_source(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::PathBuf;

    const IMAGE: &str = "Image=localhost/busybox:latest\n";

    fn file(root: &str, rel: &str, text: &str) -> SourceFile {
        SourceFile {
            rel_path: PathBuf::from(rel),
            origin: PathBuf::from(root).join(rel),
            text: text.to_owned(),
        }
    }

    /// A deployment at /q/dep (installed there), alone on the search path
    /// /q plus `others`.
    fn run_with(files: &[(&str, &str)], others: &[(&str, &str)]) -> Result<Resolution> {
        let deployment: Vec<SourceFile> = files
            .iter()
            .map(|(rel, text)| file("/q/dep", rel, text))
            .collect();
        let mut installed: Vec<SourceFile> = files
            .iter()
            .map(|(rel, text)| file("/q", &format!("dep/{rel}"), text))
            .collect();
        installed.extend(others.iter().map(|(rel, text)| file("/q", rel, text)));
        resolve(&deployment, &installed)
    }

    fn run(files: &[(&str, &str)]) -> Resolution {
        run_with(files, &[]).unwrap()
    }

    fn container(body: &str) -> String {
        format!("[Container]\n{IMAGE}{body}")
    }

    fn names(r: &Resolution) -> Vec<&str> {
        r.volumes.iter().map(|v| v.name.as_str()).collect()
    }

    fn volume<'r>(r: &'r Resolution, name: &str) -> &'r VolumeUse {
        r.volumes
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no volume {name} in {:?}", r.volumes))
    }

    fn values(located: &[Located]) -> Vec<&str> {
        located.iter().map(|l| l.value.as_str()).collect()
    }

    #[test]
    fn services_of_every_kind() {
        let r = run(&[
            ("web.container", &container("")),
            ("data.volume", "[Volume]\n"),
            ("net.network", "[Network]\n"),
            ("grp.pod", "[Pod]\n"),
            ("app.kube", "[Kube]\nYaml=app.yaml\n"),
            ("img.image", "[Image]\nImage=localhost/busybox:latest\n"),
            (
                "bld.build",
                "[Build]\nImageTag=localhost/b:1\nSetWorkingDirectory=unit\n",
            ),
            ("named.container", &container("ServiceName=custom\n")),
            ("nv.volume", "[Volume]\nServiceName=\"vol-svc\"\n"),
        ]);
        let got: Vec<(&str, UnitKind, &str)> = r
            .units
            .iter()
            .map(|u| (u.file.as_str(), u.kind, u.service.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("app.kube", UnitKind::Kube, "app.service"),
                ("bld.build", UnitKind::Build, "bld-build.service"),
                ("data.volume", UnitKind::Volume, "data-volume.service"),
                ("grp.pod", UnitKind::Pod, "grp-pod.service"),
                ("img.image", UnitKind::Image, "img-image.service"),
                ("named.container", UnitKind::Container, "custom.service"),
                ("net.network", UnitKind::Network, "net-network.service"),
                ("nv.volume", UnitKind::Volume, "vol-svc.service"),
                ("web.container", UnitKind::Container, "web.service"),
            ]
        );
    }

    #[test]
    fn service_names_systemd_refuses_are_errors_naming_file_and_value() {
        for (file, text, named) in [
            (
                "web.container",
                container("ServiceName=../../x\n"),
                "web.container:3: ServiceName=../../x",
            ),
            (
                "web.container",
                container("ServiceName=-x\n"),
                "ServiceName=-x",
            ),
            (
                "d.volume",
                "[Volume]\nServiceName=a/b\n".to_owned(),
                "d.volume:2: ServiceName=a/b",
            ),
            ("-x.container", container(""), "-x.container: the file name"),
        ] {
            let err =
                run_with(&[(file, &text), ("ok.container", &container(""))], &[]).unwrap_err();
            assert!(err.message.contains(named), "{}", err.message);
            assert!(
                err.message.contains("not a valid systemd unit name"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn volume_units_name_their_volumes() {
        let r = run(&[
            (
                "web.container",
                &container("Volume=data.volume:/data\nVolume=named.volume:/n:ro\n"),
            ),
            ("data.volume", "[Volume]\n"),
            ("named.volume", "[Volume]\nVolumeName=\"my-data\"\n"),
            ("unused.volume", "[Volume]\n"),
        ]);
        assert_eq!(names(&r), ["my-data", "systemd-data", "systemd-unused"]);
        let data = volume(&r, "systemd-data");
        assert_eq!(data.defined_by.as_deref(), Some("data.volume"));
        assert_eq!(data.used_by, ["web.service"]);
        assert_eq!(
            volume(&r, "my-data").defined_by.as_deref(),
            Some("named.volume")
        );
        assert!(volume(&r, "systemd-unused").used_by.is_empty());
    }

    #[test]
    fn mounts_of_type_volume() {
        let r = run(&[
            (
                "web.container",
                &container(
                    "Mount=type=volume,source=data.volume,destination=/d\n\
                     Mount=type=volume,src=plain,dst=/p,ro\n\
                     Mount=\"type=volume,source=quoted,destination=/q\" type=volume,source=second,destination=/s\n\
                     Mount=type=tmpfs,destination=/tmp\n\
                     Mount=type=bind,source=./relb,destination=/b\n\
                     Mount=type=bind,src=/srv/x,destination=/x\n",
                ),
            ),
            ("data.volume", "[Volume]\nVolumeName=vn\n"),
        ]);
        assert_eq!(names(&r), ["plain", "quoted", "second", "vn"]);
        assert_eq!(values(&r.bind_mounts), ["/q/dep/relb", "/srv/x"]);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn mount_without_type_or_source_is_a_warning() {
        let r = run(&[(
            "web.container",
            &container("Mount=source=x,target=/d\nMount=type=volume,destination=/anon\n"),
        )]);
        assert!(r.volumes.is_empty());
        assert_eq!(values(&r.anonymous_volumes), ["/anon"]);
        assert_eq!(r.warnings.len(), 2);
        assert!(r.warnings.iter().any(|w| w.message.contains("no type=")));
        assert!(r.warnings.iter().any(|w| w.message.contains("crashes")));
        assert_eq!(r.warnings[0].line, Some(3));
    }

    #[test]
    fn plain_named_volumes_with_options() {
        let r = run(&[
            (
                "a.container",
                &container("Volume=data:/data:Z,ro\nVolume=other:/o:ro,Z\n"),
            ),
            ("b.container", &container("Volume=data:/d\n")),
        ]);
        assert_eq!(names(&r), ["data", "other"]);
        let data = volume(&r, "data");
        assert_eq!(data.defined_by, None);
        assert_eq!(data.used_by, ["a.service", "b.service"]);
    }

    #[test]
    fn bind_mounts_and_anonymous_volumes_are_not_volumes() {
        let r = run(&[(
            "web.container",
            &container(
                "Volume=/srv/www:/www:ro\nVolume=%h/site:/site\nVolume=./rel:/r\nVolume=.hidden:/h\n\
                 Volume=../up:/u\nVolume=/anon\nVolume=:/empty:ro\n",
            ),
        )]);
        assert!(r.volumes.is_empty());
        assert_eq!(
            values(&r.bind_mounts),
            [
                "%h/site",
                "/q/dep/.hidden",
                "/q/dep/rel",
                "/q/up",
                "/srv/www"
            ]
        );
        assert_eq!(values(&r.anonymous_volumes), ["/anon", "/empty"]);
        let www = r
            .bind_mounts
            .iter()
            .find(|b| b.value == "/srv/www")
            .unwrap();
        assert_eq!((www.file.as_str(), www.line), ("web.container", 3));
        assert!(r.unresolved.is_empty());
    }

    #[test]
    fn relative_paths_are_relative_to_the_unit_file() {
        let r = run(&[("sub/web.container", &container("Volume=./data:/d\n"))]);
        assert_eq!(values(&r.bind_mounts), ["/q/dep/sub/data"]);
    }

    #[test]
    fn pods_mount_their_own_volumes() {
        let r = run(&[
            (
                "grp.pod",
                "[Pod]\nVolume=podvol:/pv\nVolume=shared.volume:/s\nPublishPort=8080:80\n",
            ),
            ("shared.volume", "[Volume]\n"),
            ("app.container", &container("Pod=grp.pod\nVolume=own:/o\n")),
        ]);
        assert_eq!(names(&r), ["own", "podvol", "systemd-shared"]);
        assert_eq!(volume(&r, "podvol").used_by, ["grp-pod.service"]);
        assert_eq!(volume(&r, "systemd-shared").used_by, ["grp-pod.service"]);
        assert_eq!(volume(&r, "own").used_by, ["app.service"]);
        assert_eq!(r.ports, ["8080:80"]);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn kube_units_are_listed_without_volumes() {
        let r = run(&[(
            "app.kube",
            "[Kube]\nYaml=app.yaml\nPublishPort=9000:9000\nNetwork=host\n",
        )]);
        assert_eq!(r.units.len(), 1);
        assert!(r.volumes.is_empty());
        assert_eq!(r.ports, ["9000:9000"]);
        assert_eq!(r.networks, ["host"]);
    }

    #[test]
    fn build_units_mount_volumes() {
        let r = run(&[
            (
                "bld.build",
                "[Build]\nImageTag=localhost/b:1\nSetWorkingDirectory=unit\nVolume=cache.volume:/c\nSecret=tok,type=env\n",
            ),
            ("cache.volume", "[Volume]\n"),
            ("web.container", &container("").replace(IMAGE, "Image=bld.build\n")),
        ]);
        assert_eq!(volume(&r, "systemd-cache").used_by, ["bld-build.service"]);
        assert_eq!(r.images, ["localhost/b:1"]);
        assert_eq!(r.secrets, ["tok"]);
    }

    #[test]
    fn references_resolve_across_deployments() {
        let r = run_with(
            &[("web.container", &container("Volume=shared.volume:/s\n"))],
            &[("other/shared.volume", "[Volume]\nVolumeName=common\n")],
        )
        .unwrap();
        let v = volume(&r, "common");
        assert_eq!(v.defined_by.as_deref(), Some("other/shared.volume"));
        assert_eq!(v.used_by, ["web.service"]);
        // The other deployment's units are not ours.
        assert_eq!(r.units.len(), 1);
    }

    #[test]
    fn a_volume_in_a_subdirectory_is_found_by_file_name() {
        let r = run(&[
            ("web.container", &container("Volume=data.volume:/d\n")),
            ("sub/data.volume", "[Volume]\n"),
        ]);
        assert_eq!(
            volume(&r, "systemd-data").defined_by.as_deref(),
            Some("sub/data.volume")
        );
    }

    #[test]
    fn a_missing_volume_is_an_error_naming_file_and_line() {
        let e = run_with(
            &[("web.container", &container("\nVolume=gone.volume:/g\n"))],
            &[],
        )
        .unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::User);
        assert!(
            e.message
                .starts_with("web.container:4: Volume=gone.volume:/g"),
            "{}",
            e.message
        );
        assert!(e.hint.unwrap().contains("gone.volume"));

        let e = run_with(
            &[
                ("web.container", &container("Volume=sub/data.volume:/d\n")),
                ("sub/data.volume", "[Volume]\n"),
            ],
            &[],
        )
        .unwrap_err();
        assert!(e.hint.unwrap().contains("write `data.volume`"));

        let e = run_with(
            &[(
                "web.container",
                &container("Mount=type=volume,source=gone.volume,dst=/g\n"),
            )],
            &[],
        )
        .unwrap_err();
        assert!(e.message.contains("Mount="), "{}", e.message);
    }

    #[test]
    fn other_missing_references_are_warnings() {
        let r = run(&[(
            "web.container",
            &container("Network=gone.network\nPod=gone.pod\n").replace(IMAGE, "Image=gone.image\n"),
        )]);
        assert_eq!(r.warnings.len(), 3, "{:?}", r.warnings);
        assert!(r
            .warnings
            .iter()
            .all(|w| w.message.contains("will not generate web.service")));
        assert!(r.images.is_empty());
        assert!(r.networks.is_empty());
    }

    #[test]
    fn variables_and_specifiers_are_reported_never_guessed() {
        let r = run(&[
            (
                "web.container",
                &container(
                    "Volume=${UPLOAD_LOCATION}:/data\nVolume=$DB:/db\nVolume=tv-%i:/t\n\
                     Volume=${SPEC}\nVolume=/srv/${SITE}:/s\nVolume=keep:${DEST}\n\
                     Mount=type=volume,source=${M},destination=/m\n",
                ),
            ),
            ("u.volume", "[Volume]\nVolumeName=%u-data\n"),
        ]);
        assert_eq!(names(&r), ["keep"]);
        let got: Vec<(&str, Vec<&str>, usize)> = r
            .unresolved
            .iter()
            .map(|u| {
                (
                    u.key.as_str(),
                    u.variables.iter().map(String::as_str).collect(),
                    u.line,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("VolumeName", vec!["%u"], 2),
                ("Volume", vec!["UPLOAD_LOCATION"], 3),
                ("Volume", vec!["DB"], 4),
                ("Volume", vec!["%i"], 5),
                ("Volume", vec!["SPEC"], 6),
                ("Volume", vec!["SITE"], 7),
                ("Mount", vec!["M"], 9),
            ]
        );
        let first = &r.unresolved[1];
        assert_eq!(first.value, "${UPLOAD_LOCATION}:/data");
        assert_eq!(first.file, "web.container");
        assert_eq!(values(&r.bind_mounts), ["/srv/${SITE}"]);
    }

    #[test]
    fn quoted_volumes_reach_podman_with_their_quotes() {
        let r = run(&[("web.container", &container("Volume=\"a:/b\"\n"))]);
        assert!(r.volumes.is_empty());
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].message.contains("quotes"), "{:?}", r.warnings);
    }

    #[test]
    fn secrets_ports_images_networks() {
        let r = run(&[
            (
                "web.container",
                &container(
                    "Secret=db-pass,type=env,target=DB_PASSWORD\nSecret=tls\nSecret=tls,target=/t\n\
                     PublishPort=8080:80\nPublishPort=127.0.0.1:8443:443\nPublishPort=8080:80\n\
                     Network=app.network:ip=10.89.0.5\nNetwork=plain.network\nNetwork=host\n\
                     Network=db.container\nNetwork=mynet:alias=x\n",
                ),
            ),
            ("app.network", "[Network]\nNetworkName=appnet\n"),
            ("plain.network", "[Network]\n"),
            ("db.container", &container("ContainerName=db\n").replace(IMAGE, "Image=pg.image\n")),
            ("pg.image", "[Image]\nImage=docker.io/library/postgres:16\nImageTag=localhost/pg:16\n"),
        ]);
        assert_eq!(r.secrets, ["db-pass", "tls"]);
        assert_eq!(r.ports, ["127.0.0.1:8443:443", "8080:80"]);
        assert_eq!(
            r.images,
            [
                "docker.io/library/postgres:16",
                "localhost/busybox:latest",
                "localhost/pg:16"
            ]
        );
        assert_eq!(
            r.networks,
            ["appnet", "container:db", "host", "mynet", "systemd-plain"]
        );
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn drop_ins_add_and_reset_volumes() {
        let r = run(&[
            ("web.container", &container("Volume=base:/b\n")),
            (
                "web.container.d/10-more.conf",
                "[Container]\nVolume=extra:/e\n",
            ),
            (
                "web.container.d/20-reset.conf",
                "[Container]\nVolume=\nVolume=after:/a\n",
            ),
            (
                "web.container.d/30-last.conf",
                "[Container]\nVolume=last:/l\n",
            ),
        ]);
        assert_eq!(names(&r), ["after", "last"]);
        let u = r.units.iter().map(|u| u.file.as_str()).collect::<Vec<_>>();
        assert_eq!(u, ["web.container"]);
    }

    #[test]
    fn type_wide_drop_ins_outside_the_deployment_apply() {
        let r = run_with(
            &[("web.container", &container(""))],
            &[(
                "container.d/50-common.conf",
                "[Container]\nVolume=common:/c\n",
            )],
        )
        .unwrap();
        let v = volume(&r, "common");
        assert_eq!(v.used_by, ["web.service"]);
    }

    #[test]
    fn drop_in_lines_are_located_in_the_drop_in() {
        let r = run(&[
            ("web.container", &container("")),
            (
                "web.container.d/10.conf",
                "[Container]\n\nVolume=/srv:/srv\n",
            ),
        ]);
        assert_eq!(r.bind_mounts[0].file, "web.container.d/10.conf");
        assert_eq!(r.bind_mounts[0].line, 3);
    }

    #[test]
    fn podman_args_volumes_are_read_as_podman_reads_them() {
        let r = run(&[(
            "web.container",
            &container("PodmanArgs=-v pa:/pa --volume=pa2:/x -vpa3:/y --mount type=volume,src=pa4,dst=/z\nPodmanArgs=-v raw.volume:/r --volume /host:/h\n"),
        )]);
        assert_eq!(names(&r), ["pa", "pa2", "pa3", "pa4", "raw.volume"]);
        assert_eq!(values(&r.bind_mounts), ["/host"]);
    }

    #[test]
    fn a_broken_deployment_file_is_an_error() {
        let e = run_with(
            &[("web.container", "[Container]\nthis is not a pair\n")],
            &[],
        )
        .unwrap_err();
        assert!(e.message.starts_with("web.container:2:"), "{}", e.message);
    }

    #[test]
    fn output_is_sorted_and_deduplicated() {
        let r = run(&[
            (
                "b.container",
                &container("Volume=z:/z\nVolume=a:/a\nVolume=/h:/h\nVolume=/h:/h\n"),
            ),
            ("a.container", &container("Volume=z:/z2\n")),
        ]);
        assert_eq!(names(&r), ["a", "z"]);
        assert_eq!(volume(&r, "z").used_by, ["a.service", "b.service"]);
        assert_eq!(
            r.bind_mounts.len(),
            2,
            "same value, different lines: both kept"
        );
        let again = run(&[
            ("a.container", &container("Volume=z:/z2\n")),
            (
                "b.container",
                &container("Volume=z:/z\nVolume=a:/a\nVolume=/h:/h\nVolume=/h:/h\n"),
            ),
        ]);
        assert_eq!(r, again);
    }

    #[test]
    fn not_installed_deployments_resolve_on_their_own() {
        let deployment = vec![
            file(
                "/home/u/src/app",
                "web.container",
                &container("Volume=data.volume:/d\n"),
            ),
            file("/home/u/src/app", "data.volume", "[Volume]\n"),
        ];
        let r = resolve(&deployment, &[]).unwrap();
        assert_eq!(names(&r), ["systemd-data"]);
    }

    fn arbitrary_files() -> impl Strategy<Value = Vec<(String, String)>> {
        let name = prop_oneof![
            "[a-c]{1,2}\\.(container|volume|pod|network|kube|image|build)",
            "[a-c]{1,2}\\.container\\.d/[0-9]\\.conf",
            "(container|volume)\\.d/[0-9]\\.conf",
            "[a-c]\\.d/[a-c]\\.volume",
            "sub/[a-c]{1,2}\\.(container|volume|pod)",
        ];
        let line = prop_oneof![
            Just("[Container]".to_owned()),
            Just("[Volume]".to_owned()),
            Just("[Pod]".to_owned()),
            Just("[Build]".to_owned()),
            Just("[Image]".to_owned()),
            "(Volume|Mount|Network|Image|Pod|Secret|PodmanArgs|VolumeName|ServiceName|ImageTag|PublishPort)=[a-c.:/%$\\{\\}\"', =\\\\-]{0,20}(volume|pod|network|image|build|container)?",
            "\\PC{0,20}",
        ];
        let text = prop::collection::vec(line, 0..8).prop_map(|l| l.join("\n"));
        prop::collection::vec((name, text), 0..8)
    }

    proptest! {
        #[test]
        fn resolve_never_panics(files in arbitrary_files(), others in arbitrary_files()) {
            let deployment: Vec<SourceFile> =
                files.iter().map(|(rel, text)| file("/q/dep", rel, text)).collect();
            let installed: Vec<SourceFile> = others
                .iter()
                .map(|(rel, text)| file("/q", rel, text))
                .chain(files.iter().map(|(rel, text)| file("/q", &format!("dep/{rel}"), text)))
                .collect();
            let _ = resolve(&deployment, &installed);
        }

        #[test]
        fn resolve_never_panics_on_arbitrary_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..300),
            name in "[a-z]{1,3}\\.(container|volume|pod|build)",
        ) {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let deployment = vec![file("/q/dep", &name, &text)];
            let _ = resolve(&deployment, &deployment);
        }
    }
}
