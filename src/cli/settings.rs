//! `config show`.

use super::args::ConfigCommand;
use super::GlobalArgs;
use crate::config::{Config, Setting, Source};
use crate::error::Result;
use crate::ui;

/// Run a `config` subcommand.
pub fn run(global: &GlobalArgs, command: ConfigCommand) -> Result<()> {
    let layout = super::layout(global)?;
    let config = Config::load(&layout)?;
    match command {
        ConfigCommand::Show if global.json => ui::print_json(&config),
        ConfigCommand::Show => print_human(&config),
    }
}

fn print_human(config: &Config) -> Result<()> {
    let state = if config.file_exists {
        ""
    } else {
        " (not present: all defaults)"
    };
    ui::print_text(&format!("# {}{state}\n", config.file.display()))?;
    let b = &config.backup;
    let a = &config.auto;
    let rows: Vec<(&str, String, Source)> = vec![
        row("backup.dir", &b.dir, |v| v.display().to_string()),
        row("backup.compression", &b.compression, |v| {
            format!("{v:?}").to_lowercase()
        }),
        row("backup.level", &b.level, i32::to_string),
        row("backup.threads", &b.threads, u32::to_string),
        row("backup.keep_manual", &b.keep_manual, usize::to_string),
        row("backup.keep_automatic", &b.keep_automatic, usize::to_string),
        row("backup.keep_scheduled", &b.keep_scheduled, usize::to_string),
        row(
            "backup.keep_before_change",
            &b.keep_before_change,
            usize::to_string,
        ),
        row("backup.auto_prune", &b.auto_prune, bool::to_string),
        row("backup.stop_services", &b.stop_services, bool::to_string),
        row(
            "backup.start_timeout",
            &b.start_timeout,
            ToString::to_string,
        ),
        row("backup.bind_mounts", &b.bind_mounts, |v| {
            format!("{v:?}").to_lowercase()
        }),
        row("auto.enabled", &a.enabled, bool::to_string),
        row("auto.min_interval", &a.min_interval, ToString::to_string),
        row(
            "auto.coalesce_seconds",
            &a.coalesce_seconds,
            ToString::to_string,
        ),
        row("auto.on_shutdown", &a.on_shutdown, bool::to_string),
        row("auto.stop_timeout", &a.stop_timeout, ToString::to_string),
        row("auto.live_hooks", &a.live_hooks, bool::to_string),
        row("auto.schedule", &a.schedule, |s| match s {
            crate::auto::schedule::Schedule::Off => "off".to_owned(),
            crate::auto::schedule::Schedule::At(c) => c.as_str().to_owned(),
        }),
        row(
            "auto.randomized_delay",
            &a.randomized_delay,
            ToString::to_string,
        ),
    ];
    let mut table = ui::table(&["SETTING", "VALUE", "SOURCE"]);
    for (key, value, source) in rows {
        table.add_row(vec![
            key.to_owned(),
            value,
            format!("{source:?}").to_lowercase(),
        ]);
    }
    for (name, d) in &b.deployments {
        for (key, globs) in [("include", &d.include), ("exclude", &d.exclude)] {
            if !globs.is_empty() {
                let texts: Vec<&str> = globs.iter().map(|g| g.0.as_str()).collect();
                table.add_row(vec![
                    format!("backup.deployments.{name}.{key}"),
                    texts.join(", "),
                    "file".into(),
                ]);
            }
        }
    }
    table.add_row(vec![
        "backup.targets".to_owned(),
        b.targets.value.join(", "),
        format!("{:?}", b.targets.source).to_lowercase(),
    ]);
    for (name, r) in &b.repositories {
        // Never a secret: the URL redacted, the password by its source only.
        let password = match &r.password {
            crate::repository::PasswordSource::File(f) => format!("file {}", f.display()),
            crate::repository::PasswordSource::Command(_) => "command".to_owned(),
        };
        let mut value = format!("{} (password: {password}", r.display_url());
        if let Some(env) = &r.env_file {
            value.push_str(&format!(", env file {}", env.display()));
        }
        for (key, keep) in [
            ("keep_manual", r.keep_manual),
            ("keep_automatic", r.keep_automatic),
        ] {
            if let Some(n) = keep {
                value.push_str(&format!(", {key} {n}"));
            }
        }
        value.push(')');
        table.add_row(vec![
            format!("backup.repositories.{name}"),
            value,
            "file".into(),
        ]);
    }
    for (key, value) in b.notify.rows() {
        table.add_row(vec![key, value, "file".into()]);
    }
    for (name, d) in &a.deployments {
        if let Some(enabled) = d.enabled {
            table.add_row(vec![
                format!("auto.deployments.{name}.enabled"),
                enabled.to_string(),
                "file".into(),
            ]);
        }
    }
    ui::print_table(&table)
}

fn row<'a, T>(
    key: &'a str,
    s: &Setting<T>,
    show: impl Fn(&T) -> String,
) -> (&'a str, String, Source) {
    (key, show(&s.value), s.source)
}
