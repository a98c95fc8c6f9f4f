//! Relay chaining (issue 19), the control side: an edge holds its stream and volume on the
//! upstream, shows the upstream stream's now playing and cover art (served by the edge
//! itself), passes control requests on to the upstream's plugin, follows a group change made
//! upstream, and survives a hostile upstream control port. The audio side is in
//! `relay_chain.rs`.

mod common;

use std::time::Duration;

use common::edge::{edge_metric, edge_named, edge_on};
use common::{jsonrpc_call, Relay, Snapclient};
use serde_json::json;

/// `stream=` picks the upstream stream through the upstream's JSON-RPC, and the edge holds
/// it and its own volume there: a change made on the upstream is set back.
#[test]
fn the_edge_holds_its_stream_and_volume_on_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let core = Relay::start_in(
        dir,
        &[
            "--source",
            "tone:///?name=A&freq=440&codec=pcm",
            "--source",
            "tone:///?name=B&freq=880&codec=pcm",
        ],
    );
    let control = core.jsonrpc_addr().port();
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "snapcast://127.0.0.1:{}?name=Edge&stream=B&control_port={control}",
        core.port()
    );
    let edge = Relay::start_in(dir, &["--source", &source]);
    let client = Snapclient::start(edge.port(), "edge-client", edge.dir.path());
    // New clients land on A; the edge asked for B.
    common::eventually(
        Duration::from_secs(20),
        "the edge client hearing B",
        || edge.log(),
        || common::recent_frequency(&client).filter(|f| (f - 880.0).abs() < 5.0),
    );
    let (group, client_status) = edge_on(&core).expect("the edge is a client of the core");
    let id = client_status["id"].as_str().unwrap().to_owned();
    // Someone mutes the edge and moves it back to A on the core: both are set back.
    jsonrpc_call(
        core.jsonrpc_addr(),
        "Client.SetVolume",
        json!({"id": id, "volume": {"muted": true, "percent": 30}}),
    );
    jsonrpc_call(
        core.jsonrpc_addr(),
        "Group.SetStream",
        json!({"id": group, "stream_id": "A"}),
    );
    common::eventually(
        Duration::from_secs(10),
        "the edge's stream and volume restored on the core",
        || edge.log(),
        || {
            let (group, client) = edge_on(&core)?;
            let status = jsonrpc_call(core.jsonrpc_addr(), "Server.GetStatus", json!({}));
            let stream = status["result"]["server"]["groups"]
                .as_array()?
                .iter()
                .find(|g| g["id"] == group.as_str())?["stream_id"]
                .clone();
            (stream == "B"
                && client["config"]["volume"]["muted"] == false
                && client["config"]["volume"]["percent"] == 100)
                .then_some(())
        },
    );
    // The client plays out what it buffered of A (its buffer, a second) before B again; a
    // busy machine may take longer, so wait for B rather than for a fixed time.
    common::eventually(
        Duration::from_secs(10),
        "the edge client hearing B again",
        || format!("it hears {:?} Hz", common::recent_frequency(&client)),
        || common::recent_frequency(&client).filter(|f| (f - 880.0).abs() < 5.0),
    );
}

/// Home Assistant pointed at an edge: the python `snapcast` library reads the upstream
/// stream's now playing on the edge's stream and controls the upstream's stream plugin
/// through it, with the same report as against the upstream itself (tests/stream_control.rs;
/// the cover's URL is the upstream's). When the upstream goes, the edge shows no player.
#[test]
fn an_edge_shows_the_upstreams_now_playing_and_passes_control_on() {
    use common::stream_plugin::{
        assert_home_assistant_report, client_report, cover_name, plug_source, plugin_dir,
    };
    let dir = tempfile::tempdir().unwrap();
    let plugin = plugin_dir(dir.path());
    let plug = plug_source(dir.path(), &plugin);
    let core = Relay::start_in(dir, &["--source", &plug, "--http.host=relay.test"]);
    let edge_dir = tempfile::tempdir().unwrap();
    let plain = format!(
        "pipe://{}?name=NoPlug",
        edge_dir.path().join("plain.fifo").display()
    );
    let edge = edge_named(
        "Edge",
        core.port(),
        Some(core.jsonrpc_addr().port()),
        &["--source", &plain],
    );
    let report = client_report(edge.jsonrpc_addr().port(), "Edge", &plugin);
    let art_url = format!(
        "http://relay.test:{}/__image_cache?name={}",
        core.http_addr().port(),
        cover_name("Plug")
    );
    assert_home_assistant_report(&report, "Edge", &art_url);
    // gRPC and snapctl show the same now playing on the edge.
    let shown = common::snapctl(&edge, &["stream", "show", "Edge"]);
    assert!(shown.contains("now playing  B1, B2 – Second"), "{shown}");

    drop(core);
    common::eventually(
        Duration::from_secs(15),
        "the edge showing no player",
        || edge.log(),
        || {
            let status = jsonrpc_call(edge.jsonrpc_addr(), "Server.GetStatus", json!({}));
            let properties = &status["result"]["server"]["streams"][0]["properties"];
            (properties["canControl"] == false && properties.get("metadata").is_none())
                .then_some(())
        },
    );
    let refused = jsonrpc_call(
        edge.jsonrpc_addr(),
        "Stream.Control",
        json!({"id": "Edge", "command": "play"}),
    );
    assert_eq!(refused["error"]["code"], 4, "{refused}");
}

