//! The relay core's promises to every front end (issue 14): secrets in source URIs are masked
//! in every output, the same bad value gets the same answer from gRPC and JSON-RPC, values
//! changed at run time reach everything that depends on them, and counters stay monotonic
//! when sessions leave.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{hello_client, jsonrpc_call as jsonrpc, snapctl, Relay};
use serde_json::{json, Value};
use snaprelay::pb;
use snaprelay::pb::control_client::ControlClient;
use tonic::transport::Channel;
use tonic::Code;

const SECRET: &str = "hunter2";

async fn control(relay: &Relay) -> ControlClient<Channel> {
    let channel = Channel::from_shared(relay.grpc_url())
        .unwrap()
        .connect()
        .await
        .expect("connect to the gRPC listener");
    ControlClient::new(channel)
}

#[tokio::test]
async fn secrets_in_source_uris_are_masked_in_every_output() {
    let port = common::free_port().to_string();
    let uri =
        format!("tcp://127.0.0.1:{port}?name=net&mode=server&password={SECRET}&api_token=t0k3n");
    let relay = Relay::start(&["--source", &uri]);
    relay.wait_for_log(&["stream started"], Duration::from_secs(10));
    let mut control = control(&relay).await;

    let streams = control
        .list_streams(pb::ListStreamsRequest {})
        .await
        .unwrap()
        .into_inner()
        .streams;
    let stats = control
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    let json_rpc = jsonrpc(relay.jsonrpc_addr(), "Server.GetStatus", json!({}));
    let outputs = [
        ("gRPC ListStreams", streams[0].uri.clone()),
        ("gRPC GetStats", stats.streams[0].uri.clone()),
        ("snapctl streams", snapctl(&relay, &["streams"])),
        (
            "snapctl --json streams",
            snapctl(&relay, &["--json", "streams"]),
        ),
        (
            "snapctl --json stats",
            snapctl(&relay, &["--json", "stats"]),
        ),
        ("snapctl config get", snapctl(&relay, &["config", "get"])),
        ("JSON-RPC Server.GetStatus", json_rpc.to_string()),
        ("the log", relay.log()),
    ];
    for (what, text) in outputs {
        assert!(
            !text.contains(SECRET) && !text.contains("t0k3n"),
            "{what} shows a secret: {text}"
        );
    }
    // The rest of the URI is still shown, with the secrets' keys.
    assert!(
        streams[0].uri.contains("password=xxx") && streams[0].uri.contains("api_token=xxx"),
        "{}",
        streams[0].uri
    );
    assert!(streams[0].uri.contains("mode=server"), "{}", streams[0].uri);
}

/// A bad value sent to both APIs: gRPC's code and JSON-RPC's error code, and the rule's text
/// in both messages.
struct Case {
    what: &'static str,
    grpc: Option<Result<pb::Client, tonic::Status>>,
    json_rpc: Value,
    rule: &'static str,
}

