//! The server's command-line flags. Named flags are clap's; snapserver's generic
//! `--<section>.<key>=<value>` overrides (docs/PROTOCOL.md §4.1) cannot be declared to clap,
//! so they are taken out of argv before clap sees it.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{ArgAction, CommandFactory, Parser};

use super::keys;
use crate::sample_format::SampleFormat;

/// Command-line flags of the `snaprelay` server. Every config flag is optional and, when
/// given, wins over the environment, the config file and the defaults.
///
/// Build it with [`Args::parse`] or [`Args::try_parse_from`] (not clap's trait methods of the
/// same names, which would reject `--section.key=value`).
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "snaprelay",
    disable_version_flag = true,
    about = "Snapcast-compatible audio relay server",
    long_about = None,
    disable_help_flag = true,
    after_help = "Any config key can also be set with --<section>.<key>=<value>, \
                  e.g. --stream.buffer=500.\nUse -hh or --help to list every config key."
)]
pub struct Args {
    /// Config file: snapserver.conf (INI) or TOML
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// TCP port for stream clients [stream.port]
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub(crate) port: Option<u16>,

    /// Address the stream listener binds; repeatable [stream.bind_to_address]
    #[arg(long = "bind", value_name = "ADDR")]
    pub(crate) bind: Vec<String>,

    /// Source URI; repeatable, replaces the configured sources [stream.source]
    #[arg(short = 's', long = "source", value_name = "URI")]
    pub(crate) source: Vec<String>,

    /// Default sample format [stream.sampleformat]
    #[arg(long = "sampleformat", value_name = "RATE:BITS:CHANNELS")]
    pub(crate) sampleformat: Option<SampleFormat>,

    /// Default codec [stream.codec]
    #[arg(long = "codec", value_name = "CODEC")]
    pub(crate) codec: Option<String>,

    /// Default source read size in milliseconds [stream.chunk_ms]
    #[arg(long = "chunk-ms", value_name = "MS")]
    pub(crate) chunk_ms: Option<u32>,

    /// End-to-end latency in milliseconds [stream.buffer]
    #[arg(long = "buffer", value_name = "MS")]
    pub(crate) buffer: Option<u32>,

    /// Send large messages with MSG_ZEROCOPY [stream.zerocopy = true]
    #[arg(short = 'z', long = "zerocopy")]
    pub(crate) zerocopy: bool,

    /// Directory for server.json [server.datadir]
    #[arg(long = "datadir", value_name = "DIR")]
    pub(crate) datadir: Option<PathBuf>,

    /// Log filter, e.g. *:debug or snaprelay=trace [logging.filter]
    ///
    /// Also read from the environment variable SNAPRELAY_LOG (this flag wins).
    #[arg(long = "log-filter", value_name = "FILTER")]
    pub(crate) log_filter: Option<String>,

    /// Validate the configuration (file, environment, flags, source URIs) and exit
    ///
    /// Exits 0 and prints a summary when it is valid, or 1 with the first error. Nothing is
    /// bound or started, so CI and Kubernetes init containers can run it.
    #[arg(long = "check-config")]
    pub check_config: bool,

    /// Print help; -hh or --help also lists every config key
    #[arg(short = 'h', long = "help", action = ArgAction::Count)]
    pub(crate) help: u8,

    /// Run in the background as snapserver does: detach, write server.pidfile, take this
    /// nice value (default -3), and as root switch to server.user/server.group; logs go to
    /// the system log unless logging.sink says otherwise
    #[arg(
        short = 'd',
        long = "daemon",
        value_name = "PRIORITY",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "-3",
        allow_negative_numbers = true
    )]
    pub daemon: Option<i32>,

    /// Print the version and exit
    #[arg(short = 'v', long = "version", short_alias = 'V')]
    pub version: bool,

    /// Which program this runs as, from the name it was started under (`snapserver`: a
    /// drop-in replacement, docs/DROP_IN.md).
    #[arg(skip)]
    pub personality: Personality,

    /// snapserver-style `--section.key=value` overrides, in command-line order.
    #[arg(skip)]
    pub(crate) overrides: Vec<(String, String)>,
}

impl Args {
    /// Parses the process's arguments, printing the error (or the version) and exiting like
    /// clap does when they are not valid.
    pub fn parse() -> Self {
        Self::parse_from(std::env::args_os())
    }

