//! `snapctl`: a thin, friendly client of the relay's gRPC control API (issue 4).
//!
//! Tables for people on stdout, `--json` for scripts, errors on stderr as
//! `snapctl: error: ...`, and exit codes that mean something (see [`exit::Exit`]).

mod args;
mod client;
mod commands;
mod exit;
mod output;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command, ConfigCommand};
use exit::{CliError, Exit};
use output::Output;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap exits with 2 on usage errors, 0 for --help/--version.
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => Exit::Ok.into(),
        Err(CliError::BrokenPipe) => Exit::Ok.into(),
        Err(err) => {
            eprintln!("snapctl: error: {err}");
            err.exit().into()
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let out = Output::new(cli.global.json);
    let global = &cli.global;
    match cli.command {
        Command::Completions { shell } => commands::completions::run(shell),
        Command::Health => commands::health::run(&client::connect(global).await?, &out).await,
        command => {
            let channel = client::connect(global).await?;
            let mut control = client::control(channel, global)?;
            match command {
                Command::Stats(stats) => commands::stats::run(&mut control, &out, &stats).await,
                Command::Sessions => commands::sessions::list(&mut control, &out).await,
                Command::Session { id } => commands::sessions::show(&mut control, &out, id).await,
                Command::Disconnect { id } => {
                    commands::sessions::disconnect(&mut control, &out, id).await
                }
                Command::Streams => commands::streams::run(&mut control, &out).await,
                Command::Config { command } => match command {
                    ConfigCommand::Get { key } => {
                        commands::config::get(&mut control, &out, key).await
                    }
                    ConfigCommand::Set { key, value } => {
                        commands::config::set(&mut control, &out, key, value).await
                    }
                },
                Command::LogLevel { filter } => {
                    commands::config::set(&mut control, &out, "logging.filter".into(), filter).await
                }
                Command::Volume {
                    client,
                    percent,
                    mute,
                    unmute,
                } => {
                    let muted = (mute || unmute).then_some(mute);
                    commands::client::volume(&mut control, &out, client, percent, muted).await
                }
                Command::Latency { client, ms } => {
                    commands::client::latency(&mut control, &out, client, ms).await
                }
                Command::Name { client, name } => {
                    commands::client::name(&mut control, &out, client, name).await
                }
                Command::Completions { .. } | Command::Health => unreachable!("handled above"),
            }
        }
    }
}
