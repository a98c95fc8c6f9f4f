//! mDNS / DNS-SD publishing of the listeners, as snapserver does it through avahi, but with
//! no daemon: a responder of our own (`mdns-sd`) answers on every interface.
//!
//! Instance name "Snapcast", no TXT records, old and new service names together (snapserver
//! 0.33 renamed them, and tools that browse the old ones, PipeWire's snapcast discovery among
//! them, broke): `_snapcast._tcp` and `_snapcast-stream._tcp` for the stream port,
//! `_snapcast-ctrl._tcp`, `_snapcast-jsonrpc._tcp` and `_snapcast-tcp._tcp` for the JSON-RPC
//! port, `_snapcast-http._tcp`, `_snapcast-https._tcp` when HTTPS is on, and ours,
//! `_snaprelay-grpc._tcp`, for a gRPC API reachable from the network. At shutdown every
//! record is withdrawn (goodbye packets), so browsers drop it at once.

use std::net::SocketAddr;
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceInfo};
use tracing::{info, warn};

/// snapserver's instance name.
const INSTANCE: &str = "Snapcast";
/// How long shutdown waits for the goodbye packets to go out.
const WITHDRAW_WAIT: Duration = Duration::from_secs(1);

/// One service to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Service {
    /// DNS-SD type, e.g. `_snapcast._tcp`.
    pub(crate) kind: &'static str,
    /// Its port.
    pub(crate) port: u16,
}

/// The ports of the listeners that run, and which of them may be published.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listeners {
    /// The stream port, when `stream.publish`.
    pub(crate) stream: Option<u16>,
    /// The JSON-RPC TCP port, when it runs and `tcp.publish`.
    pub(crate) control: Option<u16>,
    /// The HTTP port, when it runs and `http.publish_http`.
    pub(crate) http: Option<u16>,
    /// The HTTPS port, when it runs and `http.publish_https`.
    pub(crate) https: Option<u16>,
    /// The gRPC API's address, when it runs.
    pub(crate) grpc: Option<SocketAddr>,
}

impl Listeners {
    /// Every service these listeners offer, in a stable order.
    pub(crate) fn services(&self) -> Vec<Service> {
        let mut services = Vec::new();
        let mut add = |kinds: &[&'static str], port: Option<u16>| {
            if let Some(port) = port {
                services.extend(kinds.iter().map(|&kind| Service { kind, port }));
            }
        };
        add(&["_snapcast._tcp", "_snapcast-stream._tcp"], self.stream);
        add(
            &[
                "_snapcast-ctrl._tcp",
                "_snapcast-jsonrpc._tcp",
                "_snapcast-tcp._tcp",
            ],
            self.control,
        );
        add(&["_snapcast-http._tcp"], self.http);
        add(&["_snapcast-https._tcp"], self.https);
        // A loopback-only API (the default) is nothing to announce on a network.
        let grpc = self
            .grpc
            .filter(|addr| !addr.ip().is_loopback())
            .map(|addr| addr.port());
        add(&["_snaprelay-grpc._tcp"], grpc);
        services
    }
}

/// Published services; [`Published::withdraw`] takes them back.
pub(crate) struct Published {
    daemon: ServiceDaemon,
    names: Vec<String>,
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// Publishes `services` for this host (`host_name`, without `.local`). A responder that
/// cannot start (no multicast anywhere) is a warning, not a failure: snapserver starts too.
pub(crate) fn publish(services: &[Service], host_name: &str) -> Option<Published> {
    if services.is_empty() {
        return None;
    }
    let daemon = match ServiceDaemon::new() {
        Ok(daemon) => daemon,
        Err(err) => {
            warn!(error = %err, "mDNS: cannot start the responder; services not published");
            return None;
        }
    };
    // `snapcast-jsonrpc` is 16 characters, one over RFC 6335's limit; avahi publishes it
    // and PipeWire browses it, so the responder must allow it.
    if let Err(err) = daemon.set_service_name_len_max(16) {
        warn!(error = %err, "mDNS: _snapcast-jsonrpc._tcp may not be published");
    }
    let host = format!("{}.local.", host_label(host_name));
    let mut names = Vec::new();
    for service in services {
        let kind = format!("{}.local.", service.kind);
        let registered = ServiceInfo::new(
            &kind,
            INSTANCE,
            &host,
            "",
            service.port,
            None::<std::collections::HashMap<String, String>>,
        )
        .map(ServiceInfo::enable_addr_auto)
        .and_then(|info| {
            let name = info.get_fullname().to_owned();
            daemon.register(info).map(|()| name)
        });
        match registered {
            Ok(name) => names.push(name),
            Err(err) => warn!(service = service.kind, error = %err, "mDNS: cannot publish"),
        }
    }
    info!(
        services = ?services.iter().map(|s| format!("{}:{}", s.kind, s.port)).collect::<Vec<_>>(),
        host = %host,
        "published via mDNS"
    );
    Some(Published { daemon, names })
}

impl Published {
    /// Withdraws every service (goodbye packets) and stops the responder. Blocks up to a
    /// second: call it off the runtime's workers.
    pub(crate) fn withdraw(self) {
        let deadline = std::time::Instant::now() + WITHDRAW_WAIT;
        let pending: Vec<_> = self
            .names
            .iter()
            .filter_map(|name| self.daemon.unregister(name).ok())
            .collect();
        for receiver in pending {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let _ = receiver.recv_timeout(left);
        }
        if let Ok(receiver) = self.daemon.shutdown() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let _ = receiver.recv_timeout(left);
        }
        info!("mDNS services withdrawn");
    }
}

/// A host name as one DNS label: the first label of `name`, with anything but letters,
/// digits and `-` replaced by `-`; "snaprelay" when nothing is left.
fn host_label(name: &str) -> String {
    let first = name.split('.').next().unwrap_or_default();
    let label: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() {
        "snaprelay".to_owned()
    } else {
        label.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapservers_old_and_new_names_are_published_together() {
        let listeners = Listeners {
            stream: Some(1704),
            control: Some(1705),
            http: Some(1780),
            https: None,
            grpc: Some("127.0.0.1:1710".parse().unwrap()),
        };
        let services: Vec<(&str, u16)> = listeners
            .services()
            .iter()
            .map(|s| (s.kind, s.port))
            .collect();
        assert_eq!(
            services,
            [
                ("_snapcast._tcp", 1704),
                ("_snapcast-stream._tcp", 1704),
                ("_snapcast-ctrl._tcp", 1705),
                ("_snapcast-jsonrpc._tcp", 1705),
                ("_snapcast-tcp._tcp", 1705),
                ("_snapcast-http._tcp", 1780),
            ]
        );
        let exposed = Listeners {
            https: Some(1788),
            grpc: Some("0.0.0.0:1710".parse().unwrap()),
            ..Listeners::default()
        };
        let kinds: Vec<&str> = exposed.services().iter().map(|s| s.kind).collect();
        assert_eq!(kinds, ["_snapcast-https._tcp", "_snaprelay-grpc._tcp"]);
    }

    #[test]
    fn host_names_become_one_label() {
        assert_eq!(host_label("kitchen"), "kitchen");
        assert_eq!(host_label("kitchen.example.com"), "kitchen");
        assert_eq!(host_label("my_box (2)"), "my-box--2");
        assert_eq!(host_label(""), "snaprelay");
    }
}
