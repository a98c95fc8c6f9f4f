//! Faults in a process source: one that crashes in a loop is restarted with backoff and
//! leaks no fds, and the other streams are unaffected.

use std::time::{Duration, Instant};

use crate::common::{eventually, Relay};
use crate::{open_fds, GoodClient, MAX_LATE};

#[test]
fn a_source_process_crashing_in_a_loop_backs_off_and_leaks_no_fds() {
    let relay = Relay::start(&[
        // The tone stream first: it is the default stream the good client plays.
        "--source",
        "tone:///?name=tone&freq=440&codec=pcm",
        "--source",
        "process:///bin/false?name=crashing&codec=pcm",
    ]);
    let pid = relay.pid();
    let restarts = || {
        relay
            .log()
            .matches("source process ended; restarting")
            .count()
    };
    eventually(
        Duration::from_secs(10),
        "two restarts",
        || relay.log(),
        || (restarts() >= 2).then_some(()),
    );
    let fds = open_fds(pid);
    let at = Instant::now();
    eventually(
        Duration::from_secs(15),
        "two more restarts",
        || relay.log(),
        || (restarts() >= 4).then_some(()),
    );
    // Backoff doubles from 500 ms: the waits before the 3rd and 4th start are 1 s and 2 s.
    assert!(
        at.elapsed() >= Duration::from_millis(2_500),
        "restarts not backing off: {:?}",
        at.elapsed()
    );
    let fd_list = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    // Polled: the dead child's pipe is closed by the reader task just after the log line.
    eventually(
        Duration::from_secs(2),
        &format!("fd count back to {fds} after restarts (a leak never converges)"),
        fd_list,
        || (open_fds(pid) == fds).then_some(()),
    );
    // The other stream is unaffected.
    let good = GoodClient::start(relay.addr, "good");
    eventually(
        Duration::from_secs(5),
        "chunks",
        || relay.log(),
        || (good.chunks() > 60).then_some(()),
    );
    good.finish("good client", MAX_LATE);
}
