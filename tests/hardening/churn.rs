//! Connection churn with zerocopy sends: thousands of short sessions, reset or closed at
//! every stage, release every buffer, fd and byte.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::common::eventually;
use crate::{hello, metrics, open_fds, open_sessions, read_message, rss_kib, tone_relay};

#[test]
fn zerocopy_churn_releases_every_buffer_fd_and_byte() {
    const CYCLES: usize = 2000;
    const THREADS: usize = 4;
    let relay = tone_relay(&["-z", "--stream.zerocopy_auto_fallback=false"]);
    let addr = relay.addr;
    let pid = relay.pid();
    // Warm up: one full session, so lazily created things (pool buffers, the HTTP client
    // path) exist before the baseline is taken.
    {
        let mut warm = TcpStream::connect(addr).unwrap();
        warm.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        warm.write_all(&hello(2, "warm-up")).unwrap();
        for _ in 0..20 {
            read_message(&mut warm).unwrap();
        }
    }
    eventually(
        Duration::from_secs(5),
        "warm-up session gone",
        String::new,
        || (open_sessions(&relay) == 0).then_some(()),
    );
    let fds_before = open_fds(pid);
    let rss_before = rss_kib(pid);

    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..CYCLES / THREADS {
                    let mut s = TcpStream::connect(addr).expect("connect");
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    s.write_all(&hello(2, &format!("churn-{t}-{}", i % 8)))
                        .unwrap();
                    match i % 4 {
                        // Gone right after Hello, while the Welcome is being sent.
                        0 => {}
                        // Reset (SO_LINGER 0) with unread data: zerocopy sends may still be
                        // waiting for their completions when the socket dies.
                        1 => {
                            let _ = read_message(&mut s);
                            socket2::SockRef::from(&s)
                                .set_linger(Some(Duration::ZERO))
                                .unwrap();
                        }
                        // A normal listener for a few chunks, then a normal close.
                        _ => {
                            for _ in 0..5 {
                                if read_message(&mut s).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("churn worker");
    }

    let zerocopy_sends = metrics(&relay)
        .get("snaprelay_zerocopy_successes_total")
        .copied()
        .unwrap_or(0.0);
    assert!(zerocopy_sends > 0.0, "zerocopy was never used");
    eventually(
        Duration::from_secs(10),
        "every session closed, no zerocopy send outstanding, fds back to the start",
        || {
            let m = metrics(&relay);
            format!(
                "sessions {}, outstanding {:?}, fds {} (before {fds_before})",
                open_sessions(&relay),
                m.get("snaprelay_zerocopy_outstanding"),
                open_fds(pid)
            )
        },
        || {
            let m = metrics(&relay);
            let outstanding = m.get("snaprelay_zerocopy_outstanding").copied();
            // Probe before counting: the /metrics connection itself is closed by then.
            (open_sessions(&relay) == 0 && outstanding == Some(0.0) && open_fds(pid) <= fds_before)
                .then_some(())
        },
    );
    let rss = rss_kib(pid);
    assert!(
        rss < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss} KiB over {CYCLES} sessions"
    );
}
