//! The sender against real sockets: zerocopy completions, auto-fallback, ENOBUFS, full
//! sockets, and the allocation-free steady state. The queue policy alone is tested in
//! `send_queue`.

use super::*;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn pair(addr: &str) -> Option<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind(addr).ok()?;
    let client = TcpStream::connect(listener.local_addr().ok()?).ok()?;
    let (server, _) = listener.accept().ok()?;
    client.set_nonblocking(true).ok()?;
    Some((client, server))
}

fn policy(zerocopy: bool, auto_fallback: bool) -> SendPolicy {
    SendPolicy {
        zerocopy,
        threshold: 1024,
        auto_fallback,
    }
}

fn sender(socket: &TcpStream, policy: SendPolicy) -> (Sender, Arc<SendStats>) {
    let stats = Arc::new(SendStats::default());
    let ip = socket.peer_addr().unwrap().ip();
    (
        Sender::new(socket.as_raw_fd(), policy, stats.clone(), ip),
        stats,
    )
}

fn reap_until_idle(sender: &mut Sender, fd: RawFd) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while sender.outstanding() > 0 {
        sender.reap_completions(fd).unwrap();
        assert!(Instant::now() < deadline, "completions never arrived");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn message(fill: u8, len: usize) -> Bytes {
    Bytes::from(vec![fill; len])
}

#[test]
fn zerocopy_sends_complete_and_release_their_buffers() {
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let Some((client, mut server)) = pair(addr) else {
            assert!(addr.starts_with('['));
            continue;
        };
        let fd = client.as_raw_fd();
        let (mut sender, stats) = sender(&client, policy(true, false));
        assert_eq!(stats.mode(), SendMode::Zerocopy);
        let chunk = message(3, 4000);
        for i in 0..10 {
            sender.push_audio(chunk.clone(), i);
        }
        assert_eq!(sender.flush(fd).unwrap(), Flushed::All);
        let mut got = vec![0u8; 40_000];
        server.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|b| *b == 3));
        // The chunk stays referenced by the kernel's in-flight entries until completion.
        assert!(sender.outstanding() > 0);
        assert!(!chunk.is_unique());
        reap_until_idle(&mut sender, fd);
        assert!(
            chunk.is_unique(),
            "{addr}: buffers released after completion"
        );
        let snap = stats.snapshot();
        // The ten queued chunks went out coalesced, in one zerocopy call.
        assert_eq!(snap.zerocopy_attempts, 1);
        assert_eq!(snap.zerocopy_successful, 1);
        assert_eq!(snap.zerocopy_bytes, 40_000);
        assert_eq!(snap.outstanding, 0);
        assert_eq!(
            snap.copied_completions, 10,
            "{addr}: loopback always copies"
        );
        assert_eq!(
            stats.mode(),
            SendMode::Zerocopy,
            "no auto-fallback asked for"
        );
    }
}

#[test]
fn auto_fallback_engages_on_copied_completions() {
    let (client, mut server) = pair("127.0.0.1:0").unwrap();
    let fd = client.as_raw_fd();
    let (mut sender, stats) = sender(&client, policy(true, true));
    sender.push_audio(message(1, 4000), 0);
    sender.flush(fd).unwrap();
    reap_until_idle(&mut sender, fd);
    assert_eq!(stats.mode(), SendMode::FellBack);
    assert!(stats.auto_fallback_engaged());
    sender.push_audio(message(2, 4000), 1);
    sender.flush(fd).unwrap();
    let mut got = vec![0u8; 8000];
    server.read_exact(&mut got).unwrap();
    let snap = stats.snapshot();
    assert_eq!(snap.zerocopy_attempts, 1);
    assert_eq!(
        snap.regular_sends, 1,
        "after fallback the chunk went the ordinary way"
    );
    assert!(
        sender.is_zerocopy_socket(),
        "tokio readiness stays off-limits"
    );
}

