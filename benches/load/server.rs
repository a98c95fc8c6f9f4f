//! The server under test: the tone writer that fills its FIFO source, the process wrapper
//! that starts snaprelay or snapserver and stops it on drop, the port it listens on, and its
//! CPU time and resident set read from /proc.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Target;

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
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Where snaprelay serves `/metrics` (its own count of late and dropped chunks).
    metrics: Option<SocketAddr>,
    _writer: Option<ToneWriter>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(target: &Target, codec: &str, format: &str, wrap: &[String]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = server_port();
        let metrics_port = server_port_after(port);
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
                        "--http.bind_to_address=127.0.0.1",
                        "--tcp.enabled=false",
                        "--server.mdns_enabled=false",
                    ])
                    .arg(format!("--http.port={metrics_port}"))
                    .args([
                        "--server.diagnostics_interval_s=0",
                        "--server.max_clients=20000",
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
        let metrics = matches!(target, Target::Snaprelay(_))
            .then(|| SocketAddr::from(([127, 0, 0, 1], metrics_port)));
        Self {
            child,
            addr,
            metrics,
            _writer: Some(writer),
            _dir: dir,
        }
    }

    /// An edge snaprelay relaying the stream of the relay at `upstream` (issue 19).
    pub fn start_edge(upstream: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = server_port();
        let source = format!("snapcast://{upstream}?name=bench");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_snaprelay"))
            .args(["--bind", "0.0.0.0", "--port", &port.to_string()])
            .args(["--source", &source, "--log-filter", "error"])
            .args([
                "--grpc.enabled=false",
                "--http.enabled=false",
                "--tcp.enabled=false",
                "--server.mdns_enabled=false",
                "--server.diagnostics_interval_s=0",
                "--server.max_clients=20000",
            ])
            .arg("--datadir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start an edge snaprelay");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the edge did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            addr,
            metrics: None,
            _writer: None,
            _dir: dir,
        }
    }
    /// CPU seconds used so far and the resident set.
    pub fn usage(&self) -> (f64, Resident) {
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

    /// The relay's own count of chunks its sessions skipped as late plus those lost by
    /// falling behind (`/metrics`), when it serves them.
    pub fn relay_lost_chunks(&self) -> Option<u64> {
        use std::io::Read as _;
        let addr = self.metrics?;
        let mut socket =
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        socket
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        socket.read_to_string(&mut text).ok()?;
        let value = |name: &str| -> Option<u64> {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|v| v as u64)
        };
        Some(value("snaprelay_late_chunks_total")? + value("snaprelay_dropped_chunks_total")?)
    }
}

/// A free port other than `taken`, for a second listener of the same server.
fn server_port_after(taken: u16) -> u16 {
    let start = taken.wrapping_add(1).max(20_000);
    (start..30_000)
        .chain(20_000..start)
        .find(|port| *port != taken && std::net::TcpListener::bind(("0.0.0.0", *port)).is_ok())
        .expect("a free port between 20000 and 30000")
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
pub struct Resident {
    pub total_kib: u64,
    pub anon_kib: u64,
    pub file_kib: u64,
}
