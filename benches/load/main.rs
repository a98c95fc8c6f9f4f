//! Load benchmark: N protocol-level Snapcast clients in this process against a server child
//! process — snaprelay, and Debian's snapserver for comparison — measuring the server's CPU
//! time and RSS from /proc over a steady window.
//!
//! Both servers read the same source: a FIFO this process fills with a 440 Hz tone in the
//! chosen sample format (each server paces its own reads), with the same codec and 20 ms
//! chunks. Each client says Hello, sends a Time request every second (and times the reply),
//! and reads and checks every chunk without decoding it. Clients are spread over 127.0.0.x
//! source addresses. CPU per client is marginal: (server CPU with N clients − with none) / N.
//! Servers alternate per configuration, so both see the same machine conditions.
//!
//! Run (release build, as `cargo bench` does):
//!   cargo bench --bench load -- --clients 1,50,200 --codecs pcm,flac --modes off,on,auto
//!   cargo bench --bench load -- --format 192000:32:8 --codecs pcm --clients 1,20 --servers snaprelay
//! Without `--bench` (as `cargo test --all-targets` runs it) or with `--smoke` it is a short
//! smoke run of a few clients for a few seconds, which keeps the tool working in CI.
//! With `LOAD_SMAPS_DIR=<dir>` each measurement also copies the server's /proc/<pid>/smaps
//! there, to see which mappings the resident set is made of. `--wrap "<command>"` runs
//! snaprelay under a profiler, e.g.
//!   cargo bench --bench load -- --servers snaprelay --clients 200 --modes off \
//!     --wrap "valgrind --tool=callgrind --callgrind-out-file=/tmp/callgrind.out"
//!
//! This file holds the options, the measurement and the report; `server` starts and watches
//! the server under test, `client` is the protocol-level client.

mod client;
mod server;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::{client, Tally};
use server::Server;

#[derive(Debug, Clone)]
struct Options {
    clients: Vec<usize>,
    modes: Vec<String>,
    codecs: Vec<String>,
    servers: Vec<String>,
    /// Instead of the table: for each server, the most clients served with no late chunk.
    capacity: bool,
    format: String,
    warmup: Duration,
    window: Duration,
    /// A command snaprelay runs under, e.g. `valgrind --tool=callgrind`, for profiles.
    wrap: Vec<String>,
    /// Instead of the table: a core relay with this many edge relays (issue 19), clients
    /// spread over the edges, against the same clients on the core directly.
    edges: Option<usize>,
    /// Instead of the table: CI's capacity guard (see [`guard`]); exits 1 when it fails.
    guard: bool,
    /// The guard's budget of anonymous memory per client, KiB ([`GUARD_ANON_KIB_PER_CLIENT`]
    /// unless given).
    max_anon_kib_per_client: f64,
}

impl Options {
    fn parse() -> Self {
        // `cargo test --all-targets` runs this target without `--bench`: then it is a smoke
        // run that keeps the tool working in CI, never the full sweep.
        let smoke = !std::env::args().any(|a| a == "--bench" || a == "--full");
        let mut options = Self {
            clients: vec![1, 50, 200],
            modes: vec!["off".into(), "on".into(), "auto".into()],
            codecs: vec!["pcm".into()],
            servers: vec!["snaprelay".into(), "snapserver".into()],
            capacity: false,
            format: "48000:16:2".into(),
            warmup: Duration::from_secs(3),
            window: Duration::from_secs(10),
            wrap: Vec::new(),
            edges: None,
            guard: false,
            max_anon_kib_per_client: GUARD_ANON_KIB_PER_CLIENT,
        };
        let list = |text: String| text.split(',').map(|v| v.trim().to_owned()).collect();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().unwrap_or_default();
            match arg.as_str() {
                "--clients" => {
                    options.clients = value()
                        .split(',')
                        .filter_map(|n| n.trim().parse().ok())
                        .collect()
                }
                "--modes" => options.modes = list(value()),
                "--codecs" => options.codecs = list(value()),
                "--servers" => options.servers = list(value()),
                "--format" => options.format = value(),
                "--capacity" => options.capacity = true,
                "--edges" => options.edges = value().parse().ok(),
                "--guard" => options.guard = true,
                "--max-anon-kib-per-client" => {
                    options.max_anon_kib_per_client =
                        value().parse().unwrap_or(GUARD_ANON_KIB_PER_CLIENT)
                }
                "--seconds" => options.window = Duration::from_secs(value().parse().unwrap_or(10)),
                "--warmup" => options.warmup = Duration::from_secs(value().parse().unwrap_or(3)),
                "--wrap" => options.wrap = value().split_whitespace().map(str::to_owned).collect(),
                "--smoke" => options.smoke(),
                "--bench" | "--full" => {} // `cargo bench` passes --bench
                other => eprintln!("load: ignoring unknown argument {other}"),
            }
        }
        if smoke {
            options.smoke();
        }
        options
    }

    fn smoke(&mut self) {
        self.clients = vec![2];
        self.modes = vec!["off".into(), "on".into()];
        self.servers = vec!["snaprelay".into()];
        self.codecs = vec!["pcm".into()];
        self.capacity = false;
        self.guard = false;
        self.warmup = Duration::from_secs(1);
        self.window = Duration::from_secs(2);
    }
}

