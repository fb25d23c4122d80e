//! `enable` and `disable`: turn automatic backups on or off for one
//! deployment or all of them, through whichever mechanism this machine has.
//!
//! - With the generator installed (root installed it), the generator
//!   decides from the config at every reload, so the config is flipped
//!   (`auto.deployments.NAME.enabled`, or `auto.enabled` for `--all`) and
//!   the manager reloaded.
//! - Without it (a user without root), the same drop-ins the generator
//!   would write are written into the user's unit directory and the manager
//!   reloaded; `disable` removes them. If the config turns the deployment
//!   off, `enable` turns it on there too, since the stop hook obeys it.
//! - Either way the timers of scheduled backups ([`super::schedule`]) are
//!   started after the reload (`enable`) or stopped (`disable`); without
//!   the generator `enable` writes them and `disable` removes them.

use std::path::PathBuf;

use crate::config::Config;
use crate::deployment::{self, Deployment};
use crate::error::{Error, Result};
use crate::layout::{Layout, Scope};
use crate::systemd::{ServiceManager, Systemctl};
use crate::ui;

use super::{config_edit, installed_generator, schedule, stop_hook_dropin};

/// Which deployments a command is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One, by name.
    One(String),
    /// Every installed deployment (and, for `disable`, drop-ins left by
    /// deployments that are gone).
    All,
}

/// What was changed, for the summary and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Config keys set, as `auto.deployments.web.enabled = true`.
    pub config: Vec<String>,
    /// Drop-in files written.
    pub written: Vec<PathBuf>,
    /// Drop-in files removed.
    pub removed: Vec<PathBuf>,
    /// Units left without a drop-in, one message each naming the file
    /// (a service name systemd refuses, a file that cannot be read).
    pub refused: Vec<String>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.config.is_empty() && self.written.is_empty() && self.removed.is_empty()
    }
}

/// Turn automatic backups on (`on`) or off for `selection` in `scope`,
/// then reload the manager. A failed reload is a warning: the change is
/// made and applies at the next reload.
pub fn switch(scope: Scope, selection: &Selection, on: bool) -> Result<Changes> {
    let layout = Layout::for_scope(scope)?;
    let config = Config::load(&layout)?;
    let deployments = match selection {
        Selection::One(name) => vec![deployment::find(&layout, name)?],
        Selection::All => deployment::discover(&layout)?,
    };
    let generator = installed_generator(scope);
    let binary = stop_hook_dropin::current_binary()?;
    let changes = apply(
        &layout,
        &config,
        &deployments,
        selection,
        on,
        generator.is_some(),
        &binary,
    )?;

    let what = if on { "on" } else { "off" };
    let names = match selection {
        Selection::One(name) => name.clone(),
        Selection::All => "all deployments".to_owned(),
    };
    let how = match &generator {
        Some(path) => format!("through the generator ({})", path.display()),
        None => format!("through drop-ins in {}", layout.systemd_unit_dir.display()),
    };
    for key in &changes.config {
        ui::note(format!("set {key} in {}", layout.config_file().display()));
    }
    for path in &changes.written {
        ui::note(format!("wrote {}", path.display()));
    }
    for path in &changes.removed {
        ui::note(format!("removed {}", path.display()));
    }
    for refused in &changes.refused {
        ui::warn(refused);
    }
    let systemctl = Systemctl::new(scope);
    let timers = selected_timers(&layout, &systemctl, &deployments, on);
    if changes.is_empty() && timers.is_empty() {
        ui::note(format!(
            "automatic backups already {what} for {names} ({how})"
        ));
        return refused_units(changes);
    }
    if !on {
        switch_timers(&systemctl, &timers, on);
    }
    match systemctl.daemon_reload() {
        Ok(()) => ui::note(format!("automatic backups {what} for {names} ({how})")),
        Err(err) => ui::warn(format!(
            "automatic backups {what} for {names} ({how}), but `{} daemon-reload` failed: {}; \
             the change applies at the next reload",
            scope.systemctl_words(),
            err.message
        )),
    }
    if on {
        switch_timers(&systemctl, &timers, on);
    }
    if deployments.is_empty() && on {
        let when = if generator.is_some() {
            "at every reload".to_owned()
        } else {
            format!(
                "by running `leger-backup{} enable` for them",
                scope.cli_flag()
            )
        };
        ui::note(format!(
            "no deployments are installed yet; new ones are covered {when}"
        ));
    }
    refused_units(changes)
}

