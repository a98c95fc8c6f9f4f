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

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use snaprelay::protocol::{Header, Message, Tv, HEADER_SIZE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A chunk arriving with less than this much of the buffer left counts as late.
const LATE_MARGIN_MS: i64 = 100;
const BUFFER_MS: i64 = 1000;

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

/// Fills a FIFO with a tone until dropped (the server's pacing sets the rate).
struct ToneWriter {
    stop: Arc<AtomicBool>,
}

impl ToneWriter {
    fn start(fifo: std::path::PathBuf, format: &str) -> Self {
        let parts: Vec<u32> = format.split(':').filter_map(|p| p.parse().ok()).collect();
        let (rate, bits, channels) = (parts[0], parts[1], parts[2] as usize);
        let sample_size = if bits == 24 { 4 } else { bits as usize / 8 };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            // Opening blocks until the server opens its end.
            let Ok(mut out) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
                return;
            };
            let full = (1i64 << (bits - 1)) as f64 * 0.4;
            let mut frame = 0u64;
            let mut buf = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                buf.clear();
                for _ in 0..rate / 50 {
                    let t = frame as f64 / f64::from(rate);
                    let v = ((std::f64::consts::TAU * 440.0 * t).sin() * full) as i64;
                    for _ in 0..channels {
                        buf.extend_from_slice(&v.to_le_bytes()[..sample_size]);
                    }
                    frame += 1;
                }
                if out.write_all(&buf).is_err() {
                    return;
                }
            }
        });
        Self { stop }
    }
}

impl Drop for ToneWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The server under test, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    _writer: ToneWriter,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(target: &Target, codec: &str, format: &str, wrap: &[String]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = server_port();
        let fifo = dir.path().join("bench.fifo");
        let source = format!(
            "pipe://{}?name=bench&sampleformat={format}&codec={codec}&chunk_ms=20",
            fifo.display()
        );
        let mut command = match target {
            Target::Snaprelay(mode) => {
                let exe = env!("CARGO_BIN_EXE_snaprelay");
                let mut command = match wrap.split_first() {
                    Some((program, args)) => {
                        let mut command = Command::new(program);
                        command.args(args).arg(exe);
                        command
                    }
                    None => Command::new(exe),
                };
                command
                    .args(["--bind", "0.0.0.0", "--port", &port.to_string()])
                    .args(["--source", &source, "--log-filter", "warn"])
                    .args([
                        "--grpc.enabled=false",
                        "--http.enabled=false",
                        "--tcp.enabled=false",
                    ])
                    .args([
                        "--server.diagnostics_interval_s=0",
                        "--server.max_clients=10000",
                    ])
                    .arg("--datadir")
                    .arg(dir.path());
                match mode.as_str() {
                    "on" => {
                        command.args(["-z", "--stream.zerocopy_auto_fallback=false"]);
                    }
                    "auto" => {
                        command.arg("-z");
                    }
                    _ => {}
                }
                command
            }
            Target::Snapserver => {
                let conf = dir.path().join("snapserver.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "[server]\ndatadir = {}\n[stream]\nsource = {source}\nport = {port}\n\
                         buffer = 1000\n[http]\nenabled = false\n[tcp]\nenabled = false\n\
                         [logging]\nfilter = *:warning\n",
                        dir.path().display()
                    ),
                )
                .expect("write snapserver.conf");
                let mut command = Command::new("snapserver");
                command.arg("-c").arg(&conf);
                command
            }
        };
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", target.label()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Generous: after thousands of clients the machine may still be tearing sockets down.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not start: {}",
                target.label(),
                std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        while !fifo.exists() {
            assert!(Instant::now() < deadline, "{} made no FIFO", target.label());
            std::thread::sleep(Duration::from_millis(20));
        }
        let writer = ToneWriter::start(fifo, format);
        Self {
            child,
            addr,
            _writer: writer,
            _dir: dir,
        }
    }
    /// CPU seconds used so far and the resident set.
    fn usage(&self) -> (f64, Resident) {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let rest = stat.rfind(')').map_or("", |at| &stat[at + 2..]);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let resident = Resident {
            total_kib: kib("VmRSS:"),
            anon_kib: kib("RssAnon:"),
            file_kib: kib("RssFile:"),
        };
        (ticks as f64 / hz, resident)
    }
}

