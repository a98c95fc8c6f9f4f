//! An independent client: Python grpcio, with nothing but server reflection to learn the API,
//! calls health and GetStats on the running relay. `scripts/test.sh` installs the Python
//! packages; this test fails (never skips) when they are missing.

mod common;

use std::process::Command;

use common::Relay;

const PYTHON_PACKAGES: &str = "grpcio grpcio-health-checking grpcio-reflection";

#[test]
fn python_client_discovers_the_api_through_reflection() {
    let probe = Command::new("python3")
        .args(["-c", "import grpc, grpc_health.v1, grpc_reflection.v1alpha"])
        .output()
        .expect("python3 must be installed for this test");
    assert!(
        probe.status.success(),
        "the Python gRPC packages are missing; run scripts/test.sh or `pip install \
         {PYTHON_PACKAGES}`:\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let fifo = common::source_fifo(dir.path(), "radio");
    let source = format!("pipe://{}?name=radio&codec=pcm", fifo.display());
    let relay = Relay::start_in(dir, &["--source", &source]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/reflection_client.py"
    );
    let output = Command::new("python3")
        .arg(script)
        .arg(relay.grpc_addr().to_string())
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("python client prints JSON");
    let services = report["services"].as_array().unwrap();
    assert!(
        services.iter().any(|s| s == "snaprelay.v1.Control"),
        "{report}"
    );
    assert!(
        services.iter().any(|s| s == "grpc.health.v1.Health"),
        "{report}"
    );
    let methods = report["methods"].as_array().unwrap();
    for method in [
        "GetStats",
        "WatchStats",
        "ListSessions",
        "UpdateConfig",
        "SetClientVolume",
    ] {
        assert!(methods.iter().any(|m| m == method), "{method}: {report}");
    }
    assert_eq!(report["health"], "SERVING");
    assert_eq!(report["control_health"], "SERVING");
    // Proto3 JSON leaves out zero values; the stream list and its name must be there.
    let stats = &report["stats"];
    assert_eq!(stats["streams"][0]["name"], "radio", "{report}");
    assert_eq!(stats["streams"][0]["codec"], "pcm", "{report}");
    assert!(stats["taken_at_us"]
        .as_str()
        .is_some_and(|t| t.parse::<i64>().unwrap() > 0));
}
