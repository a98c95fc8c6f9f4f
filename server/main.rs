//! The `snaprelay` server binary: flags and config in, tracing set up, then the library runs.

use std::process::ExitCode;

use anyhow::Context;
use snaprelay::config::{self, Args, Personality};
use snaprelay::jsonrpc::SNAPSERVER_VERSION;
use snaprelay::log_output::{Sink, SnapserverFormat};
use snaprelay::settings::LogReload;
use tracing::{error, info};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter, Layer as _};

fn main() -> ExitCode {
    snaprelay::heap::tune();
    let args = Args::parse();
    if args.help_level() > 0 {
        config::print_help(args.help_level());
        return ExitCode::SUCCESS;
    }
    if args.version {
        print_version(args.personality);
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // tracing may not be up yet (config errors), so print directly as well.
            eprintln!("snaprelay: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let loaded = config::load(args)?;
    let mut config = loaded.config.clone();
    if args.check_config {
        return check_config(&loaded);
    }
    if let Some(priority) = args.daemon {
        // Before any thread exists (the runtime, the log writer): forking is sound only now.
        snaprelay::daemon::Daemon {
            pidfile: config.server.pidfile.clone(),
            user: config.server.user.clone(),
            group: config.server.group.clone(),
            priority,
            datadir: config.daemon_datadir(),
        }
        .daemonize()
        .context("cannot run as a daemon (-d)")?;
    }
    let filter = EnvFilter::try_new(config.log_filter_directive())
        .with_context(|| format!("invalid logging.filter '{}'", config.logging.filter))?;
    // The filter sits behind a reload layer so `snapctl log-level` can change it at run time.
    let (filter, filter_handle) = reload::Layer::new(filter);
    let personality = args.personality;
    let program = match personality {
        Personality::Snaprelay => "snaprelay",
        Personality::Snapserver => "snapserver",
    };
    // A daemon has no terminal: its log goes to the system log unless the config says
    // otherwise (as snapserver's).
    let default_sink = match (args.daemon, personality) {
        (Some(_), _) => Sink::System,
        (None, Personality::Snaprelay) => Sink::Stderr,
        (None, Personality::Snapserver) => Sink::Stdout,
    };
    let sink = Sink::parse(&config.logging.sink, default_sink).map_err(anyhow::Error::msg)?;
    let writer = sink
        .make_writer(program)
        .with_context(|| format!("cannot open logging.sink {}", config.logging.sink))?;
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(sink.is_terminal());
    let lines = match (personality, sink.stamps_time()) {
        (Personality::Snapserver, time) => lines.event_format(SnapserverFormat { time }).boxed(),
        (Personality::Snaprelay, true) => lines.boxed(),
        (Personality::Snaprelay, false) => lines.without_time().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .init();
    let log_reload = LogReload::new(move |directive| {
        let filter = EnvFilter::try_new(directive).map_err(|err| err.to_string())?;
        filter_handle.reload(filter).map_err(|err| err.to_string())
    });
    for notice in &loaded.notices {
        info!("{notice}");
    }
    snaprelay::run::source_specs(&config)?;

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.server.threads > 0 {
        runtime.worker_threads(config.server.threads as usize);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal();
        let listeners = snaprelay::run::Listeners::bind(&config).await?;
        match personality {
            Personality::Snaprelay => {
                info!(version = env!("CARGO_PKG_VERSION"), "snaprelay starting");
            }
            // snapserver's start-up line, which programs that start it wait for.
            Personality::Snapserver => info!(
                target: "Snapserver",
                "Version {SNAPSERVER_VERSION}, revision snaprelay {}",
                env!("CARGO_PKG_VERSION")
            ),
        }
        let options = snaprelay::run::RunOptions {
            log_reload: Some(log_reload),
            config_sources: loaded.effective(),
        };
        snaprelay::run::run(&config, listeners, options, shutdown).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    info!("stopped");
    Ok(())
}

/// `-v`/`--version`: the program's version; as snapserver, the snapserver version it speaks
/// for (what JSON-RPC reports too) and snaprelay's.
fn print_version(personality: Personality) {
    let version = env!("CARGO_PKG_VERSION");
    match personality {
        Personality::Snaprelay => println!("snaprelay {version}"),
        Personality::Snapserver => {
            println!("snapserver v{SNAPSERVER_VERSION} (snaprelay {version})")
        }
    }
}

/// `--check-config`: everything start-up checks short of binding ports and opening sources,
/// then a summary on stdout. Errors travel up to `main`, which prints them and exits 1.
fn check_config(loaded: &config::Loaded) -> anyhow::Result<()> {
    let config = &loaded.config;
    let specs = snaprelay::run::source_specs(config)?;
    if let (true, Some(path)) = (config.grpc.enabled, &config.grpc.token_file) {
        // A token file mounted from a Secret is the usual thing to get wrong in a deployment;
        // the same rule as start-up: the first line, trimmed, is the token.
        config::read_token(path)?;
    }
    for notice in &loaded.notices {
        eprintln!("snaprelay: {notice}");
    }
    let names: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
    println!(
        "snaprelay: config OK: {} stream(s): {}",
        names.len(),
        names.join(", ")
    );
    Ok(())
}

/// Completes on SIGINT or SIGTERM (Kubernetes and systemd stop with SIGTERM).
///
/// The handlers are installed here, before the future is first polled: `run` logs that it
/// listens before it polls `shutdown`, and a SIGTERM sent right after that log line must not
/// hit the default action (killing the process without a clean shutdown).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (term, interrupt) {
            (Ok(mut term), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = term.recv() => {}
                }
            }
            (Err(err), _) | (_, Err(err)) => {
                error!(error = %err, "cannot listen for SIGTERM/SIGINT; falling back to Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
