//! Test harness: the built `snaprelay` and real Debian `snapclient`s as child processes
//! (killed on drop), a test signal written into the relay's FIFO, and the analysis of what
//! each client played.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod audio;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use audio::Signal;

/// Makes sure the real snapclient is installed, installing it with apt when it is missing.
/// Fails loudly (never skips) when it still is not there.
pub fn snapclient_binary() -> PathBuf {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        if which("snapclient").is_none() {
            let _ = Command::new("apt-get").arg("update").status();
            let _ = Command::new("apt-get")
                .args(["install", "-y", "snapclient"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
        }
    });
    which("snapclient").expect(
        "snapclient is not installed and `apt-get install -y snapclient` failed: \
         the end-to-end tests need Debian's snapclient",
    )
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

/// A running `snaprelay`, killed on drop; its stderr is kept for assertions.
pub struct Relay {
    child: Child,
    pub addr: SocketAddr,
    grpc_addr: Arc<Mutex<Option<SocketAddr>>>,
    http_addr: Arc<Mutex<Option<SocketAddr>>>,
    jsonrpc_addr: Arc<Mutex<Option<SocketAddr>>>,
    log: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
}

impl Relay {
    /// Starts the relay with extra flags, on 127.0.0.1 and a free port, and waits until it
    /// listens.
    pub fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, args)
    }

    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_snaprelay"));
        if !args.contains(&"--bind") {
            command.args(["--bind", "127.0.0.1"]);
        }
        if !args.contains(&"--datadir") {
            // Each relay keeps its clients and groups to itself (never ~/.config).
            command.arg("--datadir").arg(dir.path().join("state"));
        }
        let mut child = command
            .args([
                "--port",
                "0",
                "--log-filter",
                // Our own debug lines; the gRPC stack's debug output only drowns them.
                "info,snaprelay=debug",
                // Tests run in parallel: the control API takes any free port (see grpc_addr).
                "--grpc.port=0",
                // Likewise the HTTP listener (see http_addr), on loopback only.
                "--http.port=0",
                "--http.bind_to_address=127.0.0.1",
                // Likewise the JSON-RPC TCP listener (see jsonrpc_addr).
                "--tcp.port=0",
                "--tcp.bind_to_address=127.0.0.1",
            ])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn snaprelay");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        let grpc_addr = Arc::new(Mutex::new(None));
        let grpc_sink = grpc_addr.clone();
        let http_addr = Arc::new(Mutex::new(None));
        let http_sink = http_addr.clone();
        let jsonrpc_addr = Arc::new(Mutex::new(None));
        let jsonrpc_sink = jsonrpc_addr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening for JSON-RPC") {
                    if let Some(addr) = field(&line, "addr").and_then(|a| a.parse().ok()) {
                        *jsonrpc_sink.lock().unwrap() = Some(addr);
                    }
                }
                if line.contains("listening for HTTP") {
                    if let Some(addr) = field(&line, "addr").and_then(|a| a.parse().ok()) {
                        *http_sink.lock().unwrap() = Some(addr);
                    }
                }
                if line.contains("listening for gRPC") {
                    if let Some(addr) = field(&line, "addr").and_then(|a| a.parse().ok()) {
                        *grpc_sink.lock().unwrap() = Some(addr);
                    }
                }
                if line.contains("listening for stream clients") {
                    if let Some(addr) = field(&line, "addr") {
                        let _ = addr_tx.send(addr);
                    }
                }
                if std::env::var_os("SNAPRELAY_TEST_ECHO").is_some() {
                    eprintln!("relay: {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match addr_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr.parse().expect("listen address in log"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "snaprelay did not start listening; its log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Self {
            child,
            addr,
            grpc_addr,
            http_addr,
            jsonrpc_addr,
            log,
            dir,
        }
    }

    /// The JSON-RPC TCP listener's address, from its "listening for JSON-RPC" log line
    /// (waits for it).
    pub fn jsonrpc_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(addr) = *self.jsonrpc_addr.lock().unwrap() {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "snaprelay never logged 'listening for JSON-RPC'; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The HTTP listener's address, from its "listening for HTTP" log line (waits for it).
    pub fn http_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(addr) = *self.http_addr.lock().unwrap() {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "snaprelay never logged 'listening for HTTP'; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The gRPC control API's address, from its "listening for gRPC" log line (waits for it).
    pub fn grpc_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(addr) = *self.grpc_addr.lock().unwrap() {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "snaprelay never logged 'listening for gRPC'; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The control API URL for clients (`http://127.0.0.1:PORT`).
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains every needle.
    pub fn wait_for_log(&self, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|line| needles.iter().all(|n| line.contains(n)))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needles:?} within {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "relay ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (the relay reports what it really bound).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Extracts `key=value` from a tracing log line.
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    let rest = &line[start..];
    Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
}

/// Writes a test signal into a FIFO from a thread, as a player would.
pub struct FifoWriter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FifoWriter {
    /// Writes `signal` from frame `start_frame` on, in 20 ms pieces, until stopped. The FIFO
    /// applies back-pressure, so the relay's pacing sets the rate.
    pub fn start(path: &Path, signal: Signal, start_frame: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = path.to_owned();
        let thread = std::thread::spawn(move || {
            let mut fifo = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open relay FIFO for writing");
            let mut frame = start_frame;
            let mut buf = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                buf.clear();
                signal.render(frame, 960, &mut buf);
                if fifo.write_all(&buf).is_err() {
                    return;
                }
                frame += 960;
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops writing and closes the FIFO (the relay sees its writer go away).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FifoWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One read of a client's output: when it arrived and where it starts in the output.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub at_us: i64,
    pub offset: usize,
}

/// A real snapclient playing into a FIFO that a thread drains, timestamping each read.
pub struct Snapclient {
    child: Child,
    pub host_id: String,
    output: Arc<Mutex<(Vec<u8>, Vec<Arrival>)>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Snapclient {
    pub fn start(port: u16, host_id: &str, dir: &Path) -> Self {
        Self::start_with(port, host_id, dir, &[])
    }

    pub fn start_with(port: u16, host_id: &str, dir: &Path, extra: &[&str]) -> Self {
        let binary = snapclient_binary();
        let fifo = dir.join(format!("{host_id}.out"));
        let _ = std::fs::remove_file(&fifo);
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
        let output = Arc::new(Mutex::new((Vec::new(), Vec::new())));
        let sink = output.clone();
        let reader_path = fifo.clone();
        std::thread::spawn(move || {
            // Blocks until snapclient opens its player "file". snapclient closes and reopens
            // it on every CodecHeader (a stream switch), so reopen after each EOF.
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(mut fifo) = std::fs::File::open(&reader_path) {
                loop {
                    match fifo.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let at_us = snaprelay::clock::now_micros();
                            let mut out = sink.lock().unwrap();
                            let offset = out.0.len();
                            out.0.extend_from_slice(&buf[..n]);
                            out.1.push(Arrival { at_us, offset });
                        }
                    }
                }
            }
        });
        let mut child = Command::new(binary)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["--hostID", host_id])
            .arg("--player")
            .arg(format!("file:filename={}", fifo.display()))
            .args(["--logsink", "stderr"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn snapclient");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log_sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            host_id: host_id.to_owned(),
            output,
            log,
        }
    }

    /// Everything played so far and the arrival of each piece.
    pub fn output(&self) -> (Vec<u8>, Vec<Arrival>) {
        let out = self.output.lock().unwrap();
        (out.0.clone(), out.1.clone())
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Whether the process is still running (snapclient exits on a bad codec header).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().map(|s| s.is_none()).unwrap_or(false)
    }
}

impl Drop for Snapclient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a FIFO path inside `dir` for the relay's source.
pub fn source_fifo(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.fifo"))
}

/// Polls `check` every 20 ms until it returns `Some`, failing with `what` (and the value of
/// `context()`) after `timeout`. For conditions that become true, instead of fixed sleeps.
pub fn eventually<T>(
    timeout: Duration,
    what: &str,
    context: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {timeout:?}; context:\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Frames in one second of the 48 kHz test signal.
pub const SECOND: usize = 48_000;

/// What a client played from half a second after its first sound on (start-up settled), and
/// that index; fails the test when it played only silence or too little.
pub fn steady_frames(client: &Snapclient) -> (Vec<(i16, i16)>, usize) {
    let (bytes, _) = client.output();
    let frames = audio::frames(&bytes);
    let start = audio::first_sound(&frames).unwrap_or_else(|| {
        panic!(
            "client {} played only silence ({} frames); its log:\n{}",
            client.host_id,
            frames.len(),
            client.log()
        )
    });
    let from = start + SECOND / 2;
    assert!(
        frames.len() > from + 2 * SECOND,
        "client {} played too little after start-up: {} frames; its log:\n{}",
        client.host_id,
        frames.len().saturating_sub(start),
        client.log()
    );
    (frames[from..].to_vec(), from)
}

/// Runs `snapctl --server <relay> ARGS`; returns stdout, failing the test on a non-zero exit.
pub fn snapctl(relay: &Relay, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_snapctl"))
        .args(["--server", &relay.grpc_url()])
        .args(args)
        .output()
        .expect("run snapctl");
    assert!(
        output.status.success(),
        "snapctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts that the frame counter in what `client` played runs on without a break: no
/// dropout, no silence, no garbage (lossless playback of the test signal).
pub fn assert_continuous(client: &Snapclient, frames: &[(i16, i16)]) {
    let report = audio::continuity(frames);
    assert!(
        report.breaks.is_empty(),
        "{}: dropouts in {} frames: {:?}",
        client.host_id,
        report.frames,
        &report.breaks[..report.breaks.len().min(10)]
    );
}

/// Median of how far client `a` plays ahead of client `b`, in ms, over their steady output
/// (see `audio::sync_offsets_ms`), and how many player blocks it compares; fails the test
/// with fewer than 20 comparable blocks.
pub fn sync_offset_ms(a: &Snapclient, b: &Snapclient) -> (f64, usize) {
    let (bytes_a, arrivals_a) = a.output();
    let (bytes_b, arrivals_b) = b.output();
    let (_, from_a) = steady_frames(a);
    let (_, from_b) = steady_frames(b);
    let positions_a = audio::block_positions(&bytes_a, &arrivals_a, from_a);
    let positions_b = audio::block_positions(&bytes_b, &arrivals_b, from_b);
    let offsets = audio::sync_offsets_ms(&positions_a, &positions_b);
    assert!(
        offsets.len() >= 20,
        "too few comparable blocks: {}",
        offsets.len()
    );
    (audio::median(&offsets), offsets.len())
}