/// An upstream JSON-RPC port that sends one endless line: the edge gives up on that
/// connection at the line cap (it does not buffer without bound), says so, retries, and its
/// audio link is not disturbed.
#[test]
fn an_endless_line_on_the_upstream_control_port_is_cut_off() {
    let core = Relay::start_in(
        tempfile::tempdir().unwrap(),
        &["--source", "tone:///?name=A&freq=440&codec=pcm"],
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let control_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                use std::io::Write;
                let block = [b'x'; 64 * 1024];
                while stream.write_all(&block).is_ok() {}
            });
        }
    });
    let edge = edge_named("Edge", core.port(), Some(control_port), &[]);
    common::eventually(
        Duration::from_secs(20),
        "the edge giving up on the endless line",
        || edge.log(),
        || edge.log().contains("max line length").then_some(()),
    );
    assert_eq!(
        edge_metric(&edge, "snaprelay_upstream_connected"),
        Some(1.0)
    );
    let before = edge_metric(&edge, "snaprelay_upstream_chunks_total").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(edge_metric(&edge, "snaprelay_upstream_chunks_total").unwrap() > before);
}

/// The upstream's cover art is fetched once and served by the edge itself, at the edge's
/// URL: a browser that reaches only the edge shows it.
#[test]
fn an_edge_serves_the_upstreams_cover_art_itself() {
    use common::stream_plugin::{core_with_cover, COVER};
    let core = core_with_cover("With cover", "Core Band");
    let edge = edge_named(
        "Edge",
        core.port(),
        Some(core.jsonrpc_addr().port()),
        &["--http.host=edge.test"],
    );
    let ours = format!(
        "http://edge.test:{}/__image_cache?name=",
        edge.http_addr().port()
    );
    let art_url = common::eventually(
        Duration::from_secs(15),
        "the edge showing its own cover URL",
        || edge.log(),
        || {
            let status = jsonrpc_call(edge.jsonrpc_addr(), "Server.GetStatus", json!({}));
            let metadata = &status["result"]["server"]["streams"][0]["properties"]["metadata"];
            (metadata["title"] == "With cover").then_some(())?;
            metadata["artUrl"]
                .as_str()
                .filter(|url| url.starts_with(&ours))
                .map(str::to_owned)
        },
    );
    let path = art_url
        .split_once(&format!(":{}", edge.http_addr().port()))
        .unwrap()
        .1;
    let image = common::http_get(edge.http_addr(), path);
    assert_eq!(image.status, 200);
    assert_eq!(image.header("content-type"), Some("image/png"));
    assert_eq!(image.body, COVER);
}

/// Someone moves the edge's client upstream into another group, on another stream (only a
/// `Server.OnUpdate` says so): the edge follows and shows that stream's now playing.
#[test]
fn an_edge_moved_to_another_group_upstream_follows_it() {
    use common::stream_plugin::{plug_source, plugin_dir};
    let dir = tempfile::tempdir().unwrap();
    let plugin = plugin_dir(dir.path());
    let plug = plug_source(dir.path(), &plugin);
    let core = Relay::start_in(
        dir,
        &["--source", "tone:///?name=A&freq=440", "--source", &plug],
    );
    let edge = edge_named("Edge", core.port(), Some(core.jsonrpc_addr().port()), &[]);
    let edge_status = || jsonrpc_call(edge.jsonrpc_addr(), "Server.GetStatus", json!({}));
    let (edge_group, edge_client) = common::eventually(
        Duration::from_secs(15),
        "the edge on the core",
        || edge.log(),
        || edge_on(&core),
    );
    // Another client's group plays Plug; the edge's client is moved into it.
    let _other = common::hello_client(&core, "other-room");
    let status = jsonrpc_call(core.jsonrpc_addr(), "Server.GetStatus", json!({}));
    let other_group = status["result"]["server"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] != edge_group.as_str())
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .expect("the other client's group");
    let reply = jsonrpc_call(
        core.jsonrpc_addr(),
        "Group.SetStream",
        json!({"id": other_group, "stream_id": "Plug"}),
    );
    assert!(reply.get("error").is_none(), "{reply}");
    assert_eq!(
        edge_status()["result"]["server"]["streams"][0]["properties"].get("metadata"),
        None,
        "A has no now playing"
    );
    let reply = jsonrpc_call(
        core.jsonrpc_addr(),
        "Group.SetClients",
        json!({"id": other_group, "clients": ["other-room", edge_client["id"]]}),
    );
    assert!(reply.get("error").is_none(), "{reply}");
    common::eventually(
        Duration::from_secs(10),
        "the edge showing Plug's now playing",
        || edge.log(),
        || {
            let status = edge_status();
            (status["result"]["server"]["streams"][0]["properties"]["metadata"]["title"] == "First")
                .then_some(())
        },
    );
}