    /// Like [`Args::parse`], from the given arguments (the first one is the program name).
    pub(crate) fn parse_from<I, T>(argv: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        Self::try_parse_from(argv).unwrap_or_else(|error| error.exit())
    }

    /// Parses `argv` (the first one is the program name): `--section.key=value` and
    /// `--section.key value` are collected into `Args::overrides`, the rest goes to clap.
    ///
    /// # Errors
    ///
    /// clap's usage errors, and `-V`/`--version` as clap's `DisplayVersion` "error".
    pub fn try_parse_from<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let mut rest = Vec::new();
        let mut overrides = Vec::new();
        let mut argv = argv.into_iter().map(Into::into).peekable();
        let personality = argv.peek().map_or(Personality::Snaprelay, |program| {
            Personality::of_program(program)
        });
        while let Some(arg) = argv.next() {
            if arg == "--help" {
                // `--help` is `-hh`: clap counts it once, so count it twice here.
                rest.extend([OsString::from("-h"), OsString::from("-h")]);
                continue;
            }
            if arg == "--" {
                // Everything after `--` is positional; clap will reject it as it should.
                rest.push(arg);
                rest.extend(argv.by_ref());
                break;
            }
            let Some((name, value)) = generic_override(&arg) else {
                rest.push(arg);
                continue;
            };
            let value = match value {
                Some(value) => value,
                // Like snapserver, `--stream.buffer 500` takes the next argument.
                None => argv
                    .next()
                    .and_then(|value| value.into_string().ok())
                    .ok_or_else(|| {
                        Self::command().error(
                            ErrorKind::InvalidValue,
                            format!("a value is required for '--{name}'"),
                        )
                    })?,
            };
            overrides.push((name, value));
        }
        let mut args = <Self as Parser>::try_parse_from(rest)?;
        args.overrides = overrides;
        args.personality = personality;
        Ok(args)
    }

    /// 0 without `-h`, 1 for `-h`, 2 for `-hh` or `--help`.
    pub fn help_level(&self) -> u8 {
        self.help.min(2)
    }
}

/// Which program the binary runs as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Personality {
    /// `snaprelay`: its own defaults (built-in config unless `-c`, logs on stderr).
    #[default]
    Snaprelay,
    /// Started as `snapserver` (a symlink, or the packaged replacement): snapserver's config
    /// file when no `-c` is given, its log format on its default output (stdout), its
    /// start-up line. Everything else is the same program.
    Snapserver,
}

impl Personality {
    /// The personality for a program started as `program` (argv\[0\]).
    pub fn of_program(program: &OsString) -> Self {
        let name = std::path::Path::new(program)
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        if name == "snapserver" {
            Self::Snapserver
        } else {
            Self::Snaprelay
        }
    }

    /// The config file read when no `-c` is given, if any.
    pub fn default_config(self) -> Option<&'static std::path::Path> {
        match self {
            Self::Snaprelay => None,
            Self::Snapserver => Some(std::path::Path::new(SNAPSERVER_CONFIG)),
        }
    }
}

/// Where snapserver reads its config file when started without `-c`.
pub const SNAPSERVER_CONFIG: &str = "/etc/snapserver.conf";

/// `--section.key[=value]` → `("section.key", value)`; any other argument → `None`.
fn generic_override(arg: &OsString) -> Option<(String, Option<String>)> {
    let text = arg.to_str()?.strip_prefix("--")?;
    let (name, value) = match text.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (text, None),
    };
    let (section, key) = name.split_once('.')?;
    let is_name = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    (is_name(section) && is_name(key)).then(|| (name.to_owned(), value))
}

/// The help text: level 1 is the short flag list (`-h`), 2 or more adds the long flag help and
/// the "Configuration keys" listing from [`keys::listing`] (`-hh`, `--help`).
pub(crate) fn help_text(level: u8) -> String {
    let mut command = Args::command();
    if level >= 2 {
        command = command.after_long_help(keys::listing());
        command.render_long_help().to_string()
    } else {
        command.render_help().to_string()
    }
}

