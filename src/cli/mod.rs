//! The command line: one clap definition serves `--help`, the man page and
//! shell completions. Each command lives in its own module and returns a
//! [`Result`]; [`main`] renders errors and maps their kind to the exit code.

mod args;
mod create;
mod delete;
mod disable;
mod docs;
mod enable;
mod generator;
mod info;
mod leger_hook;
mod list;
mod plan;
mod prune;
mod recover;
mod repo;
mod restore;
mod settings;
mod stage;
mod status;
mod stop_hook;
mod sync;
mod tree_write;
mod verify;
mod volume_tar;

pub use args::{Cli, Command, GlobalArgs};

use std::process::ExitCode;

use clap::Parser;

use crate::error::Result;
use crate::layout::Layout;
use crate::ui;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(args_with_generator_dispatch()) {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout (exit 0) and usage errors to
            // stderr with exit code 2.
            let _ = err.print();
            return ExitCode::from(err.exit_code().clamp(0, 255) as u8);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            ui::print_error(&err);
            ExitCode::from(err.kind.exit_code())
        }
    }
}

/// The command line, with the systemd generator entered through its
/// argv[0]: systemd runs `leger-backup-user-generator` (a symlink to this
/// binary) with three directories, which becomes `generator DIR DIR DIR`.
fn args_with_generator_dispatch() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    if invoked_as.ends_with("-generator") {
        let mut rewritten = vec!["leger-backup".into()];
        if invoked_as.contains("system") {
            rewritten.push("--system".into());
        }
        rewritten.push("generator".into());
        rewritten.extend(args.drain(1..));
        return rewritten;
    }
    args
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Plan(args) => plan::run(&global, args),
        Command::Config(args) => settings::run(&global, args),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man => docs::man(),
        Command::Create(args) => create::run(&global, args),
        Command::List(args) => list::run(&global, args),
        Command::Info(args) => info::run(&global, args),
        Command::Verify(args) => verify::run(&global, args),
        Command::Restore(args) => restore::run(&global, args),
        Command::Delete(args) => delete::run(&global, args),
        Command::Prune(args) => prune::run(&global, args),
        Command::Enable(args) => enable::run(&global, args),
        Command::Disable(args) => disable::run(&global, args),
        Command::Status => status::run(&global),
        Command::Recover(args) => recover::run(&global, args),
        Command::StopHook(args) => stop_hook::run(&global, args),
        Command::LegerHook(args) => leger_hook::run(&global, args),
        Command::Cleanup => crate::auto::boot_cleanup::run(global.scope()),
        Command::Scheduled { deployment } => {
            crate::auto::scheduled::run(global.scope(), &deployment)
        }
        Command::Generator(args) => generator::run(&global, args),
        Command::VolumeTar(args) => volume_tar::run(args),
        Command::TreeWrite(args) => tree_write::run(args),
        Command::Repo(args) => repo::run(&global, args),
        Command::Sync(args) => sync::run(&global, args),
        Command::Stage(args) => stage::run(args),
    }
}

/// The layout for the scope chosen on the command line.
pub(crate) fn layout(global: &GlobalArgs) -> Result<Layout> {
    Layout::for_scope(global.scope())
}
