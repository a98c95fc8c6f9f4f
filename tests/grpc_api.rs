//! Every control RPC over a real socket against the built `snaprelay` binary: success cases,
//! error codes, auth refusal, health, reflection and the stats stream.

mod common;

use std::time::{Duration, Instant};

use common::audio::Signal;
use common::{FifoWriter, Relay, Snapclient};
use snaprelay::pb;
use snaprelay::pb::control_client::ControlClient;
use tonic::transport::Channel;
use tonic::Code;

fn pipe_relay(extra: &[&str]) -> (Relay, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let fifo = common::source_fifo(dir.path(), "music");
    let uri = format!(
        "pipe://{}?name=music&sampleformat=48000:16:2&codec=pcm",
        fifo.display()
    );
    let mut args = vec!["--source", &uri];
    args.extend_from_slice(extra);
    let relay = Relay::start_in(dir, &args);
    (relay, fifo)
}

async fn channel(relay: &Relay) -> Channel {
    Channel::from_shared(relay.grpc_url())
        .unwrap()
        .connect()
        .await
        .expect("connect to the gRPC listener")
}

async fn control(relay: &Relay) -> ControlClient<Channel> {
    ControlClient::new(channel(relay).await)
}

/// Polls ListSessions until `ready` holds for the list.
async fn sessions_until(
    control: &mut ControlClient<Channel>,
    what: &str,
    ready: impl Fn(&[pb::Session]) -> bool,
) -> Vec<pb::Session> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sessions = control
            .list_sessions(pb::ListSessionsRequest {})
            .await
            .unwrap()
            .into_inner()
            .sessions;
        if ready(&sessions) {
            return sessions;
        }
        assert!(Instant::now() < deadline, "{what}: {sessions:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn server_info_config_and_streams() {
    let (relay, _fifo) = pipe_relay(&["--buffer", "800"]);
    let mut control = control(&relay).await;

    let info = control
        .get_server_info(pb::GetServerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.stream_addresses, [relay.addr.to_string()]);
    assert_eq!(info.grpc_addresses, [relay.grpc_addr().to_string()]);
    assert!(!info.auth_required && !info.tls);
    assert!(info.zerocopy_available || !info.zerocopy_unavailable_reason.is_empty());

    let all = control
        .get_config(pb::GetConfigRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    let entry = |key: &str| all.iter().find(|e| e.key == key).unwrap().clone();
    let buffer = entry("stream.buffer");
    assert_eq!(buffer.value, "800");
    assert_eq!(buffer.origin(), pb::ConfigOrigin::Flag);
    assert!(buffer.runtime_updatable);
    assert_eq!(entry("server.threads").origin(), pb::ConfigOrigin::Default);
    assert!(!entry("stream.port").runtime_updatable);

    let one = control
        .get_config(pb::GetConfigRequest {
            key: "stream.buffer".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(one.len(), 1);
    let err = control
        .get_config(pb::GetConfigRequest {
            key: "stream.buffr".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("did you mean 'stream.buffer'"),
        "{err:?}"
    );

    let streams = control
        .list_streams(pb::ListStreamsRequest {})
        .await
        .unwrap()
        .into_inner()
        .streams;
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].name, "music");
    assert_eq!(streams[0].codec, "pcm");
    assert_eq!(streams[0].sample_format, "48000:16:2");
    assert_eq!(streams[0].state(), pb::StreamState::Idle);
}

#[tokio::test]
async fn update_config_validates_then_applies() {
    let (relay, _fifo) = pipe_relay(&[]);
    let mut control = control(&relay).await;
    let update = |key: &str, value: &str| pb::UpdateConfigRequest {
        changes: vec![pb::ConfigChange {
            key: key.into(),
            value: value.into(),
        }],
    };

    let err = control
        .update_config(update("stream.buffer", "5"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("stream.buffer") && err.message().contains("20 to 60000"),
        "{err:?}"
    );
    let err = control
        .update_config(update("stream.port", "1800"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("cannot change at run time"),
        "{err:?}"
    );
    let err = control
        .update_config(pb::UpdateConfigRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A bad change in a batch leaves the good one unapplied.
    let err = control
        .update_config(pb::UpdateConfigRequest {
            changes: vec![
                pb::ConfigChange {
                    key: "stream.buffer".into(),
                    value: "600".into(),
                },
                pb::ConfigChange {
                    key: "stream.zerocopy".into(),
                    value: "perhaps".into(),
                },
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let get = |key: &str| pb::GetConfigRequest { key: key.into() };
    let buffer = control.get_config(get("stream.buffer")).await.unwrap();
    assert_eq!(buffer.into_inner().entries[0].value, "1000");

    for (key, value) in [
        ("stream.buffer", "600"),
        ("stream.zerocopy", "true"),
        ("stream.zerocopy_threshold", "4096"),
        ("server.diagnostics_interval_s", "5"),
        ("logging.filter", "*:trace"),
    ] {
        let changed = control
            .update_config(update(key, value))
            .await
            .unwrap_or_else(|err| panic!("{key}={value}: {err:?}"))
            .into_inner();
        assert_eq!(changed.entries[0].value, value, "{key}");
        assert_eq!(changed.entries[0].origin(), pb::ConfigOrigin::Runtime);
    }
    // The reload hook really swapped the filter: trace-level lines appear now.
    relay.wait_for_log(&["TRACE"], Duration::from_secs(10));
    let info = control
        .get_server_info(pb::GetServerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(info.zerocopy_enabled);
}

#[tokio::test]
async fn sessions_and_clients_with_a_real_snapclient() {
    let (relay, fifo) = pipe_relay(&[]);
    let _writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
    let client = Snapclient::start(relay.port(), "grpc-client", relay.dir.path());
    let mut control = control(&relay).await;

    let sessions = sessions_until(&mut control, "snapclient's session", |s| {
        s.iter()
            .any(|s| s.client_id == "grpc-client" && s.chunks_sent > 0)
    })
    .await;
    let session = sessions
        .iter()
        .find(|s| s.client_id == "grpc-client")
        .unwrap();
    assert_eq!(session.host_id, "grpc-client");
    assert_eq!(session.stream, "music");
    assert_eq!(session.codec, "pcm");
    assert!(session.client_version.starts_with("0."), "{session:?}");
    assert!(session.address.starts_with("127.0.0.1:"));
    assert_eq!(session.send_mode(), pb::SendMode::Regular);
    assert!(session.time_sync.unwrap().replies > 0);
    assert!(session.time_sync.unwrap().last_at_us > 0);

    let one = control
        .get_session(pb::GetSessionRequest {
            session_id: session.session_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.client_id, "grpc-client");
    let err = control
        .get_session(pb::GetSessionRequest {
            session_id: 999_999,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Volume: stored, sent as ServerSettings, and the client applies it.
    let updated = control
        .set_client_volume(pb::SetClientVolumeRequest {
            client_id: "grpc-client".into(),
            percent: Some(37),
            muted: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.volume_percent, 37);
    assert_eq!(updated.sessions_notified, 1);
    common::eventually(
        Duration::from_secs(10),
        "snapclient applying volume 37",
        || client.log(),
        || client.log().contains("volume: 37").then_some(()),
    );
    let latency = control
        .set_client_latency(pb::SetClientLatencyRequest {
            client_id: "grpc-client".into(),
            latency_ms: 25,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latency.latency_ms, 25);
    common::eventually(
        Duration::from_secs(10),
        "snapclient applying latency 25",
        || client.log(),
        || client.log().contains("latency: 25").then_some(()),
    );
    let named = control
        .set_client_name(pb::SetClientNameRequest {
            client_id: "grpc-client".into(),
            name: "Kitchen".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(named.name, "Kitchen");
    let one = control
        .get_session(pb::GetSessionRequest {
            session_id: session.session_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (one.name.as_str(), one.volume_percent, one.latency_ms),
        ("Kitchen", 37, 25)
    );

    // Errors name the field and the allowed values.
    let volume =
        |client: &str, percent: Option<u32>, muted: Option<bool>| pb::SetClientVolumeRequest {
            client_id: client.into(),
            percent,
            muted,
        };
    let err = control
        .set_client_volume(volume("nobody", Some(10), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = control
        .set_client_volume(volume("grpc-client", Some(150), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("percent") && err.message().contains("0 to 100"));
    let err = control
        .set_client_volume(volume("grpc-client", None, None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = control
        .set_client_latency(pb::SetClientLatencyRequest {
            client_id: "grpc-client".into(),
            latency_ms: 20_000,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = control
        .set_client_name(pb::SetClientNameRequest {
            client_id: "grpc-client".into(),
            name: "bell\u{7}".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("no control characters"), "{err:?}");
    // A blank name clears the name (clients then show their host name), as over JSON-RPC.
    let cleared = control
        .set_client_name(pb::SetClientNameRequest {
            client_id: "grpc-client".into(),
            name: "  ".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleared.name, "");

    // Buffer changes reach connected clients.
    let changed = control
        .update_config(pb::UpdateConfigRequest {
            changes: vec![pb::ConfigChange {
                key: "stream.buffer".into(),
                value: "700".into(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.sessions_notified, 1);
    common::eventually(
        Duration::from_secs(10),
        "snapclient applying buffer 700",
        || client.log(),
        || client.log().contains("buffer: 700").then_some(()),
    );

    // Disconnect: the session goes away (snapclient then reconnects with a new one).
    control
        .disconnect_session(pb::DisconnectSessionRequest {
            session_id: session.session_id,
        })
        .await
        .unwrap();
    let id = session.session_id;
    sessions_until(&mut control, "session gone", |s| {
        s.iter().all(|s| s.session_id != id)
    })
    .await;
    let err = control
        .disconnect_session(pb::DisconnectSessionRequest { session_id: id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn watch_stats_sends_a_snapshot_then_moving_updates() {
    let (relay, fifo) = pipe_relay(&[]);
    let _writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
    let _client = Snapclient::start(relay.port(), "watcher", relay.dir.path());
    let mut control = control(&relay).await;
    sessions_until(&mut control, "client playing", |s| {
        s.iter().any(|s| s.chunks_sent > 0)
    })
    .await;

    let started = Instant::now();
    let mut stream = control
        .watch_stats(pb::WatchStatsRequest { interval_ms: 200 })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().expect("snapshot");
    // The first message is immediate, not one interval later.
    assert!(started.elapsed() < Duration::from_millis(190) + Duration::from_millis(500));
    let mut last = first.clone();
    for _ in 0..3 {
        last = stream.message().await.unwrap().expect("update");
    }
    let sent = |s: &pb::Stats| s.aggregate.as_ref().unwrap().bytes_sent;
    assert!(sent(&last) > sent(&first), "bytes_sent did not move");
    assert!(last.streams[0].chunks > first.streams[0].chunks);
    assert_eq!(last.streams[0].state(), pb::StreamState::Playing);
    assert_eq!(last.streams[0].clients, 1);
    assert!(last.uptime_ms > first.uptime_ms);
    // Chunks are serialized into pooled buffers that come back and are reused.
    let pool = last.pool.expect("pool figures");
    assert!(
        pool.buffers_created >= 1 && pool.total_buffers >= 1,
        "{pool:?}"
    );
    assert!(pool.buffers_reused > 0, "{pool:?}");

    // Intervals are clamped: asking for 1 ms still paces at the 100 ms minimum.
    let mut fast = control
        .watch_stats(pb::WatchStatsRequest { interval_ms: 1 })
        .await
        .unwrap()
        .into_inner();
    fast.message().await.unwrap();
    let begin = Instant::now();
    for _ in 0..3 {
        fast.message().await.unwrap();
    }
    assert!(
        begin.elapsed() >= Duration::from_millis(250),
        "{:?}",
        begin.elapsed()
    );

    let stats = control
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.sessions.len(), 1);
    assert_eq!(stats.aggregate.unwrap().sessions, 1);
}

#[tokio::test]
async fn token_protects_control_but_not_health_or_reflection() {
    let (relay, _fifo) = pipe_relay(&["--grpc.token=s3cret"]);
    let channel = channel(&relay).await;
    let with = |token: Option<&'static str>| {
        ControlClient::with_interceptor(channel.clone(), move |mut request: tonic::Request<()>| {
            if let Some(token) = token {
                request
                    .metadata_mut()
                    .insert("authorization", token.parse().unwrap());
            }
            Ok(request)
        })
    };
    for token in [
        None,
        Some("Bearer wrong"),
        Some("s3cret"),
        Some("Bearer s3cre"),
    ] {
        let err = with(token)
            .get_stats(pb::GetStatsRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}");
    }
    let info = with(Some("Bearer s3cret"))
        .get_server_info(pb::GetServerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(info.auth_required);
    let config = with(Some("Bearer s3cret"))
        .get_config(pb::GetConfigRequest {
            key: "grpc.token".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        config.entries[0].value, "(set)",
        "the token is never sent back"
    );

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "snaprelay.v1.Control".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    assert!(list_services_v1(channel)
        .await
        .contains(&"snaprelay.v1.Control".to_owned()));
}

async fn list_services_v1(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().expect("a response");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test]
async fn health_check_watch_reflection_and_shutdown() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let (relay, _fifo) = pipe_relay(&[]);
    let channel = channel(&relay).await;
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "snaprelay.v1.Control"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.status(), ServingStatus::Serving, "{service:?}");
    }
    let err = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let services = list_services_v1(channel.clone()).await;
    for name in ["snaprelay.v1.Control", "grpc.health.v1.Health"] {
        assert!(services.contains(&name.to_owned()), "{services:?}");
    }
    {
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        let mut client = ServerReflectionClient::new(channel.clone());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "snaprelay.v1.Control".into(),
            )),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().expect("answer");
        assert!(matches!(
            answer.message_response,
            Some(tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
        ));
    }

    // Watch: SERVING now, then NOT_SERVING (or the end of the stream) on SIGTERM.
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "snaprelay.v1.Control".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().expect("first status");
    assert_eq!(first.status(), ServingStatus::Serving);
    let waiter = tokio::task::spawn_blocking(move || relay.terminate());
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("health watch answers during shutdown");
    if let Ok(Some(status)) = next {
        assert_eq!(status.status(), ServingStatus::NotServing);
    }
    let exit = waiter.await.unwrap();
    assert!(exit.success(), "relay exit status {exit:?}");
}