#[test]
fn enobufs_sends_that_message_the_ordinary_way() {
    let (client, mut server) = pair("127.0.0.1:0").unwrap();
    let fd = client.as_raw_fd();
    let (mut sender, stats) = sender(&client, policy(true, false));
    sender.inject_enobufs = 1;
    sender.push_audio(message(5, 2000), 0);
    sender.push_audio(message(6, 2000), 1);
    assert_eq!(sender.flush(fd).unwrap(), Flushed::All);
    let mut got = vec![0u8; 4000];
    server.read_exact(&mut got).unwrap();
    assert!(got[..2000].iter().all(|b| *b == 5) && got[2000..].iter().all(|b| *b == 6));
    let snap = stats.snapshot();
    assert_eq!(
        snap.enobufs_fallbacks, 2,
        "both messages of the refused run"
    );
    assert_eq!(snap.zerocopy_attempts, 1);
    assert_eq!(snap.zerocopy_successful, 0);
    assert_eq!(snap.regular_sends, 2);
    assert_eq!(sender.outstanding(), 0);
    // The next message goes zerocopy again.
    sender.push_audio(message(7, 2000), 2);
    assert_eq!(sender.flush(fd).unwrap(), Flushed::All);
    let mut got = vec![0u8; 2000];
    server.read_exact(&mut got).unwrap();
    assert_eq!(stats.snapshot().zerocopy_successful, 1);
    reap_until_idle(&mut sender, fd);
}

#[test]
fn small_messages_go_the_ordinary_way_and_riders_count_as_coordination_fallbacks() {
    let (client, mut server) = pair("127.0.0.1:0").unwrap();
    let fd = client.as_raw_fd();
    let (mut sender, stats) = sender(&client, policy(true, false));
    // A fresh time reply ahead of a large chunk: the reply goes alone, the chunk zerocopy.
    sender.push_audio(message(9, 3000), 0);
    sender.push_urgent(Payload::copy_from(&[1; 34]));
    assert_eq!(sender.flush(fd).unwrap(), Flushed::All);
    let mut got = vec![0u8; 3034];
    server.read_exact(&mut got).unwrap();
    assert!(
        got[..34].iter().all(|b| *b == 1),
        "urgent message went first"
    );
    let snap = stats.snapshot();
    assert_eq!((snap.regular_sends, snap.zerocopy_successful), (1, 1));
    assert_eq!(snap.coordination_fallbacks, 0);

    // An ordinary message partly on the wire (socket backed up): the large chunk behind
    // it rides along in the same ordinary write, a coordination fallback.
    sender.push_urgent(Payload::copy_from(&[4; 100]));
    sender.queue.pretend_head_sent(40);
    sender.push_audio(message(8, 3000), 1);
    assert_eq!(sender.flush(fd).unwrap(), Flushed::All);
    let mut got = vec![0u8; 3060];
    server.read_exact(&mut got).unwrap();
    assert!(got[..60].iter().all(|b| *b == 4) && got[60..].iter().all(|b| *b == 8));
    let snap = stats.snapshot();
    assert_eq!(snap.regular_sends, 3);
    assert_eq!(snap.coordination_fallbacks, 1);
    assert_eq!(snap.zerocopy_attempts, 1);
    reap_until_idle(&mut sender, fd);
}

#[test]
fn chunks_below_the_threshold_coalesce_into_one_zerocopy_send() {
    let (client, mut server) = pair("127.0.0.1:0").unwrap();
    let fd = client.as_raw_fd();
    let stats = Arc::new(SendStats::default());
    let policy = SendPolicy {
        zerocopy: true,
        threshold: 10_000,
        auto_fallback: false,
    };
    let mut sender = Sender::new(fd, policy, stats.clone(), "127.0.0.1".parse().unwrap());
    // One 3,878-byte chunk alone stays below the threshold: ordinary.
    sender.push_audio(message(1, 3878), 0);
    sender.flush(fd).unwrap();
    // Three queued together (a batch) cross it: one zerocopy call.
    for i in 0..3 {
        sender.push_audio(message(2, 3878), i);
    }
    sender.flush(fd).unwrap();
    let mut got = vec![0u8; 4 * 3878];
    server.read_exact(&mut got).unwrap();
    let snap = stats.snapshot();
    assert_eq!((snap.regular_sends, snap.zerocopy_successful), (1, 1));
    assert_eq!(snap.zerocopy_bytes, 3 * 3878);
    assert_eq!(
        sender.outstanding(),
        3,
        "each chunk held until the completion"
    );
    reap_until_idle(&mut sender, fd);
}

