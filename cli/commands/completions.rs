//! `snapctl completions SHELL`: a completion script on stdout; needs no server.

use clap::CommandFactory;

use crate::args::Cli;
use crate::exit::CliError;

pub fn run(shell: clap_complete::Shell) -> Result<(), CliError> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "snapctl", &mut script);
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, &script)?;
    Ok(())
}
