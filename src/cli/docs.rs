//! Completions and the man page, generated from the same clap definition as `--help`.

use clap::CommandFactory;

use super::Cli;
use crate::error::Result;
use crate::ui;

/// Print completions for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "leger-backup", &mut script);
    ui::write_stdout(&script)
}

/// Print the man page (roff) on stdout.
pub fn man() -> Result<()> {
    let page = clap_mangen::Man::new(Cli::command());
    let mut roff = Vec::new();
    page.render(&mut roff)?;
    ui::write_stdout(&roff)
}