#[tokio::test]
async fn the_same_bad_value_gets_the_same_answer_from_grpc_and_json_rpc() {
    let relay = Relay::start(&["--source", "tone:///?name=tone", "--buffer", "1000"]);
    let _client = hello_client(&relay, "rules");
    let id = "rules";
    let mut control = control(&relay).await;
    let rpc = relay.jsonrpc_addr();

    let long_name = "n".repeat(101);
    let mut cases = Vec::new();
    for (what, percent, rule) in [
        ("volume above 100", 101_i64, "0 to 100"),
        ("volume below 0", -1, "0 to 100"),
    ] {
        let grpc = match u32::try_from(percent) {
            Ok(percent) => Some(
                control
                    .set_client_volume(pb::SetClientVolumeRequest {
                        client_id: id.into(),
                        percent: Some(percent),
                        muted: None,
                    })
                    .await
                    .map(tonic::Response::into_inner),
            ),
            // gRPC's field is unsigned: a negative volume cannot be sent there.
            Err(_) => None,
        };
        let json_rpc = jsonrpc(
            rpc,
            "Client.SetVolume",
            json!({"id": id, "volume": {"percent": percent}}),
        );
        cases.push(Case {
            what,
            grpc,
            json_rpc,
            rule,
        });
    }
    for (what, latency, rule) in [
        ("latency above the buffer", 1001_i32, "-10000 to 1000"),
        ("latency far above", 10_001, "-10000 to 1000"),
        ("latency below the minimum", -10_001, "-10000 to 1000"),
    ] {
        let grpc = control
            .set_client_latency(pb::SetClientLatencyRequest {
                client_id: id.into(),
                latency_ms: latency,
            })
            .await
            .map(tonic::Response::into_inner);
        let json_rpc = jsonrpc(
            rpc,
            "Client.SetLatency",
            json!({"id": id, "latency": latency}),
        );
        cases.push(Case {
            what,
            grpc: Some(grpc),
            json_rpc,
            rule,
        });
    }
    for (what, name) in [
        ("name too long", long_name.as_str()),
        ("name with a control character", "a\u{7}b"),
    ] {
        let grpc = control
            .set_client_name(pb::SetClientNameRequest {
                client_id: id.into(),
                name: name.into(),
            })
            .await
            .map(tonic::Response::into_inner);
        let json_rpc = jsonrpc(rpc, "Client.SetName", json!({"id": id, "name": name}));
        cases.push(Case {
            what,
            grpc: Some(grpc),
            json_rpc,
            rule: "at most 100 characters, no control characters",
        });
    }
    for case in cases {
        if let Some(grpc) = case.grpc {
            let err = grpc.expect_err(case.what);
            assert_eq!(err.code(), Code::InvalidArgument, "{}: {err:?}", case.what);
            assert!(err.message().contains(case.rule), "{}: {err:?}", case.what);
        }
        let error = &case.json_rpc["error"];
        assert_eq!(error["code"], -32602, "{}: {}", case.what, case.json_rpc);
        // JSON-RPC's message is the code's name; the detail is in `data`.
        assert!(
            error["data"]
                .as_str()
                .unwrap_or_default()
                .contains(case.rule),
            "{}: {}",
            case.what,
            case.json_rpc
        );
    }

    // Nothing changed, and good values get the same answer on both.
    let client = control
        .set_client_name(pb::SetClientNameRequest {
            client_id: id.into(),
            name: "  Kitchen  ".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(client.name, "Kitchen");
    assert_eq!((client.volume_percent, client.latency_ms), (100, 0));
    let renamed = jsonrpc(rpc, "Client.SetName", json!({"id": id, "name": "  Den "}));
    assert_eq!(renamed["result"]["name"], "Den", "{renamed}");
    for api in ["gRPC", "JSON-RPC"] {
        let name = if api == "gRPC" {
            control
                .set_client_name(pb::SetClientNameRequest {
                    client_id: id.into(),
                    name: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .name
        } else {
            let reply = jsonrpc(rpc, "Client.SetName", json!({"id": id, "name": ""}));
            reply["result"]["name"]
                .as_str()
                .unwrap_or("(error)")
                .to_owned()
        };
        assert_eq!(name, "", "{api}: an empty name clears the name");
    }
}

#[tokio::test]
async fn a_buffer_changed_at_run_time_reaches_the_latency_rule_on_both_apis() {
    let relay = Relay::start(&["--source", "tone:///?name=tone", "--buffer", "1000"]);
    let _client = hello_client(&relay, "live");
    let mut control = control(&relay).await;
    let refused = jsonrpc(
        relay.jsonrpc_addr(),
        "Client.SetLatency",
        json!({"id": "live", "latency": 1500}),
    );
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    control
        .update_config(pb::UpdateConfigRequest {
            changes: vec![pb::ConfigChange {
                key: "stream.buffer".into(),
                value: "2000".into(),
            }],
        })
        .await
        .unwrap();
    let accepted = jsonrpc(
        relay.jsonrpc_addr(),
        "Client.SetLatency",
        json!({"id": "live", "latency": 1500}),
    );
    assert_eq!(accepted["result"]["latency"], 1500, "{accepted}");
    let client = control
        .set_client_latency(pb::SetClientLatencyRequest {
            client_id: "live".into(),
            latency_ms: 1800,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(client.latency_ms, 1800);
}

#[tokio::test]
async fn totals_never_go_down_when_sessions_leave() {
    let relay = Relay::start(&["--source", "tone:///?name=tone&codec=pcm"]);
    let mut control = control(&relay).await;
    let client = hello_client(&relay, "leaver");
    // Let some audio flow to it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let stats = control
            .get_stats(pb::GetStatsRequest {})
            .await
            .unwrap()
            .into_inner();
        let aggregate = stats.aggregate.unwrap_or_default();
        if aggregate.chunks_sent >= 10 {
            break aggregate;
        }
        assert!(Instant::now() < deadline, "no chunks sent: {aggregate:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = control
            .get_stats(pb::GetStatsRequest {})
            .await
            .unwrap()
            .into_inner();
        let after = stats.aggregate.unwrap_or_default();
        assert!(
            after.chunks_sent >= before.chunks_sent,
            "{after:?} < {before:?}"
        );
        assert!(
            after.bytes_sent >= before.bytes_sent,
            "{after:?} < {before:?}"
        );
        assert_eq!(after.connections_accepted, 1, "{after:?}");
        if after.sessions == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session did not end: {after:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // /metrics says the same as gRPC.
    let metrics = http_get(relay.http_addr(), "/metrics");
    let sent: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("snaprelay_sent_chunks_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("snaprelay_sent_chunks_total");
    assert!(
        sent >= before.chunks_sent,
        "{sent} < {}",
        before.chunks_sent
    );
    // The JSON-RPC hub's counter reaches /metrics as well as gRPC (where it is a field of the
    // aggregate, 0 here: no JSON-RPC client was ever too slow).
    assert!(
        metrics
            .lines()
            .any(|l| l == "snaprelay_jsonrpc_slow_disconnects_total 0"),
        "{metrics}"
    );
    let stats = control
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stats.aggregate.unwrap_or_default().jsonrpc_slow_disconnects,
        0
    );
    // snapctl shows the same totals.
    let text = snapctl(&relay, &["stats"]);
    assert!(
        text.contains("since start: 1 connection(s)")
            && text.contains("0 JSON-RPC client(s) dropped as too slow"),
        "{text}"
    );
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn every_listener_bound_to_the_ipv6_any_address_serves_ipv4_and_ipv6() {
    let relay = Relay::start(&[
        "--source",
        "tone:///?name=tone",
        "--bind",
        "::",
        "--grpc.bind_to_address=::",
        "--http.bind_to_address=::",
        "--tcp.bind_to_address=::",
    ]);
    let listeners = [
        ("stream", relay.addr),
        ("gRPC", relay.grpc_addr()),
        ("HTTP", relay.http_addr()),
        ("JSON-RPC", relay.jsonrpc_addr()),
    ];
    for (what, addr) in listeners {
        assert!(
            addr.ip().is_unspecified() && addr.is_ipv6(),
            "{what}: {addr}"
        );
        for ip in ["127.0.0.1", "::1"] {
            let target = SocketAddr::new(ip.parse().unwrap(), addr.port());
            TcpStream::connect_timeout(&target, Duration::from_secs(5))
                .unwrap_or_else(|err| panic!("{what} on {target}: {err}"));
        }
    }
    // And it answers there: JSON-RPC over IPv4 to the `::` listener.
    let v4 = SocketAddr::new("127.0.0.1".parse().unwrap(), relay.jsonrpc_addr().port());
    let status = jsonrpc(v4, "Server.GetStatus", json!({}));
    assert!(status["result"]["server"].is_object(), "{status}");
}