/// Prints `help_text` for `level` to stdout.
pub fn print_help(level: u8) {
    print!("{}", help_text(level));
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("snaprelay").chain(argv.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn named_flags_parse() {
        let args = parse(&[
            "-c",
            "/etc/snapserver.conf",
            "-p",
            "1800",
            "--bind",
            "127.0.0.1",
            "--bind",
            "::1",
            "-s",
            "pipe:///a?name=a",
            "--source=pipe:///b?name=b",
            "--sampleformat",
            "44100:16:2",
            "--codec",
            "pcm",
            "--chunk-ms",
            "10",
            "--buffer",
            "500",
            "--datadir",
            "/tmp/d",
            "--log-filter",
            "*:debug",
        ])
        .unwrap();
        assert_eq!(args.config, Some(PathBuf::from("/etc/snapserver.conf")));
        assert_eq!(args.port, Some(1800));
        assert_eq!(args.bind, ["127.0.0.1", "::1"]);
        assert_eq!(args.source, ["pipe:///a?name=a", "pipe:///b?name=b"]);
        assert_eq!(args.sampleformat, Some("44100:16:2".parse().unwrap()));
        assert_eq!(args.codec.as_deref(), Some("pcm"));
        assert_eq!((args.chunk_ms, args.buffer), (Some(10), Some(500)));
        assert_eq!(args.datadir, Some(PathBuf::from("/tmp/d")));
        assert_eq!(args.log_filter.as_deref(), Some("*:debug"));
        assert!(args.overrides.is_empty());
        assert_eq!(args.help_level(), 0);
    }

    #[test]
    fn generic_overrides_are_collected_in_order() {
        let args = parse(&[
            "--stream.buffer=500",
            "-p",
            "1800",
            "--logging.filter",
            "debug",
            "--tcp-streaming.port=1900",
            "--stream.source=a=b",
        ])
        .unwrap();
        assert_eq!(args.port, Some(1800));
        assert_eq!(
            args.overrides,
            [
                ("stream.buffer".to_owned(), "500".to_owned()),
                ("logging.filter".to_owned(), "debug".to_owned()),
                ("tcp-streaming.port".to_owned(), "1900".to_owned()),
                ("stream.source".to_owned(), "a=b".to_owned()),
            ]
        );
        let missing = parse(&["--stream.buffer"]).unwrap_err();
        assert!(missing.to_string().contains("--stream.buffer"), "{missing}");
    }

    #[test]
    fn bad_flag_values_name_the_flag() {
        let error = parse(&["--port", "abc"]).unwrap_err().to_string();
        assert!(error.contains("abc") && error.contains("--port"), "{error}");
        let error = parse(&["--sampleformat", "48000:12:2"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("bit depth 12"), "{error}");
        assert!(parse(&["--nonsense"]).is_err());
    }

    #[test]
    fn help_levels() {
        assert_eq!(parse(&["-h"]).unwrap().help_level(), 1);
        assert_eq!(parse(&["-hh"]).unwrap().help_level(), 2);
        assert_eq!(parse(&["-h", "-h"]).unwrap().help_level(), 2);
        assert_eq!(parse(&["--help"]).unwrap().help_level(), 2);
        for flag in ["-v", "-V", "--version"] {
            assert!(parse(&[flag]).unwrap().version, "{flag}");
        }
    }

    #[test]
    fn started_as_snapserver_it_is_snapserver() {
        let of = |program: &str| Args::try_parse_from([program]).unwrap().personality;
        assert_eq!(of("/usr/bin/snapserver"), Personality::Snapserver);
        assert_eq!(of("snapserver"), Personality::Snapserver);
        assert_eq!(of("/usr/bin/snaprelay"), Personality::Snaprelay);
        assert_eq!(of("snapserver-old"), Personality::Snaprelay);
        assert_eq!(
            Personality::Snapserver.default_config(),
            Some(Path::new("/etc/snapserver.conf"))
        );
        assert_eq!(Personality::Snaprelay.default_config(), None);
    }

    #[test]
    fn short_help_lists_flags_and_long_help_adds_every_key() {
        let short = help_text(1);
        assert!(
            short.contains("--port") && short.contains("--config"),
            "{short}"
        );
        assert!(!short.contains("Configuration keys"), "{short}");
        let long = help_text(2);
        assert!(
            long.contains("--port") && long.contains("SNAPRELAY_LOG"),
            "{long}"
        );
        assert!(long.contains("Configuration keys"), "{long}");
        for key in keys::KEYS {
            assert!(
                long.contains(&format!("  {} = {}", key.name, key.default))
                    || key.default.is_empty(),
                "{} missing",
                key.name
            );
            assert!(long.contains(key.name), "{} missing", key.name);
            assert!(
                long.contains(&keys::env_var(key.name)),
                "{} env missing",
                key.name
            );
        }
    }
}
