//! Completions and the man page, generated from the same clap definition as `--help`.

use clap::{Command, CommandFactory};

use super::Cli;
use crate::error::Result;
use crate::ui;

/// Print completions for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut script = Vec::new();
    let mut command = public_command();
    clap_complete::generate(shell, &mut command, "leger-backup", &mut script);
    ui::write_stdout(&script)
}

/// The command tree without its hidden subcommands (the entry points of
/// the stop hook, the leger hooks, the generator and `volume-tar`).
/// `--help` and the man page leave hidden subcommands out by themselves;
/// clap_complete's generators do not (nor the `help` subcommand's list),
/// so completions are made from this copy: the same name, version, global
/// options and visible subcommands (what completions use), and nothing a
/// user should type.
fn public_command() -> Command {
    let full = Cli::command();
    // The same name and version as `#[command(name, version)]` give `Cli`.
    Command::new("leger-backup")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// Print the man page (roff) on stdout.
pub fn man() -> Result<()> {
    let page = clap_mangen::Man::new(Cli::command());
    let mut roff = Vec::new();
    page.render(&mut roff)?;
    ui::write_stdout(&roff)
}
