//! Meta streams (issue 17): `meta:///A/B?name=Mix` plays the first of its inputs that is
//! playing. A real snapclient on Mix hears B (a tone) while A has no writer, A when A starts,
//! B again when A stops, without reconnecting; A's transitions are announced with
//! `Stream.OnUpdate` and Mix shows the active input's properties.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::audio::Signal;
use common::{jsonrpc_call, source_fifo, FifoWriter, Relay, Snapclient};
use serde_json::{json, Value};

use common::recent_frequency;

/// Moves the (only) client's group to the stream Mix, once the client is known.
fn move_to_mix(relay: &Relay) {
    let addr = relay.jsonrpc_addr();
    let group = common::eventually(
        Duration::from_secs(20),
        "the client's group",
        || relay.log(),
        || {
            let status = jsonrpc_call(addr, "Server.GetStatus", json!({}));
            status["result"]["server"]["groups"][0]["id"]
                .as_str()
                .map(str::to_owned)
        },
    );
    let reply = jsonrpc_call(
        addr,
        "Group.SetStream",
        json!({"id": group, "stream_id": "Mix"}),
    );
    assert_eq!(reply["result"]["stream_id"], "Mix", "{reply}");
}

fn hears(client: &Snapclient, hz: f64, what: &str) {
    common::eventually(
        Duration::from_secs(20),
        what,
        || client.log(),
        || recent_frequency(client).filter(|f| (f - hz).abs() < 5.0),
    );
}

#[test]
fn a_meta_stream_plays_whichever_input_plays_first_live() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = source_fifo(dir.path(), "a");
    let a = format!("pipe://{}?name=A&codec=pcm", fifo.display());
    let relay = Relay::start_in(
        dir,
        &[
            "--source",
            &a,
            "--source",
            "tone:///?name=B&freq=440&codec=pcm",
            "--source",
            "meta:///A/B?name=Mix&codec=pcm",
        ],
    );
    // Every notification, from the start.
    let notes = Arc::new(Mutex::new(Vec::<Value>::new()));
    let listener = TcpStream::connect(relay.jsonrpc_addr()).unwrap();
    let sink = notes.clone();
    let reader = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if let Ok(note) = serde_json::from_str::<Value>(&line) {
                sink.lock().unwrap().push(note);
            }
        }
    });
    let client_dir = tempfile::tempdir().unwrap();
    let client = Snapclient::start(relay.port(), "mix", client_dir.path());
    let addr = relay.jsonrpc_addr();
    move_to_mix(&relay);

    hears(&client, 440.0, "B while A has no writer");
    let writer = FifoWriter::start(&fifo, Signal::new(880.0, 880.0), 0);
    hears(&client, 880.0, "A once it plays");
    let status = jsonrpc_call(addr, "Server.GetStatus", json!({}));
    let mix = status["result"]["server"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "Mix")
        .cloned()
        .unwrap();
    assert_eq!(mix["status"], "playing");
    writer.stop();
    hears(&client, 440.0, "B again once A stops");

    // One session all along, and A's comings and goings announced.
    let connects = client.log().matches("Connected to").count();
    assert_eq!(connects, 1, "{}", client.log());
    let notes = notes.lock().unwrap();
    let a_updates: Vec<&str> = notes
        .iter()
        .filter(|n| n["method"] == "Stream.OnUpdate" && n["params"]["id"] == "A")
        .filter_map(|n| n["params"]["stream"]["status"].as_str())
        .collect();
    assert!(
        a_updates.contains(&"playing") && a_updates.contains(&"idle"),
        "{a_updates:?}"
    );
    drop(listener);
}

#[test]
fn a_meta_input_must_be_a_stream_defined_before_it() {
    for (sources, words) in [
        (
            vec!["meta:///Later?name=Mix", "tone:///?name=Later"],
            "meta input 'Later' is not a stream defined before it",
        ),
        (
            vec!["tone:///?name=A", "meta:///A/Nowhere?name=Mix"],
            "meta input 'Nowhere' is not a stream defined before it",
        ),
        (vec!["meta:///?name=Mix"], "the input streams"),
        (
            vec!["tone:///?name=A&codec=null"],
            "at least one must be playable",
        ),
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_snaprelay"));
        command.arg("--check-config");
        for source in &sources {
            command.args(["--source", source]);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{sources:?}");
        assert!(stderr.contains(words), "{sources:?}: {stderr}");
    }
}

/// Inputs with `codec=null` only feed the meta stream: control clients do not see them, and
/// a new client lands on the first stream it can play, the meta stream.
#[test]
fn null_codec_inputs_are_hidden_and_clients_land_on_the_meta_stream() {
    let relay = Relay::start(&[
        "--source",
        "tone:///?name=A&freq=660&codec=null",
        "--source",
        "tone:///?name=B&freq=440&codec=null",
        "--source",
        "meta:///A/B?name=Mix&codec=pcm",
    ]);
    let status = jsonrpc_call(relay.jsonrpc_addr(), "Server.GetStatus", json!({}));
    let ids: Vec<&str> = status["result"]["server"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, ["Mix"]);
    let reply = jsonrpc_call(
        relay.jsonrpc_addr(),
        "Stream.AddStream",
        json!({"streamUri": "tone:///?name=C&codec=mp3"}),
    );
    assert!(
        reply["error"]["data"].as_str().unwrap().contains("or null"),
        "{reply}"
    );
    let client_dir = tempfile::tempdir().unwrap();
    let client = Snapclient::start(relay.port(), "lands", client_dir.path());
    hears(&client, 660.0, "A through Mix");
}

/// An input removed at run time is gone for the meta stream: it plays the next input that
/// plays, without its clients reconnecting.
#[test]
fn a_removed_input_hands_over_to_the_next() {
    let relay = Relay::start(&[
        "--source",
        "tone:///?name=A&freq=660&codec=pcm",
        "--source",
        "tone:///?name=B&freq=440&codec=pcm",
        "--source",
        "meta:///A/B?name=Mix&codec=pcm",
    ]);
    let addr = relay.jsonrpc_addr();
    let client_dir = tempfile::tempdir().unwrap();
    let client = Snapclient::start(relay.port(), "mix", client_dir.path());
    move_to_mix(&relay);
    hears(&client, 660.0, "A, the first input");
    let reply = jsonrpc_call(addr, "Stream.RemoveStream", json!({"id": "A"}));
    assert_eq!(reply["result"], json!({"id": "A"}), "{reply}");
    hears(&client, 440.0, "B once A is gone");
    assert_eq!(
        client.log().matches("Connected to").count(),
        1,
        "{}",
        client.log()
    );
    assert!(
        relay.log().contains("meta input removed"),
        "{}",
        relay.log()
    );
}
