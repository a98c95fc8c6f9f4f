//! A running `snaprelay` as a child process: start-up on free ports, the listener addresses
//! it logs, its captured log, SIGTERM and kill on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

    /// Starts the relay with one stream, `music`, read from a FIFO in its directory as
    /// 48000:16:2 with `codec` in 20 ms chunks, plus `extra` flags; returns the FIFO's path.
    pub fn start_with_pipe(codec: &str, extra: &[&str]) -> (Self, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = super::source_fifo(dir.path(), "music");
        let uri = format!(
            "pipe://{}?name=music&sampleformat=48000:16:2&codec={codec}&chunk_ms=20",
            fifo.display()
        );
        let mut args = vec!["--source", uri.as_str()];
        args.extend_from_slice(extra);
        (Self::start_in(dir, &args), fifo)
    }

    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Self {
        Self::start_with_env(dir, args, &[])
    }

    /// [`Relay::start_in`] with extra environment variables (its stream plugins and
    /// processes inherit them).
    pub fn start_with_env(dir: tempfile::TempDir, args: &[&str], vars: &[(&str, &str)]) -> Self {
        Self::start_wrapped(&[], dir, args, vars)
    }

    /// [`Relay::start_with_env`] run under `wrapper` (e.g. `ip netns exec NAME`).
    pub fn start_wrapped(
        wrapper: &[&str],
        dir: tempfile::TempDir,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Self {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(env!("CARGO_BIN_EXE_snaprelay"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_snaprelay")),
        };
        command.envs(vars.iter().copied());
        if !args.contains(&"--bind") {
            command.args(["--bind", "127.0.0.1"]);
        }
        if !args.iter().any(|a| a.contains("mdns_enabled")) {
            // Test relays do not announce themselves on the machine's network.
            command.arg("--server.mdns_enabled=false");
        }
        if !args.contains(&"--datadir") {
            // Each relay keeps its clients and groups to itself (never ~/.config).
            command.arg("--datadir").arg(dir.path().join("state"));
        }
        if !args.contains(&"--port") {
            command.args(["--port", "0"]);
        }
        let mut child = command
            .args([
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
                // With TCP streaming off, the loopback port WebSocket clients join.
                if line.contains("listening for stream clients")
                    || line.contains("stream clients over TCP are off")
                {
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
        self.logged_addr(&self.jsonrpc_addr, "listening for JSON-RPC")
    }

    /// The HTTP listener's address, from its "listening for HTTP" log line (waits for it).
    pub fn http_addr(&self) -> SocketAddr {
        self.logged_addr(&self.http_addr, "listening for HTTP")
    }

    /// The gRPC control API's address, from its "listening for gRPC" log line (waits for it).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.logged_addr(&self.grpc_addr, "listening for gRPC")
    }

    /// Waits until the log reader has filled `slot` from the `line` log line.
    fn logged_addr(&self, slot: &Mutex<Option<SocketAddr>>, line: &str) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(addr) = *slot.lock().unwrap() {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "snaprelay never logged '{line}'; its log:\n{}",
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

/// Extracts `key=value` from a tracing log line.
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    let rest = &line[start..];
    Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
}
