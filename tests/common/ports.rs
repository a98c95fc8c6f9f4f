//! Free loopback ports for tests that pass the relay a fixed port.

/// A port that was free a moment ago (the relay reports what it really bound).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