/// A port for the server below the kernel's ephemeral range: thousands of client sockets
/// churn through that range, and a port picked there can be taken again before the server
/// binds it.
fn server_port() -> u16 {
    let start = 20_000 + (std::process::id() % 5_000) as u16;
    (start..30_000)
        .chain(20_000..start)
        .find(|port| std::net::TcpListener::bind(("0.0.0.0", *port)).is_ok())
        .expect("a free port between 20000 and 30000")
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first: both servers shut down cleanly on it, and a profiler wrapping the
        // server writes its output only at a clean exit.
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server's resident set (`/proc/<pid>/status`): its own heap and stacks (anonymous)
/// are what grows with clients; file-backed pages are mostly its code.
#[derive(Debug, Clone, Copy, Default)]
struct Resident {
    total_kib: u64,
    anon_kib: u64,
    file_kib: u64,
}

#[derive(Debug, Default)]
struct Tally {
    chunks: AtomicU64,
    bytes: AtomicU64,
    late: AtomicU64,
    gaps: AtomicU64,
    time_replies: AtomicU64,
    time_reply_us_total: AtomicU64,
    disconnects: AtomicU64,
}

fn hello(id: &str) -> Vec<u8> {
    let json = format!(
        r#"{{"Arch":"x86_64","ClientName":"LoadClient","HostName":"bench","ID":"{id}","Instance":1,"MAC":"00:00:00:00:00:00","OS":"Linux","SnapStreamProtocolVersion":2,"Version":"0.26.0"}}"#
    );
    let mut out = Message::Hello(serde_json::from_str(&json).expect("hello json")).encode(
        2,
        0,
        Tv::default(),
    );
    out.shrink_to_fit();
    out
}

/// One client: reads and checks every message until `stop`.
async fn client(index: usize, server: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    // 127.0.0.x source addresses spread the flows like distinct hosts would.
    let source = IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        (index / 250) as u8,
        (index % 250) as u8 + 2,
    ));
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    let _ = socket.bind(SocketAddr::new(source, 0));
    let Ok(stream) = socket.connect(server).await else {
        tally.disconnects.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (mut reader, mut writer) = stream.into_split();
    if writer
        .write_all(&hello(&format!("load-{index}")))
        .await
        .is_err()
    {
        return;
    }
    let pending_time = Arc::new(AtomicU64::new(0));
    let timer_pending = pending_time.clone();
    let timer_stop = stop.clone();
    let time_task = tokio::spawn(async move {
        let mut id = 10u16;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while !timer_stop.load(Ordering::Relaxed) {
            tick.tick().await;
            id = if id >= 9999 { 10 } else { id + 1 };
            timer_pending.store(snaprelay::clock::now_micros() as u64, Ordering::Relaxed);
            let request = Message::Time(snaprelay::protocol::Time {
                latency: Tv::default(),
            })
            .encode(id, 0, snaprelay::clock::now());
            if writer.write_all(&request).await.is_err() {
                return;
            }
        }
    });
    let mut head = [0u8; HEADER_SIZE];
    let mut payload = Vec::with_capacity(8192);
    let mut last_ts: Option<i64> = None;
    while !stop.load(Ordering::Relaxed) {
        if reader.read_exact(&mut head).await.is_err() {
            tally.disconnects.fetch_add(1, Ordering::Relaxed);
            break;
        }
        let Ok(header) = Header::decode(&head) else {
            break;
        };
        payload.resize(header.size as usize, 0);
        if reader.read_exact(&mut payload).await.is_err() {
            tally.disconnects.fetch_add(1, Ordering::Relaxed);
            break;
        }
        match header.type_id {
            2 if payload.len() >= 12 => {
                let ts = Tv {
                    sec: i32::from_le_bytes(payload[0..4].try_into().expect("4 bytes")),
                    usec: i32::from_le_bytes(payload[4..8].try_into().expect("4 bytes")),
                }
                .as_micros();
                let age_ms = (snaprelay::clock::now_micros() - ts) / 1000;
                if age_ms > BUFFER_MS - LATE_MARGIN_MS {
                    tally.late.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(last) = last_ts {
                    // Timestamps step by one chunk; a bigger step is a chunk we never got.
                    if ts - last > 30_000 {
                        tally.gaps.fetch_add(1, Ordering::Relaxed);
                    }
                }
                last_ts = Some(ts);
                tally.chunks.fetch_add(1, Ordering::Relaxed);
                tally
                    .bytes
                    .fetch_add((HEADER_SIZE + payload.len()) as u64, Ordering::Relaxed);
            }
            4 => {
                let sent = pending_time.load(Ordering::Relaxed);
                let now = snaprelay::clock::now_micros() as u64;
                tally.time_replies.fetch_add(1, Ordering::Relaxed);
                tally
                    .time_reply_us_total
                    .fetch_add(now.saturating_sub(sent), Ordering::Relaxed);
            }
            _ => {}
        }
    }
    time_task.abort();
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
    let (cpu, rss) = runtime.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|i| tokio::spawn(client(i, server.addr, tally.clone(), stop.clone())))
            .collect();
        tokio::time::sleep(options.warmup).await;
        let chunks_before = tally.chunks.load(Ordering::Relaxed);
        let late_before = tally.late.load(Ordering::Relaxed);
        let gaps_before = tally.gaps.load(Ordering::Relaxed);
        let (cpu_before, _) = server.usage();
        tokio::time::sleep(options.window).await;
        let (cpu_after, rss) = server.usage();
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
        (cpu_after - cpu_before, rss)
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
        },
        cores,
    )
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

/// Doubles the client count until a server delivers a late chunk or a gap; prints the
/// largest count it served cleanly.
fn capacity(options: &Options, targets: &[Target]) {
    println!("| server | codec | most clients with zero late chunks and no gaps |");
    println!("|---|---|---|");
    for codec in &options.codecs {
        for target in targets {
            let mut best = 0;
            let mut clients = 50;
            while clients <= 6400 {
                let (row, _) = measure(options, target, codec, clients, 0.0);
                let clean = row.late == 0 && row.gaps == 0 && row.chunks > 0;
                eprintln!(
                    "capacity: {} {codec} {clients} clients: late {} gaps {} chunks {}",
                    target.label(),
                    row.late,
                    row.gaps,
                    row.chunks
                );
                if !clean {
                    break;
                }
                best = clients;
                clients *= 2;
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
    println!(
        "load: format {}, 20 ms chunks, window {:?} after {:?} warm-up; CPU per client = \
         (server cores with N clients - with 0) x 60 / N",
        options.format, options.window, options.warmup
    );
    println!(
        "| server | codec | clients | CPU-s per client-minute | RSS MiB | anon MiB | file MiB | chunks | late | gaps | time reply ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
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
                    "| {} | {} | {} | {:.4} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {:.3} |",
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
                    row.time_reply_ms
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