/// The timers of `deployments` to start (`on`: those with a schedule in
/// the config as it is now) or to stop (`off`: those running).
fn selected_timers(
    layout: &Layout,
    systemctl: &Systemctl,
    deployments: &[Deployment],
    on: bool,
) -> Vec<String> {
    if on {
        let Ok(config) = Config::load(layout) else {
            return Vec::new();
        };
        return deployments
            .iter()
            .filter(|d| config.auto.schedule_for(&d.name).is_some())
            .map(|d| schedule::timer_name(&d.name))
            .collect();
    }
    let all: Vec<String> = deployments
        .iter()
        .map(|d| schedule::timer_name(&d.name))
        .collect();
    let states = systemctl.active_states(&all).unwrap_or_default();
    all.into_iter()
        .zip(states)
        .filter(|(_, state)| state != "inactive")
        .map(|(timer, _)| timer)
        .collect()
}

/// Start or stop the timers; a failure is a warning (the next reload or
/// login starts them, since `timers.target` wants them).
fn switch_timers(systemctl: &Systemctl, timers: &[String], on: bool) {
    if timers.is_empty() {
        return;
    }
    let result = if on {
        systemctl.start(timers)
    } else {
        systemctl.stop(timers)
    };
    match result {
        Ok(()) if on => ui::note(format!("scheduled backups: started {}", timers.join(", "))),
        Ok(()) => {}
        Err(err) => ui::warn(format!(
            "cannot {} {}: {}",
            if on { "start" } else { "stop" },
            timers.join(", "),
            err.message
        )),
    }
}

/// The changes, or an error when some unit was left without its drop-in
/// (each was named in a warning): the command did what it could, but the
/// user must fix those files.
fn refused_units(changes: Changes) -> Result<Changes> {
    match changes.refused.len() {
        0 => Ok(changes),
        n => Err(Error::user(format!(
            "{n} unit(s) got no automatic backups: see the warnings above"
        ))
        .with_hint("fix the files named there, then run the command again")),
    }
}

/// The changes themselves, with the generator's presence given (tests).
pub fn apply(
    layout: &Layout,
    config: &Config,
    deployments: &[Deployment],
    selection: &Selection,
    on: bool,
    generator: bool,
    binary: &std::path::Path,
) -> Result<Changes> {
    let mut changes = Changes::default();
    let file = layout.config_file();
    let set = |changes: &mut Changes, key: &[&str], value: bool| -> Result<()> {
        config_edit::set_bool_in_file(&file, key, value, layout.scope)?;
        changes.config.push(format!("{} = {value}", key.join(".")));
        Ok(())
    };

    // The config: the switch itself with the generator; without it, only
    // when it would make the stop hook skip a deployment being enabled.
    match selection {
        Selection::All if generator || on => {
            if config.auto.enabled.value != on {
                set(&mut changes, &["auto", "enabled"], on)?;
            }
            for (name, entry) in &config.auto.deployments {
                if entry.enabled == Some(!on) {
                    set(&mut changes, &["auto", "deployments", name, "enabled"], on)?;
                }
            }
        }
        Selection::One(name) if (generator || on) && config.auto.enabled_for(name) != on => {
            set(&mut changes, &["auto", "deployments", name, "enabled"], on)?;
        }
        _ => {}
    }

    let unit_dir = &layout.systemd_unit_dir;
    if !generator {
        changes_to_timers(
            layout,
            config,
            deployments,
            selection,
            on,
            binary,
            &mut changes,
        )?;
    }
    if on && !generator {
        for deployment in deployments {
            let services = stop_hook_dropin::deployment_services(deployment, layout)?;
            if let Some(why) = &services.fallback {
                ui::warn(format!(
                    "{}: quadlet files not resolved ({why}); services taken from each file alone",
                    deployment.name
                ));
            }
            for refused in &services.refused {
                changes
                    .refused
                    .push(format!("{}: {refused}", deployment.name));
            }
            if services.names.is_empty() {
                ui::warn(format!(
                    "{} has no .container, .pod or .kube unit: nothing to hook",
                    deployment.name
                ));
            }
            let text = stop_hook_dropin::dropin_text(
                binary,
                &deployment.name,
                layout.scope,
                config.auto.stop_timeout.value,
            );
            for service in &services.names {
                if stop_hook_dropin::write_dropin(unit_dir, service, &text)? {
                    changes
                        .written
                        .push(stop_hook_dropin::dropin_path(unit_dir, service)?);
                }
            }
        }
    }
    if !on {
        // Drop-ins of ours for the selected deployments, wherever they came
        // from; with --all also those of deployments that are gone.
        for found in stop_hook_dropin::find_dropins(unit_dir)? {
            let selected = match selection {
                Selection::All => true,
                Selection::One(name) => found.deployment == *name,
            };
            if selected && stop_hook_dropin::remove_dropin(unit_dir, &found.service)? {
                changes.removed.push(found.path);
            }
        }
    }
    Ok(changes)
}

