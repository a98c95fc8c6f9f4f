//! The real Debian `snapclient` (installed with apt when missing), playing into a FIFO that a
//! thread drains, timestamping each read.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

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
        Self::start_wrapped(&[], port, host_id, dir, extra)
    }

    /// [`Snapclient::start_with`] run under `wrapper` (e.g. `ip netns exec NAME`).
    pub fn start_wrapped(
        wrapper: &[&str],
        port: u16,
        host_id: &str,
        dir: &Path,
        extra: &[&str],
    ) -> Self {
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
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        let mut child = command
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