/// Which server runs, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// snaprelay with zerocopy off, on (no auto-fallback), or auto.
    Snaprelay(String),
    /// Debian's snapserver 0.26.
    Snapserver,
}

impl Target {
    fn label(&self) -> String {
        match self {
            Self::Snaprelay(mode) => format!("snaprelay zc={mode}"),
            Self::Snapserver => "snapserver 0.26".into(),
        }
    }
}

struct Row {
    cpu_per_client_minute: f64,
    rss_mib: f64,
    anon_mib: f64,
    file_mib: f64,
    chunks: u64,
    late: u64,
    gaps: u64,
    time_reply_ms: f64,
    /// Cores the load tool itself used over the window (its clients share the machine).
    client_cores: f64,
    /// Chunks the relay itself counted as late or dropped over the window (`None` for
    /// snapserver, which does not say).
    relay_lost: Option<u64>,
}

fn measure(
    options: &Options,
    target: &Target,
    codec: &str,
    clients: usize,
    idle_cpu: f64,
) -> (Row, f64) {
    let server = Server::start(target, codec, &options.format, &options.wrap);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (cpu, rss, client_cpu, relay_lost) = runtime.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|i| tokio::spawn(client(i, server.addr, tally.clone(), stop.clone())))
            .collect();
        tokio::time::sleep(options.warmup).await;
        let chunks_before = tally.chunks.load(Ordering::Relaxed);
        let late_before = tally.late.load(Ordering::Relaxed);
        let gaps_before = tally.gaps.load(Ordering::Relaxed);
        let lost_before = server.relay_lost_chunks();
        let (cpu_before, _) = server.usage();
        let client_before = own_cpu_seconds();
        tokio::time::sleep(options.window).await;
        let (cpu_after, rss) = server.usage();
        let client_after = own_cpu_seconds();
        let lost_after = server.relay_lost_chunks();
        if let Some(dir) = std::env::var_os("LOAD_SMAPS_DIR") {
            // Where the resident set goes, mapping by mapping, for the report.
            let name =
                format!("{}-{codec}-{clients}.smaps", target.label()).replace([' ', '='], "_");
            let _ = std::fs::copy(
                format!("/proc/{}/smaps", server.child.id()),
                std::path::Path::new(&dir).join(name),
            );
        }
        tally.chunks.fetch_sub(chunks_before, Ordering::Relaxed);
        tally.late.fetch_sub(late_before, Ordering::Relaxed);
        tally.gaps.fetch_sub(gaps_before, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.abort();
        }
        let relay_lost = lost_before
            .zip(lost_after)
            .map(|(b, a)| a.saturating_sub(b));
        (
            cpu_after - cpu_before,
            rss,
            client_after - client_before,
            relay_lost,
        )
    });
    let window = options.window.as_secs_f64();
    let cores = cpu / window;
    let per_client = if clients == 0 {
        0.0
    } else {
        (cores - idle_cpu).max(0.0) * 60.0 / clients as f64
    };
    let replies = tally.time_replies.load(Ordering::Relaxed).max(1);
    (
        Row {
            cpu_per_client_minute: per_client,
            rss_mib: rss.total_kib as f64 / 1024.0,
            anon_mib: rss.anon_kib as f64 / 1024.0,
            file_mib: rss.file_kib as f64 / 1024.0,
            chunks: tally.chunks.load(Ordering::Relaxed),
            late: tally.late.load(Ordering::Relaxed),
            gaps: tally.gaps.load(Ordering::Relaxed),
            time_reply_ms: tally.time_reply_us_total.load(Ordering::Relaxed) as f64
                / replies as f64
                / 1000.0,
            client_cores: client_cpu / window,
            relay_lost,
        },
        cores,
    )
}

