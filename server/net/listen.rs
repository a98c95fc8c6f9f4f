//! Binding TCP listeners: one helper for every listener of the relay (stream, JSON-RPC,
//! HTTP, gRPC), so each restarts without waiting for TIME_WAIT and `::` serves IPv4 too.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;
use tracing::warn;

/// Binds a TCP listener the way every relay listener is bound.
///
/// # Errors
///
/// The address cannot be bound (in use, not local, no permission).
pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    match bind(addr) {
        // `::` where IPv6 is off (a kernel or pod without it): every IPv4 address instead,
        // the part of "every address" this host has.
        Err(err) if is_any_v6(addr) && ipv6_is_off(&err) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            warn!(%addr, error = %err, fallback = %v4, "IPv6 is off here; listening on IPv4 only");
            bind(v4)
        }
        result => result,
    }
}

fn is_any_v6(addr: SocketAddr) -> bool {
    matches!(addr.ip(), IpAddr::V6(ip) if ip.is_unspecified())
}

/// The errors binding `::` gives on a host without IPv6: no such address family (IPv6 not
/// built or `ipv6.disable=1`), or no such address (`disable_ipv6` set on every interface).
fn ipv6_is_off(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // Restarting must not wait for TIME_WAIT sockets of the previous run.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `::` alone should serve IPv4 clients too, as snapserver's default does.
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dual_stack_any_address_serves_ipv4() {
        let listener = listen("[::]:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
        let (accepted, connected) = tokio::join!(listener.accept(), connect);
        assert!(accepted.is_ok() && connected.is_ok());
    }

    #[test]
    fn only_a_missing_ipv6_falls_back() {
        let off = std::io::Error::from_raw_os_error(libc::EAFNOSUPPORT);
        let in_use = std::io::Error::from_raw_os_error(libc::EADDRINUSE);
        assert!(ipv6_is_off(&off) && !ipv6_is_off(&in_use));
        assert!(is_any_v6("[::]:1704".parse().unwrap()));
        assert!(!is_any_v6("[::1]:1704".parse().unwrap()));
        assert!(!is_any_v6("0.0.0.0:1704".parse().unwrap()));
    }

    #[tokio::test]
    async fn rebinding_a_just_closed_port_works() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        // The server closes first, leaving its side in TIME_WAIT.
        drop(server_side);
        drop(listener);
        drop(client);
        assert!(listen(addr).is_ok());
    }
}