/// Without the generator: write the timers of the selected deployments
/// that have a schedule (`on`; the config is read again when `apply`
/// changed it) and remove the others' (`off`: all of the selection's,
/// with `--all` those of deployments that are gone too).
fn changes_to_timers(
    layout: &Layout,
    config: &Config,
    deployments: &[Deployment],
    selection: &Selection,
    on: bool,
    binary: &std::path::Path,
    changes: &mut Changes,
) -> Result<()> {
    let dir = &layout.systemd_unit_dir;
    let reread;
    let config = if changes.config.is_empty() {
        config
    } else {
        reread = Config::load(layout)?;
        &reread
    };
    let mut stale: Vec<String> = deployments.iter().map(|d| d.name.clone()).collect();
    if on {
        let names: Vec<&str> = deployments.iter().map(|d| d.name.as_str()).collect();
        let units = schedule::units(&config.auto, &names, binary, layout.scope);
        changes.written.extend(schedule::write_units(dir, &units)?);
        stale.retain(|d| config.auto.schedule_for(d).is_none());
    } else if *selection == Selection::All {
        stale.extend(schedule::find_timers(dir).into_iter().map(|(d, _)| d));
    }
    for deployment in stale {
        changes
            .removed
            .extend(schedule::remove_units(dir, &deployment)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn layout(home: &Path) -> Layout {
        Layout::user_at(home)
    }

    fn setup(home: &Path, config: &str) -> (Layout, Config, Vec<Deployment>) {
        let l = layout(home);
        for (rel, text) in [
            ("web/web.container", "[Container]\nImage=x\n"),
            ("web/db.container", "[Container]\nImage=x\n"),
            ("web/data.volume", "[Volume]\n"),
            ("other/other.container", "[Container]\nImage=x\n"),
        ] {
            let path = l.quadlet_dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::create_dir_all(&l.leger_config_dir).unwrap();
        std::fs::write(l.config_file(), config).unwrap();
        let c = Config::load(&l).unwrap();
        let d = deployment::discover(&l).unwrap();
        (l, c, d)
    }

    fn only(deployments: &[Deployment], name: &str) -> Vec<Deployment> {
        deployments
            .iter()
            .filter(|d| d.name == name)
            .cloned()
            .collect()
    }

    #[test]
    fn dropins_without_generator() {
        let tmp = tempfile::tempdir().unwrap();
        let (l, c, d) = setup(tmp.path(), "leger: 1\n");
        let web = Selection::One("web".into());
        let bin = Path::new("/usr/bin/leger-backup");
        let ch = apply(&l, &c, &only(&d, "web"), &web, true, false, bin).unwrap();
        assert!(ch.config.is_empty());
        assert_eq!(
            ch.written,
            [
                stop_hook_dropin::dropin_path(&l.systemd_unit_dir, "db.service").unwrap(),
                stop_hook_dropin::dropin_path(&l.systemd_unit_dir, "web.service").unwrap(),
            ]
        );
        // Again: nothing to do.
        assert_eq!(
            apply(&l, &c, &only(&d, "web"), &web, true, false, bin).unwrap(),
            Changes::default()
        );
        apply(&l, &c, &d, &Selection::All, true, false, bin).unwrap();
        let ch = apply(&l, &c, &only(&d, "web"), &web, false, false, bin).unwrap();
        assert_eq!(ch.removed.len(), 2);
        assert!(
            stop_hook_dropin::dropin_path(&l.systemd_unit_dir, "other.service")
                .unwrap()
                .exists()
        );
        let ch = apply(&l, &c, &[], &Selection::All, false, false, bin).unwrap();
        assert_eq!(ch.removed.len(), 1, "drop-ins of deployments gone go too");
        assert_eq!(
            std::fs::read_to_string(l.config_file()).unwrap(),
            "leger: 1\n"
        );
    }

    #[test]
    fn enabling_a_deployment_the_config_turns_off_fixes_the_config() {
        let tmp = tempfile::tempdir().unwrap();
        let (l, c, d) = setup(
            tmp.path(),
            "auto:\n  deployments:\n    web:\n      enabled: false\n",
        );
        let ch = apply(
            &l,
            &c,
            &only(&d, "web"),
            &Selection::One("web".into()),
            true,
            false,
            Path::new("/b"),
        )
        .unwrap();
        assert_eq!(ch.config, ["auto.deployments.web.enabled = true"]);
        assert_eq!(ch.written.len(), 2);
    }

    #[test]
    fn timers_without_generator() {
        let tmp = tempfile::tempdir().unwrap();
        let (l, c, d) = setup(
            tmp.path(),
            "auto:\n  deployments:\n    web:\n      enabled: false\n      schedule: daily\n",
        );
        let bin = Path::new("/b");
        let web = Selection::One("web".into());
        let timer = l.systemd_unit_dir.join("leger-backup-scheduled@web.timer");
        let ch = apply(&l, &c, &only(&d, "web"), &web, true, false, bin).unwrap();
        assert!(ch.written.contains(&timer), "{:?}", ch.written);
        assert!(l.systemd_unit_dir.join(schedule::SERVICE).exists());
        assert!(!l
            .systemd_unit_dir
            .join("leger-backup-scheduled@other.timer")
            .exists());
        let c = Config::load(&l).unwrap();
        let ch = apply(&l, &c, &only(&d, "web"), &web, false, false, bin).unwrap();
        assert!(ch.removed.contains(&timer), "{:?}", ch.removed);
        assert!(!timer.exists());
        assert!(!l.systemd_unit_dir.join(schedule::SERVICE).exists());
    }

    #[test]
    fn generator_flips_the_config_only() {
        let tmp = tempfile::tempdir().unwrap();
        let (l, c, d) = setup(tmp.path(), "# mine\nleger: 1\n");
        let web = Selection::One("web".into());
        let ch = apply(&l, &c, &only(&d, "web"), &web, false, true, Path::new("/b")).unwrap();
        assert_eq!(ch.config, ["auto.deployments.web.enabled = false"]);
        assert!(ch.written.is_empty());
        assert_eq!(
            std::fs::read_to_string(l.config_file()).unwrap(),
            "# mine\nleger: 1\nauto:\n  deployments:\n    web:\n      enabled: false\n"
        );
        let c = Config::load(&l).unwrap();
        assert!(!c.auto.enabled_for("web"));
        // Already off: no change.
        let ch = apply(&l, &c, &only(&d, "web"), &web, false, true, Path::new("/b")).unwrap();
        assert!(ch.is_empty());
        // --all on: the switch and the override both.
        let ch = apply(&l, &c, &d, &Selection::All, true, true, Path::new("/b")).unwrap();
        assert_eq!(ch.config, ["auto.deployments.web.enabled = true"]);
        let c = Config::load(&l).unwrap();
        let ch = apply(&l, &c, &d, &Selection::All, false, true, Path::new("/b")).unwrap();
        assert_eq!(
            ch.config,
            [
                "auto.enabled = false",
                "auto.deployments.web.enabled = false"
            ]
        );
        let c = Config::load(&l).unwrap();
        assert!(!c.auto.enabled_for("web") && !c.auto.enabled_for("other"));
    }
}
