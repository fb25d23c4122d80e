//! The systemd generator: at every `daemon-reload`, a drop-in calling the
//! stop hook for every hooked service of every deployment with automatic
//! backups on, and a timer for every deployment with a schedule
//! ([`super::schedule`]).
//!
//! A generator runs on every reload, before any unit starts, so it must be
//! fast, need neither podman nor the network, and never fail: whatever is
//! wrong (a broken quadlet file, a broken config) is logged to stderr, which
//! systemd passes to the journal, and skipped. It only reads files.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::deployment::{self, Deployment};
use crate::error::Result;
use crate::layout::{Layout, Scope};

use super::{boot_cleanup, schedule, stop_hook_dropin};

/// What one generator run did, for the log line and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Drop-ins written (or printed), as `(service, deployment)`.
    pub dropins: Vec<(String, String)>,
    /// Deployments with automatic backups off.
    pub disabled: Vec<String>,
    /// Timers of scheduled backups written (or printed).
    pub timers: Vec<String>,
    /// Problems logged and skipped.
    pub problems: Vec<String>,
}

/// Prefix of every line the generator logs, so the journal says who spoke.
const LOG_PREFIX: &str = "leger-backup-generator";

/// The layout the generator works on. The system generator always uses the
/// system layout; the user generator gets `HOME` from systemd, and falls
/// back to the password database when it is missing.
pub fn layout_for(scope: Scope) -> Result<Layout> {
    if scope == Scope::User && std::env::var_os("HOME").is_none_or(|h| h.is_empty()) {
        if let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::getuid()) {
            // The generator is single-threaded at this point.
            std::env::set_var("HOME", &user.dir);
        }
    }
    Layout::for_scope(scope)
}

/// Run the generator for `layout`: write drop-ins calling `binary` into
/// `out_dir` (systemd's "normal" directory), or print them to stdout when
/// `out_dir` is `None` (a manual dry run). Problems are logged and skipped;
/// only an unwritable output directory is an error.
pub fn generate(layout: &Layout, binary: &Path, out_dir: Option<&Path>) -> Result<Report> {
    let mut report = Report::default();

    let config = match Config::load(layout) {
        Ok(config) => config,
        Err(err) => {
            problem(
                &mut report,
                format!("{}; using the default settings", err.message),
            );
            // An empty text always parses: the defaults.
            Config::parse("", &layout.config_file(), layout)?
        }
    };
    let deployments = match deployment::discover(layout) {
        Ok(d) => d,
        Err(err) => {
            problem(
                &mut report,
                format!("cannot list deployments: {}", err.message),
            );
            return Ok(report);
        }
    };
    let mut planned: Vec<(String, String, String)> = Vec::new(); // service, deployment, text
    for deployment in &deployments {
        let name = &deployment.name;
        if !config.auto.enabled_for(name) {
            report.disabled.push(name.clone());
            continue;
        }
        let Some(services) = services_of(deployment, &mut report) else {
            continue;
        };
        let text = stop_hook_dropin::dropin_text(
            binary,
            name,
            layout.scope,
            config.auto.stop_timeout.value,
        );
        for service in services {
            if let Some((_, other, _)) = planned.iter().find(|(s, _, _)| *s == service) {
                problem(
                    &mut report,
                    format!("{service} belongs to deployments {other} and {name}; hooked for {other} only"),
                );
                continue;
            }
            // `enable` without a generator wrote the same drop-in into the
            // unit directory: a second one would run the hook twice.
            if user_dropin_exists(layout, &service) {
                continue;
            }
            planned.push((service, name.clone(), text.clone()));
        }
    }

    for (service, deployment, text) in planned {
        let written = match out_dir {
            Some(dir) => write_fresh(dir, &service, &text),
            None => stop_hook_dropin::dropin_path(Path::new("NORMAL_DIR"), &service).map(|path| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "# {}\n{text}", path.display());
            }),
        };
        if let Err(err) = written {
            problem(
                &mut report,
                format!("cannot write the drop-in for {service}: {}", err.message),
            );
            continue;
        }
        report.dropins.push((service, deployment));
    }
    let names: Vec<&str> = deployments.iter().map(|d| d.name.as_str()).collect();
    let units = schedule::units(&config.auto, &names, binary, layout.scope);
    write_schedules(&units, out_dir, &mut report);
    if !report.dropins.is_empty() {
        write_boot_cleanup(layout, binary, out_dir, &mut report);
    }
    Ok(report)
}