#[test]
fn a_full_socket_blocks_without_losing_bytes_and_drop_releases_in_flight() {
    let (client, mut server) = pair("127.0.0.1:0").unwrap();
    let fd = client.as_raw_fd();
    let (mut sender, stats) = sender(&client, policy(true, false));
    let chunk = message(7, 64 * 1024);
    let mut pushed = 0;
    loop {
        sender.push_audio(chunk.clone(), pushed);
        pushed += 1;
        if sender.flush(fd).unwrap() == Flushed::Blocked {
            break;
        }
        assert!(pushed < 10_000, "socket never filled");
    }
    assert!(!sender.is_empty());
    drop(sender);
    assert_eq!(stats.snapshot().outstanding, 0);
    assert!(chunk.is_unique(), "disconnect released every held buffer");
    // Everything accepted by the kernel is a whole prefix of the stream.
    server.set_nonblocking(true).unwrap();
    let mut total = 0;
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = server.read(&mut buf) {
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|b| *b == 7));
        total += n;
    }
    assert!(total > 0);
}

/// The steady-state hot path: one chunk serialized once into a pooled buffer, shared by
/// several sessions, each queueing, sending and (zerocopy) reaping it. After warm-up,
/// sending allocates nothing and the pool creates no new buffers.
#[test]
fn steady_state_sends_allocate_nothing_and_the_pool_stays_flat() {
    use crate::pool::BufferPool;
    use crate::protocol::{Tv, WireChunk};

    let pool = BufferPool::default();
    let mut sessions: Vec<_> = (0..4)
        .map(|i| {
            let (client, server) = pair("127.0.0.1:0").unwrap();
            let (sender, _) = sender(&client, policy(i % 2 == 0, false));
            server.set_nonblocking(true).unwrap();
            (client, server, sender)
        })
        .collect();
    let pcm = vec![0u8; 3840];
    let mut sink = vec![0u8; 1 << 16];
    let mut send_allocations = 0;
    let mut created_after_warmup = 0;
    for round in 0..500 {
        let mut buf = pool.get(WireChunk::message_len(pcm.len()));
        WireChunk::encode_message(buf.vec(), Tv::default(), Tv::default(), &pcm);
        let chunk = Bytes::from_owner(buf); // one allocation per chunk, not per send
        let before = crate::alloc_counter::allocations();
        for (client, _, sender) in &mut sessions {
            sender.push_audio(chunk.clone(), round);
            assert_eq!(sender.flush(client.as_raw_fd()).unwrap(), Flushed::All);
            sender.reap_completions(client.as_raw_fd()).unwrap();
        }
        if round >= 100 {
            send_allocations += crate::alloc_counter::allocations() - before;
        }
        drop(chunk);
        for (client, server, sender) in &mut sessions {
            while let Ok(n) = server.read(&mut sink) {
                if n == 0 {
                    break;
                }
            }
            if round % 50 == 0 {
                reap_until_idle(sender, client.as_raw_fd());
            }
        }
        if round == 100 {
            created_after_warmup = pool.stats().buffers_created;
        }
    }
    assert_eq!(send_allocations, 0, "allocations on the send path");
    for (client, _, sender) in &mut sessions {
        reap_until_idle(sender, client.as_raw_fd());
    }
    let stats = pool.stats();
    assert_eq!(
        stats.buffers_created, created_after_warmup,
        "steady streaming created new buffers: {stats:?}"
    );
    assert_eq!(stats.buffers_created + stats.buffers_reused, 500);
    assert_eq!(stats.available_buffers, stats.total_buffers, "all returned");
}

#[test]
fn a_socket_refusing_so_zerocopy_runs_a_regular_session() {
    // AF_UNIX sockets reject SO_ZEROCOPY, like a kernel or container without support.
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let stats = Arc::new(SendStats::default());
    let mut sender = Sender::new(
        ours.as_raw_fd(),
        policy(true, true),
        stats.clone(),
        "127.0.0.1".parse().unwrap(),
    );
    assert_eq!(stats.mode(), SendMode::Regular);
    assert_eq!(stats.zerocopy_refused.load(Ordering::Relaxed), 1);
    assert!(!sender.is_zerocopy_socket());
    sender.push_audio(message(4, 5000), 0);
    assert_eq!(sender.flush(ours.as_raw_fd()).unwrap(), Flushed::All);
    let mut got = vec![0u8; 5000];
    theirs.read_exact(&mut got).unwrap();
    assert_eq!(stats.snapshot().regular_sends, 1);
    assert_eq!(stats.snapshot().zerocopy_attempts, 0);
}
