//! A TCP proxy that delays every byte by a set time plus jitter, each way, in order, and can
//! hold everything for a while (a network partition that loses nothing). These machines'
//! kernels have no `netem` qdisc; this is the tests' own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The proxy; it stops accepting when dropped (open connections end with their peers).
pub struct DelayProxy {
    addr: SocketAddr,
    held: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl DelayProxy {
    /// Forwards connections on a free loopback port to `target`, each byte `delay` ± `jitter`
    /// later than it came (never reordered).
    pub fn start(target: SocketAddr, delay: Duration, jitter: Duration) -> Self {
        Self::start_on([127, 0, 0, 1].into(), target, delay, jitter)
    }

    /// [`DelayProxy::start`] listening on `ip` (a free port).
    pub fn start_on(
        ip: std::net::IpAddr,
        target: SocketAddr,
        delay: Duration,
        jitter: Duration,
    ) -> Self {
        let listener = TcpListener::bind((ip, 0)).expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        listener.set_nonblocking(true).unwrap();
        let (held_accept, stop_accept) = (held.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seed = 0x2545_f491_4f6c_dd1d_u64;
            while !stop_accept.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect(target) else {
                            continue;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        for (from, to) in [
                            (client.try_clone().unwrap(), server.try_clone().unwrap()),
                            (server, client),
                        ] {
                            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                            pump(from, to, delay, jitter, held_accept.clone(), seed);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { addr, held, stop }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// While `on`, nothing is forwarded either way (bytes wait, none are lost).
    pub fn hold(&self, on: bool) {
        self.held.store(on, Ordering::Relaxed);
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies `from` to `to`, each read released `delay` ± `jitter` after it arrived, in order.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: Duration,
    jitter: Duration,
    held: Arc<AtomicBool>,
    mut seed: u64,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut last = Instant::now();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let spread = jitter.as_micros() as i64;
            let offset = if spread > 0 {
                (seed % (2 * spread as u64 + 1)) as i64 - spread
            } else {
                0
            };
            let due = Instant::now() + delay;
            let due = if offset >= 0 {
                due + Duration::from_micros(offset as u64)
            } else {
                due - Duration::from_micros((-offset) as u64)
            };
            // Never before the bytes ahead of it: a TCP stream keeps its order.
            last = last.max(due);
            if tx.send((last, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            while held.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if to.write_all(&bytes).is_err() {
                let _ = to.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}