/// With stop hooks on some service, the unit that cleans up after a
/// backup the last shutdown cut off ([`boot_cleanup`]).
fn write_boot_cleanup(layout: &Layout, binary: &Path, out_dir: Option<&Path>, report: &mut Report) {
    let written = match out_dir {
        Some(dir) => boot_cleanup::write(dir, layout, binary),
        None => {
            let text = boot_cleanup::unit_text(layout, binary);
            let _ = writeln!(
                std::io::stdout().lock(),
                "# NORMAL_DIR/{}\n{text}",
                boot_cleanup::UNIT
            );
            Ok(())
        }
    };
    if let Err(err) = written {
        let message = format!("cannot write {}: {}", boot_cleanup::UNIT, err.message);
        problem(report, message);
    }
}

/// Write (or print) the timers and their service; a failure is logged and
/// leaves the drop-ins in place.
fn write_schedules(units: &[(String, String)], out_dir: Option<&Path>, report: &mut Report) {
    let written = match out_dir {
        Some(dir) => schedule::write_units(dir, units).map(drop),
        None => {
            let mut out = std::io::stdout().lock();
            for (name, text) in units {
                let _ = writeln!(out, "# NORMAL_DIR/{name}\n{text}");
            }
            Ok(())
        }
    };
    match written {
        Ok(()) => report.timers.extend(
            units
                .iter()
                .filter(|(name, _)| schedule::timer_deployment(name).is_some())
                .map(|(name, _)| name.clone()),
        ),
        Err(err) => problem(
            report,
            format!("cannot write the schedule timers: {}", err.message),
        ),
    }
}

/// Log `message` (systemd passes stderr to the journal) and keep it.
fn problem(report: &mut Report, message: String) {
    eprintln!("{LOG_PREFIX}: {message}");
    report.problems.push(message);
}

/// The hooked services of `deployment`, or `None` when its files cannot
/// even be listed. A file that cannot be read and a unit whose service
/// name systemd refuses are logged and left out; the rest are hooked.
fn services_of(deployment: &Deployment, report: &mut Report) -> Option<Vec<String>> {
    let name = &deployment.name;
    let own = match deployment.quadlet_sources_skipping() {
        Ok((own, unread)) => {
            for err in unread {
                problem(
                    report,
                    format!("deployment {name}: skipped: {}", err.message),
                );
            }
            own
        }
        Err(err) => {
            problem(
                report,
                format!("deployment {name}: skipped: {}", err.message),
            );
            return None;
        }
    };
    // Each deployment is resolved on its own files. Service names only
    // depend on them (file names, `ServiceName=`, own drop-ins); the whole
    // search path would make the run quadratic in the number of deployments
    // (the resolver reads all of it on every call) for nothing but rare
    // cases, where an extra drop-in is harmless: one for a unit Quadlet
    // skips applies to no service.
    let services = stop_hook_dropin::hooked_services(&own, &[]);
    if let Some(why) = &services.fallback {
        problem(
            report,
            format!(
                "deployment {name}: quadlet files not resolved ({why}); services taken from \
                 each file alone"
            ),
        );
    }
    for refused in services.refused {
        problem(report, format!("deployment {name}: {refused}"));
    }
    Some(services.names)
}

/// Write a drop-in into the generator's output directory, which systemd
/// empties before every run: no comparison, no temporary file.
fn write_fresh(dir: &Path, service: &str, text: &str) -> Result<()> {
    let path = stop_hook_dropin::dropin_path(dir, service)?;
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent)?;
    }
    fs_err::write(&path, text)?;
    Ok(())
}

fn user_dropin_exists(layout: &Layout, service: &str) -> bool {
    let Ok(path) = stop_hook_dropin::dropin_path(&layout.systemd_unit_dir, service) else {
        return false;
    };
    stop_hook_dropin::read_dropin(&path)
        .is_ok_and(|t| stop_hook_dropin::dropin_deployment(&t).is_some())
}

