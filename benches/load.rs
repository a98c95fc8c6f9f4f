//! Load benchmark: N protocol-level Snapcast clients in this process against a `snaprelay`
//! child process, measuring the server's CPU time and RSS from /proc over a steady window.
//!
//! Each client says Hello, sends a Time request every second (and times the reply), and reads
//! and checks every chunk without decoding it. Clients are spread over 127.0.0.x source
//! addresses. CPU per client is marginal: (server CPU with N clients − with none) / N.
//!
//! Run (release build, as `cargo bench` does):
//!   cargo bench --bench load -- --clients 1,50,200 --modes off,on,auto --seconds 10
//!   cargo bench --bench load -- --format 192000:32:8 --clients 1,20 --modes off,on,auto
//! `--smoke` runs a few clients for a few seconds (CI keeps the tool working with it).

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
    format: String,
    warmup: Duration,
    window: Duration,
}

impl Options {
    fn parse() -> Self {
        let mut options = Self {
            clients: vec![1, 50, 200],
            modes: vec!["off".into(), "on".into(), "auto".into()],
            format: "48000:16:2".into(),
            warmup: Duration::from_secs(3),
            window: Duration::from_secs(10),
        };
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
                "--modes" => options.modes = value().split(',').map(str::to_owned).collect(),
                "--format" => options.format = value(),
                "--seconds" => options.window = Duration::from_secs(value().parse().unwrap_or(10)),
                "--warmup" => options.warmup = Duration::from_secs(value().parse().unwrap_or(3)),
                "--smoke" => {
                    options.clients = vec![2];
                    options.modes = vec!["off".into(), "on".into()];
                    options.warmup = Duration::from_secs(1);
                    options.window = Duration::from_secs(2);
                }
                "--bench" => {} // passed by `cargo bench`
                other => eprintln!("load: ignoring unknown argument {other}"),
            }
        }
        options
    }
}

/// The relay under test, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(mode: &str, format: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let source = format!("tone:///?name=bench&freq=440&sampleformat={format}");
        let mut command = Command::new(env!("CARGO_BIN_EXE_snaprelay"));
        command
            .args(["--bind", "0.0.0.0", "--port", &port.to_string()])
            .args(["--source", &source, "--log-filter", "warn"])
            .args(["--grpc.enabled=false", "--server.diagnostics_interval_s=0"])
            .args(["--server.max_clients=10000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match mode {
            "on" => {
                command.args(["-z", "--stream.zerocopy_auto_fallback=false"]);
            }
            "auto" => {
                command.arg("-z");
            }
            _ => {}
        }
        let child = command.spawn().expect("spawn snaprelay");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "relay did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, addr }
    }

    /// (CPU seconds used so far, resident set in bytes).
    fn usage(&self) -> (f64, u64) {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let rest = stat.rfind(')').map_or("", |at| &stat[at + 2..]);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kib: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        (ticks as f64 / hz, rss_kib * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    mode: String,
    clients: usize,
    cpu_per_client_minute: f64,
    rss_mib: f64,
    chunks: u64,
    late: u64,
    gaps: u64,
    time_reply_ms: f64,
}

fn measure(options: &Options, mode: &str, clients: usize, idle_cpu: f64) -> (Row, f64) {
    let server = Server::start(mode, &options.format);
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
        let (cpu_before, _) = server.usage();
        tokio::time::sleep(options.window).await;
        let (cpu_after, rss) = server.usage();
        tally.chunks.fetch_sub(chunks_before, Ordering::Relaxed);
        tally.late.fetch_sub(late_before, Ordering::Relaxed);
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
            mode: mode.to_owned(),
            clients,
            cpu_per_client_minute: per_client,
            rss_mib: rss as f64 / (1024.0 * 1024.0),
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

fn main() {
    let options = Options::parse();
    println!(
        "snaprelay load: format {}, window {:?} after {:?} warm-up, CPU per client = \
         (server cores with N - with 0) x 60 / N",
        options.format, options.window, options.warmup
    );
    println!(
        "| mode | clients | CPU-s per client-minute | RSS MiB | chunks | late | gaps | time reply ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for mode in &options.modes {
        let (_, idle) = measure(&options, mode, 0, 0.0);
        for &clients in &options.clients {
            let (row, _) = measure(&options, mode, clients, idle);
            println!(
                "| {} | {} | {:.4} | {:.1} | {} | {} | {} | {:.3} |",
                row.mode,
                row.clients,
                row.cpu_per_client_minute,
                row.rss_mib,
                row.chunks,
                row.late,
                row.gaps,
                row.time_reply_ms
            );
            let _ = std::io::stdout().flush();
        }
    }
}
