//! snapctl's command line: clap types only; the commands live in `commands/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// Default server URL: the relay's default gRPC address.
pub fn default_server() -> String {
    format!("http://127.0.0.1:{}", snaprelay::DEFAULT_GRPC_PORT)
}

const EXIT_CODES: &str = "\
Exit codes:
  0    OK
  1    the server refused the request (not found, invalid argument, bad token, ...)
  2    usage error
  3    server unreachable, unavailable or too slow (see --timeout)
  130  interrupted (Ctrl-C) during --watch
A closed output pipe (e.g. `snapctl stats --watch | head`) exits 0.";

/// Control a running snaprelay over its gRPC API.
#[derive(Debug, Parser)]
#[command(name = "snapctl", version, after_long_help = EXIT_CODES, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Server URL (http:// or https://)
    #[arg(long, global = true, env = "SNAPCTL_SERVER", default_value_t = default_server(),
          help_heading = "Connection")]
    pub server: String,

    /// Bearer token, when the server requires one
    #[arg(
        long,
        global = true,
        env = "SNAPCTL_TOKEN",
        hide_env_values = true,
        help_heading = "Connection"
    )]
    pub token: Option<String>,

    /// CA certificate (PEM) to trust for an https:// server
    #[arg(long, global = true, value_name = "FILE", help_heading = "Connection")]
    pub ca_cert: Option<PathBuf>,

    /// Seconds to wait for the connection and for each request
    #[arg(long, global = true, value_name = "SECONDS", default_value = "5",
          value_parser = parse_seconds, help_heading = "Connection")]
    pub timeout: Duration,

    /// Machine-readable output: one JSON document (JSON Lines with --watch)
    #[arg(long, global = true, help_heading = "Output")]
    pub json: bool,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Zerocopy, buffer pool and stream figures
    Stats(StatsArgs),
    /// List connected stream clients
    Sessions,
    /// Show one session in detail
    Session {
        /// Session id, as `snapctl sessions` lists it
        id: u64,
    },
    /// Close one session (the client usually reconnects)
    Disconnect {
        /// Session id
        id: u64,
    },
    /// List streams, with what each one's player is playing
    Streams,
    /// Show one stream, control its player, add or remove streams
    Stream {
        #[command(subcommand)]
        command: StreamCommand,
    },
    /// Print every change as it happens (clients, groups, streams, now playing)
    Events,
    /// Read or change the configuration
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Set a client's volume and/or mute
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["percent", "mute", "unmute"])))]
    Volume {
        /// Client id, as `snapctl sessions` lists it
        client: String,
        /// Volume in percent, 0 to 100
        #[arg(value_parser = clap::value_parser!(u32).range(0..=100))]
        percent: Option<u32>,
        /// Mute the client
        #[arg(long, conflicts_with = "unmute")]
        mute: bool,
        /// Unmute the client
        #[arg(long)]
        unmute: bool,
    },
    /// Set a client's extra latency
    Latency {
        /// Client id
        client: String,
        /// Milliseconds, -10000 to 10000
        #[arg(allow_negative_numbers = true,
              value_parser = clap::value_parser!(i32).range(-10_000..=10_000))]
        ms: i32,
    },
    /// Set a client's display name
    Name {
        /// Client id
        client: String,
        /// New name
        name: String,
    },
    /// List groups: clients playing one stream together
    Groups,
    /// List every known client, connected or not (kept across restarts)
    Clients,
    /// Change a group: its stream, members, mute or name
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Manage a known client (volume, latency and name have their own commands)
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Change the server's log filter (e.g. debug, *:info, snaprelay::control=trace)
    LogLevel {
        /// The filter, in snapserver or tracing EnvFilter form
        filter: String,
    },
    /// Check that the server is up and serving
    Health,
    /// Print a shell completion script
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

/// `stats` options.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Keep printing new figures until interrupted
    #[arg(long, short)]
    pub watch: bool,
    /// Milliseconds between updates with --watch (100 to 60000)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(100..=60_000))]
    pub interval: u32,
}

/// `group` subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Switch the group to another stream (its clients switch live)
    Stream {
        /// Group id, as `snapctl groups` lists it
        group: String,
        /// Stream name, as `snapctl streams` lists it
        stream: String,
    },
    /// Make these clients the group's members (others move to groups of their own)
    Clients {
        /// Group id
        group: String,
        /// Client ids
        #[arg(required = true, num_args = 1..)]
        clients: Vec<String>,
    },
    /// Mute or unmute the whole group
    Mute {
        /// Group id
        group: String,
        /// on or off
        state: OnOff,
    },
    /// Rename the group
    Name {
        /// Group id
        group: String,
        /// New name (empty clears it)
        name: String,
    },
}