/// The generator's entry point: never fails a reload. Every error and even
/// a panic is logged and turned into success.
pub fn run_never_failing(scope: Scope, normal_dir: Option<PathBuf>) {
    let result = std::panic::catch_unwind(|| -> Result<Report> {
        let layout = layout_for(scope)?;
        let binary = stop_hook_dropin::current_binary()?;
        generate(&layout, &binary, normal_dir.as_deref())
    });
    match result {
        Ok(Ok(report)) => {
            if normal_dir.is_none() {
                eprintln!(
                    "{LOG_PREFIX}: dry run (no output directory given): {} drop-in(s) shown",
                    report.dropins.len()
                );
            }
        }
        Ok(Err(err)) => eprintln!("{LOG_PREFIX}: {}; no drop-ins written", err.message),
        Err(_) => eprintln!("{LOG_PREFIX}: internal error (panic); no drop-ins written"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Scope;

    fn layout(home: &Path) -> Layout {
        Layout::user_at(home)
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn writes_dropins_for_enabled_deployments_only() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let l = layout(home);
        write(
            &l.quadlet_dir.join("web/web.container"),
            "[Container]\nImage=x\nVolume=data.volume:/d\n",
        );
        write(&l.quadlet_dir.join("web/data.volume"), "[Volume]\n");
        write(
            &l.quadlet_dir.join("off/off.container"),
            "[Container]\nImage=x\n",
        );
        write(
            &l.config_file(),
            "leger: {x: 1}\nauto:\n  stop_timeout: 5m\n  deployments:\n    off: {enabled: false}\n",
        );
        let out = home.join("gen");
        let report = generate(&l, Path::new("/usr/bin/leger-backup"), Some(&out)).unwrap();
        assert_eq!(
            report.dropins,
            [("web.service".to_owned(), "web".to_owned())]
        );
        assert_eq!(report.disabled, ["off"]);
        let text = std::fs::read_to_string(out.join("web.service.d/50-leger-backup.conf")).unwrap();
        assert!(text.contains("--deployment web --unit %n"));
        assert!(text.contains("TimeoutStopSec=300"));
        assert!(!out.join("data-volume.service.d").exists());
        assert!(!out.join("off.service.d").exists());
    }

    #[test]
    fn broken_config_and_files_do_not_fail() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let l = layout(home);
        write(&l.quadlet_dir.join("web/web.container"), "garbage\n[[[\n");
        write(&l.config_file(), "auto:\n  enabld: true\n");
        let out = home.join("gen");
        let report = generate(&l, Path::new("/b"), Some(&out)).unwrap();
        assert!(!report.problems.is_empty());
        assert!(report.problems[0].contains("default settings"));
        // Defaults: enabled; the file name still gives the service.
        assert!(out.join("web.service.d/50-leger-backup.conf").exists());
    }

    #[test]
    fn user_dropin_takes_precedence() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let l = layout(home);
        write(
            &l.quadlet_dir.join("web/web.container"),
            "[Container]\nImage=x\n",
        );
        let text = stop_hook_dropin::dropin_text(
            Path::new("/b"),
            "web",
            Scope::User,
            crate::config::Seconds(1),
        );
        stop_hook_dropin::write_dropin(&l.systemd_unit_dir, "web.service", &text).unwrap();
        let out = home.join("gen");
        let report = generate(&l, Path::new("/b"), Some(&out)).unwrap();
        assert!(report.dropins.is_empty());
    }

    #[test]
    fn writes_timers_for_scheduled_deployments() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let l = layout(home);
        for name in ["db", "web", "off"] {
            write(
                &l.quadlet_dir.join(format!("{name}/{name}.container")),
                "[Container]\nImage=x\n",
            );
        }
        write(
            &l.config_file(),
            "auto:\n  schedule: daily\n  deployments:\n    db: {schedule: \"*:*:0/5\", mode: dump, before: [\"true\"]}\n    off: {enabled: false}\n",
        );
        let out = home.join("gen");
        let report = generate(&l, Path::new("/usr/bin/leger-backup"), Some(&out)).unwrap();
        assert_eq!(
            report.timers,
            [
                "leger-backup-scheduled@db.timer",
                "leger-backup-scheduled@web.timer"
            ]
        );
        let timer = std::fs::read_to_string(out.join("leger-backup-scheduled@db.timer")).unwrap();
        assert!(timer.contains("OnCalendar=*:*:0/5\n"), "{timer}");
        let web = std::fs::read_to_string(out.join("leger-backup-scheduled@web.timer")).unwrap();
        assert!(web.contains("OnCalendar=daily\n"), "{web}");
        assert!(out
            .join("timers.target.wants/leger-backup-scheduled@db.timer")
            .exists());
        let service = std::fs::read_to_string(out.join(schedule::SERVICE)).unwrap();
        assert!(service.contains("ExecStart=/usr/bin/leger-backup scheduled %i"));
        assert!(!out.join("leger-backup-scheduled@off.timer").exists());
    }

    #[test]
    fn a_bad_schedule_falls_back_to_defaults_without_timers() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        write(
            &l.quadlet_dir.join("web/web.container"),
            "[Container]\nImage=x\n",
        );
        write(&l.config_file(), "auto:\n  schedule: \"Sun 25:00\"\n");
        let out = tmp.path().join("gen");
        let report = generate(&l, Path::new("/b"), Some(&out)).unwrap();
        assert!(
            report.problems[0].contains("config.yaml:2:"),
            "{:?}",
            report.problems
        );
        assert!(report.timers.is_empty());
        assert!(out.join("web.service.d/50-leger-backup.conf").exists());
    }

    #[test]
    fn no_deployments_no_output() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        let out = tmp.path().join("gen");
        let report = generate(&l, Path::new("/b"), Some(&out)).unwrap();
        assert_eq!(report, Report::default());
        assert!(!out.exists());
    }
}