/// CPU seconds this process (the load tool and its clients) used so far.
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |at| &stat[at + 2..]);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// The relay's own lost-chunk count as a table cell.
fn lost_cell(row: &Row) -> String {
    row.relay_lost
        .map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// Relay chaining (issue 19): for each client count, the clients on the core directly, then
/// the same clients spread over `edges` edge relays of the core. Prints each process's CPU:
/// the core's should grow with the number of edges, not of clients, and an edge's CPU per
/// client should match the core's when it serves clients directly.
fn chain(options: &Options, edges: usize) {
    println!(
        "load: edges, format {}, window {:?} after {:?} warm-up; CPU in cores, per client in CPU-s per client-minute",
        options.format, options.window, options.warmup
    );
    println!("| codec | clients | setup | core cores | edge cores (each) | CPU per client | late | gaps |");
    println!("|---|---|---|---|---|---|---|---|");
    let direct = Target::Snaprelay("off".into());
    for codec in &options.codecs {
        let idle = measure(options, &direct, codec, 0, 0.0).1;
        for &clients in &options.clients {
            let (row, cores) = measure(options, &direct, codec, clients, idle);
            println!(
                "| {codec} | {clients} | core only | {cores:.3} | - | {:.4} | {} | {} |",
                row.cpu_per_client_minute, row.late, row.gaps
            );
            let core = Server::start(&direct, codec, &options.format, &[]);
            let relays: Vec<Server> = (0..edges).map(|_| Server::start_edge(core.addr)).collect();
            std::thread::sleep(Duration::from_secs(1));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let tally = Arc::new(Tally::default());
            let stop = Arc::new(AtomicBool::new(false));
            // Edges with no clients first: what relaying itself costs.
            let (edge_idle, core_cost, edge_cost) = runtime.block_on(async {
                let usage = |servers: &[&Server]| -> Vec<f64> {
                    servers.iter().map(|s| s.usage().0).collect()
                };
                let all: Vec<&Server> = std::iter::once(&core).chain(relays.iter()).collect();
                tokio::time::sleep(options.warmup).await;
                let before = usage(&all);
                tokio::time::sleep(options.window).await;
                let idle = usage(&all);
                let tasks: Vec<_> = (0..clients)
                    .map(|i| {
                        let edge = relays[i % edges].addr;
                        tokio::spawn(client(i, edge, tally.clone(), stop.clone()))
                    })
                    .collect();
                tokio::time::sleep(options.warmup).await;
                let start = usage(&all);
                let chunks_before = tally.chunks.load(Ordering::Relaxed);
                tokio::time::sleep(options.window).await;
                let end = usage(&all);
                tally.chunks.fetch_sub(chunks_before, Ordering::Relaxed);
                stop.store(true, Ordering::Relaxed);
                for task in tasks {
                    task.abort();
                }
                let window = options.window.as_secs_f64();
                let edge_idle: f64 = (1..all.len())
                    .map(|i| (idle[i] - before[i]) / window)
                    .sum::<f64>()
                    / edges as f64;
                let core_cost = (end[0] - start[0]) / window;
                let edge_cost: f64 = (1..all.len())
                    .map(|i| (end[i] - start[i]) / window)
                    .sum::<f64>()
                    / edges as f64;
                (edge_idle, core_cost, edge_cost)
            });
            let per_client = if clients == 0 {
                0.0
            } else {
                (edge_cost - edge_idle).max(0.0) * edges as f64 * 60.0 / clients as f64
            };
            println!(
                "| {codec} | {clients} | {edges} edges | {core_cost:.3} | {edge_cost:.3} (idle {edge_idle:.3}) | {per_client:.4} | {} | {} |",
                tally.late.load(Ordering::Relaxed),
                tally.gaps.load(Ordering::Relaxed)
            );
            let _ = std::io::stdout().flush();
        }
    }
}

/// Lets this process (and the servers it starts) open thousands of sockets.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// CI's budget of anonymous memory per client: between what the relay measures at 3200 clients
/// (5.9–6.7 KiB) and what the regression of issue 25 cost (8.9–9.1 KiB at ff3f8b8);
/// docs/PERFORMANCE.md, "The CI guard".
const GUARD_ANON_KIB_PER_CLIENT: f64 = 7.5;

/// CI's capacity guard: snaprelay (pcm, plain sends) serving the first `--clients` count for
/// the window must deliver every chunk in time (no late chunk, no gap at the clients, none
/// counted late or dropped by the relay itself) within `--max-anon-kib-per-client` of
/// anonymous memory per client. What it asserts is counts, not timings, so a busy machine
/// only fails it when the relay itself falls behind. Returns whether it passed.
fn guard(options: &Options) -> bool {
    let target = Target::Snaprelay("off".into());
    let clients = options.clients.first().copied().unwrap_or(3200);
    let (idle, idle_cores) = measure(options, &target, "pcm", 0, 0.0);
    let (row, _) = measure(options, &target, "pcm", clients, idle_cores);
    let kib_per_client = (row.anon_mib - idle.anon_mib).max(0.0) * 1024.0 / clients as f64;
    let expected = (clients as f64 * options.window.as_secs_f64() * 50.0) as u64;
    println!(
        "guard: {clients} clients, {:?} window: chunks {} (of ~{expected}), late {}, gaps {}, relay lost {}, \
         anon {:.2} KiB per client (budget {}), CPU {:.4} CPU-s per client-minute, time reply {:.1} ms, load tool {:.2} cores",
        options.window,
        row.chunks,
        row.late,
        row.gaps,
        lost_cell(&row),
        kib_per_client,
        options.max_anon_kib_per_client,
        row.cpu_per_client_minute,
        row.time_reply_ms,
        row.client_cores,
    );
    let mut failures = Vec::new();
    // Every client gets a chunk every 20 ms; a tenth less allows for connections still
    // being made as the window opens, not for a relay that falls behind (that is `late`).
    if row.chunks < expected * 9 / 10 {
        failures.push(format!("only {} of ~{expected} chunks arrived", row.chunks));
    }
    if row.late > 0 || row.gaps > 0 {
        failures.push(format!(
            "{} late chunks and {} gaps at the clients",
            row.late, row.gaps
        ));
    }
    match row.relay_lost {
        Some(0) => {}
        Some(lost) => failures.push(format!("the relay counted {lost} chunks late or dropped")),
        None => failures.push("the relay's /metrics could not be read".to_owned()),
    }
    if kib_per_client > options.max_anon_kib_per_client {
        failures.push(format!(
            "{kib_per_client:.2} KiB of anonymous memory per client, over the budget of {}",
            options.max_anon_kib_per_client
        ));
    }
    for failure in &failures {
        println!("guard: FAILED: {failure}");
    }
    if failures.is_empty() {
        println!("guard: passed");
    }
    failures.is_empty()
}

/// The client counts the capacity sweep tries, in order: doubling from 50, then 10 000 and
/// 12 800.
const CAPACITY_STEPS: &[usize] = &[50, 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 12_800];

/// Raises the client count until a server delivers a late chunk or a gap; prints the
/// largest count it served cleanly.
fn capacity(options: &Options, targets: &[Target]) {
    println!("| server | codec | most clients with zero late chunks and no gaps |");
    println!("|---|---|---|");
    for codec in &options.codecs {
        for target in targets {
            let mut best = 0;
            for &clients in CAPACITY_STEPS {
                let (row, _) = measure(options, target, codec, clients, 0.0);
                let clean = row.late == 0 && row.gaps == 0 && row.chunks > 0;
                eprintln!(
                    "capacity: {} {codec} {clients} clients: late {} gaps {} chunks {} relay lost {} load tool {:.2} cores time reply {:.1} ms",
                    target.label(),
                    row.late,
                    row.gaps,
                    row.chunks,
                    lost_cell(&row),
                    row.client_cores,
                    row.time_reply_ms
                );
                if !clean {
                    break;
                }
                best = clients;
            }
            println!("| {} | {codec} | {best} |", target.label());
            let _ = std::io::stdout().flush();
        }
    }
}

fn main() {
    let options = Options::parse();
    raise_fd_limit();
    let mut targets = Vec::new();
    for server in &options.servers {
        match server.as_str() {
            "snaprelay" => targets.extend(options.modes.iter().cloned().map(Target::Snaprelay)),
            "snapserver" => targets.push(Target::Snapserver),
            other => eprintln!("load: unknown server {other}"),
        }
    }
    if options.capacity {
        capacity(&options, &targets);
        return;
    }
    if options.guard {
        if !guard(&options) {
            std::process::exit(1);
        }
        return;
    }
    if let Some(edges) = options.edges {
        chain(&options, edges);
        return;
    }
    println!(
        "load: format {}, 20 ms chunks, window {:?} after {:?} warm-up; CPU per client = \
         (server cores with N clients - with 0) x 60 / N",
        options.format, options.window, options.warmup
    );
    println!(
        "| server | codec | clients | CPU-s per client-minute | RSS MiB | anon MiB | file MiB | chunks | late | gaps | time reply ms | relay lost | load tool cores |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    // (codec, clients, target) -> row, for the ratio summary.
    let mut results: Vec<(String, usize, Target, Row)> = Vec::new();
    for codec in &options.codecs {
        let idle: Vec<f64> = targets
            .iter()
            .map(|t| measure(&options, t, codec, 0, 0.0).1)
            .collect();
        for &clients in &options.clients {
            // Alternate servers within each configuration: same machine conditions.
            for (target, idle) in targets.iter().zip(&idle) {
                let (row, _) = measure(&options, target, codec, clients, *idle);
                println!(
                    "| {} | {} | {} | {:.4} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {:.3} | {} | {:.2} |",
                    target.label(),
                    codec,
                    clients,
                    row.cpu_per_client_minute,
                    row.rss_mib,
                    row.anon_mib,
                    row.file_mib,
                    row.chunks,
                    row.late,
                    row.gaps,
                    row.time_reply_ms,
                    lost_cell(&row),
                    row.client_cores
                );
                let _ = std::io::stdout().flush();
                assert!(
                    row.chunks > 0,
                    "{} delivered no chunk to {clients} clients",
                    target.label()
                );
                results.push((codec.clone(), clients, target.clone(), row));
            }
        }
    }
    let reference: Vec<_> = results
        .iter()
        .filter(|(_, _, t, _)| *t == Target::Snapserver)
        .collect();
    if reference.is_empty() {
        return;
    }
    println!();
    println!("| codec | clients | server | CPU ratio vs snapserver | RSS ratio vs snapserver |");
    println!("|---|---|---|---|---|");
    for (codec, clients, target, row) in &results {
        let Some((_, _, _, base)) = reference
            .iter()
            .find(|(c, n, _, _)| c == codec && n == clients)
        else {
            continue;
        };
        if *target == Target::Snapserver {
            continue;
        }
        let cpu = if base.cpu_per_client_minute > 0.0 {
            row.cpu_per_client_minute / base.cpu_per_client_minute
        } else {
            f64::NAN
        };
        println!(
            "| {codec} | {clients} | {} | {cpu:.2} | {:.2} |",
            target.label(),
            row.rss_mib / base.rss_mib
        );
    }
}
