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

use args::{Cli, ClientCommand, Command, ConfigCommand, GroupCommand, OnOff, StreamCommand};
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
                Command::Stream { command } => match command {
                    StreamCommand::Show { stream } => {
                        commands::stream::show(&mut control, &out, stream).await
                    }
                    StreamCommand::Control { stream, command } => {
                        commands::stream::control_player(&mut control, &out, stream, command).await
                    }
                    StreamCommand::Set {
                        stream,
                        property,
                        value,
                    } => {
                        commands::stream::set_property(&mut control, &out, stream, property, value)
                            .await
                    }
                    StreamCommand::Add { uri } => {
                        commands::stream::add(&mut control, &out, uri).await
                    }
                    StreamCommand::Remove { stream } => {
                        commands::stream::remove(&mut control, &out, stream).await
                    }
                },
                Command::Events => commands::events::run(&mut control, &out).await,
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
                Command::Groups => commands::groups::list(&mut control, &out).await,
                Command::Clients => commands::groups::clients(&mut control, &out).await,
                Command::Group { command } => match command {
                    GroupCommand::Stream { group, stream } => {
                        commands::groups::set_stream(&mut control, &out, group, stream).await
                    }
                    GroupCommand::Clients { group, clients } => {
                        commands::groups::set_clients(&mut control, &out, group, clients).await
                    }
                    GroupCommand::Mute { group, state } => {
                        commands::groups::set_mute(&mut control, &out, group, state == OnOff::On)
                            .await
                    }
                    GroupCommand::Name { group, name } => {
                        commands::groups::set_name(&mut control, &out, group, name).await
                    }
                },
                Command::Client {
                    command: ClientCommand::Delete { client },
                } => commands::groups::delete_client(&mut control, &out, client).await,
                Command::Completions { .. } | Command::Health => unreachable!("handled above"),
            }
        }
    }
}