/// `stream` subcommands.
#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Show the stream, its player's state and now playing
    Show {
        /// Stream name, as `snapctl streams` lists it
        stream: String,
    },
    /// Ask the stream's player to play, pause, skip or seek (through its stream plugin)
    Control {
        /// Stream name
        stream: String,
        #[command(subcommand)]
        command: PlayerCommand,
    },
    /// Set the player's shuffle, loop, volume, mute or rate
    Set {
        /// Stream name
        stream: String,
        /// What to set
        property: PropertyArg,
        /// true/false for shuffle and mute; none, track or playlist for loop; 0-100 for
        /// volume; a positive number for rate
        value: String,
    },
    /// Start a stream from a source URI (only schemes in jsonrpc.add_stream_schemes)
    Add {
        /// e.g. "tcp://127.0.0.1:4953?name=Kitchen"
        uri: String,
    },
    /// Stop a stream; its groups move to the first stream
    Remove {
        /// Stream name
        stream: String,
    },
}

/// What `stream control` asks of the player.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum PlayerCommand {
    /// Start playing
    Play,
    /// Pause
    Pause,
    /// Toggle between playing and paused
    PlayPause,
    /// Stop
    Stop,
    /// Next track
    Next,
    /// Previous track
    Previous,
    /// Move within the track
    Seek {
        /// Seconds to move; negative moves back
        #[arg(allow_negative_numbers = true)]
        seconds: f64,
    },
    /// Jump to a position in the track
    Position {
        /// Seconds from the start of the track
        seconds: f64,
    },
}

/// The player properties `stream set` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PropertyArg {
    /// Shuffle (true/false)
    Shuffle,
    /// Loop status (none, track, playlist)
    Loop,
    /// Player volume (0-100)
    Volume,
    /// Player mute (true/false)
    Mute,
    /// Playback rate
    Rate,
}

impl std::fmt::Display for PropertyArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Shuffle => "shuffle",
            Self::Loop => "loop",
            Self::Volume => "volume",
            Self::Mute => "mute",
            Self::Rate => "rate",
        })
    }
}

/// `client` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Forget a disconnected client
    Delete {
        /// Client id, as `snapctl clients` lists it
        client: String,
    },
}

/// A switch given as `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// Switch on.
    On,
    /// Switch off.
    Off,
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show the effective configuration and where each value came from
    Get {
        /// Only this key (section.key)
        key: Option<String>,
    },
    /// Change a key at run time (stream.buffer, logging.filter, stream.zerocopy, ...)
    Set {
        /// section.key
        key: String,
        /// New value
        value: String,
    },
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(0.001..=3600.0).contains(&seconds) {
        return Err("expected 0.001 to 3600 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn volume_needs_a_change_and_a_valid_percent() {
        assert!(Cli::try_parse_from(["snapctl", "volume", "c"]).is_err());
        assert!(Cli::try_parse_from(["snapctl", "volume", "c", "101"]).is_err());
        assert!(Cli::try_parse_from(["snapctl", "volume", "c", "--mute", "--unmute"]).is_err());
        assert!(Cli::try_parse_from(["snapctl", "volume", "c", "40", "--mute"]).is_ok());
        assert!(Cli::try_parse_from(["snapctl", "latency", "c", "-20"]).is_ok());
        assert!(Cli::try_parse_from(["snapctl", "--timeout", "x", "health"]).is_err());
    }

    #[test]
    fn stream_controls_parse() {
        assert!(Cli::try_parse_from(["snapctl", "stream", "control", "s", "next"]).is_ok());
        assert!(Cli::try_parse_from(["snapctl", "stream", "control", "s", "seek", "-10"]).is_ok());
        assert!(Cli::try_parse_from(["snapctl", "stream", "control", "s", "jump"]).is_err());
        assert!(Cli::try_parse_from(["snapctl", "stream", "set", "s", "shuffle", "true"]).is_ok());
        assert!(Cli::try_parse_from(["snapctl", "stream", "set", "s", "colour", "red"]).is_err());
        assert!(Cli::try_parse_from(["snapctl", "events"]).is_ok());
    }
}
